"""Synthetic arenas: contributors judge battles between named models of planted strength.

The planted Bradley-Terry strengths make the true leaderboard known, so the DP leaderboard
(bench/leaderboard.py, `cairn node synth --arena-models`, the demo) can be scored against it.
Bradley, R. A. & Terry, M. E. (1952), "Rank Analysis of Incomplete Block Designs: I. The Method
of Paired Comparisons", Biometrika 39(3/4): 324-345, https://doi.org/10.2307/2334029: their
paired-comparison model P(i beats j) = pi_i / (pi_i + pi_j), here with pi = exp(strength).
The randomness here simulates data; it is no privacy noise (ARCHITECTURE.md invariant 6 concerns
only privacy noise).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from node.schema import Feedback, Message, Record, Response
from node.synth.pool import TextGroup

ARENA_TIE, ARENA_BOTH_BAD = 0.20, 0.05  # shares of battles judged a tie / both bad


# Twelve model names of late 2025, as an arena would show them: none is in any built-in list, so
# a federation can rank them only through the nodes' private key selection (node/discovery.py).
CURRENT_MODELS = ("gpt-5", "gpt-5-mini", "claude-opus-4.5", "claude-sonnet-4.5", "gemini-3-pro", "gemini-2.5-flash",
                  "grok-4", "llama-4-maverick", "deepseek-v3.2", "qwen3-max", "mistral-large-3", "kimi-k2")


def named_arena(names: Sequence[str], seed: int) -> dict[str, float]:
    """{name: planted Bradley-Terry strength} for the given model names (standard normal strengths)."""
    rng = np.random.default_rng([int(seed), 0xA7E4B])
    return {str(n): float(s) for n, s in zip(names, rng.normal(0.0, 1.0, len(names)))}


def arena_models(n_models: int, seed: int, prefix: str = "model") -> dict[str, float]:
    """{model name: planted Bradley-Terry strength} (standard normal strengths, natural-log scale)."""
    rng = np.random.default_rng([int(seed), 0xA7E4A])
    return {f"{prefix}-{i:02d}": float(s) for i, s in enumerate(rng.normal(0.0, 1.0, n_models))}


def arena_battles(n_contributors: int, strengths: dict[str, float], seed: int, *, contributor_prefix: str = "user",
                  max_battles: int = 12) -> list[tuple[str, str, str, str]]:
    """(contributor, model_a, model_b, outcome) with model_a < model_b: each contributor judges
    1-`max_battles` random battles (geometric, mean ~4); a battle is a tie (ARENA_TIE), both bad
    (ARENA_BOTH_BAD), else won by a with probability sigmoid(s_a - s_b)."""
    rng = np.random.default_rng([int(seed), 0xBA77])
    models = sorted(strengths)
    out = []
    for c in range(n_contributors):
        who = f"{contributor_prefix}-{c:05d}"
        for _ in range(int(min(max_battles, rng.geometric(0.25)))):
            i, j = sorted(int(x) for x in rng.choice(len(models), 2, replace=False))
            u = rng.random()
            if u < ARENA_BOTH_BAD:
                o = "both_bad"
            elif u < ARENA_BOTH_BAD + ARENA_TIE:
                o = "tie"
            else:
                p_a = 1.0 / (1.0 + math.exp(-(strengths[models[i]] - strengths[models[j]])))
                o = "a" if rng.random() < p_a else "b"
            out.append((who, models[i], models[j], o))
    return out


def arena_records(battles: Sequence[tuple[str, str, str, str]], texts: Sequence[TextGroup], seed: int,
                  community: str) -> list[Record]:
    """The battles as Chatbot-Arena-style Records over REAL text: each battle gets a real prompt and
    two of its real responses, labelled with the battling models' names."""
    groups = [g for g in texts if len(set(g.responses)) >= 2]
    if not groups:
        raise ValueError("need at least one text group with two distinct responses")
    rng = np.random.default_rng([int(seed), 0x7E47])
    out = []
    for k, (who, ma, mb, outcome) in enumerate(battles):
        g = groups[int(rng.integers(len(groups)))]
        texts_g = list(dict.fromkeys(g.responses))  # distinct texts: two models never give the same answer
        a, b = rng.choice(len(texts_g), size=2, replace=False)
        out.append(Record(
            source="synth-arena", key=f"{community}-arena-{k:06d}", prompt=[Message("user", g.prompt)],
            responses=[Response(texts_g[int(a)], ma), Response(texts_g[int(b)], mb)],
            feedback=[Feedback("pairwise", who, {"a": 0, "b": 1, "outcome": outcome, "strength": 1.0})],
            owner=who, language="en", meta={"community": community, "synthetic": True},
        ))
    return out

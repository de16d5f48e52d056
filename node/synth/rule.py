"""The planted rule and the pairwise Records that follow it.

    u_c(text) = w_shared . phi(text) + gamma * w_community . phi(text)
    P(a beats b) = sigmoid((u_c(a) - u_c(b)) / temperature)        (Bradley & Terry 1952, below)

- `phi(text)`: a fixed, featurizer-independent description of the text: a few interpretable
  properties (log length, line breaks, lists, digits, questions, politeness, first person, code,
  average word length) and a hidden lexicon (word-presence indicators for the `LEXICON_SIZE`
  most frequent words of the pool, normalised by sqrt of the distinct word count); or, with a
  featurizer, that featurizer's embedding.
- `w_shared` comes from `rule_seed` (what all communities agree on), `w_community` from
  `community_seed` (their own taste), `gamma` sets how much communities differ.
- `temperature` is relative: `noise * std(u(a) - u(b))` over the pool's candidate pairs, so the
  label-noise level means the same thing for any pool.

Accuracy against the planted rule = agreement with sign(u_c(a) - u_c(b)) on held-out pairs; build
them with `synth_records(..., label="rule")` over a held-out text pool (`split_pool`). The
randomness here simulates data; it is no privacy noise (ARCHITECTURE.md invariant 6 concerns only
privacy noise).

Bradley, R. A. & Terry, M. E. (1952), "Rank Analysis of Incomplete Block Designs: I. The Method of
Paired Comparisons", Biometrika 39(3/4): 324-345, https://doi.org/10.2307/2334029: their model
P(i beats j) = pi_i / (pi_i + pi_j), here with pi = exp(u / temperature).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from node.schema import Feedback, Message, Record, Response
from node.synth.pool import TextGroup

LEXICON_SIZE = 64
N_PROPS = 9
_WORD = re.compile(r"[a-z]+")
_POLITE = {"please", "thanks", "thank", "sorry", "glad", "happy", "welcome", "hope"}
_FIRST = {"i", "me", "my", "mine", "i'm"}
_STOP = {"the", "a", "an", "and", "or", "of", "to", "in", "is", "are", "it", "that", "for", "on", "with", "as", "be",
         "this", "by", "was"}


def _props(text: str) -> list[float]:
    words = _WORD.findall(text.lower())
    n = len(words)
    ws = set(words)
    return [
        math.log1p(n) / 5.0,
        min(text.count("\n"), 20) / 10.0,
        float(bool(re.search(r"^\s*(?:[-*•]|\d+[.)])\s", text, re.M))),
        float(bool(re.search(r"\d", text))),
        float("?" in text),
        float(bool(ws & _POLITE)),
        float(bool(ws & _FIRST)),
        float("```" in text or bool(re.search(r"[{};]\s*$", text, re.M))),
        (sum(map(len, words)) / n / 5.0) if n else 0.0,
    ]


def _lexicon(groups: Sequence[TextGroup], size: int) -> list[str]:
    df: dict[str, int] = {}
    for g in groups:
        for r in g.responses:
            for w in set(_WORD.findall(r.lower())):
                if w not in _STOP and len(w) > 2:
                    df[w] = df.get(w, 0) + 1
    return [w for w, _ in sorted(df.items(), key=lambda kv: (-kv[1], kv[0]))[:size]]


def _phi(text: str, lexicon: Sequence[str]) -> np.ndarray:
    ws = set(_WORD.findall(text.lower()))
    lex = np.array([1.0 if w in ws else 0.0 for w in lexicon]) / math.sqrt(max(len(ws), 1)) * 3.0
    return np.concatenate([np.asarray(_props(text)), lex])


def _weights(seed_text: str, n: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.blake2b(seed_text.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng(seed).normal(size=n)


@dataclass(frozen=True)
class PlantedRule:
    """u(text) = w . phi(text); `temperature` scales the Bradley-Terry label noise.

    phi is the text-property description (`_phi`) or, when `featurizer` is set, the featurizer's
    own embedding ("a hidden linear direction in feature space": learnable by a head on those
    features, so the non-private ceiling is high and DP costs are measured against it).
    """

    lexicon: tuple[str, ...]
    w: np.ndarray
    temperature: float
    featurizer: object | None = None

    def utility(self, texts: Sequence[str]) -> np.ndarray:
        """u(text) for each text."""
        texts = list(texts)
        if self.featurizer is not None:
            if not texts:
                return np.zeros(0)
            return np.asarray(self.featurizer.encode(texts), dtype=np.float64) @ self.w  # type: ignore[attr-defined]
        return np.array([float(_phi(t, self.lexicon) @ self.w) for t in texts])


def planted_rule(pool: Sequence[TextGroup], rule_seed: int, community_seed: int, *, gamma: float = 0.5, noise: float = 0.5,
                 lexicon_pool: Sequence[TextGroup] | None = None, featurizer=None) -> PlantedRule:
    """The planted rule of community `community_seed` (its lexicon from `lexicon_pool` or `pool`)."""
    lexicon = tuple(_lexicon(lexicon_pool if lexicon_pool is not None else pool, LEXICON_SIZE))
    n = int(featurizer.dim) if featurizer is not None else N_PROPS + len(lexicon)
    w = _weights(f"shared/{rule_seed}", n) + gamma * _weights(f"community/{rule_seed}/{community_seed}", n)
    rule = PlantedRule(lexicon, w, 1.0, featurizer)
    sub = list(pool[:2000])
    uniq = list(dict.fromkeys(t for g in sub for t in g.responses))
    um = dict(zip(uniq, rule.utility(uniq)))
    diffs = []
    for g in sub:
        u = [um[t] for t in g.responses]
        diffs += [u[i] - u[j] for i in range(len(u)) for j in range(i + 1, len(u))]
    scale = float(np.std(diffs)) if len(diffs) > 1 else 1.0
    return PlantedRule(lexicon, w, max(noise * scale, 1e-9), featurizer)


def synth_records(
    n_contributors: int,
    pairs_per_contributor: int,
    rule_seed: int,
    community_seed: int,
    texts: Sequence[TextGroup],
    *,
    sample_seed: int = 0,
    gamma: float = 0.5,
    noise: float = 0.5,
    label: str = "sampled",
    lexicon_texts: Sequence[TextGroup] | None = None,
    community: str | None = None,
    featurizer=None,
) -> list[Record]:
    """`n_contributors` x `pairs_per_contributor` pairwise Records following the planted rule.

    texts: real (prompt, responses) groups (`load_text_pool`, `split_pool`).
    label: "sampled" (Bradley-Terry noise, for training) or "rule" (noiseless sign of the utility
      difference, for measuring accuracy against the planted rule; exact ties are skipped).
    lexicon_texts: the pool the hidden lexicon is drawn from; pass the SAME pool (e.g. the full
      pool) when generating train and test Records so that both follow one rule.
    featurizer: plant the rule as a hidden direction in this featurizer's space instead of the
      text-property space (utilities are then computed with it; pass a cached/fast one).
    Contributor ids: f"{community}-u{i:05d}" (community defaults to f"c{community_seed}").
    One Record per pair, source "synth", prompt from the user, outcome "a" or "b".
    """
    if label not in ("sampled", "rule"):
        raise ValueError("label must be 'sampled' or 'rule'")
    groups = [g for g in texts if len(set(g.responses)) >= 2]
    if not groups:
        raise ValueError("need at least one text group with two distinct responses")
    rule = planted_rule(groups, rule_seed, community_seed, gamma=gamma, noise=noise,
                        lexicon_pool=lexicon_texts if lexicon_texts is not None else groups, featurizer=featurizer)
    name = community or f"c{community_seed}"
    rng = np.random.default_rng([int(rule_seed), int(community_seed), int(sample_seed)])
    uniq = list(dict.fromkeys(t for g in groups for t in g.responses))
    utility = dict(zip(uniq, map(float, rule.utility(uniq))))
    out: list[Record] = []
    for i in range(n_contributors):
        cid = f"{name}-u{i:05d}"
        for j in range(pairs_per_contributor):
            g = groups[int(rng.integers(len(groups)))]
            a, b = rng.choice(len(g.responses), size=2, replace=False)
            ra, rb = g.responses[int(a)], g.responses[int(b)]
            if ra == rb:
                continue
            d = utility[ra] - utility[rb]
            if label == "rule":
                if d == 0:
                    continue
                outcome = "a" if d > 0 else "b"
            else:
                pa = 1.0 / (1.0 + math.exp(-max(min(d / rule.temperature, 50.0), -50.0)))
                outcome = "a" if rng.random() < pa else "b"
            out.append(Record(
                source="synth",
                key=f"{name}-{sample_seed}-{i:05d}-{j:03d}",
                prompt=[Message("user", g.prompt)],
                responses=[Response(ra, "synth-a"), Response(rb, "synth-b")],
                feedback=[Feedback("pairwise", cid, {"a": 0, "b": 1, "outcome": outcome, "strength": 1.0})],
                owner=cid,
                language="en",
                meta={"community": name, "synthetic": True},
            ))
    return out


def rule_accuracy(prefer_a: Sequence[bool], records: Sequence[Record]) -> float:
    """Fraction of Records (built with label="rule") whose planted winner matches `prefer_a`."""
    truth = [r.feedback[0].data["outcome"] == "a" for r in records]
    if not truth:
        return float("nan")
    return float(np.mean([p == t for p, t in zip(prefer_a, truth)]))

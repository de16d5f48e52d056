"""Synthetic communities: pairwise preferences over REAL text that follow a planted rule.

For scale and DP experiments we need thousands of contributors whose preferences are known. Each
synthetic contributor compares two real responses to the same real prompt (from the shared human
feedback datasets or shipped fixtures) and prefers one according to a hidden utility plus noise:

    u_c(text) = w_shared . phi(text) + gamma * w_community . phi(text)
    P(a beats b) = sigmoid((u_c(a) - u_c(b)) / temperature)

- `phi(text)`: a fixed, featurizer-independent description of the text: a few interpretable
  properties (log length, line breaks, lists, digits, questions, politeness, first person, code,
  average word length) and a hidden lexicon (word-presence indicators for the `LEXICON_SIZE`
  most frequent words of the pool, normalised by sqrt of the distinct word count).
- `w_shared` comes from `rule_seed` (what all communities agree on), `w_community` from
  `community_seed` (their own taste), `gamma` sets how much communities differ.
- `temperature` is relative: `noise * std(u(a) - u(b))` over the pool's candidate pairs, so the
  label-noise level means the same thing for any pool.

Accuracy against the planted rule = agreement with sign(u_c(a) - u_c(b)) on held-out pairs; build
them with `synth_records(..., label="rule")` over a held-out text pool (`split_pool`).

Synthetic arenas (`arena_battles`, `arena_records`): contributors judge battles between named
models whose planted Bradley-Terry strengths make the true leaderboard known, for the DP
leaderboard (bench/leaderboard.py, `cairn node synth --arena-models`, the demo).

Everything is a pure function of its arguments (seeded `numpy.random.Generator`s, BLAKE2b for
word weights): same inputs, same Records.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from node.schema import Feedback, Message, Record, Response

__all__ = [
    "TextGroup",
    "PlantedRule",
    "load_text_pool",
    "split_pool",
    "synth_records",
    "planted_rule",
    "rule_accuracy",
    "arena_models",
    "arena_battles",
    "arena_records",
    "LEXICON_SIZE",
]

LEXICON_SIZE = 64
_WORD = re.compile(r"[a-z]+")
_POLITE = {"please", "thanks", "thank", "sorry", "glad", "happy", "welcome", "hope"}
_FIRST = {"i", "me", "my", "mine", "i'm"}
_STOP = {"the", "a", "an", "and", "or", "of", "to", "in", "is", "are", "it", "that", "for", "on", "with", "as", "be", "this", "by", "was"}


@dataclass(frozen=True)
class TextGroup:
    """One real prompt and two or more real responses to it."""

    prompt: str
    responses: tuple[str, ...]


# ---------------------------------------------------------------------------------------------
# Text pool from the shared datasets / fixtures


def _data_roots() -> list[Path]:
    here = Path(__file__).resolve().parents[1]
    cands = [os.environ.get("CAIRN_DATA"), here.parent / "shared" / "data", Path("/work/shared/data"), here / "fixtures"]
    return [Path(c) for c in cands if c and Path(c).is_dir()]


def _read_jsonl(path: Path) -> Iterable[dict]:
    op = gzip.open if path.suffix == ".gz" else open
    with op(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                yield json.loads(line)


def _groups_from_row(row: dict) -> list[tuple[str, list[str]]]:
    """Recognise the shared datasets' row layouts; returns (prompt, responses) candidates."""
    if "response1" in row and "instruction" in row:  # PandaLM
        prompt = row["instruction"] + (("\n\n" + row["input"]) if row.get("input") else "")
        return [(prompt, [row["response1"], row["response2"]])]
    if "completion_a" in row and "prompt" in row:  # Tulu-1 human eval
        return [(row["prompt"], [row["completion_a"], row["completion_b"]])]
    if "message_tree_id" in row and isinstance(row.get("prompt"), dict):  # OASST trees
        out = []

        def walk(node: dict) -> None:
            reps = [r for r in node.get("replies", []) if r.get("role") == "assistant" and r.get("text")]
            if len(reps) >= 2 and node.get("text"):
                out.append((node["text"], [r["text"] for r in reps]))
            for r in node.get("replies", []):
                walk(r)

        walk(row["prompt"])
        return out
    if "question" in row and isinstance(row.get("prediction 1"), str):  # FineGrainedRLHF
        reps = [row[k] for k in ("prediction 1", "prediction 2", "prediction 3", "prediction 4") if isinstance(row.get(k), str)]
        return [(row["question"], reps)]
    return []


def load_text_pool(paths: Sequence[str | Path] | None = None, *, max_chars: int = 4000) -> list[TextGroup]:
    """Real (prompt, responses) groups from the shared datasets or fixtures, merged by prompt.

    `paths`: jsonl(.gz) files or directories; default: every *.jsonl(.gz) under the first data
    root found ($CAIRN_DATA, ../shared/data, fixtures/). Responses are deduplicated and truncated
    to `max_chars`; groups with fewer than two distinct responses are dropped. Deterministic order.
    """
    files: list[Path] = []
    if paths is None:
        for root in _data_roots():
            files = sorted(p for p in root.rglob("*.jsonl*") if p.is_file())
            if files:
                break
    else:
        for p in map(Path, paths):
            files += sorted(q for q in p.rglob("*.jsonl*") if q.is_file()) if p.is_dir() else [p]
    merged: dict[str, list[str]] = {}
    for f in files:
        try:
            rows = list(_read_jsonl(f))
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        for row in rows:
            if not isinstance(row, dict):
                continue
            for prompt, reps in _groups_from_row(row):
                if not isinstance(prompt, str):
                    continue
                lst = merged.setdefault(prompt.strip()[:max_chars], [])
                for r in reps:
                    if not isinstance(r, str):
                        continue
                    r = r.strip()[:max_chars]
                    if r and r not in lst:
                        lst.append(r)
    return [TextGroup(p, tuple(rs)) for p, rs in merged.items() if p and len(rs) >= 2]


def split_pool(pool: Sequence[TextGroup], test_fraction: float = 0.25, salt: str = "cairn-synth") -> tuple[list[TextGroup], list[TextGroup]]:
    """(train, test) split by a hash of the prompt: no prompt is on both sides."""
    train, test = [], []
    for g in pool:
        h = int.from_bytes(hashlib.sha256((salt + "\x00" + g.prompt).encode()).digest()[:8], "big") / 2**64
        (test if h < test_fraction else train).append(g)
    return train, test


# ---------------------------------------------------------------------------------------------
# The planted rule


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


N_PROPS = 9


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
        texts = list(texts)
        if self.featurizer is not None:
            if not texts:
                return np.zeros(0)
            return np.asarray(self.featurizer.encode(texts), dtype=np.float64) @ self.w
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


# ---------------------------------------------------------------------------------------------
# Records


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
    ucache = dict(zip(uniq, map(float, rule.utility(uniq))))

    def u(t: str) -> float:
        return ucache[t]

    out: list[Record] = []
    for i in range(n_contributors):
        cid = f"{name}-u{i:05d}"
        for j in range(pairs_per_contributor):
            g = groups[int(rng.integers(len(groups)))]
            a, b = rng.choice(len(g.responses), size=2, replace=False)
            ra, rb = g.responses[int(a)], g.responses[int(b)]
            if ra == rb:
                continue
            d = u(ra) - u(rb)
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


# ---------------------------------------------------------------------------------------------
# Synthetic arenas: battles between named models with planted strengths

ARENA_TIE, ARENA_BOTH_BAD = 0.20, 0.05  # shares of battles judged a tie / both bad


def arena_models(n_models: int, seed: int, prefix: str = "model") -> dict[str, float]:
    """{model name: planted Bradley-Terry strength} (standard normal strengths, natural-log scale)."""
    rng = np.random.default_rng([int(seed), 0xA7E4A])
    return {f"{prefix}-{i:02d}": float(s) for i, s in enumerate(rng.normal(0.0, 1.0, n_models))}


def arena_battles(n_contributors: int, strengths: dict[str, float], seed: int, *, contributor_prefix: str = "user",
                  max_battles: int = 12) -> list[tuple[str, str, str, str]]:
    """(contributor, model_a, model_b, outcome) with model_a < model_b: each contributor judges
    1-`max_battles` random battles (geometric, mean ~4); a battle is a tie (ARENA_TIE), both bad
    (ARENA_BOTH_BAD), else won by a with probability sigmoid(s_a - s_b) (Bradley & Terry 1952).
    The randomness simulates data; it is no privacy noise."""
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

"""Filling a node with a synthetic community: what `cairn node synth` does.

Synthetic contributors are recorded as consenting (`SYNTH_CONSENT`: CC0-1.0, in the past), so
they are eligible at once (the consent gate, ARCHITECTURE.md invariant 8, still applies to them);
their records are marked synthetic. Held-out test pairs use prompts no contributor saw
(`split_pool`) and are written as Chatbot Arena JSONL, importable and evaluable anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from node.node_dir import NodeDir
from node.schema import Record
from node.store import Store
from node.synth.arena import arena_battles, arena_models, arena_records, named_arena
from node.synth.pool import SynthError, TextGroup, default_data_dir, load_text_pool, split_pool
from node.synth.rule import synth_records

SYNTH_CONSENT = ("CC0-1.0", "2020-01-01T00:00:00+00:00", "synth")
TEXT_SPACE = "text"  # the rule over text properties (node/synth/rule.py), no featurizer
_WINNER = {"a": "model_a", "b": "model_b", "tie": "tie", "both_bad": "tie (bothbad)"}


def _pool(data: Path | None, *, held_out: bool = False) -> tuple[list[TextGroup], list[TextGroup], list[TextGroup]]:
    """(pool, train, test) from `data` (default: `default_data_dir()`); `held_out`: test must not be empty."""
    data = Path(data) if data is not None else default_data_dir()
    pool = load_text_pool([data])
    if not pool:
        raise SynthError(f"no text pool found in {data}: pass --data DIR (a folder of feedback files "
                         f"`cairn node import` reads) or set $CAIRN_SHARED_DATA")
    train, test = split_pool(pool)
    if not train or (held_out and not test):
        raise SynthError(f"{data}: its {len(pool)} prompts leave one side of the split into contributors' and "
                         f"held-out prompts empty; give more data")
    return pool, train, test


def _add(store: Store, records: Sequence[Record]) -> int:
    with store.transaction():
        return sum(store.add_record(r, None, consent=SYNTH_CONSENT) for r in records)


def planted_community(nd: NodeDir, n_contributors: int, *, pairs_per_contributor: int = 8, rule_seed: int = 1,
                      community_seed: int = 0, gamma: float = 0.5, noise: float = 0.5, test_out: Path | None = None,
                      test_pairs: int = 2000, rule_space: str = TEXT_SPACE, data: Path | None = None) -> dict:
    """Add `n_contributors` whose pairwise preferences over real text follow the planted rule
    (node/synth/rule.py); with `test_out`, also write held-out pairs labelled by the rule there.

    `rule_space`: a featurizer preset (model/presets.py) whose space the rule is planted in, its
    encodings cached in the node's encrypted store; or `TEXT_SPACE`, the text properties.
    Returns {"community", "contributors", "added", "prompts", "held_out"}."""
    pool, train, test = _pool(data, held_out=test_out is not None)
    name = nd.name
    with nd.open_store() as store:
        features = None
        if rule_space != TEXT_SPACE:
            from model.features import CachedEncoder, cache_name, featurizer_for

            featurizer = featurizer_for(rule_space)
            features = CachedEncoder(featurizer, store.embedding_cache(cache_name(featurizer)))
        records = synth_records(n_contributors, pairs_per_contributor, rule_seed, community_seed, train, gamma=gamma,
                                noise=noise, lexicon_texts=pool, community=name, featurizer=features)
        held = synth_records(max(1, test_pairs // 4), 4, rule_seed, community_seed, test, gamma=gamma, noise=noise,
                             label="rule", lexicon_texts=pool, community=f"{name}-test", sample_seed=1,
                             featurizer=features) if test_out else []
        added = _add(store, records)
    if test_out:
        write_arena(held, test_out)
    return {"community": name, "contributors": n_contributors, "added": added, "prompts": len(train),
            "held_out": len(held)}


def arena_community(nd: NodeDir, n_contributors: int, n_models: int, *, rule_seed: int = 1, community_seed: int = 0,
                    truth_out: Path | None = None, data: Path | None = None,
                    model_names: Sequence[str] | None = None) -> dict:
    """Add `n_contributors` judging battles between `n_models` models whose planted strengths
    (seed `rule_seed`, shared by communities) are written to `truth_out`; battles are seeded by
    `community_seed` and shown over real text. `model_names` names the models (e.g. arena.CURRENT_MODELS;
    default "arena-model-NN"). Returns {"community", "contributors", "added", "models"}."""
    if model_names is not None:
        n_models = len(model_names)
    if n_models < 2:
        raise SynthError("an arena needs at least 2 models")
    _, train, _ = _pool(data)
    name = nd.name
    strengths = (named_arena(model_names, rule_seed) if model_names is not None
                 else arena_models(n_models, rule_seed, prefix="arena-model"))
    battles = arena_battles(n_contributors, strengths, community_seed, contributor_prefix=f"{name}-u")
    records = arena_records(battles, train, community_seed, name)
    with nd.open_store() as store:
        added = _add(store, records)
    if truth_out:
        truth_out.parent.mkdir(parents=True, exist_ok=True)
        truth_out.write_text(json.dumps({"planted_strengths": strengths, "scale": "natural log odds"}, indent=2) + "\n")
    return {"community": name, "contributors": n_contributors, "added": added, "models": n_models}


def write_arena(records: Sequence[Record], path: Path) -> None:
    """Pairwise Records as Chatbot Arena battles (JSONL): importable and evaluable anywhere."""
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fb = r.feedback[0]
            prompt = r.prompt_text() if len(r.prompt) != 1 else r.prompt[0].text
            fh.write(json.dumps({
                "question_id": r.key, "model_a": r.responses[0].model, "model_b": r.responses[1].model,
                "winner": _WINNER[fb.data["outcome"]], "judge": fb.contributor, "language": r.language or "English",
                "conversation_a": [{"role": "user", "content": prompt}, {"role": "assistant", "content": r.responses[0].text}],
                "conversation_b": [{"role": "user", "content": prompt}, {"role": "assistant", "content": r.responses[1].text}],
            }, ensure_ascii=False) + "\n")

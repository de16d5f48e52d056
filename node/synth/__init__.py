"""Synthetic communities: pairwise preferences over REAL text that follow a planted rule.

For scale and DP experiments we need thousands of contributors whose preferences are known. Each
synthetic contributor compares two real responses to the same real prompt and prefers one by a
hidden utility plus noise (rule.py); or judges battles between named models of planted strength
(arena.py). The real text comes from the shared datasets, read with the node's own importers
(pool.py); `community.py` fills a node directory, for `cairn node synth` and the demo.

    pool.py       TextGroup, default_data_dir, load_text_pool, split_pool
    rule.py       PlantedRule, planted_rule, synth_records, rule_accuracy
    arena.py      arena_models, named_arena (CURRENT_MODELS), arena_battles, arena_records
    community.py  planted_community, arena_community, write_arena

Everything but community.py is a pure function of its arguments (seeded `numpy.random.Generator`s,
BLAKE2b for word weights): same inputs, same Records.
"""

from node.synth.arena import (
    ARENA_BOTH_BAD,
    ARENA_TIE,
    CURRENT_MODELS,
    arena_battles,
    arena_models,
    arena_records,
    named_arena,
)
from node.synth.pool import SynthError, TextGroup, default_data_dir, load_text_pool, split_pool
from node.synth.rule import LEXICON_SIZE, PlantedRule, planted_rule, rule_accuracy, synth_records

__all__ = [
    "ARENA_BOTH_BAD",
    "ARENA_TIE",
    "CURRENT_MODELS",
    "LEXICON_SIZE",
    "PlantedRule",
    "SynthError",
    "TextGroup",
    "arena_battles",
    "arena_models",
    "arena_records",
    "default_data_dir",
    "load_text_pool",
    "named_arena",
    "planted_rule",
    "rule_accuracy",
    "split_pool",
    "synth_records",
]

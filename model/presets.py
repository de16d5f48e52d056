"""THE featurizer preset table: the named featurizer configurations every command, the deployment,
the benches and the tests choose from (`--features minilm|hashed`).

Import-light on purpose (no numpy, no torch): CLI modules build their option choices from it at
import time. `model.features.featurizer_for(name)` turns a preset into a featurizer; the configs
here are what `model.features.featurizer_from_config` reads and what the coordinator sends to the
nodes in each training message.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PRESETS", "preset_config"]

PRESETS: dict[str, dict[str, Any]] = {
    "minilm": {"name": "all-MiniLM-L6-v2", "dim": 384},  # model.features.MiniLMFeaturizer
    "hashed": {"name": "hashed-ngram", "dim": 384},  # model.features.HashedNgramFeaturizer
}


def preset_config(preset: str) -> dict[str, Any]:
    """A fresh copy of the featurizer config named `preset` (`minilm` or `hashed`)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown featurizer preset {preset!r} (known: {', '.join(PRESETS)})")
    return dict(PRESETS[preset])

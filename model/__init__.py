"""Shared model code, imported by node and coordinator alike (the coordinator imports nothing from node/).

    reward_model.py     the reward head, its files (model.safetensors + model.json), flat parameter
                        vectors for FedAvg and secure aggregation, scoring
    features.py         the frozen featurizers and the one cached-encode path (`CachedEncoder`)
    presets.py          the featurizer preset table (`--features minilm|hashed`), import-light
    training_config.py  the one training configuration and its defaults

Nothing here touches text a node holds except to encode it where it lies (ARCHITECTURE.md invariant 1).
"""

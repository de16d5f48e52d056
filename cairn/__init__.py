"""Cairn: federated, privacy-preserving contribution network for open human feedback."""

__version__ = "0.1.0"

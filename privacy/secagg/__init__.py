"""Secure aggregation: the coordinator learns only the sum of the nodes' (already DP) updates.

SecAgg (Bonawitz et al. 2017, "Practical Secure Aggregation for Privacy-Preserving Machine
Learning", CCS, Protocol 0 and its Figure 4, https://eprint.iacr.org/2017/281) with the SecAgg+
neighbourhood option (Bell et al. 2020, "Secure Single-Server Aggregation with (Poly)Logarithmic
Overhead", CCS, https://eprint.iacr.org/2020/704). Protects ARCHITECTURE.md invariant 3 (the
coordinator is not trusted: it sees masked vectors and their sum, never one node's update).

  constants.py     the stages, in order, with the stage-order check; message keys; the modulus
  crypto.py        X25519 key agreement, HKDF, AES-GCM share transport, AES-CTR mask PRG, Shamir
  quantization.py  stochastic rounding to integers mod 2^32 and back
  protocol.py      Params, and the two transport-free state machines SecAggNode / SecAggServer

The Flower apps carry the messages (node/client_app.py, coordinator/server_app.py); the message
types and record keys they use are protos/wire.py's, which names these stages.
"""

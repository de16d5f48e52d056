"""Secure aggregation: the coordinator learns only the sum of the nodes' (already DP) updates.

SecAgg (Bonawitz et al. 2017, "Practical Secure Aggregation for Privacy-Preserving Machine
Learning", CCS, Protocol 0 and its Figure 4, https://eprint.iacr.org/2017/281) with the SecAgg+
neighbourhood option (Bell et al. 2020, "Secure Single-Server Aggregation with (Poly)Logarithmic
Overhead", CCS, https://eprint.iacr.org/2020/704). Protects ARCHITECTURE.md invariant 3 (the
coordinator is not trusted: it sees masked vectors and their sum, never one node's update).

  constants.py     the stages, in order, with the stage-order check; message keys; the modulus; the rules
  crypto.py        X25519 key agreement, HKDF, AES-GCM share transport, AES-CTR mask PRG, Shamir
  quantization.py  stochastic rounding to integers mod 2^32 and back
  graph.py         SecAgg+'s random Harary neighbour graph from the plan's seed, its O(log n) degree and threshold
  run_plan.py      the coordinator-signed run plan (roster of ledger keys, threshold, graph seed), the
                   node's policy checks of it, and key pairs signed by the nodes' ledger keys
  consistency.py   the signed consistency round (Bonawitz et al. 2017 section 6) before any share is revealed
  graph.py         SecAgg+'s random regular neighbour graph (Bell et al. 2020)
  protocol.py      Params, and the two transport-free state machines SecAggNode / SecAggServer

Against a malicious coordinator (issue 11) each node refuses, naming the rule, a plan its own policy's
[trust] rejects, a peer key not signed by the roster, and an unmask without t signatures over its view.

The Flower apps carry the messages (node/client_app.py + node/secagg.py, coordinator/secure_sum.py); the message
types and record keys they use are protos/wire.py's, which names these stages.
"""

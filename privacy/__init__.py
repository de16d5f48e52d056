"""Cairn's privacy core: DP events, accounting, secure mechanisms, signed ledger, policy, reports.

This package imports neither Flower nor any network code: nodes, the coordinator and auditors all
use it, and an auditor can read it alone. Reading order for an auditor:

  events.py      what a release did (immutable DP events; protobuf form in protos/events.proto)
  accountant.py  events -> (epsilon, delta) [, rho]: PLD (tight, pessimistic), RDP fallback
  samplers.py    secure integer noise (discrete Gaussian / discrete Laplace, CSPRNG)
  mechanisms.py  bounded counts, histograms, sums, means -> noised integers + their exact event
  ledger.py      append-only, hash-chained, Ed25519-signed ledger in the node's SQLite
  verify.py      check a ledger export: signatures, chain, recomputed epsilon claims
  policy.py      the community's policy file
  release.py     the release gate: the only path by which a result leaves a node
  report.py      budget summary, Markdown/HTML report, epsilon plot

The unit of privacy is one contributor (a person); neighbouring datasets differ by adding or
removing all of one contributor's data.
"""

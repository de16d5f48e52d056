"""Cairn's privacy core: DP events, accounting, secure mechanisms, signed ledger, policy, release gate.

This package imports neither Flower nor any network code: nodes, the coordinator and auditors all
use it, and an auditor can read it alone. Trusted core, in reading order for an auditor:

  events.py      what a release did (immutable DP events; protobuf form in protos/events.proto)
  accounting/    events -> (epsilon, delta) [, rho]: PLD (tight, pessimistic), RDP fallback, zCDP;
                 calibration (the noise that reaches a target epsilon)
  samplers.py    secure integer noise (discrete Gaussian / discrete Laplace, CSPRNG)
  mechanisms.py  bounded counts, histograms, sums, means -> noised integers + their exact event
  keys.py        Ed25519 raw public keys and the node id derived from them
  ledger.py      append-only, hash-chained, Ed25519-signed ledger in the node's SQLite
  policy.py      the community's policy file
  release.py     the release gate: the only path by which a result leaves a node
  probe.py       one-run privacy audit maths
  secagg/        secure aggregation (SecAgg+): stages and message keys, crypto, quantization, protocol

Outside the trusted core: audit/ (the auditor's checks over a bundle) and reports/ (Markdown, HTML
and plots). The unit of privacy is one contributor (a person); neighbouring datasets differ by adding
or removing all of one contributor's data (ARCHITECTURE.md invariant 4).

Importing any module here changes no process-wide setting. The one such setting, `configure()`
below, is called once by each entry point (the `cairn` CLI, the Flower apps, the benches).
"""

from __future__ import annotations

import logging


def configure() -> None:
    """Process-wide settings for programs that use the privacy core; call once at start-up.

    - absl logging at ERROR: dp_accounting's RDP accountant logs (through absl) a warning for every
      fractional order it cannot evaluate at large sampling rates, then excludes that order, which
      keeps the bound sound (privacy/accounting/rdp.py); the warnings are noise to a user.

    OpenDP's "contrib" flag is not set here: privacy/samplers.py enables it only while it builds its
    two samplers, and restores it.
    """
    logging.getLogger("absl").setLevel(logging.ERROR)

"""Ledger append and full-chain verify throughput (python -m bench.ledger)."""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privacy.audit.ledgers import verify_ledger
from privacy.events import DiscreteGaussianEvent, DiscreteLaplaceEvent
from privacy.ledger import Ledger


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        conn = sqlite3.connect(Path(d) / "store.sqlite", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        ledger = Ledger(conn, Ed25519PrivateKey.generate(), "bench")
        events = [DiscreteGaussianEvent(50.0, 1), DiscreteLaplaceEvent(200.0, 1)]
        t = time.perf_counter()
        for i in range(args.entries):  # each append: fsync'd commit + cumulative epsilon (PLD) + signature
            ledger.append("coverage", events[i % 2], 1e-6, "p", request_hash=f"q{i}", payload=b"x" * 256)
        t_append = time.perf_counter() - t
        export = ledger.export()
        t = time.perf_counter()
        assert verify_ledger(export, recompute_epsilon=False) == []
        t_chain = time.perf_counter() - t
        t = time.perf_counter()
        assert verify_ledger(export) == []
        t_full = time.perf_counter() - t
    n = args.entries
    print(f"ledger with {n:,} entries (SQLite WAL, synchronous=FULL)")
    print(f"{'operation':52s} {'seconds':>9s} {'entries/s':>10s}")
    for name, secs in [("append (commit + epsilon + sign)", t_append),
                       ("verify chain (hashes + signatures + seq)", t_chain),
                       ("verify full (chain + recompute every epsilon)", t_full)]:
        print(f"{name:52s} {secs:9.3f} {n / secs:10.1f}")


if __name__ == "__main__":
    main()

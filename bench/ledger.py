"""Ledger append latency as the ledger grows, and full verification of a ten-year ledger (python -m bench.ledger).

The daily-release pattern of a community node (issue 16, item 1): an aggregate query every day, a DP-SGD
round every `--train-every` days, a new training plan per federation (`--rounds` rounds; its own plan id and
commitment), each plan's first round preceded by its noisy min_contributors test. Federations calibrate one
of `--noise-levels` noise multipliers in turn: a node computes the tight PLD of each distinct plan mechanism
once (1-5 s each here, dp_accounting's subsampled-Gaussian PLD), so with a new noise level per federation
the build is dominated by those PLDs, not by the ledger. No cap (ten years of releases would pass any).

Append latency at N entries: the ledger is built to N entries (fast: synchronous=OFF while building), then
the next `--timed` appends of the pattern are timed one by one under the node's real settings (WAL,
synchronous=FULL: an fsync per commit), in the same process (the running accounting state is warm, as in a
node serving requests); the cold start of a new process (the MAC-checked sidecar, then the rows after it
verified, privacy/ledger_sidecar.py) is timed once per size.

Full verification of the ten-year ledger (`--days`): what `cairn audit` does per node — the chain (hashes,
Ed25519 signatures, seq, prev_hash: privacy/audit/ledgers.py `verify_ledger`) and the independent epsilon
recomputation of every claim, the filter's and every committed plan's (privacy/audit/epsilon.py) — and
the node's own reproduction of every claim (`verify_ledger(recompute_epsilon=True)`).
Targets (issue 16): append at 10,000 <= 3x append at 10; ten-year verification < 30 s.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.progress import Progress

from privacy import configure, ledger_accounting
from privacy.audit import epsilon as epsilon_check
from privacy.audit.context import AuditContext, NodeContext
from privacy.audit.ledgers import verify_ledger
from privacy.audit.result import AuditResult, NodeAudit
from privacy.events import DiscreteGaussianEvent, SelfComposedEvent, dpsgd_event
from privacy.ledger import Ledger
from protos import bundle_pb2

DELTA = 1e-6


class Pattern:
    """The daily-release pattern, day after day: yields (kind, event, plan) releases."""

    def __init__(self, train_every: int, rounds: int, noise_levels: int = 4):
        self.train_every, self.rounds, self.noise_levels = train_every, rounds, noise_levels
        self.day = 0
        self.federation = 0
        self.round = 0

    def next_day(self) -> list[tuple[str, object, tuple | None]]:
        """The releases of the next day."""
        d, out = self.day, []
        self.day += 1
        out.append(("query:coverage", DiscreteGaussianEvent(40.0, 1), None))
        if d % self.train_every == self.train_every - 1:
            if self.round == 0:
                self.federation += 1
                out.append(("threshold:train", DiscreteGaussianEvent(4.0, 1), None))
            f = self.federation
            z = 1.0 + 0.25 * (f % self.noise_levels)  # the noise multiplier this federation calibrated
            ev = dpsgd_event(0.01, z, 20)
            out.append(("train", ev, (f"fed-{f}", SelfComposedEvent(ev, self.rounds))))
            self.round = (self.round + 1) % self.rounds
        return out


def open_ledger(path: Path, key: Ed25519PrivateKey) -> Ledger:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    return Ledger(conn, key, "bench")


def grow(ledger: Ledger, pattern: Pattern, entries: int | None = None, days: int | None = None, progress=None,
         label: str = "") -> None:
    """Append the pattern until the ledger has `entries` entries (or for `days` days)."""
    n, day0 = len(ledger), pattern.day
    task = progress.add_task(label, total=entries or days) if progress else None
    while (entries is not None and n < entries) or (days is not None and pattern.day - day0 < days):
        for kind, ev, plan in pattern.next_day():
            ledger.append(kind, ev, DELTA, "policy", request_hash=f"{kind}/{n}", payload=b"x" * 64, plan=plan)
            n += 1
        if progress is not None:
            progress.update(task, completed=n if entries else pattern.day - day0)


def append_latency(size: int, timed: int, args, progress) -> tuple[float, float, float]:
    """(median, max, cold start) seconds of an append at `size` entries."""
    with tempfile.TemporaryDirectory() as d:
        key, pattern = Ed25519PrivateKey.generate(), Pattern(args.train_every, args.rounds, args.noise_levels)
        ledger = open_ledger(Path(d) / "store.sqlite", key)
        ledger.conn.execute("PRAGMA synchronous=OFF")  # building only
        grow(ledger, pattern, entries=size, progress=progress, label=f"building {size:,} entries")
        ledger.conn.execute("PRAGMA synchronous=FULL")
        ledger_accounting.forget()
        t = time.perf_counter()
        ledger.spent(DELTA)  # a new process: the MAC-checked sidecar, then the rows after it verified
        cold = time.perf_counter() - t
        times: list[float] = []
        while len(times) < timed:
            for kind, ev, plan in pattern.next_day():
                t = time.perf_counter()
                ledger.append(kind, ev, DELTA, "policy", request_hash=f"t/{kind}/{len(times)}", payload=b"x" * 64,
                              plan=plan)
                times.append(time.perf_counter() - t)
        return statistics.median(times), max(times), cold


def verification(days: int, args, progress) -> dict:
    """Seconds of each part of the full verification of a `days`-day ledger."""
    with tempfile.TemporaryDirectory() as d:
        key = Ed25519PrivateKey.generate()
        ledger = open_ledger(Path(d) / "store.sqlite", key)
        ledger.conn.execute("PRAGMA synchronous=OFF")
        grow(ledger, Pattern(args.train_every, args.rounds, args.noise_levels), days=days, progress=progress,
             label=f"building {days:,} days")
        export = ledger.export()
    out: dict = {"entries": len(export.entries)}
    t = time.perf_counter()
    assert verify_ledger(export, recompute_epsilon=False) == []
    out["chain"] = time.perf_counter() - t
    last = export.entries[-1].body
    node = bundle_pb2.BundleNode(node_id=export.node_id, name="bench", delta=DELTA, claimed_epsilon=last.claimed_epsilon,
                                 accountant=last.accountant)
    nctx = NodeContext(node, NodeAudit(export.node_id, "bench", DELTA, last.claimed_epsilon, last.accountant), export)
    ctx = AuditContext(root=Path(d), result=AuditResult("bench"), node=nctx)
    t = time.perf_counter()
    epsilon_check.check(ctx)
    out["epsilon"] = time.perf_counter() - t
    bad = [c for c in ctx.result.checks if c.status == "FAIL"]
    assert not bad, bad
    if not args.skip_reproduce:
        t = time.perf_counter()
        assert verify_ledger(export) == []
        out["reproduce"] = time.perf_counter() - t
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10,1000,10000", help="ledger sizes (entries) at which to time appends")
    ap.add_argument("--timed", type=int, default=30, help="appends timed at each size")
    ap.add_argument("--days", type=int, default=3650, help="days of the ledger verified in full")
    ap.add_argument("--train-every", type=int, default=7, help="days between DP-SGD rounds")
    ap.add_argument("--rounds", type=int, default=4, help="rounds per federation (one plan each)")
    ap.add_argument("--noise-levels", type=int, default=4, help="distinct noise multipliers federations cycle through")
    ap.add_argument("--skip-reproduce", action="store_true", help="skip the node's own reproduction of every claim")
    args = ap.parse_args()
    configure()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    rows = []
    with Progress(transient=True) as progress:
        for size in sizes:
            rows.append((size, *append_latency(size, args.timed, args, progress)))
        ver = verification(args.days, args, progress)
    load = os.getloadavg()[0]
    print(f"ledger append latency, daily pattern (query daily, DP-SGD round every {args.train_every} days, "
          f"{args.rounds}-round plan per federation), WAL + synchronous=FULL; load average {load:.1f} "
          f"on {os.cpu_count()} cores")
    print(f"{'entries':>8s} {'append median ms':>17s} {'append max ms':>14s} {'x at ' + str(sizes[0]):>9s} "
          f"{'cold start ms':>14s}")
    for size, med, mx, cold in rows:
        print(f"{size:>8,d} {med * 1e3:17.2f} {mx * 1e3:14.2f} {med / rows[0][1]:9.2f} {cold * 1e3:14.1f}")
    print()
    total = ver["chain"] + ver["epsilon"]
    print(f"full verification of a {args.days:,}-day ledger ({ver['entries']:,} entries)")
    print(f"{'part':58s} {'seconds':>8s}")
    print(f"{'chain: hashes, Ed25519 signatures, seq, prev_hash':58s} {ver['chain']:8.2f}")
    print(f"{'epsilon: independent recomputation (filter, every plan)':58s} {ver['epsilon']:8.2f}")
    print(f"{'auditor total (cairn audit, per node)':58s} {total:8.2f}")
    if "reproduce" in ver:
        print(f"{'chain + the node accountant reproducing every claim':58s} {ver['reproduce']:8.2f}")


if __name__ == "__main__":
    main()

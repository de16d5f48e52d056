"""Scale, measured (issue 16 item 5): one training round over many simulated communities, and one round of
one community of 1,000 to 1,000,000 members (python -m bench.scale).

    python -m bench.scale                                  # the cheap rows: 10 communities, 1,000 members
    python -m bench.scale --communities 10 100 1000        # many communities (the 1,000 with 20 members each)
    python -m bench.scale --members 1000 100000 1000000    # one big community (bench/million.py builds it)
    python -m bench.scale --communities 100 --profile      # and where the time goes, grouped by package

Communities row: N node directories of synthetic members (tests/e2e/conftest.py `make_community`,
hashed n-gram features, `--steps` DP-SGD steps), one round of the real ServerApp and ClientApp in
Flower's Simulation Engine (coordinator/simulation.py). It prints the time to build the stores, the
wall time of the federation (start-up, hello, the round, ledger collection, the bundle), and the peak
resident memory of this process and all its children together (sampled from /proc every 0.2 s).
Members row: bench/million.py's `million_round` (H2's builder and one round of node.training in a
fresh process; its peak RSS). `--profile` runs cProfile in this process (the driver: the ServerApp
and the Simulation Engine's scheduling; the ClientApps run in Ray worker processes, so their work
shows here as waiting) and prints own time grouped by top-level package.
Each row runs on its own; a slow row can be skipped by leaving it out.

Feasible on a 2-core machine (issue 16, measured 2026-12-01 under load 3-22): `--communities 100 1000
--community-size 20 --steps 2` (20 members a community instead of 100, 2 DP-SGD steps instead of 100,
hashed features): 100 communities in 57 s / 2.5 GB, 1,000 in 1,697 s / 5.3 GB. The Simulation Engine runs
two ClientApps at a time here (coordinator/simulation.py), so the round grows linearly with communities;
the driver's profile is almost all waiting for them.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


class TreeMemory:
    """Peak of the summed VmRSS of this process and its descendants, sampled from /proc."""

    def __init__(self, every: float = 0.2):
        self.every, self.peak_mb, self._stop = every, 0.0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _tree_rss_mb(self) -> float:
        parent: dict[int, int] = {}
        rss: dict[int, float] = {}
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                fields = dict(line.split(":", 1) for line in (p / "status").read_text().splitlines() if ":" in line)
            except OSError:
                continue
            parent[int(p.name)] = int(fields.get("PPid", "0").strip())
            rss[int(p.name)] = float(fields.get("VmRSS", "0 kB").split()[0]) / 1024
        me, total = os.getpid(), 0.0
        for pid in rss:
            q = pid
            while q and q != me:
                q = parent.get(q, 0)
            if q == me:
                total += rss[pid]
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self._tree_rss_mb())
            self._stop.wait(self.every)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def by_package(prof: cProfile.Profile, top: int = 10) -> list[tuple[str, float]]:
    """Own time of the profile grouped by top-level package (site-packages name or repository folder)."""
    groups: dict[str, float] = defaultdict(float)
    for (file, _line, func), (_cc, _nc, tt, _ct, _callers) in pstats.Stats(prof).stats.items():  # type: ignore[attr-defined]
        if "site-packages/" in file:
            name = file.split("site-packages/", 1)[1].split("/", 1)[0]
        elif file.startswith(str(ROOT)):
            name = Path(file).relative_to(ROOT).parts[0]
        elif file == "~":
            name = "built-in: " + func.strip("<>{}").replace(" objects", "")[:60]  # e.g. lock waits, sqlite
        else:
            name = "stdlib"
        groups[name] += tt
    return sorted(groups.items(), key=lambda kv: -kv[1])[:top]


def communities_round(n: int, members: int, steps: int, workdir: Path, profile: bool) -> dict:
    """Build `n` communities of `members` and run one federated round over them in the Simulation Engine."""
    from coordinator.server_app import FederationConfig
    from coordinator.simulation import run_simulation_federation
    from model.presets import preset_config
    from tests.e2e.conftest import make_community

    t = time.perf_counter()
    dirs = [make_community(workdir / f"n{i}", f"c{i}", i % 7, n_contributors=members, pairs_each=2).path for i in range(n)]
    build = time.perf_counter() - t
    cfg = FederationConfig(out=str(workdir / "bundle"), rounds=1, local_steps=steps, featurizer=preset_config("hashed"),
                           federation_id=f"scale-{n}-{time.time_ns()}")
    prof = cProfile.Profile() if profile else None
    with TreeMemory() as mem:
        t = time.perf_counter()
        if prof:
            prof.enable()
        run_simulation_federation(dirs, cfg, "node.client_app:app")
        if prof:
            prof.disable()
        wall = time.perf_counter() - t
    return {"build_s": build, "round_s": wall, "peak_mb": mem.peak_mb, "profile": by_package(prof) if prof else []}


def main() -> None:
    """Print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--communities", type=int, nargs="*", default=[10])
    ap.add_argument("--members", type=int, nargs="*", default=[1000], help="members of the one-community rows")
    ap.add_argument("--community-size", type=int, default=None,
                    help="members per community in the communities rows (default 100, 20 past 100 communities)")
    ap.add_argument("--steps", type=int, default=5, help="DP-SGD steps per round (node default: 100)")
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    if a.communities:
        print("\n| communities | members each | build stores (s) | federation, 1 round (s) | s per community "
              "| peak RSS, all processes (MB) |")
        print("|---|---|---|---|---|---|")
    for n in a.communities:
        size = a.community_size or (100 if n <= 100 else 20)
        with tempfile.TemporaryDirectory(prefix="cairn-scale-") as tmp:
            r = communities_round(n, size, a.steps, Path(tmp), a.profile)
        print(f"| {n:,} | {size} | {r['build_s']:.1f} | {r['round_s']:.1f} | {r['round_s'] / n:.2f} | {r['peak_mb']:.0f} |",
              flush=True)
        for name, secs in r["profile"]:
            print(f"|   | {name} | {secs:.1f} s own time | | | |")
    if a.members:
        from bench.million import million_round

        print("\n| members in one community | build store (s) | one round (s) | steps | peak RSS of the round (MB) |")
        print("|---|---|---|---|---|")
    for m in a.members:
        r = million_round(m, steps=a.steps)
        print(f"| {m:,} | {r['build_s']:.0f} | {r['round_s']:.1f} | {r['steps']} | {r['peak_rss_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()

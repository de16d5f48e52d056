"""SecAgg+ that scales (issue 11 item 2): the aggregation path alone at 10, 100 and 1,000 nodes
(python -m bench.secagg).

    python -m bench.secagg                                 # 10, 100, 1,000 nodes, 197k dims, and the plain rows
    python -m bench.secagg --nodes 10,100 --dim 20000 --plain 10,100 --drop 0.05

Each row is one aggregation of synthetic float updates (no training, no Flower): the state machines of
privacy/secagg/protocol.py called directly, the coordinator honest, every stage a node answers as a real
node would: KEYS (plan check, two X25519 pairs, signed by its Ed25519 ledger key), SHARES (its neighbours'
key signatures checked, Shamir shares sealed to each neighbour), MASKED (quantise, self mask, one pairwise
mask per neighbour), CONSISTENCY (signs the survivor view), UNMASK (checks the neighbourhood's view
signatures, opens the shares). The honest coordinator relays to each node only what concerns its
neighbourhood (its neighbours' keys, shares and view signatures), as an O(k) deployment would. The graph is
the random Harary graph of privacy/secagg/graph.py with `degree_for(n)` and `threshold_for(n, k)` (Bell et
al. 2020, https://eprint.iacr.org/2020/704), or the complete graph (plain SecAgg, Bonawitz et al. 2017) for
the comparison rows. A `--drop` fraction of the nodes drops after SHARES, so the coordinator also rebuilds
their mask keys and strips their pairwise masks.

Every node's work is timed in CPU seconds of this process (time.process_time: the machine's 2 cores are
shared, so a call's wall time would count other jobs' turns); per-node = mean over the surviving nodes of
keys + shares + masked + consistency + unmask; the coordinator's CPU seconds separately; wall is the whole
row's elapsed time, ledger key generation and input synthesis excluded. The inputs lie on the quantisation grid, so the
unmasked modular sum must equal the survivors' plain integer sum exactly: the bench asserts it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

from privacy.keys import raw_public_key  # noqa: E402
from privacy.secagg.constants import MOD  # noqa: E402
from privacy.secagg.graph import degree_for, threshold_for  # noqa: E402
from privacy.secagg.protocol import SecAggNode, SecAggServer  # noqa: E402
from privacy.secagg.run_plan import make_plan  # noqa: E402

CLIP, LEVELS = 1.0, 1 << 12  # n * LEVELS < 2^32 up to 1,048,575 nodes


@dataclass
class Row:
    """One measured aggregation (a table row)."""

    nodes: int
    graph: str
    degree: int
    threshold: int
    dropped: int
    per_node: dict  # stage -> mean seconds over the nodes that ran it
    per_node_total: float
    server: float
    wall: float
    exact: bool
    plain: bool  # a comparison row: the complete graph asked for, not degree_for's


def grid_input(u: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Node u's synthetic update on the quantisation grid: (float vector, its exact quantised integers)."""
    q = np.random.default_rng([seed, u]).integers(0, LEVELS + 1, dim, dtype=np.uint64)
    return q.astype(np.float64) * (2 * CLIP / LEVELS) - CLIP, q


def run_row(n: int, degree: int, threshold: int, dim: int, drop: float, seed: int, progress: Progress,
            plain_row: bool = False) -> Row:
    """One aggregation over n nodes; returns its timings (module docstring)."""
    ledger = {u: Ed25519PrivateKey.generate() for u in range(1, n + 1)}
    plan = make_plan("bench", f"secagg-{n}-{degree}", [raw_public_key(ledger[u]).hex() for u in range(1, n + 1)],
                     clip=CLIP, levels=LEVELS, dim=dim, threshold=threshold, neighbours=degree,
                     seed_hex=np.random.default_rng(seed).bytes(32).hex())
    params = plan.params()
    hood = {u: params.neighbourhood(u) for u in range(1, n + 1)}
    ids = list(range(1, n + 1))
    gone = set(np.random.default_rng([seed, n]).choice(ids, int(drop * n), replace=False).tolist()) if drop else set()
    spent = {u: dict.fromkeys(("keys", "shares", "masked", "consistency", "unmask"), 0.0) for u in ids}
    server_s = 0.0
    task = progress.add_task(f"n={n} k={degree}", total=5 * n - 3 * len(gone))
    wall0 = time.perf_counter()

    def timed(u: int, stage: str, f, *a):
        t0 = time.process_time()
        out = f(*a)
        spent[u][stage] += time.process_time() - t0
        progress.advance(task)
        return out

    nodes = {u: SecAggNode(u, plan) for u in ids}
    sent = {u: timed(u, "keys", nodes[u].public_keys, ledger[u]) for u in ids}
    server = SecAggServer(plan)
    t0 = time.process_time()
    pks = server.collect_public_keys(sent)
    server_s += time.process_time() - t0
    cts = {u: timed(u, "shares", nodes[u].share_keys, {v: pks[v] for v in [u, *hood[u]] if v in pks}) for u in ids}
    t0 = time.process_time()
    inbox = server.route_shares(cts)
    server_s += time.process_time() - t0
    masked, plain = {}, np.zeros(dim, dtype=np.uint64)
    synth = 0.0
    for u in ids:
        if u in gone:
            continue
        s0 = time.perf_counter()
        x, q = grid_input(u, dim, seed)
        plain += q
        synth += time.perf_counter() - s0
        masked[u] = timed(u, "masked", nodes[u].masked_input, x, inbox[u])
    t0 = time.process_time()
    survivors, dropped = server.collect_inputs(masked)
    server_s += time.process_time() - t0
    del masked
    sigs = {u: timed(u, "consistency", nodes[u].sign_view, ledger[u], survivors, dropped) for u in survivors}
    t0 = time.process_time()
    views = server.collect_views(sigs)
    server_s += time.process_time() - t0
    reveals = {u: timed(u, "unmask", nodes[u].unmask, survivors, dropped,
                        {v: views[v] for v in [u, *hood[u]] if v in views}) for u in survivors}
    t0 = time.process_time()
    total, count = server.aggregate(reveals)
    server_s += time.process_time() - t0
    wall = time.perf_counter() - wall0 - synth
    progress.remove_task(task)
    exact = count == n - len(gone) and bool(np.array_equal(total % MOD, plain % MOD))
    assert exact, f"n={n} k={degree}: the unmasked sum differs from the survivors' plain sum"
    stages = {s: float(np.mean([spent[u][s] for u in (survivors if s in ("consistency", "unmask", "masked") else ids)]))
              for s in spent[1]}
    per_node = float(np.mean([sum(spent[u].values()) for u in survivors]))  # the nodes that ran every stage
    return Row(n, "complete" if degree >= n - 1 else "random Harary", min(degree, n - 1), threshold, len(gone),
               stages, per_node, server_s, wall, exact, plain_row)


def table(rows: list[Row], dim: int, drop: float) -> Table:
    t = Table(title=f"SecAgg+ aggregation path, {dim:,} dims, {drop:.0%} dropped after SHARES; every node's "
                    f"stages timed in CPU seconds (all nodes, no sampling; one process, {os.cpu_count()} shared cores)")
    for col in ("nodes", "graph", "degree k", "threshold t", "dropped", "keys s", "shares s", "masked s",
                "consist. s", "unmask s", "per-node s", "server s", "wall s", "sum exact"):
        t.add_column(col, justify="left" if col == "graph" else "right")
    for r in rows:
        s = r.per_node
        t.add_row(f"{r.nodes:,}", r.graph + (" (plain)" if r.plain else ""), str(r.degree), str(r.threshold), str(r.dropped),
                  *(f"{s[k]:.4f}" for k in ("keys", "shares", "masked", "consistency", "unmask")),
                  f"{r.per_node_total:.4f}", f"{r.server:.2f}", f"{r.wall:.1f}", "yes" if r.exact else "NO")
    return t


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", default="10,100,1000", help="comma-separated node counts (random Harary graph)")
    p.add_argument("--plain", default="10,100", help="node counts to also run with the complete graph ('' for none)")
    p.add_argument("--dim", type=int, default=197_000, help="update dimension (the reward head has ~197k)")
    p.add_argument("--drop", type=float, default=0.05, help="fraction of nodes that drop after SHARES")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    console = Console(width=max(Console().width, 160))
    plan = [(int(n), False) for n in a.nodes.split(",") if n] + [(int(n), True) for n in a.plain.split(",") if n]
    rows = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        for n, plain in plan:
            k = n - 1 if plain else degree_for(n)
            rows.append(run_row(n, k, threshold_for(n, k), a.dim, a.drop, a.seed, progress, plain))
            console.print(f"n={n:,} {'complete' if plain else 'Harary'} k={k}: per-node {rows[-1].per_node_total:.3f} s, "
                          f"server {rows[-1].server:.2f} s, wall {rows[-1].wall:.1f} s, sum exact")
    console.print(table(rows, a.dim, a.drop))
    harary = {r.nodes: r for r in rows if not r.plain}
    if 100 in harary and 1000 in harary:
        ratio = harary[1000].per_node_total / harary[100].per_node_total
        bound = math.log(1000) / math.log(100)
        console.print(f"per-node cost 1,000 vs 100 nodes: x{ratio:.2f} (degree x{harary[1000].degree / harary[100].degree:.2f}); "
                      f"log(1000)/log(100) = {bound:.2f}: {'within' if ratio <= bound else 'ABOVE'} log n growth")


if __name__ == "__main__":
    main()

"""One training round of a community of up to a million members, in bounded memory (issue 16 item 3).

Builds a synthetic community (one short conversation per member, two responses, one pairwise vote by
its owner; every member consenting in the past) through the node's own store, then runs ONE round of
the node's real training path (`node.training.train_round`: bounds, noisy min_contributors test,
plan, streaming featurization with hashed n-grams, user-level DP-SGD, the release gate) in a fresh
process, and prints its wall time and peak RSS (ru_maxrss of that process: what the node needs).

    python bench/million.py                      # 10k and 100k members
    python bench/million.py --members 1000000    # the million (building its store takes a while)
    python bench/million.py --members 10000 --steps 5 --dir /tmp/c   # reuse a built community

`million_round(members, ...)` is importable (bench/scale.py calls it). Texts are unique per member,
so the feature table grows with the community (3 texts a member; float16 past 256 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CONSENT = ("CC0-1.0", "2020-01-01T00:00:00+00:00", "bench")
WORDS = ("river stone cloud lamp garden quiet bright swift amber cedar harbor meadow silver winter candle "
         "pepper violet orbit canyon maple").split()


def _text(i: int, salt: int) -> str:
    w = [WORDS[(i * 7 + salt * 3 + k * 11) % len(WORDS)] for k in range(6)]
    return f"{' '.join(w)} #{i}-{salt}"


def build_community(path: Path, members: int, batch: int = 20_000) -> float:
    """A node directory at `path` with `members` consenting members (synthetic); returns the seconds it took."""
    from node.node_dir import NodeDir
    from node.schema import Feedback, Message, Record, Response
    from privacy.policy import Policy

    t = time.perf_counter()
    nd = NodeDir.init(path, "million", policy=Policy(community="million"))
    with nd.open_store() as store:
        for lo in range(0, members, batch):
            with store.transaction():
                for i in range(lo, min(members, lo + batch)):
                    who = f"m{i}"
                    vote = Feedback("pairwise", who, {"a": 0, "b": 1, "outcome": "ab"[i % 2], "strength": 1.0})
                    rec = Record("bench", f"k{i}", [Message("user", _text(i, 0))],
                                 [Response(_text(i, 1), "model-a"), Response(_text(i, 2), "model-b")], [vote],
                                 owner=who, language="en")
                    store.add_record(rec, None, consent=CONSENT)
    return time.perf_counter() - t


def train_once(path: Path, steps: int, sampling_rate: float) -> dict:
    """One round of the node's real training path on the community at `path` (run in a fresh process)."""
    import numpy as np

    from model.presets import preset_config
    from node.node_dir import NodeDir
    from node.request_bounds import head_parameter_count
    from node.training import train_round

    feat = preset_config("hashed")
    head = {"type": "mlp", "in_dim": feat["dim"], "hidden": 256, "combine": "r_pr"}
    cfg = {"federation_id": f"bench-{time.time_ns()}", "round": 1, "rounds": 1, "local_steps": steps,
           "epsilon": 4.0, "sampling_rate": sampling_rate, "featurizer": json.dumps(feat), "head": json.dumps(head)}
    nd = NodeDir(path)
    t = time.perf_counter()
    with nd.open_store() as store:
        _, plan, rel = train_round(nd, store, cfg, [np.zeros(head_parameter_count(head), dtype=np.float32)])
    secs = time.perf_counter() - t
    return {"seconds": secs, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "steps": plan.local_steps, "q": plan.sampling_probability, "seq": rel.seq}


def million_round(members: int, *, steps: int = 3, sampling_rate: float = 0.2, workdir: Path | None = None) -> dict:
    """Build (or reuse) a community of `members` and train one round in a fresh process:
    {"members", "build_s", "round_s", "peak_rss_mb", "steps", "q"}."""
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="cairn-million-")
        workdir = Path(tmp.name) / f"c{members}"
    workdir = Path(workdir)
    build = 0.0 if (workdir / "policy.toml").exists() else build_community(workdir, members)
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0"}
    out = subprocess.run([sys.executable, __file__, "--train", str(workdir), "--steps", str(steps),
                          "--sampling-rate", str(sampling_rate)], capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"training round failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if tmp is not None:
        tmp.cleanup()
    return {"members": members, "build_s": build, "round_s": res["seconds"], "peak_rss_mb": res["peak_rss_mb"],
            "steps": res["steps"], "q": res["q"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--steps", type=int, default=3, help="DP-SGD steps in the round (default 3; the node's default is 100)")
    ap.add_argument("--sampling-rate", type=float, default=0.2)
    ap.add_argument("--dir", type=Path, default=None, help="keep (or reuse) the community here")
    ap.add_argument("--train", type=Path, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.train is not None:
        print(json.dumps(train_once(a.train, a.steps, a.sampling_rate)))
        return
    print("| members | build store (s) | one round (s) | steps | q | peak RSS of the round (MB) |")
    print("|---|---|---|---|---|---|")
    for n in a.members:
        r = million_round(n, steps=a.steps, sampling_rate=a.sampling_rate,
                          workdir=(a.dir / f"c{n}") if a.dir else None)
        print(f"| {n:,} | {r['build_s']:.0f} | {r['round_s']:.1f} | {r['steps']} | {r['q']:g} | {r['peak_rss_mb']:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()

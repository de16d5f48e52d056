"""MiniLM featurisation speed: PyTorch (sentence-transformers) vs ONNX Runtime fp32 and int8, side by side
(python -m bench.featurize).

Texts are real responses from /work/shared/data (OASST trees) of about 550 characters (450-650). Each
backend first encodes a small warm-up batch (the ONNX graph's export and quantisation, once per weights
and cached in the user cache dir, are timed separately), then the backends encode the same texts in
turn, `--repeat` times alternating (a shared machine's load then hits each alike), each keeping its
best; the table gives texts/s (wall) and texts per CPU-second (all threads; what other work on the
machine inflates least), the speed-ups over PyTorch and the cosine of each embedding with the
PyTorch one (min and mean).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def texts(n: int, lo: int = 450, hi: int = 650) -> list[str]:
    """`n` distinct real texts of lo..hi characters (responses and prompts of the shared data)."""
    from node.importers import read_records

    out: list[str] = []
    seen: set[str] = set()
    for f in sorted(DATA.rglob("*.jsonl.gz")):
        for item in read_records(f, contributor="c"):
            rec = item[1]
            for t in [r.text for r in rec.responses] + [m.text for m in rec.prompt]:
                if lo <= len(t) <= hi and t not in seen:
                    seen.add(t)
                    out.append(t)
                    if len(out) >= n:
                        return out
    if not out:
        raise SystemExit(f"no texts of {lo}-{hi} characters under {DATA}")
    return (out * (n // len(out) + 1))[:n]


def make(backend: str):
    """(featurizer, set-up seconds): the backend's featurizer after a small warm-up batch (graph export and
    quantisation are cached per weights, so this is the session and tokenizer set-up)."""
    from model.features import MiniLMFeaturizer

    name, _, batch = backend.partition("@")
    f = MiniLMFeaturizer(backend=name, progress=False)
    t = time.perf_counter()
    f.encode(["warm up"] * 8)
    setup = time.perf_counter() - t
    if batch:  # e.g. onnx-int8@64: another batch size for the same graph (default: 16 for ONNX, 64 for torch)
        f.batch_size = int(batch)
        if getattr(f, "_onnx", None) is not None:
            f._onnx.batch_size = int(batch)
    return f, setup


def main() -> None:
    """Print the table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3, help="alternate the backends this many times; keep each one's best")
    ap.add_argument("--fresh-cache", action="store_true", help="export into a temporary cache (times the export)")
    ap.add_argument("--backends", default="torch,onnx,onnx-int8,onnx-int8@64",
                    help="comma-separated; NAME@B runs NAME with batch size B")
    args = ap.parse_args()
    if args.fresh_cache:
        os.environ["CAIRN_CACHE_DIR"] = tempfile.mkdtemp(prefix="cairn-onnx-")
    xs = texts(args.texts)
    mean_len = sum(map(len, xs)) / len(xs)
    load_before = os.getloadavg()[0]
    made = {b: make(b) for b in args.backends.split(",")}
    best: dict[str, tuple[float, float]] = {}  # backend -> (texts/s wall, texts per CPU-second)
    embs: dict[str, np.ndarray] = {}
    for _ in range(args.repeat):  # alternating, so that a change of load hits every backend alike
        for b, (f, _setup) in made.items():
            t, c = time.perf_counter(), time.process_time()
            embs[b] = f.encode(xs)
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            old = best.get(b, (0.0, 0.0))
            best[b] = (max(old[0], len(xs) / wall), max(old[1], len(xs) / cpu))
    base = best.get("torch")
    print(f"MiniLM featurisation of {len(xs)} real texts of {mean_len:.0f} characters on average, best of "
          f"{args.repeat} alternating runs, {os.cpu_count()} CPUs, load {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after")
    print("| backend | set-up s | texts/s | speed-up | texts per CPU-s | speed-up (CPU) | cos min | cos mean |")
    print("|---|---|---|---|---|---|---|---|")
    for b, (rate, per_cpu) in best.items():
        if base is not None:
            cos = np.sum(embs[b] * embs["torch"], axis=1)
            extra = f"{rate / base[0]:.2f}x | {per_cpu:.1f} | {per_cpu / base[1]:.2f}x | {cos.min():.4f} | {cos.mean():.4f}"
        else:
            extra = f"| {per_cpu:.1f} | | |"
        print(f"| {b} | {made[b][1]:.2f} | {rate:.1f} | {extra} |")


if __name__ == "__main__":
    main()

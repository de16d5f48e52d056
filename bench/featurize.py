"""MiniLM featurisation speed: PyTorch (sentence-transformers) vs ONNX Runtime fp32 and int8, side by side
(python -m bench.featurize).

Texts are real responses from /work/shared/data (OASST trees) of about 550 characters (450-650). Each
backend first encodes a small warm-up batch (the ONNX graph's export and quantisation, once per weights
and cached in the user cache dir, are timed separately), then the same texts; the table gives texts/s,
the speed-up over PyTorch and the cosine of each embedding with the PyTorch one (min and mean).
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


def run(backend: str, xs: list[str]) -> tuple[float, float, np.ndarray]:
    """(set-up seconds, texts/s, embeddings) of one backend."""
    from model.features import MiniLMFeaturizer

    f = MiniLMFeaturizer(backend=backend, progress=False)
    t = time.perf_counter()
    f.encode(xs[:8])
    setup = time.perf_counter() - t
    t = time.perf_counter()
    emb = f.encode(xs)
    return setup, len(xs) / (time.perf_counter() - t), emb


def main() -> None:
    """Print the table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=256)
    ap.add_argument("--fresh-cache", action="store_true", help="export into a temporary cache (times the export)")
    ap.add_argument("--backends", default="torch,onnx,onnx-int8")
    args = ap.parse_args()
    if args.fresh_cache:
        os.environ["CAIRN_CACHE_DIR"] = tempfile.mkdtemp(prefix="cairn-onnx-")
    xs = texts(args.texts)
    mean_len = sum(map(len, xs)) / len(xs)
    rows = {b: run(b, xs) for b in args.backends.split(",")}
    base = rows.get("torch")
    print(f"MiniLM featurisation of {len(xs)} real texts of {mean_len:.0f} characters on average, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"{'backend':10s} {'set-up s':>9s} {'texts/s':>9s} {'speed-up':>9s} {'cos min':>8s} {'cos mean':>9s}")
    for b, (setup, rate, emb) in rows.items():
        if base is not None:
            cos = np.sum(emb * base[2], axis=1)
            extra = f"{rate / base[1]:8.2f}x {cos.min():8.4f} {cos.mean():9.4f}"
        else:
            extra = ""
        print(f"{b:10s} {setup:9.2f} {rate:9.1f} {extra}")


if __name__ == "__main__":
    main()

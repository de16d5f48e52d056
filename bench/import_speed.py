"""Import throughput, before and after single-pass redaction, side by side (python -m bench.import_speed).

Writes a JSON Lines file of chats (a fraction of them holding identifiers or long numbers, so that
the Presidio pre-filter fires on some), imports it into fresh nodes, and prints rows/s for the whole
import and for redaction alone, with:

- "before": node/redact.py and node/pii_patterns.py as they were at commit 4222500 (read with `git show`:
  twelve regular-expression passes over every text, then Presidio's AnalyzerEngine on flagged windows);
- "after": the working tree's (one combined pattern per text, validators only on its candidates,
  Presidio's recognizers called directly on flagged windows).

`--profile` prints where the "after" import spends its time (cProfile, top entries by own time).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import random
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from unittest import mock

import node.ingest as ingest
import node.redact as redact_mod
from node.ingest import import_file
from node.node_dir import NodeDir
from node.schema import Message, Record, Response

BEFORE = "4222500"
EXTRAS = ["my SSN is 536-22-8734", "NHS number 943 476 5919", "wallet 1BoatSLRHtKNngkdXEeobR76b53LETtpyT",
          "the total was 1234567 units", "order 20230518-0042", "call 020 7946 0958", "mail jo@example.org",
          "at 10:30 on 2023-05-18", "server 10.0.0.12"]


def rows(n: int, frac: float, seed: int = 0) -> list[dict]:
    """`n` chat rows; a fraction `frac` carries an identifier or a long number."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        q = f"question {i}: how do I sort a list of {rng.randint(2, 99)} items in Python by key?"
        if rng.random() < frac:
            q += " " + rng.choice(EXTRAS)
        out.append({"id": f"c{i}", "messages": [{"role": "user", "content": q},
                                                {"role": "assistant", "content": "Use sorted(xs, key=f). " * 8}],
                    "model": "m", "user": f"u{i % 300}", "thumbs": rng.choice(["up", "down"])})
    return out


def legacy(commit: str = BEFORE) -> types.ModuleType:
    """node/redact.py (and the node/pii_patterns.py it imports) as of `commit`, as a module."""
    def show(path: str) -> str:
        return subprocess.run(["git", "show", f"{commit}:{path}"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parents[1]).stdout

    pii = types.ModuleType("legacy_pii_patterns")
    exec(compile(show("node/pii_patterns.py"), "legacy_pii_patterns", "exec"), pii.__dict__)
    sys.modules[pii.__name__] = pii
    red = types.ModuleType("legacy_redact")
    src = show("node/redact.py").replace("from node.pii_patterns import", "from legacy_pii_patterns import")
    exec(compile(src, "legacy_redact", "exec"), red.__dict__)
    return red


def measure(label: str, mod, data: list[dict], f: Path, d: Path, profile: bool = False) -> tuple[str, float, float]:
    """(label, redaction rows/s, import rows/s) with `mod`'s redact and redact_record."""
    recs = [Record("b", r["id"], [Message("user", r["messages"][0]["content"])],
                   [Response(r["messages"][1]["content"], r["model"])]) for r in data]
    mod.redact("warm up 536-22-8734")  # Presidio's one-time import and engine build
    t = time.perf_counter()
    for r in recs:
        for m in r.prompt:
            mod.redact(m.text)
        for x in r.responses:
            mod.redact(x.text)
            mod.redact(x.model)
    t_red = time.perf_counter() - t
    nd = NodeDir.init(d / label, "bench")
    prof = cProfile.Profile() if profile else None
    with mock.patch.object(ingest, "redact_record", mod.redact_record), nd.open_store() as store:
        t = time.perf_counter()
        if prof:
            prof.enable()
        rep = import_file(store, f, fmt="openai")
        if prof:
            prof.disable()
        t_imp = time.perf_counter() - t
    assert rep.records == len(data)
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return label, len(data) / t_red, len(data) / t_imp


def main() -> None:
    """Print the table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--flagged", type=float, default=0.02, help="fraction of rows with a number or identifier")
    ap.add_argument("--repeat", type=int, default=2, help="alternate before/after this many times, keep the best")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    data = rows(args.rows, args.flagged)
    try:
        before = legacy()
    except (subprocess.CalledProcessError, FileNotFoundError):
        before = None
        print(f"(no git history: commit {BEFORE} unavailable, only 'after' is measured)")
    best: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        f = d / "chats.jsonl"
        f.write_text("".join(json.dumps(r) + "\n" for r in data))
        for i in range(args.repeat):
            for label, mod in (("before", before), ("after", redact_mod)):
                if mod is None:
                    continue
                _, red, imp = measure(f"{label}{i}", mod, data, f, d)
                old = best.get(label, (0.0, 0.0))
                best[label] = (max(old[0], red), max(old[1], imp))
        if args.profile:
            measure("profiled", redact_mod, data, f, d, profile=True)
    load = __import__("os").getloadavg()[0]
    print(f"import of {args.rows:,} chat rows, {args.flagged:.0%} with identifiers or long numbers "
          f"(best of {args.repeat}, load average {load:.1f})")
    print(f"{'redaction':8s} {'redact rows/s':>14s} {'import rows/s':>14s}")
    for label, (red, imp) in best.items():
        print(f"{label:8s} {red:14,.0f} {imp:14,.0f}")


if __name__ == "__main__":
    main()

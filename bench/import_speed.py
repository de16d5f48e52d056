"""Import throughput of the code at earlier commits and of the working tree, side by side (python -m bench.import_speed).

Writes a JSON Lines file of chats (a fraction of them holding identifiers or long numbers, so that
the Presidio pre-filter fires on some), and imports it into fresh nodes with each version of the
code, alternating versions `--repeat` times and keeping each one's best (the machine is shared: the
ratio inside one run is what counts). Each version runs in its own process, from `git archive` of
its commit (node/, privacy/, protos/, model/) or from the working tree:

- 4222500: before single-pass redaction (twelve regular-expression passes over every text, then
  Presidio's AnalyzerEngine on flagged windows), fourteen statements and seven HMACs per row;
- 9f229d8: single-pass redaction (one combined pattern, validators only on its candidates, Presidio's
  recognizers called directly), still one record at a time into the store;
- working tree: texts without any PII shape skipped after one search (node/redact.py NECESSARY), and
  one batch written in a few statements (node/record_writer.py): tombstones and links read once per
  batch, keyed ids once per person, executemany, one duplicate query per 500 rows.

Columns: redaction alone (node.redact.redact over each row's prompt, response and model name) and
the whole import (`import_file`: read, parse, redact, seal, write, commit), in rows/s of wall time and
per CPU-second of the importing process (which other work on a shared machine inflates least), both after a
warm-up that pays Presidio's one-time import (spaCy comes with it), shown in its own column.
`--profile` prints where the working tree's import spends its time (cProfile, top entries by own time).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMITS = ("4222500", "9f229d8")
EXTRAS = ["my SSN is 536-22-8734", "NHS number 943 476 5919", "wallet 1BoatSLRHtKNngkdXEeobR76b53LETtpyT",
          "the total was 1234567 units", "order 20230518-0042", "call 020 7946 0958", "mail jo@example.org",
          "at 10:30 on 2023-05-18", "server 10.0.0.12"]

# Runs in a fresh process whose sys.path starts with the code to measure: prints {"redact": rows/s, "import": rows/s}.
CHILD = r"""
import cProfile, json, pstats, sys, time
from pathlib import Path
f, d, n, profile = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
from node.ingest import import_file
from node.node_dir import NodeDir
from node.redact import redact
data = [json.loads(line) for line in f.read_text().splitlines()]
t = time.perf_counter()
redact("warm up: order 20230518-0042, wallet 1BoatSLRHtKNngkdXEeobR76b53LETtpyT")  # Presidio's one-time import (spaCy)
t_first = time.perf_counter() - t
t = time.perf_counter()
for r in data:
    redact(r["messages"][0]["content"]), redact(r["messages"][1]["content"]), redact(r["model"])
t_red = time.perf_counter() - t
nd = NodeDir.init(d, "bench")
prof = cProfile.Profile() if profile else None
with nd.open_store() as store:
    t, c = time.perf_counter(), time.process_time()
    if prof:
        prof.enable()
    rep = import_file(store, f, fmt="openai")
    if prof:
        prof.disable()
    t_imp, c_imp = time.perf_counter() - t, time.process_time() - c
assert rep.records == n, rep.as_dict()
if prof:
    pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
print(json.dumps({"redact": n / t_red, "import": n / t_imp, "cpu": n / c_imp, "first": t_first}))
"""


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


def checkout(commit: str, dest: Path) -> Path | None:
    """The packages at `commit`, extracted under `dest` (git archive: reads the repository, writes nothing to it)."""
    try:
        blob = subprocess.run(["git", "archive", "--format=tar", commit, "node", "privacy", "protos", "model"],
                              capture_output=True, check=True, cwd=ROOT).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    dest.mkdir(parents=True)
    tar = dest / "code.tar"
    tar.write_bytes(blob)
    with tarfile.open(tar) as t:
        t.extractall(dest, filter="data")
    return dest


def measure(code: Path, f: Path, d: Path, n: int, profile: bool = False) -> dict:
    """Rows/s of the code under `code` (its own process: nothing of one version is cached for the other)."""
    env = {**os.environ, "PYTHONPATH": f"{code}{os.pathsep}{ROOT}"}
    cp = subprocess.run([sys.executable, "-c", CHILD, str(f), str(d), str(n), "1" if profile else "0"],
                        capture_output=True, text=True, env=env, cwd=code, timeout=1800)
    if cp.returncode != 0:
        raise RuntimeError(f"{code}: {cp.stderr[-2000:]}")
    if profile:
        print(cp.stderr)
    return json.loads(cp.stdout.strip().splitlines()[-1])


def main() -> None:
    """Print the table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--flagged", type=float, default=0.02, help="fraction of rows with a number or identifier")
    ap.add_argument("--repeat", type=int, default=3, help="alternate the versions this many times, keep each one's best")
    ap.add_argument("--commits", nargs="*", default=list(COMMITS), help="earlier commits to measure alongside")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    load_before = os.getloadavg()
    best: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        f = d / "chats.jsonl"
        f.write_text("".join(json.dumps(r) + "\n" for r in rows(args.rows, args.flagged)))
        versions = {c: checkout(c, d / f"code-{c}") for c in args.commits}
        for c, code in list(versions.items()):
            if code is None:
                print(f"(commit {c} unavailable: not measured)")
                del versions[c]
        versions["working tree"] = ROOT
        for i in range(args.repeat):
            for label, code in versions.items():
                r = measure(code, f, d / f"node-{i}-{label.replace(' ', '-')}", args.rows)
                old = best.get(label, {"redact": 0.0, "import": 0.0, "cpu": 0.0, "first": float("inf")})
                best[label] = {k: max(old[k], r[k]) for k in ("redact", "import", "cpu")} | {"first": min(old["first"], r["first"])}
        if args.profile:
            measure(ROOT, f, d / "node-profiled", args.rows, profile=True)
    load = os.getloadavg()
    print(f"import of {args.rows:,} chat rows, {args.flagged:.0%} with identifiers or long numbers, best of "
          f"{args.repeat} alternating runs; load average {load_before[0]:.1f} before, {load[0]:.1f} after, "
          f"{os.cpu_count()} CPUs")
    print(f"| code | redact rows/s | import rows/s | import vs {next(iter(best))} | import rows per CPU-s "
          "| first Presidio use, once per process (s) |")
    print("|---|---|---|---|---|---|")
    base = next(iter(best.values()))["import"]
    for label, r in best.items():
        print(f"| {label} | {r['redact']:,.0f} | {r['import']:,.0f} | {r['import'] / base:.2f}x | {r['cpu']:,.0f} "
              f"| {r['first']:.1f} |")


if __name__ == "__main__":
    main()

"""Import throughput, with and without Presidio's pattern recognizers (python -m bench.import_speed).

Writes a JSON Lines file of chats (a fraction of them holding identifiers or long numbers, so that
the Presidio pre-filter fires on some), imports it into a fresh node, and prints rows/s for the
whole import and for redaction alone, once with node/redact.py's regular expressions only and once
with Presidio added (node/pii_patterns.py).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from unittest import mock

import node.redact as redact_mod
from node.ingest import import_file
from node.node_dir import NodeDir
from node.pii_patterns import redact_identifiers
from node.schema import Message, Record, Response

EXTRAS = ["my SSN is 536-22-8734", "NHS number 943 476 5919", "wallet 1BoatSLRHtKNngkdXEeobR76b53LETtpyT",
          "the total was 1234567 units", "order 20230518-0042", "call 020 7946 0958"]


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


def main() -> None:
    """Print the table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--flagged", type=float, default=0.02, help="fraction of rows with a number the pre-filter flags")
    args = ap.parse_args()
    data = rows(args.rows, args.flagged)
    redact_identifiers("warm up 536-22-8734")  # Presidio's one-time import and engine build
    table = []
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "chats.jsonl"
        f.write_text("".join(json.dumps(r) + "\n" for r in data))
        recs = [Record("b", r["id"], [Message("user", r["messages"][0]["content"])],
                       [Response(r["messages"][1]["content"])]) for r in data]
        for label, patch in (("regex only", True), ("regex + Presidio", False)):
            ctx = mock.patch.object(redact_mod, "redact_identifiers", lambda t: (t, {})) if patch else mock.MagicMock()
            with ctx:
                t = time.perf_counter()
                for r in recs:
                    for m in r.prompt:
                        redact_mod.redact(m.text)
                    for x in r.responses:
                        redact_mod.redact(x.text)
                t_red = time.perf_counter() - t
                nd = NodeDir.init(Path(d) / label.replace(" ", "_").replace("+", ""), "bench")
                with nd.open_store() as store:
                    t = time.perf_counter()
                    rep = import_file(store, f, fmt="openai")
                    t_imp = time.perf_counter() - t
                assert rep.records == args.rows
            table.append((label, args.rows / t_red, args.rows / t_imp))
    print(f"import of {args.rows:,} chat rows, {args.flagged:.0%} with numbers the Presidio pre-filter flags")
    print(f"{'redaction':20s} {'redact rows/s':>14s} {'import rows/s':>14s}")
    for label, a, b in table:
        print(f"{label:20s} {a:14,.0f} {b:14,.0f}")


if __name__ == "__main__":
    main()

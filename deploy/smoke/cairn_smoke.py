"""Connectivity check for a Cairn deployment (see pyproject.toml next to this file)."""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

client = ClientApp()
server = ServerApp()


@client.query("ping")
def ping(msg: Message, context: Context) -> Message:
    node_dir = Path(str(context.node_config.get("node-dir", "")))
    try:
        name = tomllib.loads((node_dir / "node.toml").read_text(encoding="utf-8")).get("name", "")
        ok = True
    except (OSError, tomllib.TOMLDecodeError):
        name, ok = "", False
    return Message(content=RecordDict({"pong": ConfigRecord({"name": name, "node_dir_ok": ok})}), reply_to=msg)


def exchange(grid: Grid, msgs: list[Message], timeout: float, pull_interval: float) -> list[Message]:
    """Grid.send_and_receive, pulling replies every `pull_interval` s (0: Flower's own, 3 s in 1.42)."""
    if pull_interval <= 0:
        return list(grid.send_and_receive(msgs, timeout=timeout))
    pending, out, end = set(grid.push_messages(msgs)), [], time.monotonic() + timeout
    while pending and time.monotonic() < end:
        got = list(grid.pull_messages(pending))
        out += got
        pending -= {m.metadata.reply_to_message_id for m in got}
        if pending:
            time.sleep(pull_interval)
    return out


@server.main()
def main(grid: Grid, context: Context) -> None:
    rc = context.run_config
    want, deadline = int(rc["min-nodes"]), time.time() + float(rc["wait-seconds"])
    while len(nodes := sorted(grid.get_node_ids())) < want and time.time() < deadline:
        time.sleep(0.2)
    rounds = []
    for r in range(1, int(rc["rounds"]) + 1):
        t0 = time.time()
        msgs = [Message(content=RecordDict(), message_type="query.ping", dst_node_id=n, group_id=f"ping-{r}") for n in nodes]
        answers = {}
        for rep in exchange(grid, msgs, 120.0, float(rc.get("pull-interval", 0.0))):
            src = str(rep.metadata.src_node_id)
            answers[src] = {"error": rep.error.reason} if rep.has_error() else dict(rep.content["pong"])
        rounds.append({"round": r, "seconds": round(time.time() - t0, 3), "answers": answers})
    out = Path(str(rc["out"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"nodes": [str(n) for n in nodes], "rounds": rounds}, indent=2), encoding="utf-8")

"""The node's signed ledger head (privacy/ledger_head.py): what the node itself says its ledger reached.

Every reply the node's ClientApp sends carries one (node/client_app.py `reply`), so the coordinator
holds, for each node, the latest head the node signed during the run and must publish a ledger that
reaches it (issue 15). The node also publishes its head itself: `cairn node head DIR [--run ID]`
(cairn/head_cli.py) and the node service's public endpoint call `signed_head`; an auditor passes it
to `cairn audit verify --node-head FILE|URL`.

Two positions can be signed:
- the current head (`run_id` ""): the ledger's last entry now;
- a run's head (`run_id` = a federation id): the node's last entry for that run (its round_id is the
  run id or starts with "<run id>/", as training rounds and queries name them), or seq -1 when the
  run made none. A bundle of that run must reach it whatever the node released since, which is what
  an auditor checks a published bundle against. That is meaningful only because the node makes every
  release in the run its message names (`run_problem`, node/client_app.py): a coordinator cannot file
  a run's releases under another run's rounds to make the run's head seq -1.
Protects ARCHITECTURE.md invariant 7 across an untrusted coordinator (invariant 3).
"""

from __future__ import annotations

from pathlib import Path

from node.node_dir import NodeDir
from node.releases import open_ledger
from privacy.ledger_head import MAX_TEXT, LedgerHead, head_of_entry


def _of_run(entry, run_id: str) -> bool:
    return _of_run_id(entry.body.round_id, run_id)


def run_problem(run_id: str, round_id: str) -> str | None:
    """Why a release for round `round_id` may not be made in the run `run_id` the coordinator's message
    names (Record.RUN), or None. The node binds every release to the run it signs heads for: otherwise a
    coordinator names the run "F" in its messages (so every head it holds is of run F) but the rounds
    "Z/1", "Z/query/..." (so `cairn node head --run F` finds no entry of run F, seq -1), then publishes
    a bundle of F cut back to the node's hello head, and the node's own head could not show the cut."""
    if not _signable(run_id):
        return f"the run id the coordinator's message names is not signable (at most {MAX_TEXT} characters, no line break)"
    if not run_id:
        return "the coordinator's message names no run (Record.RUN): a release must belong to the run it is signed for"
    if not _of_run_id(round_id, run_id):
        return f"round {round_id!r} is not a round of run {run_id!r} that the message names (it must be the run or start with '{run_id}/')"
    return None


def _signable(run_id: str) -> bool:
    return "\n" not in run_id and "\r" not in run_id and len(run_id) <= MAX_TEXT


def _of_run_id(round_id: str, run_id: str) -> bool:
    return round_id == run_id or round_id.startswith(run_id + "/")


def head_for(nd: NodeDir, store, run_id: str = "", *, of_run: bool = False) -> LedgerHead:
    """The node's head signed with its ledger key for `run_id`: the current head, or with `of_run`
    the last entry of that run (seq -1 when none)."""
    ledger = open_ledger(nd, store)
    if of_run and run_id:
        entry = next((e for e in reversed(ledger.entries()) if _of_run(e, run_id)), None)
    else:
        entry = ledger.head()
    # a run id that cannot be signed (a hostile coordinator's line breaks or megabytes) is no run: the head
    # is signed outside any run (no bundle accepts it) rather than the reply failing with a traceback
    return head_of_entry(nd.ledger_key(), entry, run_id if _signable(run_id) else "")


def signed_head(node_dir, run_id: str = "") -> dict:
    """The JSON-serialisable signed head of the node directory `node_dir`: the current head, or the
    head of run `run_id` when one is given (module docstring). Public by design."""
    nd = NodeDir(Path(node_dir))
    with nd.open_store() as store:
        return head_for(nd, store, run_id, of_run=bool(run_id)).to_dict()

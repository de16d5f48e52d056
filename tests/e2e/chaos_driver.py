"""The processes the chaos test kills (tests/e2e/test_chaos.py): a federation's releases, node side.

    python -m tests.e2e.chaos_driver RECEIVED NODE_DIR...

imports everything once, then for each line "RUN" on stdin forks a worker (printing "ready PID") that
does the run's releases and exits; the test SIGKILLs the worker at a random point ("exit STATUS" follows).
Nothing in this process touches torch or a store before forking, so each worker starts clean and fast.

A worker takes, for each node in turn, round RUN+1 of one federation (a training round) and a query,
through the node's real paths (node.training.train_round, node.queries.answer_query: policy bounds, the
threshold, the release gate, the durable ledger entry first); after each release leaves the node, the
"coordinator" appends what it received (node id, ledger seq, entry hash) to RECEIVED, flushed and fsynced."""

from __future__ import annotations

import json
import os
import sys


def work(run: str, received: str, node_dirs: list[str]) -> None:
    import numpy as np

    from node.node_dir import NodeDir
    from node.queries import answer_query, request_of
    from node.request_bounds import head_parameter_count
    from node.training import TrainingRefused, train_round
    from privacy.release import PolicyViolation, request_hash
    from protos import query_pb2
    from protos.wire import QueryError

    feat = {"name": "hashed-ngram", "dim": 16}
    head = {"type": "mlp", "in_dim": 16, "hidden": 4, "combine": "r_pr"}
    vec = [np.zeros(head_parameter_count(head), dtype=np.float32)]
    with open(received, "a", encoding="utf-8") as out:
        def got(nd, kind, seq, entry_hash, round_id, request=""):
            # what the coordinator asked for (kind, round, the query's request hash), recorded from its own
            # side: the test holds the node's signed ledger entry to it, not only to the seq/hash the node sent
            out.write(json.dumps({"node": nd.node_id, "kind": kind, "seq": seq, "hash": entry_hash,
                                  "round": round_id, "request": request}) + "\n")
            out.flush()
            os.fsync(out.fileno())

        r = int(run) + 1  # one federation whose rounds the runs take in turn (its plan is made once)
        for d in node_dirs:
            nd = NodeDir(d)
            with nd.open_store() as store:
                cfg = {"federation_id": "chaos", "round": r, "rounds": 40, "local_steps": 3, "epsilon": 1.0,
                       "sampling_rate": 0.2, "featurizer": json.dumps(feat), "head": json.dumps(head)}
                try:
                    _, _, rel = train_round(nd, store, cfg, vec)
                    got(nd, "train", rel.seq, rel.entry_hash, f"chaos/{r}")
                except (TrainingRefused, PolicyViolation):
                    pass
                q = query_pb2.Query(name="coverage", params={"languages": json.dumps(["en", f"x{run}"])},
                                    epsilon=0.2, round_id=f"chaos/{r}")
                try:
                    ans, _ = answer_query(nd, store, q)
                    got(nd, "coverage", ans.ledger_seq, ans.ledger_entry_hash.hex(), q.round_id,
                        request_hash("coverage", request_of(q)))
                except (PolicyViolation, QueryError):
                    pass


def serve(received: str, node_dirs: list[str]) -> None:
    """One worker per line on stdin, forked from this warm process."""
    import numpy  # noqa: F401  (imported before forking: the workers start warm)

    import node.queries  # noqa: F401
    import node.training  # noqa: F401
    from node.queries import sigma_for

    sigma_for(0.2, 1e-6, 2, 2)  # the queries' noise, calibrated once here (memoised), not in every worker
    print("warm", flush=True)
    for line in sys.stdin:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                work(line.strip(), received, node_dirs)
            except BaseException:
                code = 1
            os._exit(code)
        print(f"ready {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {status}", flush=True)


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2:])

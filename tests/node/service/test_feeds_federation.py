"""Contributions made through the service feed the next federation exactly like imported ones (issue 12).

Two nodes hold the same conversations: one received them through the API from N members, the other
imported them as a ShareLM file. The node's release path reads the same rows from both (pairs for
training, rows for a query), a pending contribution feeds nothing, and in a simulated federation
both nodes answer a DP thumbs query from their members' data. The federation is kept as small as
the policy allows (N_FED members a node, just above min_contributors = 5; the hashed featurizer, no
training round): nearly all its time is Flower's Simulation Engine starting Ray and its workers.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from node.consent import eligible_contributors
from node.ingest import import_file
from node.node_dir import NodeDir
from node.pairs import pairs_from_records
from node.queries import rows_for
from node.service import members
from node.service.app import create_app
from privacy.policy import Policy

N = 9  # three thumbs down (every third), six thumbs up
N_FED = 6  # just above the policy's min_contributors


def _conversation(i: int) -> dict:
    good = i % 3 != 0
    return {"conversation": [{"role": "user", "content": f"Describe glacier number {i}."},
                             {"role": "assistant", "content": f"Glacier {i} is a slow river of ice."}],
            "model_name": "m-good" if good else "m-bad",
            "conversation_metadata": {"rate": "thumbs up" if good else "thumbs down"}}


def _node(path: Path, name: str, wait: float = 0.0) -> NodeDir:
    return NodeDir.init(path, name, policy=Policy(community=name, min_contributors=5, min_contributors_noise=0.0,
                                                   waiting_period_hours=wait))


def _served(path: Path, n: int = N) -> NodeDir:
    nd = _node(path, "served")
    with TestClient(create_app(nd.path, tick_seconds=0)) as c:
        for i, code in enumerate(members.create_invites(nd.path, n)):
            tok = c.post("/api/v1/members", json={"invite": code}).json()["token"]
            r = c.post("/api/v1/contributions", json={**_conversation(i), "licence": "CC-BY-4.0"},
                       headers={"Authorization": f"Bearer {tok}"})
            assert r.status_code == 201 and r.json()["status"] == "eligible"
    return nd


def _imported(path: Path, n: int = N) -> NodeDir:
    nd = _node(path, "imported")
    f = path.parent / "sharelm.jsonl"
    f.write_text("\n".join(json.dumps({**_conversation(i), "user_id": f"u{i}", "conversation_id": f"k{i}"})
                           for i in range(n)))
    with nd.open_store() as store:
        import_file(store, f, consent="CC-BY-4.0", policy=nd.policy())
    return nd


def _release_view(nd: NodeDir):
    """What the release path reads: eligible contributors' records, their thumbs rows and training pairs."""
    later = datetime.now(timezone.utc) + timedelta(seconds=1)
    with nd.open_store() as store:
        eligible = eligible_contributors(store, nd.policy(), later)
        recs = list(store.records(contributors=eligible))
    ids = {c: f"p{i}" for i, c in enumerate(sorted({f.contributor for r in recs for f in r.feedback}))}
    thumbs = Counter(json.dumps(row[1:], sort_keys=True, default=str) for row in rows_for("thumbs_rates", recs, {}))
    shapes = Counter((r.source, len(r.prompt), len(r.responses), tuple(f.kind for f in r.feedback)) for r in recs)
    texts = sorted(r.prompt[0].text + r.responses[0].text for r in recs)
    return len(eligible), len(ids), thumbs, shapes, texts, len(pairs_from_records(recs))


def test_service_contributions_read_exactly_like_imported_ones(tmp_path):
    served, imported = _served(tmp_path / "a" / "n"), _imported(tmp_path / "b" / "n")
    assert _release_view(served) == _release_view(imported)
    n_eligible, *_ = _release_view(served)
    assert n_eligible == N


def test_a_pending_contribution_feeds_nothing(tmp_path):
    nd = _node(tmp_path / "n", "waiting", wait=24.0)
    member, _ = members.redeem(nd.path, members.create_invites(nd.path, 1)[0])
    out = members.contribute(nd.path, member, {**_conversation(1), "licence": "CC0-1.0"})
    assert out["status"] == "pending"
    assert members.promote_due(nd.path) == 0
    with nd.open_store() as store:
        assert list(store.records()) == []  # waiting, sealed, outside every release path
    assert members.promote_due(nd.path, now=datetime.now(timezone.utc) + timedelta(hours=25)) == 1
    with nd.open_store() as store:
        assert [r.owner for r in store.records()] == [member]
        assert member in eligible_contributors(store, nd.policy(), datetime.now(timezone.utc) + timedelta(hours=25))


@pytest.mark.slow  # about 1.5 minutes on 2 loaded cores, nearly all of it Ray starting (profiled)
def test_service_contributions_feed_a_federated_query(tmp_path):
    from coordinator.server_app import FederationConfig
    from coordinator.simulation import run_simulation_federation
    from model.presets import preset_config
    from node.client_app import app as NODE_APP

    served, imported = _served(tmp_path / "a" / "n", N_FED), _imported(tmp_path / "b" / "n", N_FED)
    cfg = FederationConfig(out=str(tmp_path / "bundle"), rounds=0, featurizer=preset_config("hashed"),
                           federation_id="fed-svc", queries=["thumbs_rates"], query_epsilon=1.0,
                           query_models=["m-good", "m-bad"])
    summary = run_simulation_federation([served.path, imported.path], cfg, NODE_APP)
    bundle = Path(summary["bundle"])
    stats = json.loads((bundle / "statistics.json").read_text())
    manifest = json.loads((bundle / "manifest.json").read_text())
    ids = {n["name"]: n["node_id"] for n in manifest["nodes"]}
    q = stats["queries"][0]
    assert set(q["answers"]) == {ids["served"], ids["imported"]}  # the served node answered from its members' data
    for nd in (served, imported):
        ledger = json.loads((bundle / "ledgers" / f"{ids[nd.name]}.json").read_text())
        assert any(e["body"]["release_kind"].startswith("thumbs_rates") or "thumbs" in e["body"]["release_kind"]
                   for e in ledger["entries"])

"""DP aggregate queries in a federation (Flower Simulation Engine): statistics, leaderboard and data
card in the bundle, each traceable to ledger entries; a node at its budget cap refuses and the
phase completes without it; nothing but counts leaves a node."""

import json
from pathlib import Path

from flwr.common.serde import message_to_proto

from coordinator.server_app import FederationConfig
from coordinator.simulation import run_simulation_federation
from node.client_app import app as NODE_APP
from tests.e2e.conftest import make_community
from tests.e2e.test_federation import HASHED, RecordingGrid

CANARY = "CANARY-77d1-query-lichen"


def test_query_federation_bundle_lineage_and_budget_cap(tmp_path):
    # 100 contributors each, so that the pooled pair total (200) stays far above the leaderboard's
    # noise threshold (1.645 noise sd of the total, ~40 here): dropped by chance with p < 1e-10
    nodes = [make_community(tmp_path / f"n{i}", f"community-{i}", i, n_contributors=100, canary=f"{CANARY}-{i}")
             for i in range(2)]
    # a third community whose cap is smaller than one query: it refuses, the phase completes
    nodes.append(make_community(tmp_path / "n2", "community-capped", 2, epsilon_cap=0.5))
    grids = []

    def wrap(grid):
        grids.append(RecordingGrid(grid))
        return grids[-1]

    cfg = FederationConfig(out=str(tmp_path / "bundle"), rounds=0, featurizer=HASHED, federation_id="fed-q",
                           queries=["battle_counts", "coverage"], query_epsilon=1.0, query_models=["m-good", "m-bad"],
                           query_languages=["en", "fr"], query_topics=["other", "everyday"], leaderboard_replicates=50)
    summary = run_simulation_federation([n.path for n in nodes], cfg, NODE_APP, wrap_grid=wrap)
    bundle = Path(summary["bundle"])
    manifest = json.loads((bundle / "manifest.json").read_text())
    ids = {n["name"]: n["node_id"] for n in manifest["nodes"]}

    stats = json.loads((bundle / "statistics.json").read_text())
    battle = stats["queries"][0]
    assert battle["query"]["name"] == "battle_counts"
    assert set(battle["answers"]) == {ids["community-0"], ids["community-1"]}
    assert ids["community-capped"] in battle["refused"] and "epsilon_cap" in battle["refused"][ids["community-capped"]]
    pooled = {tuple(c["key"]): c["value"] for c in battle["pooled"]}
    # 2 x 100 contributors, each with 4 battles that m-good ("b", as m-bad < m-good) always wins, bounded
    # at one row per contributor and cell: true counts b = 200 and 0 elsewhere; 6 noise sd (p ~ 1e-9)
    sd = battle["pooled_noise_sd_per_cell"]
    assert abs(pooled[("m-bad", "m-good", "b")] - 200) < 6 * sd
    for outcome in ("a", "tie", "both_bad"):
        assert abs(pooled[("m-bad", "m-good", outcome)]) < 6 * sd
    for a in battle["answers"].values():
        assert a["noise_scale"] > 0 and 0 < a["epsilon"] <= 1.0 and not a["cached"]

    board = json.loads((bundle / "leaderboard.json").read_text())
    assert [m["model"] for m in board["pooled"]["models"]] == ["m-good", "m-bad"]
    assert all(m["ci_low"] <= m["rating"] <= m["ci_high"] for m in board["pooled"]["models"])
    assert set(board["per_community"]) == {ids["community-0"], ids["community-1"]}
    assert (bundle / "leaderboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = (bundle / "datacard.md").read_text()
    assert card.startswith("---\n") and "community-capped" in card and "broad" in card and "CC-BY-4.0" in card

    # lineage: each artifact's sources are real ledger entries of those nodes
    files = {f["path"]: f["kind"] for f in manifest["files"]}
    assert files["statistics.json"] == "statistics" and files["datacard.md"] == "datacard"
    arts = {a["path"]: a for a in manifest["artifacts"]}
    for path in ("statistics.json", "leaderboard.json", "leaderboard.png", "datacard.md"):
        assert arts[path]["sources"], path
        for s in arts[path]["sources"]:
            ledger = json.loads((bundle / "ledgers" / f"{s['node_id']}.json").read_text())
            entry = next(e for e in ledger["entries"] if int(e["body"].get("seq", 0)) == int(s.get("ledger_seq", 0)))
            assert entry["entry_hash"] == s["ledger_entry_hash"]
            assert entry["body"]["release_kind"] in ("battle_counts", "coverage")

    # nothing but counts left: no planted canary in any reply
    blob = b"".join(message_to_proto(m).SerializeToString() for m in grids[0].replies)
    assert blob and b"CANARY" not in blob

    # `cairn leaderboard BUNDLE` prints the pooled table and a community's own
    from click.testing import CliRunner

    from cairn.cli import cli

    res = CliRunner().invoke(cli, ["leaderboard", str(bundle)])
    assert res.exit_code == 0 and "m-good" in res.output and "95% CI" in res.output
    assert "not pinned" in res.stderr  # verified, but nobody pinned who signed it
    res = CliRunner().invoke(cli, ["leaderboard", str(bundle), "--community", "community-1"])
    assert res.exit_code == 0 and "community-1" in res.output

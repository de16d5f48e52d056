"""Done-when of issue 13, deliverable 3: a blind arena of twelve current models over three communities,
no `--model` given, 1 epsilon per query: the nodes' private key selection finds the names, the
leaderboard ranks all twelve close to the planted strengths, and the bundle verifies."""

import json
from pathlib import Path

import pytest

from coordinator.leaderboard import kendall_tau
from coordinator.server_app import FederationConfig
from coordinator.simulation import run_simulation_federation
from node.client_app import app as NODE_APP
from node.node_dir import NodeDir
from node.synth import CURRENT_MODELS, named_arena
from node.synth.community import arena_community
from privacy.audit import verify_bundle
from privacy.policy import Policy
from tests.conftest import SHARED_DATA

CONTRIBUTORS = 2000  # per community, ~4 battles each: tau >= 0.85 in 16 of 16 noise draws (bench/leaderboard.py)


@pytest.fixture(scope="module")
def arena_bundle(tmp_path_factory):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    shared_data = SHARED_DATA
    tmp = tmp_path_factory.mktemp("arena")
    dirs = []
    for i in range(3):
        nd = NodeDir.init(tmp / f"n{i}", f"arena-{i}", policy=Policy(community=f"arena-{i}"))
        arena_community(nd, CONTRIBUTORS, 0, rule_seed=13, community_seed=100 + i, data=shared_data,
                        model_names=CURRENT_MODELS)
        dirs.append(nd.path)
    cfg = FederationConfig(out=str(tmp / "bundle"), rounds=0, federation_id="fed-arena", queries=["battle_counts"],
                           query_epsilon=1.0, leaderboard_replicates=20)
    summary = run_simulation_federation(dirs, cfg, NODE_APP)
    return Path(summary["bundle"])


def test_blind_arena_ranks_all_twelve_and_verifies(arena_bundle):
    stats = json.loads((arena_bundle / "statistics.json").read_text())
    disc = stats["discovery"]
    assert disc["query"]["name"] == "discover_keys" and len(disc["answers"]) == 3
    assert sorted(disc["discovered"]["model"]) == sorted(CURRENT_MODELS)
    for a in disc["answers"].values():
        assert a["mechanism"] == "gaussian_threshold" and 0 < a["epsilon"] <= 1.0
    board = json.loads((arena_bundle / "leaderboard.json").read_text())["pooled"]
    ranked = {m["model"]: m["rating"] for m in board["models"]}
    assert set(ranked) == set(CURRENT_MODELS) and board["components"] == 1
    assert kendall_tau(ranked, named_arena(CURRENT_MODELS, 13)) >= 0.85
    result = verify_bundle(arena_bundle)
    assert result.ok, [(c.name, c.message) for c in result.failures]

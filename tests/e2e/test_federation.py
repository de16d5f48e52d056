"""`cairn federate` in Flower's Simulation Engine: bundle, ledgers, secure aggregation, no raw text."""

import json
from pathlib import Path

import numpy as np
from flwr.common.serde import message_to_proto

from coordinator.server_app import FederationConfig
from coordinator.simulation import run_simulation_federation
from model.presets import preset_config
from node.client_app import app as NODE_APP
from tests.e2e.conftest import make_community

CANARY = "CANARY-5e1f-heron-basalt"
HASHED = preset_config("hashed")


class RecordingGrid:
    """Wraps the coordinator's Grid and keeps every byte that nodes send back."""

    def __init__(self, grid):
        self.grid, self.replies = grid, []

    def __getattr__(self, name):
        return getattr(self.grid, name)

    def send_and_receive(self, messages, timeout=None):
        out = list(self.grid.send_and_receive(messages, timeout=timeout))
        self.replies += out
        return out


def test_federation_secagg_bundle_and_no_raw_text(tmp_path, monkeypatch):
    dump = tmp_path / "updates"
    dump.mkdir()
    monkeypatch.setenv("CAIRN_TEST_DUMP_UPDATES", str(dump))  # nodes write their plain updates here (test hook)
    nodes = [make_community(tmp_path / f"n{i}", f"community-{i}", i, canary=f"{CANARY}-{i}") for i in range(3)]
    grids = []

    def wrap(grid):
        grids.append(RecordingGrid(grid))
        return grids[-1]

    cfg = FederationConfig(out=str(tmp_path / "bundle"), rounds=2, local_steps=5, featurizer=HASHED, secagg=True,
                           federation_id="fed-test")
    summary = run_simulation_federation([n.path for n in nodes], cfg, NODE_APP, wrap_grid=wrap)
    bundle = Path(summary["bundle"])

    # the bundle: model, 3 ledgers, 2 rounds each accounted by every node's ledger entry
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert len(manifest["nodes"]) == 3
    assert (bundle / "model" / "model.safetensors").exists()
    rounds = json.loads((bundle / "rounds.json").read_text())
    assert [r["round"] for r in rounds] == [1, 2] and all(len(r["contributors"]) == 3 for r in rounds)
    for n in manifest["nodes"]:
        assert 0 < n["claimed_epsilon"] <= 8.0
        ledger = json.loads((bundle / "ledgers" / f"{n['node_id']}.json").read_text())
        assert [e["body"]["release_kind"] for e in ledger["entries"]] == ["train", "train"]

    # no planted canary in any byte a node sent
    blob = b"".join(message_to_proto(m).SerializeToString() for m in grids[0].replies)
    assert blob and all(f"{CANARY}-{i}".encode() not in blob for i in range(3))
    assert b"CANARY" not in blob

    # secure aggregation: train replies carry no update; masked inputs look uniform; the coordinator
    # applied exactly the mean of the nodes' updates (recovered only as a sum)
    for m in grids[0].replies:
        if m.metadata.message_type == "train":
            assert "arrays" not in m.content
        if m.metadata.message_type == "query.secagg_masked":
            y = m.content["arrays"].to_numpy_ndarrays()[0].astype(np.float64) / 2**32
            assert abs(y.mean() - 0.5) < 0.05
    updates = {p.name: np.load(p) for p in dump.glob("*.npy")}
    assert len(updates) == 6  # 3 nodes x 2 rounds
    import torch

    from model.reward_model import RewardHead, load_model, state_to_vector

    torch.manual_seed(cfg.seed)
    init = state_to_vector(RewardHead(384, hidden=cfg.hidden))
    final = state_to_vector(load_model(bundle / "model" / "model.safetensors")[0])
    expected = init + sum(np.mean([u for k, u in updates.items() if k.endswith(f"r{r}.npy")], axis=0) for r in (1, 2))
    assert np.allclose(final, expected, atol=1e-4)
    sent = [m.content["arrays"].to_numpy_ndarrays()[0] for m in grids[0].replies if "arrays" in m.content]
    for u in updates.values():
        for s in sent:
            assert s.shape != u.shape or abs(np.corrcoef(s.astype(np.float64), u)[0, 1]) < 0.2

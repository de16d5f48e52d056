"""The simulation driver (coordinator/simulation.py) without running a federation: it loads the
node's ClientApp by its Flower app reference, and refuses to start when the bundle could not be
published; and the coordinator package never imports node/ (ARCHITECTURE.md invariant 3)."""

import ast
from pathlib import Path
from types import SimpleNamespace

import pytest

from coordinator.simulation import SimulationError, check_can_publish, load_app

CLIENT_APP = "node.client_app:app"

COORDINATOR = Path(__file__).resolve().parents[2] / "coordinator"


def test_client_app_is_loaded_by_its_flower_reference():
    from flwr.clientapp import ClientApp

    assert isinstance(load_app(CLIENT_APP), ClientApp)
    with pytest.raises(SimulationError, match="<module>:<attribute>"):
        load_app("node.client_app")


def test_refuses_to_start_before_any_node_spends_budget(tmp_path):
    node = tmp_path / "n1"
    node.mkdir()
    cfg = SimpleNamespace(out=str(tmp_path / "bundle"), coordinator_key="")
    with pytest.raises(SimulationError, match="not a Cairn node directory"):
        check_can_publish([node], cfg)
    (node / "node.toml").write_text("")
    assert check_can_publish([node], cfg) == [str(node.resolve())]
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "old-model.safetensors").write_bytes(b"x")
    with pytest.raises(SimulationError, match="the bundle directory is not empty"):
        check_can_publish([node], cfg)


def test_coordinator_never_imports_node():
    for path in sorted(COORDINATOR.rglob("*.py")):
        for n in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in n.names] if isinstance(n, ast.Import) else (
                [n.module or ""] if isinstance(n, ast.ImportFrom) else [])
            assert not any(m == "node" or m.startswith("node.") for m in names), f"{path.name} imports {names}"

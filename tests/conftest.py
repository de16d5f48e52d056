import os
from pathlib import Path

import pytest

from node.synth import default_data_dir

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = default_data_dir()
FIXTURES = ROOT / "fixtures"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def node_dir(tmp_path):
    from node.node_dir import NodeDir

    return NodeDir.init(tmp_path / "node", "test-community")

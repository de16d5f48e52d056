"""`--out` is checked creatable and writable before any node is asked anything (review 13-14, finding 4):
a path under a file, or in a read-only directory, is refused up front, not after budget was spent."""

import os
from types import SimpleNamespace

import pytest

from coordinator.bundle import check_out_writable
from coordinator.server_app import check_out_empty
from coordinator.simulation import SimulationError, check_can_publish


def test_a_writable_out_passes_and_leaves_only_its_parent(tmp_path):
    out = tmp_path / "new" / "deeper" / "bundle"
    check_out_empty(str(out))
    assert out.parent.is_dir() and list(out.parent.iterdir()) == []  # the probe directory is gone


def test_an_out_under_a_file_is_refused_naming_the_path(tmp_path):
    (tmp_path / "one.jsonl").write_text("{}\n")
    out = tmp_path / "one.jsonl" / "sub"
    with pytest.raises(OSError, match="cannot write the bundle there") as e:
        check_out_writable(out)
    assert str(out) in str(e.value) and "no budget spent" in str(e.value)
    with pytest.raises(OSError, match="cannot write the bundle there"):
        check_out_empty(str(out))


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anywhere")
def test_an_out_in_a_read_only_directory_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OSError, match="cannot write the bundle there"):
            check_out_writable(ro / "bundle")
    finally:
        ro.chmod(0o700)


def test_the_simulation_refuses_before_any_node_is_asked(tmp_path):
    node = tmp_path / "n"
    node.mkdir()
    (node / "node.toml").write_text("")
    (tmp_path / "f").write_text("x")
    cfg = SimpleNamespace(out=str(tmp_path / "f" / "bundle"), coordinator_key=None, dry_run=False)
    with pytest.raises(SimulationError, match="cannot write the bundle there"):
        check_can_publish([node], cfg)

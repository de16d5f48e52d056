"""`cairn audit report`: one self-contained page, rendered in real headless Chromium (Debian's)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from cairn.cli import cli
from tests.privacy.audit.conftest import load_manifest


def find_chromium() -> str | None:
    """Debian's chromium (`make test` installs it with apt-get when it can)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def chromium(exe: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp / 'chromium-profile'}"]
    return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def chromium_exe():
    exe = find_chromium()
    if exe is None:
        pytest.skip("Debian chromium is not installed and cannot be installed here (apt-get install -y chromium)")
    return exe


def test_report_renders_in_chromium(federation, tmp_path, chromium_exe):
    bundle, nodes = federation
    out = tmp_path / "report.html"
    r = CliRunner().invoke(cli, ["audit", "report", str(bundle), "--out", str(out), "--allow-unpinned"])
    assert r.exit_code == 0, r.output
    page = out.read_text()
    assert not re.search(r"""(src|href)=["']https?:""", page)  # self-contained: nothing fetched
    assert "data:image/png;base64," in page

    dom = chromium(chromium_exe, tmp_path, "--dump-dom", out.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout
    assert "VERIFIED" in text and "NOT VERIFIED" not in text
    m = load_manifest(bundle)
    for n in m.nodes:
        assert n.name in text
        assert f"{n.claimed_epsilon:.4f}" in text  # the epsilon a person reads
    assert text.count(">PASS<") >= 10 and ">FAIL<" not in text
    for words in ("Epsilon over the rounds", "Mechanisms and parameters", "What is assumed", "Verification results",
                  "Poisson-sampled", "noise multiplier", "lineage:model/model.safetensors"):
        assert words in text

    shot = tmp_path / "shot.png"
    s = chromium(chromium_exe, tmp_path, f"--screenshot={shot}", "--window-size=1200,1600", out.as_uri())
    assert s.returncode == 0 and shot.exists(), s.stderr[-2000:]
    from PIL import Image

    img = Image.open(shot).convert("RGB")
    assert img.size == (1200, 1600)
    colors = img.getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50  # text, tables and the plot: not a blank page
    # the verdict is drawn in green near the top
    top = img.crop((0, 0, 600, 200))
    assert any(g > 100 and r < 80 and b < 90 for r, g, b in top.getdata())


def test_report_of_tampered_bundle_shows_fail(bundle, tmp_path, chromium_exe):
    p = bundle / "model" / "model.safetensors"
    p.write_bytes(p.read_bytes()[:-10] + bytes(10))
    out = tmp_path / "report.html"
    r = CliRunner().invoke(cli, ["audit", "report", str(bundle), "--out", str(out), "--allow-unpinned"])
    assert r.exit_code == 1 and "NOT VERIFIED" in r.output
    text = chromium(chromium_exe, tmp_path, "--dump-dom", out.as_uri()).stdout
    assert "NOT VERIFIED" in text and ">FAIL<" in text and "model/model.safetensors" in text and "was changed" in text

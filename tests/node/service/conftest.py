"""Fixtures for the node service: a node directory, an in-process client, a real `cairn node serve`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node.node_dir import NodeDir
from privacy.policy import Policy

ROOT = Path(__file__).resolve().parents[3]
OPERATOR = "operator-secret-for-tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_node(path: Path, waiting_hours: float = 24.0, **extra) -> NodeDir:
    return NodeDir.init(path, "svc", policy=Policy(community="svc", waiting_period_hours=waiting_hours,
                                                   min_contributors=1, extra=extra))


def curl(*args: str, data: dict | None = None, token: str | None = None) -> tuple[int, dict | str]:
    """curl from outside the process: (status, JSON body or text)."""
    cmd = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "--max-time", "20", *args]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    if data is not None:
        cmd += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(data)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    body, _, code = out.rpartition("\n")
    try:
        return int(code), json.loads(body) if body else {}
    except ValueError:
        return int(code), body


class Server:
    """`cairn node serve DIR` in a subprocess on a free loopback port, stopped by its pid."""

    def __init__(self, nd: NodeDir, *extra: str, scheme: str = "http", curl_opts: tuple[str, ...] = ()):
        self.nd, self.port = nd, free_port()
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.log = nd.path.parent / f"serve-{self.port}.log"
        env = {**os.environ, "CAIRN_OPERATOR_TOKEN": OPERATOR, "FLWR_TELEMETRY_ENABLED": "0"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cairn.cli", "node", "serve", str(nd.path), "--port", str(self.port), *extra],
            cwd=ROOT, env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited: {self.log.read_text()}")
            try:
                code, _ = curl(*curl_opts, f"{self.url}/healthz")
                if code == 200:
                    return
            except subprocess.CalledProcessError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError("serve did not come up")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def svc_node(tmp_path) -> NodeDir:
    return make_node(tmp_path / "node")


@pytest.fixture
def client(svc_node):
    from fastapi.testclient import TestClient

    from node.service.app import create_app

    with TestClient(create_app(svc_node.path, operator_token=OPERATOR, tick_seconds=0)) as c:
        yield c


def sharelm(text: str = "How do rivers form?", rate: str = "thumbs up", licence: str = "CC-BY-4.0") -> dict:
    return {"conversation": [{"role": "user", "content": text},
                             {"role": "assistant", "content": "Water gathers and cuts a channel."}],
            "model_name": "model-a", "conversation_metadata": {"rate": rate}, "licence": licence}

"""The polling waits a deployment sets (issue 16: rounds in seconds): the coordinator's Grid pulls
replies within tenths of a second (coordinator/polling.py), the SuperNode's fixed waits are capped
(deploy/supernode.py), and deploy/local.py sets Flower's own SuperExec interval to a value Flower
accepts. Fast: no server is started."""

from __future__ import annotations

import inspect
import time
from types import SimpleNamespace

import pytest

from coordinator.polling import PULL_INTERVAL_ENV, PollingGrid, max_interval_from_env
from deploy import supernode
from deploy.local import FAST_POLLING, FLOWER_POLLING, LocalDeployment


class FakeGrid:
    """Replies to message i become available `delays[i]` seconds after the push."""

    def __init__(self, delays: list[float]):
        self.delays = delays
        self.pushed_at = 0.0
        self.pulls = 0
        self.node_ids = [1, 2, 3]

    def push_messages(self, messages):
        self.pushed_at = time.monotonic()
        return [f"m{i}" for i, _ in enumerate(list(messages))]

    def pull_messages(self, ids):
        self.pulls += 1
        now = time.monotonic() - self.pushed_at
        return [SimpleNamespace(metadata=SimpleNamespace(reply_to_message_id=f"m{i}"))
                for i, d in enumerate(self.delays) if f"m{i}" in ids and now >= d]

    def get_node_ids(self):
        return self.node_ids


def test_replies_arrive_within_tenths_of_a_second_not_flowers_3s():
    grid = PollingGrid(FakeGrid([0.05, 0.2, 0.3]))
    t0 = time.monotonic()
    replies = grid.send_and_receive(["a", "b", "c"], timeout=10)
    took = time.monotonic() - t0
    assert sorted(r.metadata.reply_to_message_id for r in replies) == ["m0", "m1", "m2"]
    assert took < 1.0, took  # Flower 1.42's HttpGrid: the first pull, then 3 s sleeps
    assert grid.get_node_ids() == [1, 2, 3]  # everything else is the wrapped Grid's


def test_timeout_returns_the_replies_in_and_backs_off_to_the_cap():
    fake = FakeGrid([0.0, 99.0])
    grid = PollingGrid(fake, max_interval=0.1)
    t0 = time.monotonic()
    replies = grid.send_and_receive(["a", "b"], timeout=0.6)
    assert 0.55 <= time.monotonic() - t0 < 1.5
    assert [r.metadata.reply_to_message_id for r in replies] == ["m0"]
    assert 4 <= fake.pulls <= 14  # 0.05 s growing to 0.1 s: neither one pull nor a busy loop


def test_pull_interval_from_env(monkeypatch):
    monkeypatch.delenv(PULL_INTERVAL_ENV, raising=False)
    assert max_interval_from_env() == 0.5
    monkeypatch.setenv(PULL_INTERVAL_ENV, "3")
    assert max_interval_from_env() == 3.0
    monkeypatch.setenv(PULL_INTERVAL_ENV, "0")
    with pytest.raises(ValueError):
        max_interval_from_env()


def test_supernode_waits_are_the_ones_flower_has():
    """deploy/supernode.py caps the sleeps of this one Flower module: if Flower changes the loop, this fails."""
    from flwr.supernode import start_client_internal as loop

    src = inspect.getsource(loop)
    assert "time.sleep(3)" in src  # the idle wait after an empty pull
    assert "time.sleep(0.5)" in src  # waiting for the ClientApp's reply


def test_supernode_sleeps_are_capped(monkeypatch):
    from flwr.supernode import start_client_internal as loop

    monkeypatch.setattr(loop, "time", time)  # undone after the test
    assert supernode.cap_supernode_waits(0.02)
    t0 = time.monotonic()
    loop.time.sleep(3)
    assert time.monotonic() - t0 < 0.5
    assert abs(loop.time.time() - time.time()) < 1  # every other function is the real one
    assert time.sleep is not loop.time.sleep  # the process's own `time` is untouched
    assert supernode.cap_supernode_waits(2.0)
    t0 = time.monotonic()
    loop.time.sleep(0.5)  # a reply wait: its own memory, checked every 0.1 s
    assert time.monotonic() - t0 < 0.4


def test_supernode_poll_from_env(monkeypatch):
    monkeypatch.setenv(supernode.POLL_ENV, "0.25")
    assert supernode.poll_from_env() == 0.25
    monkeypatch.setenv(supernode.POLL_ENV, "10")
    with pytest.raises(ValueError):
        supernode.poll_from_env()


@pytest.mark.parametrize("polling", [FAST_POLLING, FLOWER_POLLING])
def test_superexec_interval_is_one_flower_accepts(monkeypatch, polling):
    from flwr.supercore.superexec import run_superexec

    monkeypatch.setenv("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", polling["FLWR_SUPEREXEC_TASK_POLL_INTERVAL"])
    assert run_superexec._get_task_poll_interval() == float(polling["FLWR_SUPEREXEC_TASK_POLL_INTERVAL"])


def test_local_deployment_sets_every_interval(tmp_path):
    node = tmp_path / "n"
    (node / "keys").mkdir(parents=True)
    (node / "keys" / "supernode_ec").write_text("")
    env = LocalDeployment([node], tmp_path / "w").env(tmp_path / "home")
    assert {k: env[k] for k in FAST_POLLING} == FAST_POLLING
    assert env["FLWR_DISABLE_UPDATE_CHECK"] == "1" and env["FLWR_TELEMETRY_ENABLED"] == "0"
    env = LocalDeployment([node], tmp_path / "w", flower_polling=True).env(tmp_path / "home")
    assert {k: env[k] for k in FLOWER_POLLING} == FLOWER_POLLING
    assert env["CAIRN_WARM_CLIENTAPP"]  # ClientApps forked warm unless warm_clientapp=False
    env = LocalDeployment([node], tmp_path / "w", warm_clientapp=False).env(tmp_path / "home")
    assert env["CAIRN_WARM_CLIENTAPP"] == ""



def test_warm_superexec_forks_flowers_own_clientapp_command(monkeypatch, tmp_path):
    """deploy/superexec.py starts a ClientApp task by forking, with exactly the argv Flower's subprocess
    executor would exec (Flower's own flwr-clientapp entry point then runs in the child)."""
    import json
    import os

    import flwr.supernode.cli as cli
    from flwr.supercore.constant import TaskType
    from flwr.supercore.superexec.executor import subprocess_executor as sub
    from flwr.supercore.superexec.executor.types import ExecutionSpec

    from deploy import superexec

    monkeypatch.setattr(sub.SubprocessExecutor, "launch", sub.SubprocessExecutor.launch)  # restored afterwards
    monkeypatch.setattr(sub.SubprocessExecutor, "reconcile", sub.SubprocessExecutor.reconcile)
    flower_argv = []
    monkeypatch.setattr(sub.subprocess, "Popen", lambda args, **kw: flower_argv.append(args))
    spec = ExecutionSpec(task_type=TaskType.CLIENT_APP, runtime_api_address="127.0.0.1:9", token="tok",
                         insecure=True, root_certificates_path=None, runtime_dependency_install=False,
                         parent_pid=os.getpid(), suppress_output=False, task_id=1)
    sub.SubprocessExecutor().launch(spec)

    out = tmp_path / "argv.json"
    part = tmp_path / "argv.part"
    monkeypatch.setattr(cli, "flwr_clientapp",
                        lambda: (part.write_text(json.dumps(__import__("sys").argv)), os.replace(part, out)))
    superexec.install_fork_launch()
    executor = sub.SubprocessExecutor()
    assert executor.launch(spec).status.name == "ACCEPTED"
    deadline = time.monotonic() + 20
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    executor.reconcile()  # reaps the child
    assert json.loads(out.read_text()) == flower_argv[0]


def test_warm_modules_from_env(monkeypatch):
    from deploy import superexec

    monkeypatch.delenv(superexec.WARM_ENV, raising=False)
    assert superexec.warm_modules() == []
    monkeypatch.setenv(superexec.WARM_ENV, "node.client_app, node.training")
    assert superexec.warm_modules() == ["node.client_app", "node.training"]

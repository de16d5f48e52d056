"""The Flower Deployment Engine on this machine: one SuperLink and one SuperNode per node directory,
TLS and SuperNode authentication on, every server on 127.0.0.1.

This is the same topology as a real federation (deploy/README.md), squeezed onto loopback: it is how
the end-to-end test runs, and a rehearsal for operators.

    python -m deploy.local --node-dir A --node-dir B --node-dir C --rounds 2 --out BUNDLE \
        [--workdir DIR] [--features hashed|minilm] [--secagg] [--run-config 'k=v' ...]

From Python (the test does this):

    with LocalDeployment([a, b, c], workdir) as dep:     # certs, SuperLink, keys registered, SuperNodes
        result = dep.run(rounds=2, out=bundle)           # `flwr run deploy/app`, waits for the end

What it does, in order:
1. a throwaway CA and a server certificate for 127.0.0.1/localhost (deploy/certs.py);
2. `flower-superlink` with `--ssl-*`, `--enable-supernode-auth` and
   `--disable-runtime-dependency-installation` (the apps are imported from this environment; nothing
   is installed at run time) on a free port, its state in memory (no `--database`: a rehearsal lives as
   long as its SuperLink; the SQLite file a production SuperLink keeps for restarts cost 1.3-2.4 more
   SuperLink CPU-seconds per secure round here, and 1.6-5.3 s of the round, issue 16);
3. a Flower config (`$FLWR_HOME/config.toml`, under the workdir, never ~/.flwr) naming that SuperLink
   and its CA, and `flwr supernode register DIR/keys/supernode_ec.pub` for every node;
4. `flower-supernode --root-certificates ca.crt --auth-supernode-private-key DIR/keys/supernode_ec
   --node-config 'node-dir="DIR"'` for every node, each with its own FLWR_HOME and Runtime API port
   (run as `python -m deploy.supernode`, Flower's SuperNode with its fixed 3 s idle wait capped);
5. `flwr run deploy/app cairn-local --run-config ...`, then polls `flwr list` until the run finishes;
6. stops every process it started (SIGTERM to each one's process group, then SIGKILL), also on error.

Every process gets FLWR_TELEMETRY_ENABLED=0, FLWR_DISABLE_UPDATE_CHECK=1 and offline Hugging Face settings.

Polling (issue 16: rounds in seconds). A message exchange on the Deployment Engine is paced by polls:
the coordinator's Grid pulls replies every 3 s (coordinator/polling.py: every <= 0.5 s instead), each
SuperNode pulls the SuperLink every 3 s when idle and checks its ClientApp's reply every 0.5 s
(deploy/supernode.py: 0.5 s idle, $CAIRN_SUPERNODE_POLL, and 0.1 s for the reply), and each
SuperExec (the SuperLink's, which starts the ServerApp, and every SuperNode's, which starts a
ClientApp process per message) polls for tasks every 1 s ($FLWR_SUPEREXEC_TASK_POLL_INTERVAL,
Flower's own setting: 0.25 s here). Shorter waits cost CPU on a small machine: idle, the loopback
deployment of 3 SuperNodes uses 0.07 cores with Flower's waits, 0.14 with these, 0.29 at 0.25 s
idle / 0.1 s SuperExec polls. `FAST_POLLING` holds these values; `LocalDeployment(..., flower_polling=True)` (or
`--flower-polling`) runs with Flower's own waits instead, to measure what they cost.
Every message also starts a ClientApp process: here each is forked from a SuperExec that imported the
ClientApp and torch once (`WARM_CLIENTAPP`, deploy/superexec.py); `warm_clientapp=False`
(`--cold-clientapp`) starts a fresh `flwr-clientapp` per message, as Flower does.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from deploy.certs import CertPaths, generate
from model.presets import PRESETS, preset_config

DEPLOY_DIR = Path(__file__).resolve().parent
# Every interval Flower lets a deployment set, plus the two waits deploy/supernode.py and
# coordinator/polling.py shorten (see the module docstring). Flower's heartbeat (30 s) is a constant.
FAST_POLLING = {
    "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.25",  # Flower: 1 s (SuperExec: new ServerApp / ClientApp tasks)
    "CAIRN_SUPERNODE_POLL": "0.5",                 # Flower: 3 s idle (reply waits 0.5 s -> 0.1 s; deploy/supernode.py)
    "CAIRN_GRID_PULL_INTERVAL": "0.5",            # Flower: 3 s (the ServerApp's Grid; coordinator/polling.py)
}
# ClientApp processes forked from a SuperExec that imported these once (deploy/superexec.py), instead of
# a fresh interpreter importing Flower, the ClientApp and torch for every message.
WARM_CLIENTAPP = {"CAIRN_WARM_CLIENTAPP": "node.client_app,node.releases,node.training,opacus"}
FLOWER_POLLING = {  # Flower's own waits: what a deployment gets without any of the above
    "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "1.0",
    "CAIRN_SUPERNODE_POLL": "3.0",
    "CAIRN_GRID_PULL_INTERVAL": "3.0",
}
APP_DIR = DEPLOY_DIR / "app"
CONNECTION = "cairn-local"


class DeploymentError(RuntimeError):
    """The loopback deployment could not start or finish (the message says which process and why)."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _toml_str(s: str) -> str:
    return json.dumps(str(s))  # a JSON string is a valid TOML basic string


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _json_from(out: str) -> dict:
    """The JSON object a `flwr ... --format json` command printed (it may print notices first)."""
    start = out.find("{")
    if start < 0:
        raise ValueError(f"no JSON in output: {out[-2000:]}")
    return json.JSONDecoder().raw_decode(out[start:])[0]


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid` (Linux /proc; [] where unavailable)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


@dataclass
class Proc:
    """A server process this deployment started, in its own process group."""

    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def group_alive(self) -> list[int]:
        """Processes still running in this server's process group (it and what it spawned)."""
        return group_members(self.popen.pid)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM to the process group (the server and the SuperExec/app processes it spawned),
        then SIGKILL after `grace` seconds. Returns the exit code."""
        pgid = self.popen.pid  # start_new_session=True: the group id is the server's pid
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # What the server spawned (SuperExec, ServerApp/ClientApp processes) is in the same group and
        # may outlive it, or even be spawned while it shuts down: SIGKILL the group until it stays empty.
        deadline, quiet = time.monotonic() + 10.0, 0
        while time.monotonic() < deadline and quiet < 3:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            time.sleep(0.1)
            quiet = 0 if self.group_alive() else quiet + 1
        return self.popen.returncode


@dataclass
class RunResult:
    """The outcome of one `flwr run` on the loopback deployment."""

    run_id: str
    status: str
    wall_s: float
    out: Path
    log: Path
    details: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "finished:completed"


class LocalDeployment:
    """SuperLink + one SuperNode per node directory on loopback, TLS and SuperNode auth on.

    Use as a context manager; `stop()` (also on exceptions) stops every process it started."""

    def __init__(
        self,
        node_dirs: list[Path | str],
        workdir: Path | str,
        *,
        app_dir: Path | str = APP_DIR,
        bin_dir: Path | str | None = None,
        env: dict[str, str] | None = None,
        ready_timeout: float = 60.0,
        flower_polling: bool = False,
        warm_clientapp: bool = True,
    ):
        self.node_dirs = [Path(d).resolve() for d in node_dirs]
        for d in self.node_dirs:
            if not (d / "keys" / "supernode_ec").is_file():
                raise DeploymentError(f"{d}: no keys/supernode_ec (create the node with `cairn node init`)")
        self.workdir = Path(workdir).resolve()
        self.app_dir = Path(app_dir).resolve()
        # The venv's bin: flower-superlink, flower-supernode, flwr, and the flwr-serverapp /
        # flwr-clientapp / flower-superexec executables the servers spawn.
        self.bin_dir = Path(bin_dir) if bin_dir else Path(sys.executable).parent
        self.polling = dict(FLOWER_POLLING if flower_polling else FAST_POLLING)
        self.polling.update(WARM_CLIENTAPP if warm_clientapp else {"CAIRN_WARM_CLIENTAPP": ""})
        self.extra_env = dict(env or {})
        self.ready_timeout = ready_timeout
        self.logs = self.workdir / "logs"
        self.certs: CertPaths | None = None
        self.port: int | None = None
        self.superlink: Proc | None = None
        self.supernodes: dict[Path, Proc] = {}
        self._key_files: dict[str, object] = {}  # SuperNode name -> unsealed key file (node/keys.py), until it connects
        self.registered: dict[Path, str] = {}  # node dir -> Flower node id
        self._procs: list[Proc] = []
        self._submitted = 0
        self.killed: set[Path] = set()  # node dirs whose SuperNode kill_supernode() killed (a dropout)

    # --- environment -------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def cli_home(self) -> Path:
        return self.workdir / "flwr-cli"

    def env(self, flwr_home: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLWR_")}
        env.update({
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_HOME": str(flwr_home),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            "FLWR_DISABLE_UPDATE_CHECK": "1",  # no call to Flower's update service (nothing leaves but the federation)
            **self.polling,
        })
        env.update(self.extra_env)
        return env

    def _exe(self, name: str) -> str:
        exe = self.bin_dir / name
        if not exe.exists():
            raise DeploymentError(f"{exe} not found (is flwr installed in this environment?)")
        return str(exe)

    def _spawn(self, name: str, argv: list[str], flwr_home: Path) -> Proc:
        flwr_home.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.log"
        with open(log, "ab") as f:
            f.write(f"$ {shlex.join(argv)}\n".encode())
            f.flush()
            popen = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=self.env(flwr_home), cwd=flwr_home, start_new_session=True)
        proc = Proc(name, popen, log)
        self._procs.append(proc)
        return proc

    def flwr(self, *args: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess:
        """Run the `flwr` CLI against this deployment's Flower config."""
        argv = [self._exe("flwr"), *args]
        cp = subprocess.run(argv, capture_output=True, text=True, env=self.env(self.cli_home), cwd=self.workdir,
                            timeout=timeout, stdin=subprocess.DEVNULL)
        if check and cp.returncode != 0:
            raise DeploymentError(f"{shlex.join(argv)} failed ({cp.returncode}):\n{cp.stdout[-3000:]}\n{cp.stderr[-3000:]}")
        return cp

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> "LocalDeployment":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.certs = CertPaths.under(self.workdir / "certs")
        if not self.certs.exist():
            self.certs = generate(self.workdir / "certs")
        self.start_superlink()
        self.write_flower_config()
        for d in self.node_dirs:
            self.register(d)
        for d in self.node_dirs:
            self.start_supernode(d)
        for d in self.node_dirs:
            self.wait_supernode(self.supernodes[d])

    def start_superlink(self) -> Proc:
        assert self.certs is not None
        self.port = free_port()
        argv = [
            self._exe("flower-superlink"),
            "--ssl-ca-certfile", str(self.certs.ca_cert),
            "--ssl-certfile", str(self.certs.server_cert),
            "--ssl-keyfile", str(self.certs.server_key),
            "--enable-supernode-auth",
            "--disable-runtime-dependency-installation",
            "--host", "127.0.0.1", "--port", str(self.port),
        ]
        self.superlink = self._spawn("superlink", argv, self.workdir / "superlink")
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if not self.superlink.alive():
                raise DeploymentError(f"SuperLink exited ({self.superlink.popen.returncode}):\n{_tail(self.superlink.log)}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    if "Uvicorn running" in self.superlink.log.read_text(errors="replace"):
                        return self.superlink
            except OSError:
                pass
            time.sleep(0.2)
        raise DeploymentError(f"SuperLink not listening on {self.address} after {self.ready_timeout}s:\n{_tail(self.superlink.log)}")

    def write_flower_config(self) -> Path:
        """The `flwr` CLI's SuperLink connection (Flower 1.41+ reads it from $FLWR_HOME/config.toml)."""
        assert self.certs is not None
        self.cli_home.mkdir(parents=True, exist_ok=True)
        path = self.cli_home / "config.toml"
        path.write_text(
            "[superlink]\n"
            f"default = {_toml_str(CONNECTION)}\n\n"
            f"[superlink.{CONNECTION}]\n"
            f"address = {_toml_str(self.address)}\n"
            f"root-certificates = {_toml_str(self.certs.ca_cert)}\n",
            encoding="utf-8",
        )
        return path

    def register(self, node_dir: Path | str, public_key: Path | None = None) -> str:
        """`flwr supernode register DIR/keys/supernode_ec.pub`: returns the Flower node id."""
        node_dir = Path(node_dir).resolve()
        pub = public_key or node_dir / "keys" / "supernode_ec.pub"
        cp = self.flwr("supernode", "register", str(pub), CONNECTION, "--format", "json")
        res = _json_from(cp.stdout)
        if not res.get("success"):
            raise DeploymentError(f"registering {pub} failed: {res}")
        self.registered[node_dir] = str(res["node-id"])
        return self.registered[node_dir]

    def start_supernode(self, node_dir: Path | str, private_key: Path | None = None, name: str | None = None) -> Proc:
        assert self.certs is not None and self.port is not None
        node_dir = Path(node_dir).resolve()
        name = name or f"supernode-{node_dir.name}"
        argv = [
            self._exe("python"), "-m", "deploy.supernode",  # flower-supernode, its polling waits capped
            "--superlink", self.address,
            "--root-certificates", str(self.certs.ca_cert),
            "--auth-supernode-private-key", str(private_key or self._unsealed_key(node_dir, name)),
            "--node-config", f"node-dir={_toml_str(node_dir)}",
            "--host", "127.0.0.1", "--port", str(free_port()),
        ]
        proc = self._spawn(name, argv, self.workdir / name)
        self.supernodes[node_dir] = proc
        return proc

    def _unsealed_key(self, node_dir: Path, name: str) -> Path:
        """The node's SuperNode key as a plain file (a passphrase node's is sealed: a 0600 copy that
        `wait_supernode` or `stop` removes once the SuperNode has read it; node/node_dir.py)."""
        from node.keys import SUPERNODE_KEY, is_sealed
        from node.node_dir import NodeDir

        if not is_sealed(node_dir / "keys" / SUPERNODE_KEY):
            return node_dir / "keys" / SUPERNODE_KEY
        ctx = NodeDir(node_dir).supernode_key_file()
        path = ctx.__enter__()
        self._key_files[name] = ctx
        return path

    def _drop_key_file(self, name: str) -> None:
        ctx = self._key_files.pop(name, None)
        if ctx is not None:
            ctx.__exit__(None, None, None)  # type: ignore[attr-defined]

    def wait_supernode(self, proc: Proc, timeout: float | None = None) -> str:
        """Wait until the SuperNode has activated with the SuperLink; returns its Flower node id."""
        deadline = time.monotonic() + (timeout or self.ready_timeout)
        while time.monotonic() < deadline:
            m = re.search(r"SuperNode ID: (\d+)", proc.log.read_text(errors="replace"))
            if m:
                self._drop_key_file(proc.name)  # authenticated: the key is in its memory now
                return m.group(1)
            if not proc.alive():
                raise DeploymentError(f"{proc.name} exited ({proc.popen.returncode}):\n{_tail(proc.log)}")
            time.sleep(0.2)
        raise DeploymentError(f"{proc.name} did not connect within {timeout or self.ready_timeout}s:\n{_tail(proc.log)}")

    def kill_supernode(self, node_dir: Path | str) -> int:
        """A community dropping out: SIGKILL its SuperNode's process group (the SuperNode, its SuperExec
        and any ClientApp running), with no goodbye to the SuperLink. A run then goes on without it
        (`wait` no longer treats its death as the deployment's failure). Returns the SuperNode's pid."""
        node_dir = Path(node_dir).resolve()
        proc = self.supernodes[node_dir]
        self.killed.add(node_dir)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.popen.wait(timeout=10)
        return proc.pid

    def stop(self) -> None:
        """Stop every process this deployment started: SuperNodes first, then the SuperLink."""
        for proc in reversed(self._procs):
            proc.stop()
        for name in list(self._key_files):
            self._drop_key_file(name)

    # --- runs --------------------------------------------------------------------------------

    def submit(self, run_config: dict) -> str:
        """`flwr run APP cairn-local --run-config FILE.toml`: returns the run id.

        The overrides go through a TOML file: values such as the featurizer's JSON survive intact."""
        args = ["run", str(self.app_dir), CONNECTION, "--format", "json"]
        if run_config:
            self._submitted += 1
            cfg = self.workdir / f"run-config-{self._submitted}.toml"
            cfg.write_text("".join(f"{k} = {_toml_value(v)}\n" for k, v in run_config.items()), encoding="utf-8")
            args += ["--run-config", str(cfg)]
        cp = self.flwr(*args)
        res = _json_from(cp.stdout)
        if not res.get("success") or not res.get("run-id"):
            raise DeploymentError(f"flwr run failed: {res}\n{cp.stderr[-2000:]}")
        return str(res["run-id"])

    def run_status(self, run_id: str) -> dict:
        cp = self.flwr("list", CONNECTION, "--run-id", run_id, "--format", "json")
        runs = _json_from(cp.stdout).get("runs", [])
        for r in runs:
            if str(r.get("run-id")) == str(run_id):
                return r
        raise DeploymentError(f"run {run_id} not listed by the SuperLink: {runs}")

    def _check_servers(self, run_id: str) -> None:
        for p in [self.superlink, *(self.supernodes[d] for d in self.node_dirs
                                    if d in self.supernodes and d not in self.killed)]:
            if p is not None and not p.alive():
                raise DeploymentError(f"{p.name} died during run {run_id} ({p.popen.returncode}):\n{_tail(p.log)}")

    def wait(self, run_id: str, timeout: float = 600.0, poll: float = 30.0) -> dict:
        """Wait for the run to finish; returns its `flwr list` entry. The run's log streams into
        logs/run-ID.log (`flwr log --stream`, which ends with the run); `flwr list` is asked when the
        stream ends, and otherwise only every `poll` seconds as a fallback: each CLI call is a Python
        start-up importing Flower, and at a 10 s fallback these calls cost 2 CPU-seconds per round on a
        busy machine (bench/deployment.py's CPU split by process)."""
        streamer = self._spawn(f"run-{run_id}", [self._exe("flwr"), "log", run_id, CONNECTION, "--stream"], self.cli_home)
        try:
            deadline = time.monotonic() + timeout
            next_poll = time.monotonic() + poll
            while True:
                if not streamer.alive() or time.monotonic() >= next_poll:
                    st = self.run_status(run_id)
                    if str(st.get("status", "")).startswith("finished"):
                        return st
                    next_poll = time.monotonic() + (3.0 if not streamer.alive() else poll)
                self._check_servers(run_id)
                if time.monotonic() > deadline:
                    raise DeploymentError(f"run {run_id} not finished after {timeout}s:\n{_tail(streamer.log)}")
                time.sleep(0.5)
        finally:
            streamer.stop(grace=2.0)

    def run_app(self, run_config: dict, timeout: float = 600.0) -> RunResult:
        """Submit the app with these run-config overrides, wait for the end (the run's log is in
        logs/run-ID.log). Raises DeploymentError unless the run completes."""
        t0 = time.monotonic()
        run_id = self.submit(run_config)
        status = self.wait(run_id, timeout=timeout)
        wall = time.monotonic() - t0
        log = self.logs / f"run-{run_id}.log"
        result = RunResult(run_id, str(status.get("status")), wall, Path(str(run_config.get("out", ""))), log, status)
        if not result.ok:
            raise DeploymentError(f"run {run_id} ended {result.status}: {status.get('status-details')}\n{_tail(log, 80)}")
        return result

    def run(
        self,
        rounds: int,
        out: Path | str,
        *,
        featurizer: dict | None = None,
        timeout: float = 600.0,
        **config,
    ) -> RunResult:
        """Run the Cairn federation (deploy/app) for `rounds` rounds; the coordinator writes the bundle
        to `out`. Extra keyword arguments are run-config values of deploy/app/pyproject.toml
        (`local_steps=5` becomes `local-steps = 5`)."""
        run_config = {
            "out": str(Path(out).resolve()),
            "rounds": int(rounds),
            "min-nodes": len(self.node_dirs),
            "featurizer": json.dumps(featurizer or preset_config("hashed")),
            **{k.replace("_", "-"): v for k, v in config.items()},
        }
        return self.run_app(run_config, timeout=timeout)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return _toml_str(v)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deploy.local", description="Run a Cairn federation on the Flower "
                                "Deployment Engine on this machine (SuperLink + SuperNodes on loopback, TLS and auth on).")
    p.add_argument("--node-dir", dest="node_dirs", action="append", required=True, type=Path,
                   help="a node directory from `cairn node init` (repeat for each community)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", type=Path, required=True, help="bundle directory the coordinator writes")
    p.add_argument("--workdir", type=Path, help="certs, Flower homes, SuperLink state and logs (default: a temp dir)")
    p.add_argument("--features", choices=sorted(PRESETS), default="hashed")
    p.add_argument("--secagg", action="store_true", help="secure aggregation (SecAgg+)")
    p.add_argument("--run-config", action="append", default=[], metavar="K=V",
                   help="further run-config values (TOML), e.g. 'local-steps=10' 'epsilon=3.0'")
    p.add_argument("--timeout", type=float, default=1800.0)
    p.add_argument("--flower-polling", action="store_true",
                   help="Flower's own polling waits (3 s idle SuperNode, 3 s Grid pulls, 1 s SuperExec), to compare")
    p.add_argument("--cold-clientapp", action="store_true",
                   help="a fresh flwr-clientapp process per message (Flower's default) instead of forks of a warm one")
    a = p.parse_args(argv)

    extra: dict = {}
    for item in a.run_config:
        import tomllib

        extra.update(tomllib.loads(item))
    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="cairn-deploy-"))
    t0 = time.monotonic()
    with LocalDeployment(a.node_dirs, workdir, flower_polling=a.flower_polling, warm_clientapp=not a.cold_clientapp) as dep:
        up = time.monotonic() - t0
        print(f"SuperLink {dep.address} (TLS, SuperNode auth); {len(dep.supernodes)} SuperNodes up in {up:.1f}s; "
              f"logs in {dep.logs}", flush=True)
        res = dep.run(a.rounds, a.out, featurizer=preset_config(a.features), secagg=a.secagg, timeout=a.timeout, **extra)
    print(f"run {res.run_id}: {res.status} in {res.wall_s:.1f}s for {a.rounds} round(s), the run's fixed costs "
          f"(ServerApp start, hello, ledger collection) included; bundle: {res.out}; log: {res.log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

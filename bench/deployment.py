"""Rounds on the Flower Deployment Engine (issue 16 item 2): seconds per round on loopback.

    python bench/deployment.py [--contributors 200] [--communities 3] [--flower-polling] [--no-secagg]

Exactly the issue's measurement: `python -m deploy.local` (a SuperLink and one SuperNode per
community on 127.0.0.1, TLS and SuperNode authentication on, default options: hashed features, 100
local steps) with 3 synthetic communities of 200 members (`cairn node synth`), run once for 1 round
and once for 3 rounds, each on fresh copies of the same node directories; seconds per round =
(time of 3 rounds - time of 1 round) / 2, which cancels the fixed costs (start-up, ServerApp start,
hello, budgets, publication). Both the whole command's wall time and the run's own time (submit to
finish, as `deploy.local` prints it) are shown, with and without secure aggregation (SecAgg+), and
with `--flower-polling` also under Flower's own polling waits (3 s idle SuperNode, 3 s Grid pulls,
1 s SuperExec) side by side, so the ratio is what the polling costs. Messages per round per node
come from the SuperNodes' logs; CPU seconds per round are those of the deployment's whole process
tree (SuperLink, SuperNodes, SuperExecs, ServerApp, every ClientApp), sampled from /proc, which other
work on the machine does not inflate: on an idle machine with C cores a round cannot take less than
CPU / C seconds. `--exchanges N` adds a table of N no-op exchanges (the smoke app's ping) under both
pollings: the price of one exchange with nothing to do.

A second table: what starting a ClientApp process costs (every message starts one): importing the
ClientApp alone (what hello, budget, SecAgg+ and ledger handlers load) against the ClientApp plus
the training code (torch, Opacus), wall time and peak memory, medians of alternating runs.

Targets (issue 16): <= 8 s per round without secure aggregation, <= 12 s with it. The machine's load
average is printed: absolute times on a shared machine move with it, ratios much less.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
TARGETS = {False: 8.0, True: 12.0}


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def make_nodes(root: Path, communities: int, contributors: int) -> list[Path]:
    """Node directories with `contributors` synthetic members each (rule over text properties: no featurizer)."""
    dirs = []
    for i in range(communities):
        d = root / f"community-{i}"
        for args in (["node", "init", str(d), "--name", f"community-{i}"],
                     ["node", "synth", str(d), "--contributors", str(contributors), "--rule-space", "text",
                      "--community-seed", str(i)]):
            cp = subprocess.run([str(BIN / "cairn"), *args], capture_output=True, text=True, env=ENV, timeout=600)
            if cp.returncode != 0:
                raise SystemExit(f"cairn {' '.join(args)} failed:\n{cp.stdout}\n{cp.stderr}")
        dirs.append(d)
    return dirs


TICK = os.sysconf("SC_CLK_TCK")


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds so far) for every live process (Linux /proc)."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            f = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        out[int(stat.parent.name)] = (int(f[1]), (int(f[11]) + int(f[12])) / TICK)
    return out


def run_sampling_cpu(argv: list[str], interval: float = 0.25, **kw) -> tuple[subprocess.CompletedProcess, float, dict]:
    """Run `argv`; also return the CPU seconds its whole process tree used (SuperLink, SuperNodes, SuperExecs,
    every ServerApp and ClientApp process), sampled from /proc every `interval` s: a process's CPU after its
    last sample is lost, so this slightly under-counts; it does not move with other work on the machine.
    The third value splits the CPU seconds by part of the deployment (`_kind`)."""
    import threading

    cpu: dict[int, float] = {}
    kinds: dict[int, str] = {}
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw) as proc:
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                table = _proc_table()
                tree, grew = {proc.pid}, True
                while grew:
                    new = {pid for pid, (ppid, _) in table.items() if ppid in tree and pid not in tree}
                    tree |= new
                    grew = bool(new)
                for pid in tree:
                    if pid in table:
                        cpu[pid] = max(cpu.get(pid, 0.0), table[pid][1])
                        if pid not in kinds:
                            kinds[pid] = _kind(pid)
                done.wait(interval)

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        out, err = proc.communicate()
        done.set()
        t.join()
    by_kind: dict[str, float] = {}
    for pid, sec in cpu.items():
        by_kind[kinds.get(pid, "other")] = by_kind.get(kinds.get(pid, "other"), 0.0) + sec
    return subprocess.CompletedProcess(argv, proc.returncode, out, err), sum(cpu.values()), by_kind


def _kind(pid: int) -> str:
    """Which part of the deployment a process is, from its command line (a forked ClientApp keeps its
    SuperExec's command line, so ClientApps count under the SuperExec that forked them)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "other"
    for key, name in (("flower-superlink", "SuperLink"), ("supernode", "SuperNodes"), ("flwr-serverapp", "ServerApp"),
                      ("serverapp", "ServerApp SuperExec"), ("superexec", "ClientApp SuperExecs and their ClientApps"),
                      ("flwr-clientapp", "ClientApps (cold)"), ("deploy.local", "deploy.local driver"),
                      ("flwr ", "flwr CLI")):
        if key in cmd:
            return name
    return "other"


def deploy_once(template: list[Path], work: Path, rounds: int, secagg: bool, flower_polling: bool, cold: bool = False) -> dict:
    """One `python -m deploy.local` on fresh copies of the template nodes: wall, run time, messages per node."""
    work.mkdir(parents=True)
    nodes = [shutil.copytree(d, work / "nodes" / d.name) for d in template]
    argv = [sys.executable, "-m", "deploy.local", *sum((["--node-dir", str(d)] for d in nodes), []),
            "--rounds", str(rounds), "--out", str(work / "bundle"), "--workdir", str(work / "deploy")]
    argv += ["--secagg"] if secagg else []
    argv += ["--flower-polling"] if flower_polling else []
    argv += ["--cold-clientapp"] if cold else []
    t0 = time.monotonic()
    cp, cpu, by_kind = run_sampling_cpu(argv, env=ENV, cwd=ROOT)
    wall = time.monotonic() - t0
    if cp.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({cp.returncode}):\n{cp.stdout[-3000:]}\n{cp.stderr[-3000:]}")
    m = re.search(r"finished:completed in ([\d.]+)s", cp.stdout)
    logs = sorted((work / "deploy" / "logs").glob("supernode-*.log"))
    received = [_round_messages(p.read_text(errors="replace")) for p in logs]
    ends = []  # when the ServerApp logged each round's end: the gaps are whole rounds, measured within one run
    for p in (work / "deploy" / "logs").glob("run-*.log"):
        for line in p.read_text(errors="replace").splitlines():
            if (r := re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d+) cairn\.coordinator INFO round \d+: ", line)):
                ends.append(time.mktime(time.strptime(r.group(1), "%Y-%m-%d %H:%M:%S")) + int(r.group(2)) / 1000)
    gaps = [b - a for a, b in zip(ends, ends[1:])]
    return {"wall": wall, "run": float(m.group(1)) if m else float("nan"), "messages": max(received, default=0),
            "cpu": cpu, "cpu_by_kind": by_kind,
            "rounds": rounds, "gaps": gaps}


def _round_messages(log: str) -> int:
    """Messages a SuperNode received for training rounds (group ids round-N: train; secagg-N: the SecAgg+ stages)."""
    n, group = 0, ""
    for line in log.splitlines():
        if (g := re.search(r"ROUND (\S+)\]", line)) is not None:
            group = g.group(1)
        elif "Receiving: " in line and group.startswith(("round-", "secagg-")):
            n += 1
    return n


def import_cost(module_sets: dict[str, str], reps: int) -> dict[str, tuple[float, float]]:
    """Median wall seconds and peak RSS (MB) of a fresh interpreter importing each set, runs alternating."""
    code = ("import resource, sys, time; t = time.perf_counter(); import {mods}; "
            "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "
            "'torch' in sys.modules, 'opacus' in sys.modules)")
    samples: dict[str, list[tuple[float, float, str]]] = {k: [] for k in module_sets}
    for _ in range(reps):
        for name, mods in module_sets.items():
            out = subprocess.run([sys.executable, "-c", code.format(mods=mods)], capture_output=True, text=True,
                                 env=ENV, cwd=ROOT, check=True).stdout.split()
            samples[name].append((float(out[0]), float(out[1]), f"torch {out[2]}, opacus {out[3]}"))
    return {k: (statistics.median(s[0] for s in v), statistics.median(s[1] for s in v), v[-1][2])
            for k, v in samples.items()}


def exchange_cost(template: list[Path], work: Path, flower_polling: bool, rounds: int) -> list[float]:
    """Seconds of each no-op exchange (the smoke app's ping to every node, a ClientApp process started per
    node, nothing else) on one deployment, as its ServerApp times them."""
    from deploy.local import DEPLOY_DIR, LocalDeployment

    out = work / "smoke.json"
    with LocalDeployment(template, work / "deploy", app_dir=DEPLOY_DIR / "smoke", flower_polling=flower_polling) as dep:
        dep.run_app({"out": str(out), "min-nodes": len(template), "rounds": rounds,
                     "pull-interval": 0.0 if flower_polling else 0.1}, timeout=900)
    return [r["seconds"] for r in json.loads(out.read_text())["rounds"]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--communities", type=int, default=3)
    p.add_argument("--contributors", type=int, default=200)
    p.add_argument("--flower-polling", action="store_true", help="also run under Flower's own polling waits")
    p.add_argument("--no-secagg", action="store_true", help="only without secure aggregation")
    p.add_argument("--only-secagg", action="store_true", help="only with secure aggregation")
    p.add_argument("--cold-clientapp", action="store_true",
                   help="a fresh flwr-clientapp process per message, as Flower does (default: forked warm, deploy/superexec.py)")
    p.add_argument("--import-reps", type=int, default=3)
    p.add_argument("--exchanges", type=int, default=0, metavar="N",
                   help="also time N no-op exchanges (smoke app) under tuned and Flower's polling")
    p.add_argument("--exchanges-only", action="store_true", help="only the no-op exchange table")
    p.add_argument("--workdir", type=Path, help="default: a temporary directory, removed at the end")
    p.add_argument("--json", type=Path, help="also write the figures here")
    a = p.parse_args(argv)

    root = a.workdir or Path(tempfile.mkdtemp(prefix="cairn-bench-deploy-"))
    try:
        print(f"load average before: {load()}  ({os.cpu_count()} CPUs)", flush=True)
        imports = import_cost({
            "Flower's ClientApp API alone": "flwr.clientapp, flwr.app",
            "ClientApp module (SecAgg+ stages)": "node.client_app",
            "+ ledger and gate (hello, budget, ledger)": "node.client_app, node.releases",
            "+ training (train)": "node.client_app, node.releases, node.training",
        }, a.import_reps)
        print("\nStarting a ClientApp process (every message starts one): import cost, median of "
              f"{a.import_reps} alternating runs")
        print(f"{'imports':<44} {'seconds':>8} {'peak MB':>8}  loaded")
        for name, (sec, mb, what) in imports.items():
            print(f"{name:<44} {sec:8.2f} {mb:8.0f}  {what}")

        template = make_nodes(root / "template", a.communities, a.contributors)
        if a.exchanges or a.exchanges_only:
            n = a.exchanges or 6
            times = {fp: exchange_cost(template, root / f"smoke-f{int(fp)}", fp, n) for fp in (False, True)}
            print(f"\nOne no-op exchange (smoke app: ping every node, one ClientApp process each), {n} in a row, "
                  "as the ServerApp times them (the first includes the SuperNodes' first contact)")
            for fp, t in times.items():
                print(f"{'Flower polling' if fp else 'tuned polling':<15} median {statistics.median(t[1:] or t):5.2f}s  "
                      f"all: {' '.join(f'{x:.2f}' for x in t)}")
            if a.exchanges_only:
                return 0
        modes = [(s, fp) for fp in ([False, True] if a.flower_polling else [False])
                 for s in ([False] if a.no_secagg else [True] if a.only_secagg else [False, True])]
        results = {}
        for secagg, fp in modes:
            one = deploy_once(template, root / f"r1-s{int(secagg)}-f{int(fp)}", 1, secagg, fp, a.cold_clientapp)
            three = deploy_once(template, root / f"r3-s{int(secagg)}-f{int(fp)}", 3, secagg, fp, a.cold_clientapp)
            results[(secagg, fp)] = (one, three)
            print(f"  done: secagg={secagg} flower-polling={fp}: 1 round {one['wall']:.1f}s, 3 rounds {three['wall']:.1f}s "
                  f"(load {load()})", flush=True)

        print(f"\nDeployment Engine on loopback, TLS + SuperNode auth, {a.communities} communities x "
              f"{a.contributors} members, default options; per round = (3 rounds - 1 round) / 2; ClientApp processes "
              f"{'cold (one fresh process per message)' if a.cold_clientapp else 'forked warm (deploy/superexec.py)'}")
        head = (f"{'secagg':<7} {'polling':<8} {'1 round s':>10} {'3 rounds s':>11} {'per round s':>12} "
                f"{'(run only)':>11} {'round gaps s':>13} {'CPU s/round':>12} {'msgs/round':>11} {'target':>7}  ok")
        print(head)
        print("-" * len(head))
        rows = []
        for (secagg, fp), (one, three) in results.items():
            per = (three["wall"] - one["wall"]) / 2
            per_run = (three["run"] - one["run"]) / 2
            msgs = three["messages"] / 3
            cpu = (three["cpu"] - one["cpu"]) / 2
            gaps = "/".join(f"{g:.0f}" for g in three["gaps"]) or "-"
            target = TARGETS[secagg]
            ok = per <= target and all(g <= target for g in three["gaps"])  # both: load moves between the two runs
            rows.append({"secagg": secagg, "flower_polling": fp, "one": one, "three": three, "per_round": per,
                         "per_round_run": per_run, "cpu_per_round": cpu, "messages_per_round": msgs, "target": target})
            print(f"{'yes' if secagg else 'no':<7} {'Flower' if fp else 'tuned':<8} {one['wall']:10.1f} {three['wall']:11.1f} "
                  f"{per:12.1f} {per_run:11.1f} {gaps:>13} {cpu:12.1f} {msgs:11.1f} {target:7.0f}  {'yes' if ok else 'NO'}")
        for (secagg, fp), (one, three) in results.items():
            per_kind = {k: (three["cpu_by_kind"].get(k, 0.0) - one["cpu_by_kind"].get(k, 0.0)) / 2
                        for k in set(one["cpu_by_kind"]) | set(three["cpu_by_kind"])}
            print(f"CPU s per round by process, secagg {'yes' if secagg else 'no'}, {'Flower' if fp else 'tuned'} polling: "
                  + ", ".join(f"{k} {v:.1f}" for k, v in sorted(per_kind.items(), key=lambda kv: -kv[1])))
        if a.flower_polling:
            parts = []
            for s in sorted({s for s, _ in results}):
                flower, tuned = ((results[(s, fp)][1]["wall"] - results[(s, fp)][0]["wall"]) / 2 for fp in (True, False))
                parts.append(f"{'secagg' if s else 'plain'} {flower:.1f}/{tuned:.1f} = {flower / max(tuned, 1e-9):.2f}x")
            print("\nper round, Flower's polling / tuned:", ", ".join(parts))
        print(f"\nload average after: {load()}")
        if a.json:
            a.json.write_text(json.dumps({"imports": imports, "rounds": rows, "load": load()}, indent=1, default=str))
    finally:
        if a.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`flower-superexec` whose ClientApp processes start warm: `python -m deploy.superexec ARGS...`.

Flower starts one fresh `flwr-clientapp` process per message: a Python start, Flower's imports and
the ClientApp's (with torch for training) every time, seconds of CPU per message per node on a small
machine. With `$CAIRN_WARM_CLIENTAPP` set to a comma list of modules (e.g.
`node.client_app,node.training`), this SuperExec imports them once and starts each ClientApp task by
`os.fork()` of itself, the child running Flower's own `flwr-clientapp` entry point with exactly the
arguments Flower's subprocess executor would pass (same token, same Runtime API, same isolation from
the SuperNode's process). Everything else is Flower's `flower-superexec`. Unset or empty: Flower's
subprocess executor, unchanged.

Fork after import only: the parent never runs a ClientApp, opens no store and starts no torch
thread pool, so each child starts from a clean, imported state (copy-on-write memory). Linux/macOS
only (os.fork). deploy/supernode.py starts this instead of `flower-superexec` when the variable is set.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

WARM_ENV = "CAIRN_WARM_CLIENTAPP"


def warm_modules() -> list[str]:
    """The modules $CAIRN_WARM_CLIENTAPP names ([] when unset)."""
    return [m.strip() for m in os.environ.get(WARM_ENV, "").split(",") if m.strip()]


def _child(argv: list[str], quiet: bool) -> None:
    """In the forked child: run Flower's flwr-clientapp entry point with `argv`, then exit."""
    code = 1
    try:
        from flwr.supercore.exit import exit_handler

        exit_handler.registered_exit_handlers[:] = []  # the parent's (its Runtime API client) are not ours
        if quiet:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
        sys.argv = argv
        from flwr.supernode.cli import flwr_clientapp

        flwr_clientapp()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - report and exit: a child must never return into the parent's loop
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def install_fork_launch() -> None:
    """Replace Flower's subprocess executor's launch of ClientApp tasks with a fork of this process."""
    from flwr.supercore.constant import TASK_TYPE_TO_APPIO_API_ADDRESS_ARG, TASK_TYPE_TO_COMMAND, TaskType
    from flwr.supercore.superexec.executor import subprocess_executor as sub
    from flwr.supercore.superexec.executor.types import LaunchResult

    flower_launch = sub.SubprocessExecutor.launch
    flower_reconcile = sub.SubprocessExecutor.reconcile
    children: set[int] = set()

    def launch(self, spec):
        if spec.task_type != TaskType.CLIENT_APP:
            return flower_launch(self, spec)
        argv = [TASK_TYPE_TO_COMMAND[spec.task_type], TASK_TYPE_TO_APPIO_API_ADDRESS_ARG[spec.task_type],
                spec.runtime_api_address, "--token", spec.token]
        if spec.insecure:
            argv.append("--insecure")
        elif spec.root_certificates_path is not None:
            argv += ["--root-certificates", spec.root_certificates_path]
        if spec.parent_pid is not None:
            argv += ["--parent-pid", str(spec.parent_pid)]
        if spec.runtime_dependency_install:
            argv.append("--allow-runtime-dependency-installation")
        pid = os.fork()
        if pid == 0:
            _child(argv, bool(spec.suppress_output))
        children.add(pid)
        return LaunchResult.accepted()

    def reconcile(self):
        for pid in list(children):  # reap finished ClientApps (no zombies)
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                children.discard(pid)
        return flower_reconcile(self)

    sub.SubprocessExecutor.launch = launch
    sub.SubprocessExecutor.reconcile = reconcile


def main() -> int:
    modules = warm_modules()
    if modules:
        for m in modules:
            importlib.import_module(m)
        install_fork_launch()
    from flwr.supercore.cli import flower_superexec

    sys.argv[0] = "flower-superexec"
    flower_superexec()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The simulation driver: a federation over node directories on this machine (Flower Simulation Engine).

One virtual SuperNode per node directory runs the node's ClientApp in a Simulation-Engine worker; the
coordinator's ServerApp (coordinator/server_app.py) runs here. Same apps, same messages as in a real
deployment (deploy/). `cairn federate`, `cairn coordinator query`, `cairn demo`, the benchmarks and
the tests all run federations through `run_simulation_federation`.

The coordinator never imports node/ (ARCHITECTURE.md invariant 3: it asks, nodes decide), not even
by a default: the caller passes the node's ClientApp, as an object or as its Flower app reference
"<module>:<attribute>" (as deploy/app/pyproject.toml names it), loaded only when a simulation starts.
Which node directory each virtual SuperNode serves travels in the environment
(protos.wire.SIMULATION_NODES_ENV), indexed by the SuperNode's partition id.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from pathlib import Path

from protos.wire import SIMULATION_NODES_ENV


class SimulationError(RuntimeError):
    """The simulation cannot start or did not complete (the message says why)."""


def load_app(reference: str):
    """The object a Flower app reference "<module>:<attribute>" names (import the module, get the attribute)."""
    module, _, attribute = reference.partition(":")
    if not module or not attribute:
        raise SimulationError(f"{reference!r} is not an app reference of the form <module>:<attribute>")
    obj = importlib.import_module(module)
    for name in attribute.split("."):
        obj = getattr(obj, name)
    return obj


def check_can_publish(node_dirs: list[Path], cfg) -> list[str]:
    """Fail now, before any node spends budget: each path is a node directory, the bundle directory
    is empty, the coordinator key file loads (or can be created). Returns the resolved directories."""
    from coordinator.server_app import check_out_empty
    from coordinator.signing import load_or_create_key

    dirs = [str(Path(d).resolve()) for d in node_dirs]
    for d in dirs:
        if not (Path(d) / "node.toml").exists():
            raise SimulationError(f"{d}: not a Cairn node directory")
    if getattr(cfg, "dry_run", False):  # a plan writes nothing and signs nothing
        return dirs
    try:
        check_out_empty(cfg.out)
        if cfg.coordinator_key:
            load_or_create_key(cfg.coordinator_key)
    except (ValueError, OSError) as e:
        raise SimulationError(str(e)) from None
    return dirs


def _show_progress(quiet: bool) -> None:
    """Round-by-round coordinator progress on the terminal; Flower's and Ray's own logs when not quiet."""
    if quiet:
        for name in ("flwr", "ray"):
            logging.getLogger(name).setLevel(logging.WARNING)
    progress = logging.getLogger("cairn.coordinator")
    if not progress.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("  coordinator: %(message)s"))
        progress.addHandler(handler)
        progress.setLevel(logging.INFO)


def run_simulation_federation(node_dirs: list[Path], cfg, client_app, *, quiet: bool = True,
                              wrap_grid=None) -> dict:
    """Run the federation `cfg` (coordinator.server_app.FederationConfig) over `node_dirs` in Flower's
    Simulation Engine; returns the bundle summary (coordinator.bundle.write_bundle).

    `client_app`: the node's ClientApp, or its app reference (required: the coordinator names no node code). `wrap_grid` (tests): a function
    Grid -> Grid, e.g. to record every message the coordinator gets."""
    os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
    from flwr.serverapp import ServerApp
    from flwr.simulation import run_simulation

    from coordinator.server_app import run_federation

    dirs = check_can_publish(node_dirs, cfg)
    if isinstance(client_app, str):
        client_app = load_app(client_app)
    os.environ[SIMULATION_NODES_ENV] = json.dumps(dirs)  # Simulation-Engine workers inherit this environment
    cfg.min_nodes = len(dirs)
    result: dict = {}
    server = ServerApp()

    @server.main()
    def main(grid, context):
        result.update(run_federation(wrap_grid(grid) if wrap_grid else grid, cfg))

    _show_progress(quiet)
    run_simulation(
        server_app=server,
        client_app=client_app,
        num_supernodes=len(dirs),
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": min(2, os.cpu_count() or 1), "include_dashboard": False, "log_to_driver": not quiet},
        },
        verbose_logging=False,
    )
    if not result:
        raise SimulationError("the federation did not complete (see the log above)")
    return result

"""The coordinator's Flower ServerApp (Message API): rounds of DP training, then a bundle.

Per round: a `train` message with the global model and the coordinator's request to every node;
nodes answer with a DP update (or, under secure aggregation, with nothing but a status, and then
the SecAgg+ stages deliver only the masked sum). The mean update moves the global model. Every reply
carries the node's signed ledger head, and hellos and release replies its signed ledger export
(coordinator/heads.py keeps the latest of each, so a node that drops is still published); then the
bundle is written (coordinator/bundle.py) and audited with the coordinator's key and the nodes' ids
pinned (the summary's "audit"; a run whose bundle does not verify is a failed run).
A node that refuses (policy, budget) or fails is left out of that round (rounds.json: refused, dropped).
Message types, records and keys are the wire contract (protos/wire.py) that node/client_app.py
answers; this package never imports node/ (ARCHITECTURE.md invariant 3: the coordinator asks, each
node decides under its own policy).
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, RecordDict
from flwr.serverapp import Grid, ServerApp

from coordinator.aggregation import aggregate
from coordinator.bundle import audit_written, check_out_writable, write_bundle
from coordinator.heads import Collected, RunGrid, dropped_ids
from coordinator.planning import ask_budgets_and_plan, plan_dict
from coordinator.polling import PollingGrid
from coordinator.secure_sum import plan_files, plan_for, roster_from_hellos, secure_sum  # SecAgg+ (callers import it here)
from coordinator.secure_sum import send as _send
from coordinator.signing import load_or_create_key
from model.presets import preset_config
from model.reward_model import RewardHead, state_to_vector, vector_to_state
from model.training_config import TRAINING
from privacy import configure
from privacy.keys import raw_public_key
from privacy.secagg.constants import SecAggError
from protos import bundle_pb2
from protos.bundle import LEADERBOARD, LEADERBOARD_PNG, STATISTICS
from protos.wire import Key, MessageType, Record

log = logging.getLogger("cairn.coordinator")


@dataclass
class FederationConfig:
    """What the coordinator asks of a federation: rounds, training request, queries, bundle directory."""

    out: str  # bundle directory
    rounds: int = TRAINING.rounds
    federation_id: str = ""
    # Training defaults: model.training_config (measured by bench/reward_model.py).
    local_steps: int = TRAINING.local_steps
    epsilon: float = TRAINING.epsilon  # the most training may spend per node (the plan may give it less)
    train_share: float = 0.5  # share of each node's remaining budget training may take (coordinator/planning.py)
    sampling_rate: float = TRAINING.sampling_rate  # DP-SGD Poisson rate asked of nodes (each caps it by policy)
    lr: float = TRAINING.lr
    max_grad_norm: float = TRAINING.max_grad_norm
    max_pairs_per_contributor: int = TRAINING.max_pairs_per_contributor
    featurizer: dict = field(default_factory=lambda: preset_config("hashed"))
    hidden: int = TRAINING.hidden
    aggregation: str = "fedavg"
    secagg: bool = False
    secagg_clip: float = 1.0  # coordinate-wise range of an update under secure aggregation
    secagg_levels: int = 1 << 20
    min_nodes: int = 1
    seed: int = 0
    wait_seconds: float = 60.0
    timeout: float | None = None  # per round trip
    # Aggregate queries after training (coordinator/queries.py): kinds to ask, [] = none.
    queries: list = field(default_factory=list)
    query_epsilon: float = 1.0  # requested per query per node (each node caps it by its policy)
    query_models: list | None = None  # public model names (None: found by private key selection, coordinator/discovery.py)
    query_languages: list | None = None
    query_dimensions: list | None = None
    query_topics: list | None = None
    query_bounds: dict = field(default_factory=dict)  # kind -> [max_partitions, max_rows_per_partition]
    query_secagg: bool = False  # sum answers with SecAgg+ (then no per-community leaderboards)
    leaderboard_replicates: int = 200
    # The coordinator's Ed25519 key file (coordinator/signing.py) that signs the bundle's manifest;
    # created (0600) when missing. "" signs with a one-off key that no auditor can pin.
    coordinator_key: str = ""
    dry_run: bool = False  # ask the nodes' budgets, make the plan, spend nothing, write no bundle
    dp: str = "local"  # "local": each node noises its own update; "distributed": coordinator/distributed.py

    def __post_init__(self):
        if not self.federation_id:
            self.federation_id = f"fed-{int(time.time())}"
        if not 0 < self.train_share <= 1:
            raise ValueError(f"train_share must be in (0, 1], got {self.train_share}")
        if self.secagg and self.aggregation != "fedavg":
            raise ValueError("robust aggregation needs each update in the clear: it cannot run with secure aggregation")
        if self.dp not in ("local", "distributed"):
            raise ValueError(f"dp must be 'local' or 'distributed', got {self.dp!r}")
        if self.dp == "distributed":  # one DP-SGD step over the union per round, summed only by SecAgg+
            self.local_steps, self.secagg, self.aggregation = 1, True, "fedavg"


def check_out_empty(out: str) -> None:
    """A bundle goes into an empty directory: files left from an earlier bundle (an old model) would
    sit beside the new manifest, unsigned and misleading."""
    p = Path(out)
    if p.exists() and (not p.is_dir() or any(p.iterdir())):
        raise FileExistsError(f"{p}: the bundle directory is not empty; publish each federation into a new directory")
    check_out_writable(p)  # the parent is creatable and writable (coordinator/bundle.py)


def coordinator_signing_key(cfg: FederationConfig):
    """The key that signs the manifest: cfg.coordinator_key (created when missing), or None (one-off)."""
    if not cfg.coordinator_key:
        log.info("manifest signed with a one-off key: pass a coordinator key so auditors can pin it")
        return None
    key, created = load_or_create_key(cfg.coordinator_key)
    if created:
        log.info("created coordinator key %s; publish its public key %s so auditors can pin it",
                 cfg.coordinator_key, raw_public_key(key).hex())
    return key


def wait_for_nodes(grid: Grid, n: int, seconds: float) -> list[int]:
    """The connected node ids once `n` are connected, or whoever is connected after `seconds`."""
    deadline = time.time() + seconds
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= n or time.time() > deadline:
            return nodes
        time.sleep(0.2)


def run_federation(grid: Grid, cfg: FederationConfig) -> dict:
    """Hello, the training rounds, the query phase, the ledgers, then the bundle; returns its summary."""
    if not cfg.dry_run:
        check_out_empty(cfg.out)  # these fail here, before any node spends budget
    signing_key = None if cfg.dry_run else coordinator_signing_key(cfg)
    collected = Collected(cfg.federation_id)  # each node's latest signed head and ledger export (coordinator/heads.py)
    grid = RunGrid(grid, collected)
    nodes = wait_for_nodes(grid, cfg.min_nodes, cfg.wait_seconds)
    if len(nodes) < cfg.min_nodes:
        raise RuntimeError(f"only {len(nodes)} nodes connected; {cfg.min_nodes} required")
    hello = _send(grid, MessageType.HELLO, nodes, {n: RecordDict() for n in nodes}, "hello", cfg.timeout)
    infos = {n: dict(r.content[Record.INFO]) for n, r in hello.items()}
    nodes = sorted(infos)
    log.info("federation %s: %d nodes: %s", cfg.federation_id, len(nodes),
             ", ".join(i[Key.NAME] for i in infos.values()))
    budgets = {infos[n][Key.NODE_ID]: dict(r.content[Record.BUDGET]) for n, r in hello.items() if Record.BUDGET in r.content}
    plans = ask_budgets_and_plan(grid, nodes, infos, cfg, _send, budgets if len(budgets) == len(nodes) else None)
    nodes = sorted(n for n in nodes if infos[n][Key.NODE_ID] in plans)
    if cfg.dry_run:
        return {"dry_run": True, "federation_id": cfg.federation_id, "bundle": None,
                "plan": plan_dict(list(plans.values()))}
    by_id = {infos[n][Key.NODE_ID]: n for n in nodes}

    torch.manual_seed(cfg.seed)
    head = RewardHead(int(cfg.featurizer["dim"]), hidden=cfg.hidden)
    global_vec = state_to_vector(head).astype(np.float32)
    rounds = bundle_pb2.RoundsRecord()
    names = {i[Key.NODE_ID]: i[Key.NAME] for i in infos.values()}
    trainers = [by_id[nid] for nid, p in plans.items() if p.asks("train") and nid in by_id]
    if cfg.dp == "distributed":  # one DP-SGD step over the union per round (coordinator/distributed.py)
        from coordinator.distributed import distributed_rounds
        global_vec = distributed_rounds(grid, cfg, head, global_vec, rounds, trainers, infos, plans, _send)
    # under SecAgg+ only nodes whose hello's ledger key is their node id's are in a roster (fixed for the run)
    roster, left_out = roster_from_hellos(trainers, infos) if cfg.secagg else ({}, {})
    for r in range(1, (cfg.rounds if cfg.dp == "local" else 0) + 1):
        def train_cfg(n: int, r: int = r) -> ConfigRecord:  # the epsilon is the node's planned share
            return ConfigRecord({
                "federation_id": cfg.federation_id, "round": r, "rounds": cfg.rounds, "local_steps": cfg.local_steps,
                "epsilon": plans[infos[n][Key.NODE_ID]].item("train").epsilon,  # type: ignore[union-attr]
                "sampling_rate": cfg.sampling_rate, "lr": cfg.lr,
                "max_grad_norm": cfg.max_grad_norm, "max_pairs_per_contributor": cfg.max_pairs_per_contributor,
                Key.FEATURIZER: json.dumps(cfg.featurizer), Key.HEAD: json.dumps(head.arch()), Key.SECAGG: cfg.secagg,
            })
        asked, unplanned = list(trainers), {}
        planned = None  # under SecAgg+ the round's signed plan travels with the train message; replies carry the keys
        if cfg.secagg and len(trainers) >= 2:
            unplanned = dict(left_out)
            try:
                planned = plan_for(grid, list(roster), cfg, global_vec.size, f"secagg-{r}", roster=roster)
                asked = planned.nodes
            except SecAggError as e:  # fewer than 2 usable keys: nobody trains (and spends) for a sum that cannot be
                log.warning("round %d: no secure aggregation plan: %s", r, e)
                asked, unplanned = [], {n: f"secure aggregation: no run plan ({e})" for n in trainers}
        content = {n: RecordDict({Record.ARRAYS: ArrayRecord([global_vec]), Record.CONFIG: train_cfg(n)}) for n in asked}
        for n in planned.nodes if planned is not None else []:
            content[n][Record.SECAGG_PLAN] = planned.keys_config(n)
        reps = _send(grid, MessageType.TRAIN, asked, content, f"round-{r}", cfg.timeout) if asked else {}
        ok = {n: rep.content[Record.STATUS] for n, rep in reps.items() if rep.content[Record.STATUS][Key.OK]}
        refused = {infos[n][Key.NODE_ID]: str(rep.content[Record.STATUS][Key.REFUSED])
                   for n, rep in reps.items() if n not in ok}
        dropped = sorted(infos[n][Key.NODE_ID] for n in set(asked) - set(reps))
        for nid in dropped:
            refused[nid] = "no reply (node failed or timed out)"
        refused.update({infos[n][Key.NODE_ID]: why for n, why in unplanned.items()})
        for nid, p in plans.items():
            if not p.asks("train"):
                refused[nid] = f"not asked (plan): {p.item('train').why if p.item('train') else 'no training'}"
        for nid, why in refused.items():
            log.warning("round %d: %s (%s) refused: %s", r, names[nid], nid[:12], why)
        contributed: list[int] = []
        if cfg.secagg and len(ok) >= 2 and planned is not None:
            sa_refused: dict[int, str] = {}  # nodes whose own policy refused the signed run plan, keys or views
            try:
                total, contributed = secure_sum(grid, sorted(ok), cfg, global_vec.size, f"secagg-{r}", refusals=sa_refused,
                                                planned=planned, keyed={n: reps[n] for n in ok})
                update = (total / len(contributed)).astype(np.float32)
            except SecAggError as e:
                log.warning("round %d: secure aggregation failed: %s", r, e)
                update = None
            refused.update({infos[n][Key.NODE_ID]: why for n, why in sa_refused.items()})
        elif ok and not cfg.secagg:
            contributed = sorted(ok)
            update = aggregate([reps[n].content[Record.ARRAYS].to_numpy_ndarrays()[0] for n in contributed],
                               cfg.aggregation)
        else:
            update = None
        if update is not None:
            global_vec = (global_vec + update).astype(np.float32)
        rnd = rounds.rounds.add(round=r, aggregation="secagg+fedavg" if cfg.secagg else cfg.aggregation,
                                applied=update is not None, refused=refused, dropped=dropped)
        for n in contributed:
            rnd.contributors.add(node_id=infos[n][Key.NODE_ID], ledger_seq=int(ok[n][Key.LEDGER_SEQ]),
                                 ledger_entry_hash=str(ok[n][Key.LEDGER_ENTRY_HASH]),
                                 claimed_epsilon=float(ok[n][Key.CLAIMED_EPSILON]),
                                 sampling_probability=float(ok[n].get(Key.SAMPLING_PROBABILITY, 0.0)),
                                 noise_multiplier=float(ok[n].get(Key.NOISE_MULTIPLIER, 0.0)),
                                 steps=int(ok[n].get(Key.STEPS, 0)))
        log.info("round %d: %d of %d nodes contributed", r, len(contributed), len(nodes))

    query_files, query_artifacts, statistics, policies = run_query_phase(grid, nodes, infos, cfg, plans, _send)
    behind = [by_id[nid] for nid in collected.behind() if nid in by_id]  # normally none: exports came with replies
    if behind:
        _send(grid, MessageType.LEDGER, behind, {n: RecordDict() for n in behind}, "ledger", cfg.timeout)
    head.load_state_dict(vector_to_state(global_vec, head))
    training = {k: v for k, v in asdict(cfg).items() if k != "coordinator_key"}
    model_cfg = {"featurizer": cfg.featurizer, "training": {**training, "rounds_log": None}}
    trained = any(r.applied and r.contributors for r in rounds.rounds)  # else the head is only its random init
    if not trained:
        log.info("no training round was applied: the bundle carries no model")
    ledgers = collected.ledgers
    published = [i for i in infos.values() if i[Key.NODE_ID] in ledgers]
    heads = {nid: h.to_json() for nid in ledgers if (h := collected.published_head(nid)) is not None}
    summary = write_bundle(Path(cfg.out), head if trained else None, model_cfg, rounds, ledgers, published, cfg.federation_id,
                           extra_files={**query_files, **policy_files(infos), **plan_files(grid)}, artifacts=query_artifacts,
                           statistics=statistics, policies=policies, signing_key=signing_key, heads=heads)
    summary["plan"] = plan_dict(list(plans.values()))
    summary["dropped"] = {nid: [r.round for r in rounds.rounds if nid in r.dropped] for nid in dropped_ids(rounds)}
    summary["audit"] = audit_written(summary, {i[Key.NODE_ID] for i in infos.values()})
    if not summary["audit"]["ok"]:
        log.error("the bundle does not verify: %s", "; ".join(summary["audit"]["failures"]))
    return summary


def run_query_phase(grid: Grid, nodes: list[int], infos: dict[int, dict], cfg: FederationConfig, plans: dict | None = None,
                    send=_send):
    """The DP aggregate queries (coordinator/queries.py) after training: returns the bundle files
    (statistics.json, leaderboard.json, leaderboard.png), their lineage, the statistics and the
    nodes' public policy facts. Each query goes only to the nodes whose plan asks it; a node the plan
    skips is recorded as refused with the plan's reason. A query that fails is recorded with its
    error and the phase goes on: budget already spent by others is never lost to a crash."""
    from coordinator import leaderboard as lb
    from coordinator.discovery import discovery_phase
    from coordinator.queries import build_query, run_queries

    if not cfg.queries:
        return {}, {}, None, {}
    names = {i[Key.NODE_ID]: i[Key.NAME] for i in infos.values()}
    results, policies, failed = [], {}, []
    try:
        discovery, lists = discovery_phase(grid, nodes, infos, cfg, send, plans)  # coordinator/discovery.py
    except Exception as e:  # noqa: BLE001 - each query then fails for want of keys, recorded; the bundle is written
        log.error("key discovery failed: %s: %s", type(e).__name__, e)
        discovery, lists = None, {"model": cfg.query_models, "language": cfg.query_languages,
                                  "dimension": cfg.query_dimensions}
    for k in cfg.queries:
        asked = [n for n in nodes if plans is None or plans[infos[n][Key.NODE_ID]].asks(k)]
        try:
            q = build_query(k, cfg.query_epsilon, f"{cfg.federation_id}/query/{k}", models=lists["model"],
                            languages=lists["language"], dimensions=lists["dimension"], topics=cfg.query_topics,
                            bounds=tuple(cfg.query_bounds[k]) if k in cfg.query_bounds else None,
                            secagg=cfg.query_secagg and len(asked) >= 2)
            res, facts = run_queries(grid, asked, infos, [q], send, secure_sum, cfg, cfg.timeout) if asked else ([None], {})
        except Exception as e:  # noqa: BLE001 - recorded in statistics.json; the bundle is still written
            log.error("query %s failed: %s: %s", k, type(e).__name__, e)
            failed.append({"query": {"name": k, "epsilon": cfg.query_epsilon}, "error": f"{type(e).__name__}: {e}"})
            continue
        r = res[0]
        if r is None:  # nobody asked: the result of a query sent to no one
            from protos.wire import partitions
            r = _empty_result(k, q, partitions)
        policies.update(facts)
        for n in nodes:
            nid = infos[n][Key.NODE_ID]
            if n not in asked and plans is not None:
                item = plans[nid].item(k)
                r.refused[nid] = f"not asked (plan): {item.why if item else 'not planned'}"
        results.append(r)
    statistics = {"federation_id": cfg.federation_id, "queries": [r.to_dict(names) for r in results] + failed}
    if discovery is not None:
        statistics["discovery"] = discovery.to_dict(names)
    files: dict[str, tuple[bytes, str]] = {
        STATISTICS: ((json.dumps(statistics, indent=2) + "\n").encode(), "statistics")}
    artifacts = {STATISTICS: [s for r in results for s in r.sources()] + (discovery.sources() if discovery else [])}
    battle = next((r for r in results if r.kind == "battle_counts"), None)
    if battle is not None:
        try:
            board = lb.from_query_result(battle, names, cfg.leaderboard_replicates, cfg.seed)
            leaderboard_json = (json.dumps(board, indent=2) + "\n").encode()
            with tempfile.TemporaryDirectory() as tmp:
                png = Path(tmp) / LEADERBOARD_PNG
                lb.chart(board["pooled"] or {}, png, f"Cairn DP leaderboard ({cfg.federation_id})")
                files[LEADERBOARD_PNG] = (png.read_bytes(), "leaderboard-chart")
            files[LEADERBOARD] = (leaderboard_json, "leaderboard")
            artifacts[LEADERBOARD] = artifacts[LEADERBOARD_PNG] = battle.sources()
        except Exception as e:  # noqa: BLE001 - the statistics are still published
            files.pop(LEADERBOARD_PNG, None)
            log.error("leaderboard failed: %s: %s", type(e).__name__, e)
    for r in results:
        log.info("query %s: %d answers, %d refused%s", r.kind, len(r.answers), len(r.refused), refusal_summary(r.refused))
    return files, artifacts, statistics, policies


def _empty_result(kind: str, q, partitions):
    """The QueryResult of a query the plan sent to no node (every node's refusal recorded by the caller)."""
    from coordinator.queries import QueryResult

    return QueryResult(kind, {"name": kind, "params": dict(sorted(q.params.items())), "epsilon": q.epsilon},
                       partitions(kind, dict(q.params)), secagg=bool(q.secagg))


def refusal_summary(refused: dict[str, str]) -> str:
    """' (by privacy.allowed_releases: 3, privacy.min_contributors: 1)': refusals grouped by the policy
    rule each names (statistics.json keeps every node's full reason)."""
    rules = Counter((m.group(1) if (m := re.search(r"policy rule ([\w.]+)", why)) else "other") for why in refused.values())
    return f" (by {', '.join(f'{k}: {v}' for k, v in sorted(rules.items()))})" if rules else ""


def policy_files(infos: dict[int, dict]) -> dict[str, tuple[bytes, str]]:
    """Each node's published policy, policies/<node_id>.toml: `cairn audit verify` checks caps against it."""
    return {f"policies/{i[Key.NODE_ID]}.toml": (str(i[Key.POLICY_TOML]).encode(), "policy")
            for i in infos.values() if i.get(Key.POLICY_TOML)}


# Module-level app for the Deployment Engine (`flwr run`, deploy/): configuration comes from the
# run config (deploy/app/pyproject.toml [tool.flwr.app.config], overridable with --run-config).
app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """The Deployment Engine's entry: FederationConfig from the run config (strings parsed as JSON or lists)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Runtime API request, each re-uploaded as a log
    configure()  # the privacy core's process-wide settings (privacy/__init__.py)
    rc = dict(context.run_config)
    known = FederationConfig.__dataclass_fields__
    kwargs = {k.replace("-", "_"): v for k, v in rc.items() if k.replace("-", "_") in known}
    if not kwargs.get("timeout"):  # run config 0: no limit on a message exchange
        kwargs["timeout"] = None
    if "featurizer" in kwargs and isinstance(kwargs["featurizer"], str):
        kwargs["featurizer"] = json.loads(kwargs["featurizer"])
    for k in ("queries", "query_models", "query_languages", "query_dimensions", "query_topics", "query_bounds"):
        if isinstance(kwargs.get(k), str):  # run config values are strings: JSON, or a comma list of kinds
            v = kwargs[k].strip()
            kwargs[k] = json.loads(v) if v[:1] in "[{" else [x.strip() for x in v.split(",") if x.strip()]
    summary = run_federation(PollingGrid(grid), FederationConfig(**kwargs))  # replies pulled every <= 0.5 s, not 3 s
    if not summary.get("audit", {}).get("ok", True):  # the run's outcome is its bundle's audit
        raise RuntimeError("the bundle does not verify: " + "; ".join(summary["audit"]["failures"]))

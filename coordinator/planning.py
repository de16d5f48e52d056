"""Budget planning: before any node spends anything, what each release will cost each node.

The coordinator asks every node for its budget (`MessageType.BUDGET`: cap, spent, remaining, the
per-query cap and the release kinds its policy allows — read from the node's ledger, public by
design, with no count of its members) and plans, per node:

- every release also pays the node's noisy min_contributors test (privacy/release.py
  `check_contributors`; its epsilon is in the budget reply): training once per federation, each
  query once;
- each query asks exactly `query_epsilon` (node/queries.py refuses rather than spends less), so a
  query is planned only where the policy allows its kind, `query_epsilon` is within the node's
  per-query cap and it still fits in what remains; queries are reserved first, in order;
- training takes `train_share` of the remaining budget (its test included), at most `epsilon` and at
  most what the reserved queries leave, so that the default query set still fits after it.

What the plan does not ask, the node is not asked (its refusal would say the same). A node still
refuses anything over its cap (ARCHITECTURE.md invariants 2 and 3: the node's gate decides).

What a plan costs is the node's to say: its cap is enforced against a Renyi privacy filter over its
ledger (privacy/accounting/filter.py), looser than adding the releases' own epsilons. So the
coordinator proposes the plan (`proposal`) and each node quotes it (node/planning.py `quote`): the
training epsilon that fits, the queries that fit, and its cumulative epsilon after each release —
what its ledger will say (`apply_quote`). A node that gives no quote is planned with the sum.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field

from flwr.app import ConfigRecord, RecordDict

from coordinator.discovery import planned_releases
from protos.wire import Key, MessageType, Record

log = logging.getLogger("cairn.coordinator")

MIN_TRAIN_EPSILON = 0.05  # below this, DP-SGD noise drowns any signal: the plan does not ask for training


@dataclass
class PlanItem:
    """One release the coordinator may ask of one node: its cost, and whether the plan asks it."""

    release: str  # "train" or a query kind
    epsilon: float  # what the release itself spends at the node's delta (what the coordinator asks for)
    ask: bool
    why: str = ""  # why not asked
    threshold: float = 0.0  # what its noisy min_contributors test spends first
    after: float | None = None  # the node's quote: its cumulative epsilon (privacy filter) after this release

    @property
    def cost(self) -> float:
        """The release and its threshold test."""
        return self.epsilon + self.threshold


@dataclass
class NodePlan:
    """One node's budget now, the releases planned, and what remains after them."""

    node_id: str
    name: str
    epsilon_cap: float
    delta: float
    spent: float
    remaining: float
    max_query_epsilon: float
    items: list[PlanItem] = field(default_factory=list)
    projected: float | None = None  # the node's quote: its cumulative epsilon after every asked release

    @property
    def planned(self) -> float:
        """What the asked releases add to the ledger's cumulative epsilon: the node's quote when it gave
        one, else the sum of their own epsilons."""
        if self.projected is not None:
            return max(0.0, self.projected - self.spent)
        return float(sum(i.cost for i in self.items if i.ask))

    @property
    def remaining_after(self) -> float:
        """What the plan leaves (by the node's quote)."""
        return max(0.0, self.remaining - self.planned)

    def item(self, release: str) -> PlanItem | None:
        """The plan item for `release` ("train" or a query kind), if any."""
        return next((i for i in self.items if i.release == release), None)

    def asks(self, release: str) -> bool:
        """Whether the plan asks this node for `release`."""
        i = self.item(release)
        return bool(i and i.ask)

    def to_dict(self) -> dict:
        """The JSON form (plan.json, `--json`)."""
        d = asdict(self)
        for item, i in zip(d["items"], self.items):
            item["cost"] = round(i.cost, 6)
        d["planned_epsilon"] = round(self.planned, 6)
        d["remaining_after"] = round(self.remaining_after, 6)
        return d


def node_plan_from_dict(d: dict) -> NodePlan:
    """A NodePlan back from its JSON form (`NodePlan.to_dict`)."""
    items = [PlanItem(**{k: v for k, v in i.items() if k in PlanItem.__dataclass_fields__}) for i in d["items"]]
    return NodePlan(**{k: v for k, v in d.items() if k in NodePlan.__dataclass_fields__ and k != "items"}, items=items)


def node_plan(budget: dict, node_id: str, name: str, *, rounds: int, epsilon: float, train_share: float,
              queries: list[str], query_epsilon: float) -> NodePlan:
    """The plan for one node from its budget reply (protos.wire.Record.BUDGET)."""
    p = NodePlan(node_id=node_id, name=name, epsilon_cap=float(budget[Key.EPSILON_CAP]), delta=float(budget[Key.DELTA]),
                 spent=float(budget[Key.SPENT_EPSILON]), remaining=float(budget[Key.REMAINING_EPSILON]),
                 max_query_epsilon=float(budget[Key.MAX_QUERY_EPSILON]))
    allowed = set(budget.get(Key.ALLOWED_RELEASES, []))
    thr = float(budget.get(Key.THRESHOLD_EPSILON, 0.0))
    reserved = 0.0
    for kind in queries:
        item = PlanItem(kind, query_epsilon, False, threshold=thr)
        if kind not in allowed:
            item.why = "policy rule allowed_releases: not allowed"
        elif query_epsilon > p.max_query_epsilon:
            item.why = f"policy rule max_query_epsilon: over the per-query cap {p.max_query_epsilon:g}"
        elif reserved + item.cost > p.remaining + 1e-12:
            item.why = f"policy rule epsilon_cap: does not fit in the remaining {p.remaining - reserved:.4g}"
        else:
            item.ask = True
            reserved += item.cost
        p.items.append(item)
    if rounds > 0:
        item = PlanItem("train", 0.0, False, threshold=thr)
        if "train" not in allowed:
            item.why = "policy rule allowed_releases: not allowed"
        else:
            eps = min(epsilon, train_share * p.remaining - thr, p.remaining - reserved - thr)
            if eps >= MIN_TRAIN_EPSILON:
                item.epsilon, item.ask = round(eps, 6), True
            else:
                item.why = (f"policy rule epsilon_cap: no budget left for training after the queries "
                            f"({p.remaining - reserved:.4g} remaining)")
        p.items.insert(0, item)
    return p


def make_plan(budgets: dict[str, dict], names: dict[str, str], cfg) -> list[NodePlan]:
    """Every node's plan ({node_id: budget reply}) for the federation `cfg` (FederationConfig)."""
    return [node_plan(b, nid, names.get(nid, ""), rounds=cfg.rounds, epsilon=cfg.epsilon, train_share=cfg.train_share,
                      queries=planned_releases(cfg), query_epsilon=cfg.query_epsilon)
            for nid, b in sorted(budgets.items())]


def plan_dict(plans: list[NodePlan]) -> dict:
    """The plan's JSON form: per node, and the note on how costs add up."""
    return {"composition": "each release's own epsilon, and each node's quote of its cumulative epsilon "
                           "after it (the privacy filter its cap is enforced against)",
            "nodes": [p.to_dict() for p in plans]}


def format_plan(plans: list[NodePlan]) -> list[str]:
    """The plan as lines for a terminal: one block per node, a line per release."""
    lines = []
    for p in plans:
        lines.append(f"{p.name or p.node_id[:12]} ({p.node_id[:12]}): cap {p.epsilon_cap:g}, spent {p.spent:.4g}, "
                     f"remaining {p.remaining:.4g} at delta {p.delta:g}")
        for i in p.items:
            test = f" + {i.threshold:.3g} threshold test" if i.threshold else ""
            then = f" -> {i.after:.4g}" if i.after is not None else ""
            lines.append(f"    {i.release:<18} epsilon {i.epsilon:>7.4g}{test}{then}  " + ("ask" if i.ask else f"skip: {i.why}"))
        lines.append(f"    {'after the plan':<18} spent at most {p.spent + p.planned:.4g}, remaining at least "
                     f"{p.remaining_after:.4g}")
    return lines


def ask_budgets_and_plan(grid, nodes: list[int], infos: dict[int, dict], cfg, send, budgets: dict | None = None) -> dict:
    """Ask every node its budget (MessageType.BUDGET; skipped when `budgets` {node_id: budget record}
    came with the hellos), make the plan (coordinator/planning.py) and log it, before anything is
    spent. Returns {node_id: NodePlan}; a node that does not answer is left out of the run."""
    if budgets is None:
        reps = send(grid, MessageType.BUDGET, nodes, {n: RecordDict() for n in nodes}, "budget", cfg.timeout)
        budgets = {infos[n][Key.NODE_ID]: dict(r.content[Record.BUDGET]) for n, r in reps.items()
                   if Record.BUDGET in r.content}
    for n in nodes:
        if infos[n][Key.NODE_ID] not in budgets:
            log.warning("%s did not report its budget: left out of this run", infos[n][Key.NAME])
    names = {i[Key.NODE_ID]: i[Key.NAME] for i in infos.values()}
    plans = make_plan(budgets, names, cfg)
    by_id = {infos[n][Key.NODE_ID]: n for n in nodes}
    asked = [by_id[p.node_id] for p in plans]
    contents = {by_id[p.node_id]: RecordDict({Record.CONFIG: ConfigRecord({Key.PLAN: proposal(p, cfg)})}) for p in plans}
    reps = send(grid, MessageType.BUDGET, asked, contents, "budget-quote", cfg.timeout)
    for p in plans:
        rep = reps.get(by_id[p.node_id])
        if rep is not None and Record.BUDGET in rep.content and Key.QUOTE in rep.content[Record.BUDGET]:
            apply_quote(p, json.loads(str(rep.content[Record.BUDGET][Key.QUOTE])))
        else:
            log.warning("%s gave no quote for the plan: planned with the sum of the releases' epsilons", p.name)
    log.info("plan (epsilon per node; %s):", "dry run, nothing is spent" if cfg.dry_run else "before anything is spent")
    for line in format_plan(plans):
        log.info("  %s", line)
    return {p.node_id: p for p in plans}


def proposal(p: NodePlan, cfg) -> str:
    """The plan proposed to one node (protos.wire.Key.PLAN): training's request and the queries it
    asks, in the order they will run; the node fits training and says what fits (node/planning.py)."""
    train = None
    if p.item("train") is not None and p.item("train").ask:  # type: ignore[union-attr]
        train = {"federation_id": cfg.federation_id, "round": 1, "rounds": cfg.rounds, "local_steps": cfg.local_steps,
                 "epsilon": cfg.epsilon, "sampling_rate": getattr(cfg, "sampling_rate", 1.0), "lr": cfg.lr,
                 "max_grad_norm": cfg.max_grad_norm, "max_pairs_per_contributor": cfg.max_pairs_per_contributor}
    queries = [[i.release, i.epsilon] for i in p.items if i.release != "train" and i.ask]
    return json.dumps({"train": train, "queries": queries, "train_share": cfg.train_share})


def apply_quote(p: NodePlan, quote: dict) -> None:
    """Fit `p` to the node's quote: training's epsilon, the queries that fit, the cumulative epsilon
    after each release (what the node's ledger will say)."""
    after = {k: float(v) for k, v in quote.get("after", [])}
    fitting = set(quote.get("queries", []))
    for i in p.items:
        if not i.ask:
            continue
        if i.release == "train":
            i.epsilon = round(float(quote.get("train_epsilon", 0.0)), 6)
            if i.epsilon < MIN_TRAIN_EPSILON:
                i.ask, i.epsilon = False, 0.0
                i.why = "policy rule epsilon_cap: no training fits beside the queries (the node's privacy filter)"
        elif i.release not in fitting:
            i.ask = False
            i.why = "policy rule epsilon_cap: does not fit under the cap (the node's privacy filter)"
        i.after = after.get(i.release) if i.ask else None
    asked = [i.after for i in p.items if i.ask and i.after is not None]
    p.projected = asked[-1] if asked else p.spent

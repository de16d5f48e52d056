"""What every check reads and writes: the bundle, its manifest, the verified ledgers, the result.

Each check family is a module exposing `check(ctx: AuditContext) -> None` that appends its Checks
to `ctx.result`. Bundle-wide checks read `ctx.manifest`; per-node checks (ledgers, epsilon, policy)
read `ctx.node`, the node being checked, which `verify_bundle` sets before calling them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from privacy.audit.result import AuditResult, Check, NodeAudit
from privacy.ledger_head import LedgerHead
from protos import bundle_pb2, ledger_pb2


@dataclass
class NodeContext:
    """One node of the manifest while its checks run: its audit record and, once read, its ledger."""

    manifest_node: bundle_pb2.BundleNode
    audit: NodeAudit
    export: ledger_pb2.LedgerExport | None = None  # set by the ledgers check when the export reads

    @property
    def label(self) -> str:
        """How check names and messages name this node."""
        return node_label(self.manifest_node)

    @property
    def entries(self) -> list[ledger_pb2.LedgerEntry]:
        """The node's ledger entries (none when its export did not read)."""
        return list(self.export.entries) if self.export is not None else []


@dataclass
class AuditContext:
    """The state of one `verify_bundle` run, handed to every check."""

    root: Path
    result: AuditResult
    policies: dict = field(default_factory=dict)  # {node_id or name: policy.toml path}
    strict: bool = False
    coordinator_key: bytes | None = None
    trusted_nodes: set[str] | None = None
    manifest: bundle_pb2.BundleManifest | None = None  # set by the manifest check when it parses
    node: NodeContext | None = None  # the node the per-node checks are looking at
    exports: dict[str, ledger_pb2.LedgerExport | None] = field(default_factory=dict)  # node_id -> its ledger
    node_heads: list[tuple[str, LedgerHead]] = field(default_factory=list)  # (where from, head) the auditor gave
    bundle_heads: dict[str, LedgerHead] = field(default_factory=dict)  # node_id -> its verified heads/ file

    def add(self, name: str, status: str, message: str, node_id: str | None = None,
            problems: list[str] | None = None) -> None:
        """Append one Check to the result."""
        self.result.checks.append(Check(name, status, message, node_id, list(problems or [])))


def short(h: bytes | str) -> str:
    """The first 16 hex digits of a hash or key, for messages."""
    s = h.hex() if isinstance(h, (bytes, bytearray)) else str(h)
    return s[:16] + "..."


def node_label(node: bundle_pb2.BundleNode) -> str:
    """How messages name a node: its name, else the start of its id."""
    return node.name or node.node_id[:16]


def first_and_more(problems: list[str]) -> str:
    """The first problem, and how many more there are."""
    return problems[0] + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")

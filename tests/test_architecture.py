"""The layout's rules (ARCHITECTURE.md, "Import rules"), checked on the source itself.

Imports are read with `ast` (top-level and lazy ones inside functions alike), so a rule cannot be
dodged by importing inside a function.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400


def _sources(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if not p.name.endswith("_pb2.py"))


def _imports(path: Path) -> set[str]:
    """Every module name `path` imports, top level or not."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def _offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in _sources(package):
        for mod in _imports(path):
            if any(mod == f or mod.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(ROOT)} imports {mod}")
    return bad


@pytest.mark.parametrize("package,forbidden", [
    ("privacy", ("node", "coordinator", "model", "cairn", "deploy", "flwr", "grpc", "torch", "opacus")),
    ("coordinator", ("node", "cairn", "deploy")),
    ("node", ("coordinator", "cairn", "deploy", "privacy.audit")),
    ("model", ("node", "coordinator", "cairn", "deploy", "flwr")),
    ("protos", ("node", "coordinator", "model", "cairn", "deploy", "privacy")),
])
def test_import_rules(package, forbidden):
    # The one exception: the wire contract names SecAgg+'s messages after the protocol's own stage and
    # key constants, a module of plain names that imports nothing of the project.
    allowed = {"protos/wire.py imports privacy.secagg.constants"}
    assert [o for o in _offenders(package, forbidden) if o not in allowed] == []


def test_secagg_constants_import_nothing_of_the_project():
    assert {m.split(".")[0] for m in _imports(ROOT / "privacy/secagg/constants.py")} <= {"__future__", "enum", "typing"}


def test_trusted_core_does_no_plotting():
    core = [p for p in _sources("privacy") if not {"audit", "reports"} & set(p.relative_to(ROOT / "privacy").parts)]
    bad = [f"{p.relative_to(ROOT)} imports {m}" for p in core for m in _imports(p)
           if m.split(".")[0] in {"matplotlib", "jinja2"}]
    assert bad == []


@pytest.mark.parametrize("package", ["privacy", "node", "coordinator", "model"])
def test_no_module_over_the_size_limit(package):
    long = {str(p.relative_to(ROOT)): n for p in _sources(package)
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_invariants_are_cited_from_this_repository():
    """Comments cite ARCHITECTURE.md (in the repository), never a design file outside it."""
    stale = [str(p.relative_to(ROOT)) for pkg in ("privacy", "node", "coordinator", "model", "cairn", "protos", "deploy")
             for p in _sources(pkg) if "DESIGN invariant" in p.read_text(encoding="utf-8")]
    assert stale == []
    assert "## Invariants" in (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")


def test_coordinator_names_no_node_code_even_in_strings():
    """A default such as "node.client_app:app" loaded with importlib would dodge the import rules."""
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in _sources("coordinator")
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
            if re.search(r"[\"']node\.(?!toml\b)[a-z_]+", line)]
    assert hits == []

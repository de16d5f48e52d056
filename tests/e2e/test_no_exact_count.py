"""No exact count of eligible contributors leaves a node (issue 10, finding 2).

Communities of PRIME sizes (23, 29, 31 eligible contributors, and 11 that is refused) run a small
federation (training and queries); then every file of the bundle, every reply a node sent and every
refusal is scanned for the exact count N and for any sampling rate k/N (1 <= k < N). With prime N
the policy's rate q = 1/5 is never k/N, while the old rate expected_batch/N always was.
"""

import json
import re
from pathlib import Path

from google.protobuf import json_format

from coordinator.server_app import FederationConfig
from coordinator.simulation import run_simulation_federation
from model.presets import preset_config
from node.client_app import app as NODE_APP
from node.consent import record_consent
from node.node_dir import NodeDir
from privacy.policy import Policy
from protos import ledger_pb2, query_pb2
from tests.e2e.conftest import synthetic_records
from tests.e2e.test_federation import RecordingGrid

SIZES = {"alder": 23, "birch": 29, "cedar": 31, "tiny": 11}  # names without digits
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?")
# DP outputs: noisy cells (and what the data card derives from them) may hit any number by chance
NOISY_KEYS = {"value", "values", "estimate", "ci95", "sd", "totals"}
NOISY_LINE = re.compile(r"^\s*(estimate|ci95|sd|value):|^\| (battle_counts|coverage) \|")


def community(path: Path, name: str, i: int, n: int) -> NodeDir:
    # noisy threshold (sigma 2): min 5 passes for n >= 23 (fails with prob ~1e-19), min 30 refuses n = 11 (~1e-20)
    policy = Policy(community=name, min_contributors=30 if n < 20 else 5, min_contributors_noise=2.0, epsilon_cap=100.0)
    nd = NodeDir.init(path, name, policy=policy)
    with nd.open_store() as store:
        with store.transaction():
            for rec in synthetic_records(i, n, 1):
                store.add_record(rec, None)
        record_consent(store, None, "CC-BY-4.0", "2020-01-01T00:00:00+00:00", "test")
    return nd


def leaks(value, n: int, path: str, key: str = "") -> list[str]:
    """Where `value` (JSON-like) shows n, or a rate k/n."""
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            if str(k) not in NOISY_KEYS:
                out += leaks(v, n, f"{path}.{k}", str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            out += leaks(v, n, f"{path}[{i}]", key)
    elif isinstance(value, bool):
        pass
    elif isinstance(value, int):
        if value == n and key not in NOISY_KEYS:
            out.append(f"{path} = {value}")
    elif isinstance(value, float):
        if 0 < value < 1 and abs(value * n - round(value * n)) < 1e-9 * n:
            out.append(f"{path} = {value!r} = {round(value * n)}/{n}")
    elif isinstance(value, str):
        text = TIMESTAMP.sub("", value)
        if re.search(rf"(?<![0-9A-Za-z.]){n}(?![0-9A-Za-z.])", text):
            out.append(f"{path}: {value[:200]!r}")
        if value.lstrip()[:1] in ("[", "{"):
            try:
                out += leaks(json.loads(value), n, path + "<json>")
            except ValueError:
                pass
    elif isinstance(value, (bytes, bytearray)):
        out += leaks_in_bytes(bytes(value), n, path)
    return out


def leaks_in_bytes(data: bytes, n: int, path: str) -> list[str]:
    for cls in (ledger_pb2.LedgerExport, query_pb2.Answer):
        try:
            msg = cls.FromString(data)
        except Exception:
            continue
        if msg.ListFields():
            return leaks(json_format.MessageToDict(msg, preserving_proto_field_name=True), n, f"{path}<{cls.__name__}>")
    try:
        return leaks(data.decode("utf-8"), n, path)
    except UnicodeDecodeError:
        return []


def test_no_exact_eligible_count_leaves_a_node(tmp_path):
    nodes = {name: community(tmp_path / name, name, i, n) for i, (name, n) in enumerate(SIZES.items())}
    grids = []

    def wrap(grid):
        grids.append(RecordingGrid(grid))
        return grids[-1]

    cfg = FederationConfig(out=str(tmp_path / "bundle"), rounds=2, local_steps=3, featurizer=preset_config("hashed"),
                           federation_id="fed-primes", queries=["battle_counts", "coverage"],
                           query_models=["m-good", "m-bad"], query_languages=["en"], query_topics=["other"],
                           leaderboard_replicates=10)
    summary = run_simulation_federation([nd.path for nd in nodes.values()], cfg, NODE_APP, wrap_grid=wrap)
    bundle = Path(summary["bundle"])
    by_id = {nd.node_id: SIZES[name] for name, nd in nodes.items()}

    # the tiny community was refused, and its refusal names no count
    rounds = json.loads((bundle / "rounds.json").read_text())
    tiny = nodes["tiny"].node_id
    refusals = [r["refused"][tiny] for r in rounds if tiny in r.get("refused", {})]
    assert refusals and all("too few eligible contributors (noisy threshold)" in why for why in refusals), rounds
    trained = {c["node_id"] for r in rounds for c in r["contributors"]}
    assert trained == {nd.node_id for name, nd in nodes.items() if name != "tiny"}

    found = []
    files = [p for p in bundle.rglob("*") if p.is_file()]
    assert any(p.name == "statistics.json" for p in files) and any(p.suffix == ".md" for p in files)
    here = str(tmp_path)  # the test's own directory (pytest-of-root/pytest-11/...) is no node's output

    def text(p: Path) -> str:
        return p.read_text().replace(json.dumps(here)[1:-1], "<tmp>").replace(here, "<tmp>")
    for p in files:
        rel = str(p.relative_to(bundle))
        for n in SIZES.values():
            if p.suffix == ".json":
                found += leaks(json.loads(text(p)), n, rel)
            elif p.suffix in (".md", ".toml", ".txt", ".html", ".csv"):
                lines = [ln for ln in text(p).splitlines() if not NOISY_LINE.search(ln)]
                found += [f"{rel}: {x}" for x in leaks(lines, n, "")]
            elif p.suffix == ".pb":
                found += leaks_in_bytes(p.read_bytes(), n, rel)
    # every reply any node sent the coordinator (train statuses, answers, refusals, ledgers, hellos)
    replies = [m for g in grids for m in g.replies]
    assert replies
    for m in replies:
        for rname, record in m.content.items():
            if hasattr(record, "to_numpy_ndarrays"):
                continue  # model updates and masked vectors: DP outputs, floats of no count
            for n in SIZES.values():
                found += leaks(dict(record), n, f"reply.{rname}")
    assert not found, "\n".join(found[:20])
    # and the ledgers record no count at all; every DP-SGD rate is the policy's 1/5
    for p in (bundle / "ledgers").glob("*.pb"):
        export = ledger_pb2.LedgerExport.FromString(p.read_bytes())
        assert export.entries and all(not e.body.contributors for e in export.entries)
        qs = {e.body.event.self_composed.event.poisson_sampled.sampling_probability for e in export.entries
              if e.body.release_kind == "train"}
        assert qs <= {0.2}, (by_id.get(export.node_id), qs)
    # the auditor accepts the threshold entries ("threshold:<kind>") as ordinary accounted releases
    from click.testing import CliRunner

    from cairn.cli import cli

    r = CliRunner().invoke(cli, ["audit", "verify", str(bundle), "--allow-unpinned"])
    assert r.exit_code == 0 and "VERIFIED" in r.output, r.output[-3000:]

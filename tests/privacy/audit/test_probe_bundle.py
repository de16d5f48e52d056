"""`cairn audit probe --bundle B --node-dir D` runs the node's actual plan (issue 10, finding 9)."""

import json
import math

import pytest
from click.testing import CliRunner

from cairn.cli import cli
from privacy.accounting import epsilon_of
from privacy.events import dpsgd_event, dpsgd_params, event_from_proto
from privacy.probe import epsilon_lower_bound, ideal_lower_bound
from protos import bundle as bundle_format
from protos import ledger_pb2


def probe(*args):
    return CliRunner().invoke(cli, ["audit", "probe", *[str(a) for a in args]], catch_exceptions=False)


def test_probe_runs_the_plan_the_node_ledgered(bundle, federation):
    nd = federation[1][0]
    res = probe("--bundle", bundle, "--node-dir", nd.path, "--canaries", "40", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    # the plan, read back here independently: the ledger JSON's events of the rounds this node trained in
    export = ledger_pb2.LedgerExport.FromString((bundle / bundle_format.ledger_pb(nd.node_id)).read_bytes())
    rounds = json.loads((bundle / bundle_format.ROUNDS).read_text())
    seqs = [c["ledger_seq"] for r in rounds for c in r["contributors"] if c["node_id"] == nd.node_id]
    entries = {e.body.seq: e.body for e in export.entries}
    params = {dpsgd_params(event_from_proto(entries[s].event)) for s in seqs}
    assert len(params) == 1
    p = params.pop()
    model = json.loads((bundle / bundle_format.MODEL_CONFIG).read_text())
    assert out["ledger_seqs"] == seqs and out["rounds"] == len(seqs) == model["training"]["rounds"]
    assert out["steps"] == p.steps == model["training"]["local_steps"]
    assert out["sampling_probability"] == p.sampling_probability and out["noise_multiplier"] == p.noise_multiplier
    assert out["max_grad_norm"] == p.clip_norm and out["lr"] == model["training"]["lr"]
    assert out["optimizer"] == model["training"].get("optimizer", "adam")
    delta = entries[seqs[-1]].target_delta
    claim = epsilon_of([dpsgd_event(p.sampling_probability, p.noise_multiplier, p.steps, p.clip_norm)] * len(seqs), delta)
    assert out["claimed_epsilon"] == pytest.approx(claim.epsilon) and out["delta"] == delta
    assert out["ledger_claimed_epsilon"] == pytest.approx(entries[seqs[-1]].claimed_epsilon)
    assert out["epsilon_lower_bound"] <= out["claimed_epsilon"] and out["one_run_ceiling"] <= out["claimed_epsilon"]
    text = probe("--bundle", bundle, "--node-dir", nd.path, "--canaries", "20").output
    assert "beside the claim for exactly this training" in text and "2410.22235" in text and "2305.08846" in text


def test_probe_refuses_a_rounds_record_that_disagrees_with_the_ledger(bundle, federation):
    nd = federation[1][0]
    path = bundle / bundle_format.ROUNDS
    rounds = json.loads(path.read_text())
    for c in rounds[0]["contributors"]:
        c["ledger_entry_hash"] = "00" * 32
    path.write_text(json.dumps(rounds))
    res = probe("--bundle", bundle, "--node-dir", nd.path, "--canaries", "20")
    assert res.exit_code != 0 and "does not match the node's ledger" in res.output
    res = probe("--bundle", bundle, "--synthetic")
    assert res.exit_code != 0 and "--node-dir" in res.output


@pytest.mark.parametrize("m", [100, 400])
def test_one_run_ceiling(m):
    """The ceiling is the bound an optimal attack's expected hits would prove: below eps, rising with eps
    and with m, and at most what all-correct guesses prove."""
    eps = [0.5, 1.0, 2.0, 4.0, 8.0]
    c = [ideal_lower_bound(m, e, 1e-5) for e in eps]
    assert all(x <= e for x, e in zip(c, eps)) and c == sorted(c)
    assert ideal_lower_bound(4 * m, 4.0, 1e-5) > ideal_lower_bound(m, 4.0, 1e-5)
    assert c[-1] <= epsilon_lower_bound(m, m // 5 * 2, m // 5 * 2, 1e-5, 0.05 / 4) + 1e-9
    assert ideal_lower_bound(m, 0.0, 1e-5) == 0.0 and math.isfinite(ideal_lower_bound(m, math.inf, 1e-5))

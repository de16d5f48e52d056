"""Check family `lineage`: every published artifact and every round traces to verified ledger entries.

  lineage:<artifact>  every source (node, ledger seq, entry hash) of every artifact in the manifest is
                      an entry of that node's verified ledger
  rounds              every contributor of every round in rounds.json (protos/bundle.py RoundsRecord)
                      is such an entry too, with the same claimed epsilon and the same DP-SGD
                      parameters (q, z, steps) as its ledger event, and every applied round's
                      contributors are sources of the model artifact; a model is published exactly
                      when a round was applied

Protects ARCHITECTURE.md invariant 2 (account before release) as seen from the bundle: nothing was
published that no ledger entry accounted for.
"""

from __future__ import annotations

import math

from privacy.audit.context import AuditContext, node_label, short
from privacy.audit.result import FAIL, PASS
from privacy.events import EventError, dpsgd_params, event_from_proto
from protos import bundle, bundle_pb2, ledger_pb2

EntryIndex = dict[str, dict[int, ledger_pb2.LedgerEntry]]  # node_id -> seq -> entry


def check(ctx: AuditContext) -> None:
    """One `lineage:<artifact>` check per artifact, then `rounds`."""
    assert ctx.manifest is not None
    idx = {nid: {e.body.seq: e for e in ex.entries} for nid, ex in ctx.exports.items() if ex is not None}
    nodes_by_id = {n.node_id: n for n in ctx.manifest.nodes}
    listed = {f.path for f in ctx.manifest.files}
    for art in ctx.manifest.artifacts:
        probs = []
        if art.path not in listed:
            probs.append(f"{art.path} is not among the manifest's hashed files")
        if not art.sources:
            probs.append(f"{art.path} names no ledger entries it derives from")
        for s in art.sources:
            p = _source_problem(idx, nodes_by_id, s.node_id, s.ledger_seq, bytes(s.ledger_entry_hash))
            if p:
                probs.append(p)
        nodes = sorted({node_label(nodes_by_id[s.node_id]) for s in art.sources if s.node_id in nodes_by_id})
        ctx.add(f"lineage:{art.path}", FAIL if probs else PASS,
                (f"{len(probs)} source(s) do not trace: {probs[0]}" if probs else
                 f"{len(art.sources)} source(s) trace to ledger entries of {', '.join(nodes)}"), None, probs)
    _check_rounds(ctx, idx, nodes_by_id)


def _source_problem(idx: EntryIndex, nodes_by_id: dict, node_id: str, seq: int, entry_hash: bytes) -> str | None:
    if node_id not in nodes_by_id:
        return f"node {short(node_id)} is not in the manifest"
    label = node_label(nodes_by_id[node_id])
    if node_id not in idx:
        return f"node {label}: its ledger could not be read"
    e = idx[node_id].get(seq)
    if e is None:
        return f"node {label} has no ledger entry seq {seq}"
    if bytes(e.entry_hash) != bytes(entry_hash):
        return (f"node {label} seq {seq}: entry hash is {short(bytes(e.entry_hash))}, "
                f"the artifact names {short(bytes(entry_hash))}")
    return None


def _check_rounds(ctx: AuditContext, idx: EntryIndex, nodes_by_id: dict) -> None:
    manifest = ctx.manifest
    assert manifest is not None
    has_model = any(a.path.startswith("model/") for a in manifest.artifacts) or any(
        f.path.startswith("model/") for f in manifest.files)
    if not (ctx.root / bundle.ROUNDS).exists():
        if any(f.path == bundle.ROUNDS for f in manifest.files):
            ctx.add("rounds", FAIL, "rounds.json is listed but missing")
        elif has_model:  # a model with no record of the rounds that trained it
            ctx.add("rounds", FAIL, "the bundle publishes a model but no rounds.json")
        return
    try:
        rounds = list(bundle.read_rounds(ctx.root).rounds)
    except bundle.BundleError as e:
        ctx.add("rounds", FAIL, f"rounds.json does not parse: {e}")
        return
    model_sources = {(s.node_id, s.ledger_seq, bytes(s.ledger_entry_hash))
                     for a in manifest.artifacts if a.path.startswith("model/") for s in a.sources}
    probs, n = [], 0
    applied = [r for r in rounds if r.applied and r.contributors]
    if applied and not has_model:
        probs.append(f"{len(applied)} round(s) were applied but the bundle publishes no model")
    if has_model and not applied:
        probs.append("the bundle publishes a model, but no round was applied: nothing trained it")
    for r in rounds:
        for c in r.contributors:
            n += 1
            probs += [f"round {r.round}: {p}" for p in _contributor_problems(idx, nodes_by_id, r, c, model_sources)]
    # the converse: every source of the model is a contribution of an applied round (none withheld)
    in_rounds = {(c.node_id, c.ledger_seq) for r in applied for c in r.contributors}
    probs += [f"model source node {nid[:16]} seq {seq} is in no applied round"
              for nid, seq, _ in sorted(model_sources) if (nid, seq) not in in_rounds]
    ctx.add("rounds", FAIL if probs else PASS,
            (f"{len(probs)} problem(s): {probs[0]}" if probs else
             f"{len(rounds)} round(s), {n} contribution(s), each accounted by a ledger entry"), None, probs)


def _contributor_problems(idx: EntryIndex, nodes_by_id: dict, r: bundle_pb2.Round, c: bundle_pb2.RoundContributor,
                          model_sources: set) -> list[str]:
    try:
        h = bytes.fromhex(c.ledger_entry_hash)
    except ValueError as e:
        return [f"malformed contributor {c.node_id[:16]} seq {c.ledger_seq}: ledger_entry_hash: {e}"]
    nid, seq = c.node_id, c.ledger_seq
    p = _source_problem(idx, nodes_by_id, nid, seq, h)
    if p:
        return [p]
    entry, label, out = idx[nid][seq], node_label(nodes_by_id[nid]), []
    if not math.isclose(c.claimed_epsilon, entry.body.claimed_epsilon, rel_tol=1e-12, abs_tol=1e-12):
        out.append(f"node {label} seq {seq}: rounds.json says epsilon {c.claimed_epsilon:.6g}, "
                   f"the ledger {entry.body.claimed_epsilon:.6g}")
    out += _dpsgd_mismatch(label, seq, c, entry)
    if r.applied and model_sources and (nid, seq, h) not in model_sources:
        out.append(f"node {label} seq {seq} is not a source of the model")
    return out


def _dpsgd_mismatch(label: str, seq: int, c: bundle_pb2.RoundContributor, entry: ledger_pb2.LedgerEntry) -> list[str]:
    """What rounds.json says the round used (q, z, steps) must be the ledger event it names (issue 10).
    Older bundles record none of the three (all 0): nothing to compare."""
    if not (c.sampling_probability or c.noise_multiplier or c.steps):
        return []
    try:
        sgd = dpsgd_params(event_from_proto(entry.body.event))
    except (EventError, ValueError):
        sgd = None
    if sgd is None:
        return [f"node {label} seq {seq}: rounds.json records DP-SGD parameters, the ledger event is not DP-SGD"]
    out = []
    for what, said, logged in (("sampling rate q", c.sampling_probability, sgd.sampling_probability),
                               ("noise multiplier z", c.noise_multiplier, sgd.noise_multiplier),
                               ("steps", float(c.steps), float(sgd.steps))):
        if not math.isclose(said, logged, rel_tol=1e-12, abs_tol=0.0):
            out.append(f"node {label} seq {seq}: rounds.json says {what} {said:.9g}, the ledger event {logged:.9g}")
    return out

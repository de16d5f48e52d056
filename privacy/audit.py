"""Verify a release bundle without trusting the coordinator or the nodes (`cairn audit verify`).

`verify_bundle(path) -> AuditResult`: a list of named checks, each PASS, FAIL, WARN or SKIP with a
precise message. The bundle verifies when no check FAILs (`AuditResult.ok`).

Checks, and what each one catches:

  manifest               manifest.pb parses, has the known format, and manifest.json says the same
  signature:manifest     manifest.sig is the Ed25519 signature (RFC 8032) over manifest.pb by the
                         coordinator key the manifest names; when the auditor pins the coordinator's
                         published key (`coordinator_key`), it must be that key (a bundle altered and
                         re-hashed by anyone but the coordinator). Unpinned, a valid signature is a
                         WARN (FAIL with `strict`): it shows integrity since signing, not who signed
  nodes:trusted          when the auditor pins the node ids it trusts (`trusted_nodes`, node id =
                         SHA-256 of the community's ledger key, `cairn node status --json`): every node
                         in the bundle is one of them (a node fabricated with a fresh key), and a pinned
                         node missing from the bundle is a WARN; unpinned, a WARN (FAIL with `strict`)
  file:<path>            every listed file exists with the listed SHA-256 and size (a replaced model,
                         a flipped byte in any listed file)
  files:unlisted         no file in the bundle is missing from the manifest (a model or leaderboard
                         added where the coordinator published none: nothing signs it)
  key:<node>             the node's key in the manifest, in keys/<node_id>.ed25519 and in its ledger
                         export are the same key, and node_id = SHA-256(key) (a swapped node key)
  ledger:<node>          the export parses, .json and .pb hold the same ledger, every entry's hash,
                         Ed25519 signature, seq and prev_hash chain verify, and the chain ends at the
                         head (hash and length) the manifest pins (privacy/verify.py; dropped,
                         reordered, inserted, altered entries; a dropped tail entry)
  claims:<node>          the manifest's epsilon / delta / accountant for the node are those of its
                         last ledger entry; every entry is at the node's declared delta
  epsilon:<node>         INDEPENDENT recomputation (below): every entry's cumulative claimed epsilon
                         is at least what the logged events give, within EPSILON_TOLERANCE; a claim
                         far above the recomputation is a WARN (sound, but loose)
  policy:<node>          what of the policy is checkable (below)
  lineage:<artifact>     every source (node, ledger seq, entry hash) of every artifact in the manifest
                         is an entry of that node's verified ledger
  rounds                 every contributor of every round in rounds.json is such an entry too, with
                         the same claimed epsilon, and every applied round's contributors are sources
                         of the model artifact; a model is published exactly when a round was applied

Independent epsilon recomputation. privacy/accountant.py (the node's accountant) flattens and merges
event trees before calling dp_accounting. This module does not import it: it converts each logged
event to dp_accounting's own `dp_event` objects and runs `dp_accounting.pld.PLDAccountant`
(add/remove-one neighbouring, pessimistic discretisation) entry by entry, reading the cumulative
epsilon after each. dp_accounting's PLD accountant has no discrete-Gaussian event and amplifies
subsampling only for Gaussian/Laplace; the subclass below adds those cases with the library's own
PLD constructors (`from_discrete_gaussian_mechanism`, `from_discrete_laplace_mechanism`, both exact
for integer queries; Canonne, Kamath & Steinke 2020). Poisson sampling of a composite event is
accounted without amplification (sound: post-processing/joint convexity). dp_accounting's RDP
accountant is run as a second, looser sound bound; the recomputed epsilon is the smaller of the two.

Policy caps: the bundle carries each node's delta (manifest) and each ledger entry carries the
SHA-256 of the policy in force, but a bundle does not (yet) carry the policy text. So:
  - always: one policy per ledger or a WARN naming where it changed; every entry names a policy;
  - when the policy text is available (a bundle file `policies/<node_id>.toml`, or given by the
    auditor, e.g. obtained from the community): its hash must be the entries' policy_hash, its delta
    the declared delta, the recomputed and claimed epsilon at most its epsilon_cap, DP-SGD entries
    at or above its noise floor and at or below its sampling-rate ceiling, release kinds allowed;
  - otherwise the cap check is SKIP, saying why (`strict=True` turns SKIP into FAIL).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import attr
from dp_accounting import dp_event as dpe
from dp_accounting.pld import pld_privacy_accountant as pld_acc
from dp_accounting.pld import privacy_loss_distribution as pld_lib
from dp_accounting.rdp import rdp_privacy_accountant as rdp_acc
from google.protobuf import json_format

from privacy.events import EventError, event_from_proto
from privacy.ledger import LedgerError, load_export, node_id_of
from privacy.verify import verify_ledger
from protos import bundle_pb2, events_pb2, ledger_pb2

FORMAT = "cairn-bundle/2"  # /2: the manifest is signed (manifest.sig)
# A claim may be at most this much (relative) below the recomputation before it FAILs: both sides are
# pessimistic PLD computations, but with different discretisation paths.
EPSILON_TOLERANCE = 0.01
# A claim more than this much above the recomputation is loose (WARN), never unsafe.
LOOSE_FACTOR = 1.25
# A first pass on a grid coarser than the nodes' 1e-4: still pessimistic (an upper bound), ~10x
# faster, usually within the 6th digit. For discrete mechanisms it can be ~2% looser, so a claim
# that falls below it is recomputed on the fine grid before it is called under-reported.
VALUE_DISCRETIZATION_INTERVAL = 1e-3
FINE_DISCRETIZATION_INTERVAL = 1e-4

PASS, FAIL, WARN, SKIP = "PASS", "FAIL", "WARN", "SKIP"


@dataclass
class Check:
    name: str  # "file:model/model.safetensors", "ledger:community-0", ...
    status: str  # PASS / FAIL / WARN / SKIP
    message: str
    node_id: str | None = None
    problems: list[str] = field(default_factory=list)  # one line per thing found

    @property
    def ok(self) -> bool:
        return self.status != FAIL

    def __str__(self) -> str:
        head = f"{self.status} {self.name}: {self.message}"
        return "\n".join([head, *(f"    - {p}" for p in self.problems)])


@dataclass
class EntryAudit:
    seq: int
    created_at: str
    release_kind: str
    round_id: str
    contributors: int
    mechanism: str  # plain words
    params: dict
    claimed_epsilon: float
    recomputed_epsilon: float | None  # cumulative, at the node's delta
    pld_epsilon: float | None
    rdp_epsilon: float | None
    target_delta: float
    accountant: str
    policy_hash: str


@dataclass
class NodeAudit:
    node_id: str
    name: str
    delta: float
    claimed_epsilon: float  # manifest
    accountant: str
    recomputed_epsilon: float | None = None
    epsilon_cap: float | None = None
    entries: list[EntryAudit] = field(default_factory=list)


@dataclass
class AuditResult:
    bundle: str
    checks: list[Check] = field(default_factory=list)
    nodes: list[NodeAudit] = field(default_factory=list)
    federation_id: str = ""
    created_at: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def to_dict(self) -> dict:
        return {
            "bundle": self.bundle, "ok": self.ok, "federation_id": self.federation_id, "created_at": self.created_at,
            "seconds": self.seconds,
            "failures": [c.name for c in self.failures],
            "checks": [asdict(c) for c in self.checks],
            "nodes": [asdict(n) for n in self.nodes],
        }

    def summary_lines(self) -> list[str]:
        out = [str(c) for c in self.checks]
        n_fail = len(self.failures)
        out.append(f"{'VERIFIED' if self.ok else 'NOT VERIFIED'}: {len(self.checks)} checks, {n_fail} failed "
                   f"({self.bundle})")
        return out


# --- independent recomputation ------------------------------------------------------------------


@attr.s(frozen=True, slots=True, auto_attribs=True)
class DiscreteGaussianDpEvent(dpe.DpEvent):
    """Discrete Gaussian N_Z(0, sigma^2) on an integer query of L2 sensitivity `sensitivity`
    (Canonne, Kamath & Steinke 2020). dp_accounting has a PLD for it but no event."""

    sigma: float
    sensitivity: int


def to_dp_event(ev: events_pb2.DpEvent) -> dpe.DpEvent:
    """A ledger event (protobuf) as dp_accounting's own event objects. Noise multipliers are
    sigma / sensitivity (Gaussian, L2) and scale / sensitivity (Laplace, L1); dp_accounting's
    discrete Laplace parameter is the inverse scale (pmf ~ exp(-a|x|))."""
    which = ev.WhichOneof("event")
    if which == "gaussian":
        return dpe.GaussianDpEvent(noise_multiplier=ev.gaussian.sigma / ev.gaussian.sensitivity)
    if which == "discrete_gaussian":
        return DiscreteGaussianDpEvent(sigma=ev.discrete_gaussian.sigma, sensitivity=int(ev.discrete_gaussian.sensitivity))
    if which == "laplace":
        return dpe.LaplaceDpEvent(noise_multiplier=ev.laplace.scale / ev.laplace.sensitivity)
    if which == "discrete_laplace":
        return dpe.DiscreteLaplaceDpEvent(noise_parameter=1.0 / ev.discrete_laplace.scale,
                                          sensitivity=int(ev.discrete_laplace.sensitivity))
    if which == "poisson_sampled":
        return dpe.PoissonSampledDpEvent(sampling_probability=ev.poisson_sampled.sampling_probability,
                                         event=to_dp_event(ev.poisson_sampled.event))
    if which == "self_composed":
        return dpe.SelfComposedDpEvent(event=to_dp_event(ev.self_composed.event), count=int(ev.self_composed.count))
    if which == "composed":
        return dpe.ComposedDpEvent(events=[to_dp_event(e) for e in ev.composed.events])
    if which == "no_op":
        return dpe.NoOpDpEvent()
    raise EventError("DpEvent message has no event set")


class AuditPLDAccountant(pld_acc.PLDAccountant):
    """dp_accounting's PLDAccountant plus the discrete Gaussian, Poisson-sampled discrete
    mechanisms (the library's exact PLDs with sampling_prob), and Poisson sampling of composites
    (no amplification claimed: sound, loose)."""

    def __init__(self, interval: float = VALUE_DISCRETIZATION_INTERVAL):
        super().__init__(pld_acc.NeighborRel.ADD_OR_REMOVE_ONE, interval)

    def _extra_pld(self, event, q: float):
        vdi = self._value_discretization_interval
        if isinstance(event, DiscreteGaussianDpEvent):
            return pld_lib.from_discrete_gaussian_mechanism(
                sigma=event.sigma, sensitivity=event.sensitivity, value_discretization_interval=vdi, sampling_prob=q)
        if isinstance(event, dpe.DiscreteLaplaceDpEvent) and q < 1.0:
            return pld_lib.from_discrete_laplace_mechanism(
                parameter=event.noise_parameter, sensitivity=event.sensitivity, value_discretization_interval=vdi,
                sampling_prob=q)
        return None

    def _maybe_compose(self, event, count, do_compose):
        q = 1.0
        inner = event
        while isinstance(inner, dpe.PoissonSampledDpEvent):  # independent Poisson samples multiply
            q *= inner.sampling_probability
            inner = inner.event
        extra = self._extra_pld(inner, q)
        if extra is not None:
            if do_compose:
                self._pld = self._pld.compose(extra.self_compose(count) if count > 1 else extra)
            return None
        if isinstance(event, dpe.PoissonSampledDpEvent) and not isinstance(
                event.event, (dpe.GaussianDpEvent, dpe.LaplaceDpEvent)):
            if isinstance(inner, (dpe.GaussianDpEvent, dpe.LaplaceDpEvent)):  # nested sampling
                return super()._maybe_compose(dpe.PoissonSampledDpEvent(q, inner), count, do_compose)
            return self._maybe_compose(event.event, count, do_compose)  # composite: no amplification
        return super()._maybe_compose(event, count, do_compose)


def _rdp_event(event: dpe.DpEvent) -> dpe.DpEvent:
    """An RDP-accountable upper bound: discrete Gaussian -> Gaussian RDP curve (CKS 2020, Thm 4);
    discrete Laplace eps0-DP -> eps0^2/2-zCDP (Bun & Steinke 2016, Prop 1.4); sampling of those
    and of composites: no amplification."""
    if isinstance(event, DiscreteGaussianDpEvent):
        return dpe.GaussianDpEvent(event.sigma / event.sensitivity)
    if isinstance(event, dpe.DiscreteLaplaceDpEvent):
        return dpe.GaussianDpEvent(1.0 / (event.sensitivity * event.noise_parameter))
    if isinstance(event, dpe.SelfComposedDpEvent):
        return dpe.SelfComposedDpEvent(_rdp_event(event.event), event.count)
    if isinstance(event, dpe.ComposedDpEvent):
        return dpe.ComposedDpEvent([_rdp_event(e) for e in event.events])
    if isinstance(event, dpe.PoissonSampledDpEvent):
        if isinstance(event.event, dpe.GaussianDpEvent):
            return event
        return _rdp_event(event.event)
    return event


@functools.lru_cache(maxsize=256)
def _recompute_cached(events_blob: tuple[bytes, ...], delta: float, interval: float) -> tuple[tuple, ...]:
    pld = AuditPLDAccountant(interval)
    rdp = rdp_acc.RdpAccountant()
    out = []
    for raw in events_blob:
        ev = to_dp_event(events_pb2.DpEvent.FromString(raw))
        pld.compose(ev)
        p = float(pld.get_epsilon(delta))
        try:
            rdp.compose(_rdp_event(ev))
            r = float(rdp.get_epsilon(delta))
        except (NotImplementedError, ValueError, TypeError):
            r = math.inf
        out.append((p, r))
    return tuple(out)


def recompute_epsilons(events: list[events_pb2.DpEvent], delta: float,
                       interval: float = VALUE_DISCRETIZATION_INTERVAL) -> list[tuple[float, float]]:
    """Cumulative (PLD epsilon, RDP epsilon) after each event, at `delta`, by dp_accounting directly."""
    blob = tuple(e.SerializeToString(deterministic=True) for e in events)
    return list(_recompute_cached(blob, float(delta), float(interval)))


def describe_event(ev: events_pb2.DpEvent) -> tuple[str, dict]:
    """(plain words, parameters) of a ledger event, for reports."""
    which = ev.WhichOneof("event")
    if which == "self_composed":
        words, p = describe_event(ev.self_composed.event)
        return f"{words}, repeated {ev.self_composed.count} times", {**p, "count": ev.self_composed.count}
    if which == "poisson_sampled":
        words, p = describe_event(ev.poisson_sampled.event)
        q = ev.poisson_sampled.sampling_probability
        return f"Poisson-sampled (each contributor w.p. q={q:.4g}) {words}", {**p, "sampling_probability": q}
    if which in ("gaussian", "discrete_gaussian"):
        g = getattr(ev, which)
        name = "Gaussian" if which == "gaussian" else "discrete Gaussian"
        return (f"{name} noise sigma={g.sigma:.4g} on L2 sensitivity {g.sensitivity:.4g} "
                f"(noise multiplier {g.sigma / g.sensitivity:.4g})"), {
            "mechanism": which, "sigma": g.sigma, "sensitivity": g.sensitivity, "noise_multiplier": g.sigma / g.sensitivity}
    if which in ("laplace", "discrete_laplace"):
        g = getattr(ev, which)
        name = "Laplace" if which == "laplace" else "discrete Laplace"
        return f"{name} noise scale={g.scale:.4g} on L1 sensitivity {g.sensitivity:.4g}", {
            "mechanism": which, "scale": g.scale, "sensitivity": g.sensitivity}
    if which == "composed":
        parts = [describe_event(e) for e in ev.composed.events]
        return "; then ".join(w for w, _ in parts) or "nothing", {"mechanism": "composed", "parts": [p for _, p in parts]}
    if which == "no_op":
        return "no private release", {"mechanism": "no_op"}
    return "missing event", {}


def _dpsgd_params(ev: events_pb2.DpEvent) -> tuple[float, float] | None:
    """(noise multiplier, sampling rate) of a DP-SGD-shaped event, else None."""
    while ev.WhichOneof("event") == "self_composed":
        ev = ev.self_composed.event
    if ev.WhichOneof("event") != "poisson_sampled":
        return None
    inner = ev.poisson_sampled.event
    if inner.WhichOneof("event") != "gaussian":
        return None
    return inner.gaussian.sigma / inner.gaussian.sensitivity, ev.poisson_sampled.sampling_probability


# --- the checks -----------------------------------------------------------------------------------


def _short(h: bytes | str) -> str:
    s = h.hex() if isinstance(h, (bytes, bytearray)) else str(h)
    return s[:16] + "..."


def _load_manifest(root: Path, res: AuditResult) -> bundle_pb2.BundleManifest | None:
    pb, js = root / "manifest.pb", root / "manifest.json"
    if not pb.exists():
        res.checks.append(Check("manifest", FAIL, f"{pb}: missing (not a Cairn bundle)"))
        return None
    try:
        manifest = bundle_pb2.BundleManifest.FromString(pb.read_bytes())
    except Exception as e:  # DecodeError
        res.checks.append(Check("manifest", FAIL, f"manifest.pb does not parse: {type(e).__name__}: {e}"))
        return None
    problems = []
    if manifest.format != FORMAT:
        problems.append(f"format is {manifest.format!r}, expected {FORMAT!r}")
    if js.exists():
        try:
            other = json_format.Parse(js.read_text(encoding="utf-8"), bundle_pb2.BundleManifest())
            if other.SerializeToString(deterministic=True) != manifest.SerializeToString(deterministic=True):
                problems.append("manifest.json and manifest.pb disagree (one of them was changed)")
        except Exception as e:
            problems.append(f"manifest.json does not parse: {type(e).__name__}: {e}")
    else:
        problems.append("manifest.json is missing")
    res.federation_id, res.created_at = manifest.federation_id, manifest.created_at
    res.checks.append(Check("manifest", FAIL if problems else PASS,
                            "; ".join(problems) if problems else
                            f"{manifest.format}, federation {manifest.federation_id}, {len(manifest.files)} files, "
                            f"{len(manifest.nodes)} nodes, {len(manifest.artifacts)} artifacts"))
    return manifest


def _check_signature(root: Path, manifest, res: AuditResult, pinned: bytes | None, strict: bool = False) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key, sig_path = bytes(manifest.coordinator_public_key), root / "manifest.sig"
    if pinned is not None and len(pinned) != 32:
        raise ValueError(f"the pinned coordinator key is {len(pinned)} bytes, not a raw Ed25519 key (32)")
    if not sig_path.is_file():
        problem = "manifest.sig is missing: the manifest is unsigned"
    elif len(key) != 32:
        problem = f"the manifest's coordinator_public_key is {len(key)} bytes, not a raw Ed25519 key"
    else:
        try:
            Ed25519PublicKey.from_public_bytes(key).verify(sig_path.read_bytes(), (root / "manifest.pb").read_bytes())
            problem = None
        except InvalidSignature:
            problem = (f"manifest.sig is not coordinator key {_short(key)}'s signature over manifest.pb: the manifest "
                       "was changed after it was signed")
    if problem is None and pinned is not None and key != pinned:
        problem = (f"the manifest is signed by coordinator key {_short(key)}, not the key you pinned {_short(pinned)}: "
                   "another party re-signed the bundle")
    if problem:
        res.checks.append(Check("signature:manifest", FAIL, problem))
    elif pinned is not None:
        res.checks.append(Check("signature:manifest", PASS, f"signed by the coordinator key you pinned, {_short(key)}"))
    else:
        res.checks.append(Check("signature:manifest", FAIL if strict else WARN, (
            f"signed by coordinator key {_short(key)}, which you did not pin: this shows the bundle is unchanged since "
            "it was signed, not who signed it (pin the coordinator's published key with --coordinator-key)")))


def _check_trust(manifest, res: AuditResult, trusted: set[str] | None, strict: bool = False) -> None:
    present = {n.node_id: _node_label(n) for n in manifest.nodes}
    if trusted is None:
        res.checks.append(Check("nodes:trusted", FAIL if strict else WARN, (
            f"you pinned no node ids: the {len(present)} node(s) are whoever holds their keys, not necessarily the "
            "communities you know (pin their published ids with --trust-node)")))
        return
    unknown = [f"node {label} ({_short(nid)}) is not one you trust: its key was not pinned"
               for nid, label in sorted(present.items()) if nid not in trusted]
    missing = sorted(t for t in trusted if t not in present)
    if unknown:
        res.checks.append(Check("nodes:trusted", FAIL, f"{len(unknown)} unpinned node(s): {unknown[0]}", problems=unknown))
    elif missing:
        res.checks.append(Check("nodes:trusted", WARN, f"{len(missing)} pinned node(s) took no part: "
                                + ", ".join(_short(m) for m in missing), problems=missing))
    else:
        res.checks.append(Check("nodes:trusted", PASS, f"all {len(present)} node(s) are among the {len(trusted)} you pinned"))


def _check_files(root: Path, manifest, res: AuditResult) -> None:
    from hashlib import sha256

    listed = set()
    for f in manifest.files:
        listed.add(f.path)
        p = (root / f.path)
        name = f"file:{f.path}"
        if ".." in Path(f.path).parts or Path(f.path).is_absolute():
            res.checks.append(Check(name, FAIL, f"path {f.path!r} leaves the bundle"))
            continue
        if not p.is_file():
            res.checks.append(Check(name, FAIL, f"{f.path} is listed in the manifest but missing"))
            continue
        data = p.read_bytes()
        digest = sha256(data).hexdigest()
        if digest != f.sha256:
            res.checks.append(Check(name, FAIL, (
                f"{f.path} ({f.kind}) was changed: SHA-256 is {digest[:16]}..., the manifest lists {f.sha256[:16]}... "
                f"(size {len(data)} vs listed {f.size})")))
        elif len(data) != f.size:
            res.checks.append(Check(name, FAIL, f"{f.path}: size {len(data)} bytes, the manifest lists {f.size}"))
        else:
            res.checks.append(Check(name, PASS, f"{f.kind}, {f.size} bytes, SHA-256 {digest[:16]}..."))
    unlisted = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                      if p.is_file() and str(p.relative_to(root)) not in listed
                      and str(p.relative_to(root)) not in ("manifest.pb", "manifest.json", "manifest.sig"))
    if unlisted:
        res.checks.append(Check("files:unlisted", FAIL, f"{len(unlisted)} file(s) in the bundle are not in the signed "
                                f"manifest, so nothing vouches for them: {unlisted[0]}", problems=unlisted))


def _node_label(node) -> str:
    return node.name or node.node_id[:16]


def _check_node(root: Path, manifest, node, res: AuditResult, policies: dict, strict: bool):
    label = _node_label(node)
    na = NodeAudit(node.node_id, node.name, node.delta, node.claimed_epsilon, node.accountant)
    res.nodes.append(na)
    pk = bytes(node.ledger_public_key)

    # key
    kp = []
    key_file = root / "keys" / f"{node.node_id}.ed25519"
    if len(pk) != 32:
        kp.append(f"manifest key is {len(pk)} bytes, not a raw Ed25519 key")
    if node_id_of(pk) != node.node_id:
        kp.append(f"node_id {_short(node.node_id)} is not SHA-256 of the manifest's key ({_short(node_id_of(pk))}): "
                  "the key was swapped")
    if not key_file.exists():
        kp.append(f"keys/{node.node_id}.ed25519 is missing")
    else:
        try:
            fk = bytes.fromhex(key_file.read_text().strip())
        except ValueError:
            fk = b""
            kp.append(f"keys/{node.node_id}.ed25519 is not a hex key")
        if fk and fk != pk:
            kp.append(f"keys/{node.node_id}.ed25519 holds key {_short(fk)}, the manifest lists {_short(pk)}: the key was swapped")
    export = None
    lp: list[str] = []
    ledger_path = root / node.ledger_file if node.ledger_file else root / "ledgers" / f"{node.node_id}.pb"
    try:
        export = load_export(ledger_path)
    except (LedgerError, OSError) as e:
        lp.append(f"{ledger_path.relative_to(root) if ledger_path.is_relative_to(root) else ledger_path}: {e}")
    if export is not None:
        if bytes(export.public_key) != pk:
            kp.append(f"the ledger export carries key {_short(bytes(export.public_key))}, the manifest lists {_short(pk)}")
        if export.node_id != node.node_id:
            lp.append(f"the ledger export is node {_short(export.node_id)}, the manifest says {_short(node.node_id)}")
        if node.name and export.node_name != node.name:
            lp.append(f"the ledger export names the node {export.node_name!r}, the manifest {node.name!r}")
        json_path = ledger_path.with_suffix(".json")
        if json_path.exists():
            try:
                other = load_export(json_path)
                if other.SerializeToString(deterministic=True) != export.SerializeToString(deterministic=True):
                    lp.append(f"{json_path.name} and {ledger_path.name} hold different ledgers (one was changed)")
            except LedgerError as e:
                lp.append(f"{json_path.name}: {e}")
        # an empty ledger pins no head; the entry count below still catches entries added to it
        head = bytes(node.ledger_head_hash) if node.ledger_entries else None
        probs = verify_ledger(export, pk, recompute_epsilon=False, expected_head=head)
        lp += [str(p) for p in probs]
        if len(export.entries) != node.ledger_entries:
            lp.append(f"the ledger has {len(export.entries)} entries, the manifest pins {node.ledger_entries} "
                      f"({'entries dropped' if len(export.entries) < node.ledger_entries else 'entries added'})")
    res.checks.append(Check(f"key:{label}", FAIL if kp else PASS, "; ".join(kp[:1]) + (f" (+{len(kp) - 1} more)" if len(kp) > 1 else "")
                            if kp else f"Ed25519 key {_short(pk)} in manifest, keys/ and ledger; node_id = SHA-256(key)",
                            node.node_id, kp))
    if export is None:
        res.checks.append(Check(f"ledger:{label}", FAIL, lp[0], node.node_id, lp))
        return None
    res.checks.append(Check(
        f"ledger:{label}", FAIL if lp else PASS,
        (f"{len(lp)} problem(s): {lp[0]}" if lp else
         f"{len(export.entries)} entries: hashes, Ed25519 signatures, seq and chain verify; head {_short(bytes(node.ledger_head_hash))} "
         f"as pinned"), node.node_id, lp))

    # claims and delta
    cp = []
    entries = list(export.entries)
    if entries:
        last = entries[-1].body
        if not math.isclose(node.claimed_epsilon, last.claimed_epsilon, rel_tol=1e-12, abs_tol=1e-12):
            cp.append(f"manifest claims epsilon {node.claimed_epsilon:.6g}, the ledger's last entry {last.claimed_epsilon:.6g}")
        if node.accountant != last.accountant:
            cp.append(f"manifest names accountant {node.accountant!r}, the ledger's last entry {last.accountant!r}")
    elif node.claimed_epsilon != 0:
        cp.append(f"manifest claims epsilon {node.claimed_epsilon:.6g} for an empty ledger")
    for e in entries:
        if e.body.target_delta != node.delta:
            cp.append(f"seq {e.body.seq}: target_delta {e.body.target_delta:g} is not the node's declared delta {node.delta:g}")
    res.checks.append(Check(f"claims:{label}", FAIL if cp else PASS,
                            "; ".join(cp[:2]) if cp else
                            f"manifest epsilon {node.claimed_epsilon:.4f} at delta {node.delta:g} ({node.accountant}) "
                            "is the ledger's last claim; every entry at the declared delta", node.node_id, cp))

    # independent epsilon
    _check_epsilon(node, entries, na, res, label)
    _check_policy(node, entries, na, res, label, policies, strict)
    return export


def _check_epsilon(node, entries, na: NodeAudit, res: AuditResult, label: str) -> None:
    ep, warns = [], []
    events = []
    bad_event = False
    for e in entries:
        try:
            event_from_proto(e.body.event)  # validates parameters
        except (EventError, ValueError) as ex:
            ep.append(f"seq {e.body.seq}: DP event is invalid: {ex}")
            bad_event = True
        events.append(e.body.event)
    delta = node.delta
    if not (0 < delta < 1):
        ep.append(f"declared delta {delta!r} is not in (0, 1)")
    recomputed: list[tuple[float, float]] = []
    if not bad_event and 0 < delta < 1 and entries:
        recomputed = recompute_epsilons(events, delta)
        if any(e.body.claimed_epsilon < min(r) - 1e-9 for e, r in zip(entries, recomputed)):
            recomputed = recompute_epsilons(events, delta, FINE_DISCRETIZATION_INTERVAL)  # confirm on the fine grid
    for i, e in enumerate(entries):
        b = e.body
        words, params = describe_event(b.event)
        pld_e, rdp_e = recomputed[i] if recomputed else (None, None)
        rec = min(pld_e, rdp_e) if recomputed else None
        na.entries.append(EntryAudit(b.seq, b.created_at, b.release_kind, b.round_id, b.contributors, words, params,
                                     b.claimed_epsilon, rec, pld_e, rdp_e, b.target_delta, b.accountant, b.policy_hash))
        if rec is None:
            continue
        claimed = b.claimed_epsilon
        if math.isnan(claimed) or claimed < rec * (1 - EPSILON_TOLERANCE) - 1e-9:
            ep.append(f"seq {b.seq} ({b.release_kind}, round {b.round_id or '-'}): claimed cumulative epsilon {claimed:.6g} is "
                      f"BELOW the independent recomputation {rec:.6g} (PLD {pld_e:.6g}, RDP {rdp_e:.6g}, delta {delta:g}): "
                      "under-reported")
        elif claimed > rec * LOOSE_FACTOR + 1e-9:
            warns.append(f"seq {b.seq}: claimed {claimed:.6g} is far above the recomputed {rec:.6g} (sound, but loose)")
    if recomputed:
        na.recomputed_epsilon = min(recomputed[-1])
        if node.claimed_epsilon < na.recomputed_epsilon * (1 - EPSILON_TOLERANCE) - 1e-9:
            ep.append(f"the manifest's epsilon {node.claimed_epsilon:.6g} is below the recomputed {na.recomputed_epsilon:.6g}")
    elif not entries:
        na.recomputed_epsilon = 0.0
    if ep:
        res.checks.append(Check(f"epsilon:{label}", FAIL, ep[0] + (f" (+{len(ep) - 1} more)" if len(ep) > 1 else ""),
                                node.node_id, ep + warns))
    else:
        msg = (f"every claim reproduced: final {node.claimed_epsilon:.4f} claimed vs {na.recomputed_epsilon:.4f} recomputed "
               f"(dp_accounting PLD/RDP, delta {delta:g}, tolerance {EPSILON_TOLERANCE:.0%})")
        res.checks.append(Check(f"epsilon:{label}", WARN if warns else PASS, msg, node.node_id, warns))


def _find_policy(root: Path, node, policies: dict):
    for key in (node.node_id, node.name):
        if key in policies:
            return Path(policies[key])
    p = root / "policies" / f"{node.node_id}.toml"
    return p if p.exists() else None


def _check_policy(node, entries, na: NodeAudit, res: AuditResult, label: str, policies: dict, strict: bool) -> None:
    from privacy.policy import PolicyError, load_policy

    pp, warns = [], []
    hashes = [e.body.policy_hash for e in entries]
    for e in entries:
        if not e.body.policy_hash:
            pp.append(f"seq {e.body.seq}: names no policy (empty policy_hash)")
    changes = [entries[i].body.seq for i in range(1, len(entries)) if hashes[i] != hashes[i - 1]]
    if changes:
        warns.append(f"the policy changed at seq {', '.join(map(str, changes))}")
    root = Path(res.bundle)
    path = _find_policy(root, node, policies)
    if path is None:
        if pp:
            res.checks.append(Check(f"policy:{label}", FAIL, pp[0], node.node_id, pp + warns))
            return
        msg = ("cap not checkable: the bundle carries no policy text for this node (only its hash "
               f"{_short(hashes[-1]) if hashes else '-'} in each entry); give it with --policy to check the cap")
        res.checks.append(Check(f"policy:{label}", FAIL if strict else SKIP, msg, node.node_id, warns))
        return
    try:
        policy = load_policy(path)
    except PolicyError as e:
        res.checks.append(Check(f"policy:{label}", FAIL, str(e), node.node_id))
        return
    na.epsilon_cap = policy.epsilon_cap
    h = policy.sha256()
    for e in entries:
        b = e.body
        if b.policy_hash and b.policy_hash != h:
            (pp if b.seq == entries[-1].body.seq else warns).append(
                f"seq {b.seq}: entry's policy_hash {_short(b.policy_hash)} is not the given policy's {_short(h)}")
        if "train" == b.release_kind or b.release_kind.startswith("query:"):
            kind = "train" if b.release_kind == "train" else b.release_kind.split(":", 1)[1]
            if kind not in policy.allowed_releases:
                pp.append(f"seq {b.seq}: release kind {kind!r} is not allowed by the policy")
        if b.claimed_epsilon > policy.epsilon_cap * (1 + 1e-12):
            pp.append(f"seq {b.seq}: claimed epsilon {b.claimed_epsilon:.6g} exceeds the cap {policy.epsilon_cap:g}")
        sgd = _dpsgd_params(b.event) if b.release_kind == "train" else None
        if sgd is not None:
            z, q = sgd
            if z < policy.min_noise_multiplier * (1 - 1e-12):
                pp.append(f"seq {b.seq}: noise multiplier {z:.4g} is below the policy floor {policy.min_noise_multiplier:g}")
            if q > policy.max_sampling_rate * (1 + 1e-12):
                pp.append(f"seq {b.seq}: sampling rate {q:.4g} is above the policy ceiling {policy.max_sampling_rate:g}")
    if policy.delta != node.delta:
        pp.append(f"declared delta {node.delta:g} is not the policy's {policy.delta:g}")
    if na.recomputed_epsilon is not None and na.recomputed_epsilon > policy.epsilon_cap * (1 + EPSILON_TOLERANCE):
        pp.append(f"recomputed epsilon {na.recomputed_epsilon:.6g} exceeds the cap {policy.epsilon_cap:g}")
    if pp:
        res.checks.append(Check(f"policy:{label}", FAIL, pp[0] + (f" (+{len(pp) - 1} more)" if len(pp) > 1 else ""),
                                node.node_id, pp + warns))
    else:
        res.checks.append(Check(f"policy:{label}", WARN if warns else PASS,
                                f"within cap {policy.epsilon_cap:g} at delta {policy.delta:g} (policy {_short(h)}): "
                                f"claimed {node.claimed_epsilon:.4f}, recomputed {na.recomputed_epsilon or 0:.4f}; "
                                "DP-SGD floors and allowed kinds hold", node.node_id, warns))


def _entry_index(exports: dict) -> dict:
    return {nid: {e.body.seq: e for e in ex.entries} for nid, ex in exports.items() if ex is not None}


def _check_source(idx, nodes_by_id, node_id: str, seq: int, entry_hash: bytes) -> str | None:
    if node_id not in nodes_by_id:
        return f"node {_short(node_id)} is not in the manifest"
    if node_id not in idx:
        return f"node {_nlabel(nodes_by_id, node_id)}: its ledger could not be read"
    e = idx[node_id].get(seq)
    if e is None:
        return f"node {_nlabel(nodes_by_id, node_id)} has no ledger entry seq {seq}"
    if bytes(e.entry_hash) != bytes(entry_hash):
        return (f"node {_nlabel(nodes_by_id, node_id)} seq {seq}: entry hash is {_short(bytes(e.entry_hash))}, "
                f"the artifact names {_short(bytes(entry_hash))}")
    return None


def _nlabel(nodes_by_id, node_id) -> str:
    return _node_label(nodes_by_id[node_id])


def _check_lineage(root: Path, manifest, exports: dict, res: AuditResult) -> None:
    idx = _entry_index(exports)
    nodes_by_id = {n.node_id: n for n in manifest.nodes}
    listed = {f.path for f in manifest.files}
    for art in manifest.artifacts:
        probs = []
        if art.path not in listed:
            probs.append(f"{art.path} is not among the manifest's hashed files")
        if not art.sources:
            probs.append(f"{art.path} names no ledger entries it derives from")
        for s in art.sources:
            p = _check_source(idx, nodes_by_id, s.node_id, s.ledger_seq, bytes(s.ledger_entry_hash))
            if p:
                probs.append(p)
        nodes = sorted({_nlabel(nodes_by_id, s.node_id) for s in art.sources if s.node_id in nodes_by_id})
        res.checks.append(Check(f"lineage:{art.path}", FAIL if probs else PASS,
                                (f"{len(probs)} source(s) do not trace: {probs[0]}" if probs else
                                 f"{len(art.sources)} source(s) trace to ledger entries of {', '.join(nodes)}"), None, probs))
    _check_rounds(root, manifest, idx, nodes_by_id, res)


def _check_rounds(root: Path, manifest, idx, nodes_by_id, res: AuditResult) -> None:
    path = root / "rounds.json"
    if not path.exists():
        if any(f.path == "rounds.json" for f in manifest.files):
            res.checks.append(Check("rounds", FAIL, "rounds.json is listed but missing"))
        return
    try:
        rounds = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        res.checks.append(Check("rounds", FAIL, f"rounds.json does not parse: {e}"))
        return
    model_sources = {(s.node_id, s.ledger_seq, bytes(s.ledger_entry_hash))
                     for a in manifest.artifacts if a.path.startswith("model/") for s in a.sources}
    probs, n = [], 0
    has_model = any(a.path.startswith("model/") for a in manifest.artifacts) or any(
        f.path.startswith("model/") for f in manifest.files)
    applied = [r for r in rounds if isinstance(r, dict) and r.get("applied", True) and r.get("contributors")]
    if applied and not has_model:
        probs.append(f"{len(applied)} round(s) were applied but the bundle publishes no model")
    if has_model and not applied:
        probs.append("the bundle publishes a model, but no round was applied: nothing trained it")
    for r in rounds:
        for c in r.get("contributors", []):
            n += 1
            try:
                h = bytes.fromhex(c["ledger_entry_hash"])
                nid, seq = c["node_id"], int(c["ledger_seq"])
            except (KeyError, ValueError, TypeError) as e:
                probs.append(f"round {r.get('round')}: malformed contributor {c!r}: {e}")
                continue
            p = _check_source(idx, nodes_by_id, nid, seq, h)
            if p:
                probs.append(f"round {r.get('round')}: {p}")
                continue
            e = idx[nid][seq]
            if "claimed_epsilon" in c and not math.isclose(float(c["claimed_epsilon"]), e.body.claimed_epsilon,
                                                           rel_tol=1e-12, abs_tol=1e-12):
                probs.append(f"round {r.get('round')}: node {_nlabel(nodes_by_id, nid)} seq {seq}: rounds.json says "
                             f"epsilon {c['claimed_epsilon']:.6g}, the ledger {e.body.claimed_epsilon:.6g}")
            if r.get("applied", True) and model_sources and (nid, seq, h) not in model_sources:
                probs.append(f"round {r.get('round')}: node {_nlabel(nodes_by_id, nid)} seq {seq} is not a source of the model")
    res.checks.append(Check("rounds", FAIL if probs else PASS,
                            (f"{len(probs)} problem(s): {probs[0]}" if probs else
                             f"{len(rounds)} round(s), {n} contribution(s), each accounted by a ledger entry"), None, probs))


def verify_bundle(path, *, policies: dict | None = None, strict: bool = False, coordinator_key: bytes | None = None,
                  trusted_nodes: set[str] | None = None) -> AuditResult:
    """Verify the bundle at `path`. `policies`: {node_id or name: policy.toml path} the auditor
    obtained elsewhere (bundle files policies/<node_id>.toml are used when present).
    `strict`: checks that cannot be made (SKIP) fail instead. `coordinator_key`: the coordinator's
    published raw Ed25519 key, pinned. `trusted_nodes`: the node ids the auditor trusts, pinned."""
    import time

    t0 = time.perf_counter()
    root = Path(path)
    res = AuditResult(bundle=str(root))
    manifest = _load_manifest(root, res)
    if manifest is None:
        res.seconds = time.perf_counter() - t0
        return res
    _check_signature(root, manifest, res, coordinator_key, strict)
    _check_trust(manifest, res, None if trusted_nodes is None else set(trusted_nodes), strict)
    _check_files(root, manifest, res)
    exports = {}
    if not manifest.nodes:
        res.checks.append(Check("nodes", FAIL, "the manifest lists no nodes"))
    seen = set()
    for node in manifest.nodes:
        if node.node_id in seen:
            res.checks.append(Check(f"node:{_node_label(node)}", FAIL, f"node {_short(node.node_id)} is listed twice"))
            continue
        seen.add(node.node_id)
        exports[node.node_id] = _check_node(root, manifest, node, res, policies or {}, strict)
    _check_lineage(root, manifest, exports, res)
    res.seconds = time.perf_counter() - t0
    return res


__all__ = [
    "AuditResult", "Check", "EntryAudit", "NodeAudit", "verify_bundle", "recompute_epsilons", "to_dp_event",
    "describe_event", "AuditPLDAccountant", "EPSILON_TOLERANCE", "PASS", "FAIL", "WARN", "SKIP",
]
_unused = ledger_pb2  # the ledger format this module reads (protos/ledger.proto)

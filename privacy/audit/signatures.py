"""Check family `signatures`: who signed the manifest, and whether the nodes are the ones you trust.

  signature:manifest  manifest.sig is the Ed25519 signature (RFC 8032,
                      https://www.rfc-editor.org/rfc/rfc8032) over manifest.pb by the coordinator key
                      the manifest names; pinned (`coordinator_key`), it must be that key. Unpinned, a
                      valid signature is a WARN (FAIL with `strict`): integrity since signing, not who.
  nodes:trusted       pinned node ids (`trusted_nodes`, node id = SHA-256 of the ledger key): every
                      node in the bundle is one of them, and every one of them is in the bundle (a
                      pinned node missing FAILs: a coordinator could drop a node whose update is in
                      the model, issue 15); unpinned, a WARN (FAIL with `strict`).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from privacy.audit.context import AuditContext, node_label, short
from privacy.audit.result import FAIL, PASS, WARN
from protos import bundle


def check(ctx: AuditContext) -> None:
    """The manifest's signature, then the pinned node ids."""
    _check_signature(ctx)
    _check_trust(ctx)


def _check_signature(ctx: AuditContext) -> None:
    assert ctx.manifest is not None
    pinned, root = ctx.coordinator_key, ctx.root
    key, sig_path = bytes(ctx.manifest.coordinator_public_key), root / bundle.MANIFEST_SIG
    if pinned is not None and len(pinned) != 32:
        raise ValueError(f"the pinned coordinator key is {len(pinned)} bytes, not a raw Ed25519 key (32)")
    if not sig_path.is_file():
        problem = "manifest.sig is missing: the manifest is unsigned"
    elif len(key) != 32:
        problem = f"the manifest's coordinator_public_key is {len(key)} bytes, not a raw Ed25519 key"
    else:
        try:
            Ed25519PublicKey.from_public_bytes(key).verify(sig_path.read_bytes(), (root / bundle.MANIFEST_PB).read_bytes())
            problem = None
        except InvalidSignature:
            problem = (f"manifest.sig is not coordinator key {short(key)}'s signature over manifest.pb: the manifest "
                       "was changed after it was signed")
    if problem is None and pinned is not None and key != pinned:
        problem = (f"the manifest is signed by coordinator key {short(key)}, not the key you pinned {short(pinned)}: "
                   "another party re-signed the bundle")
    if problem:
        ctx.add("signature:manifest", FAIL, problem)
    elif pinned is not None:
        ctx.add("signature:manifest", PASS, f"signed by the coordinator key you pinned, {short(key)}")
    else:
        ctx.add("signature:manifest", FAIL if ctx.strict else WARN, (
            f"signed by coordinator key {short(key)}, which you did not pin: this shows the bundle is unchanged since "
            "it was signed, not who signed it (pin the coordinator's published key with --coordinator-key)"))


def _check_trust(ctx: AuditContext) -> None:
    assert ctx.manifest is not None
    trusted = ctx.trusted_nodes
    present = {n.node_id: node_label(n) for n in ctx.manifest.nodes}
    if trusted is None:
        ctx.add("nodes:trusted", FAIL if ctx.strict else WARN, (
            f"you pinned no node ids: the {len(present)} node(s) are whoever holds their keys, not necessarily the "
            "communities you know (pin their published ids with --trust-node)"))
        return
    unknown = [f"node {label} ({short(nid)}) is not one you trust: its key was not pinned"
               for nid, label in sorted(present.items()) if nid not in trusted]
    missing = sorted(t for t in trusted if t not in present)
    if unknown:
        ctx.add("nodes:trusted", FAIL, f"{len(unknown)} unpinned node(s): {unknown[0]}", problems=unknown)
    elif missing:
        ctx.add("nodes:trusted", FAIL, f"{len(missing)} pinned node(s) are missing from the bundle (dropped, or took "
                "no part): " + ", ".join(short(m) for m in missing), problems=missing)
    else:
        ctx.add("nodes:trusted", PASS, f"all {len(present)} node(s) are among the {len(trusted)} you pinned")

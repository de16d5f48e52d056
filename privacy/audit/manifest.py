"""Check family `manifest`: manifest.pb parses, has the known format, and manifest.json says the same.

The format string, the file names and the parsing are the bundle format's (protos/bundle.py); this
check only judges what it reads. When the manifest does not parse, nothing else can be checked.
"""

from __future__ import annotations

from google.protobuf import json_format

from privacy.audit.context import AuditContext
from privacy.audit.result import FAIL, PASS
from protos import bundle, bundle_pb2


def check(ctx: AuditContext) -> None:
    """Set `ctx.manifest` when manifest.pb parses; one `manifest` check either way."""
    try:
        manifest = bundle.read_manifest(ctx.root)
    except bundle.BundleError as e:
        ctx.add("manifest", FAIL, str(e))
        return
    problems = []
    if manifest.format != bundle.FORMAT:
        problems.append(f"format is {manifest.format!r}, expected {bundle.FORMAT!r}")
    js = ctx.root / bundle.MANIFEST_JSON
    if js.exists():
        try:
            other = json_format.Parse(js.read_text(encoding="utf-8"), bundle_pb2.BundleManifest())
            if bundle.manifest_bytes(other) != bundle.manifest_bytes(manifest):
                problems.append("manifest.json and manifest.pb disagree (one of them was changed)")
        except Exception as e:  # json_format.ParseError, UnicodeDecodeError
            problems.append(f"manifest.json does not parse: {type(e).__name__}: {e}")
    else:
        problems.append("manifest.json is missing")
    ctx.manifest = manifest
    ctx.result.federation_id, ctx.result.created_at = manifest.federation_id, manifest.created_at
    ctx.add("manifest", FAIL if problems else PASS,
            "; ".join(problems) if problems else
            f"{manifest.format}, federation {manifest.federation_id}, {len(manifest.files)} files, "
            f"{len(manifest.nodes)} nodes, {len(manifest.artifacts)} artifacts")


"""Check family `files`: every listed file is there with its SHA-256 and size; nothing unlisted.

  file:<path>      the file exists inside the bundle with the listed SHA-256 and size (a replaced
                   model, a flipped byte in any listed file)
  files:unlisted   no file in the bundle is missing from the signed manifest (a model or leaderboard
                   added where the coordinator published none: nothing vouches for it)
"""

from __future__ import annotations

from pathlib import Path

from privacy.audit.context import AuditContext
from privacy.audit.result import FAIL, PASS
from protos import bundle

_MANIFEST_FILES = (bundle.MANIFEST_PB, bundle.MANIFEST_JSON, bundle.MANIFEST_SIG)


def check(ctx: AuditContext) -> None:
    """One `file:<path>` check per listed file, and `files:unlisted` when something is not listed."""
    assert ctx.manifest is not None
    root = ctx.root
    listed = set()
    for f in ctx.manifest.files:
        listed.add(f.path)
        p = root / f.path
        name = f"file:{f.path}"
        if ".." in Path(f.path).parts or Path(f.path).is_absolute():
            ctx.add(name, FAIL, f"path {f.path!r} leaves the bundle")
            continue
        if not p.is_file():
            ctx.add(name, FAIL, f"{f.path} is listed in the manifest but missing")
            continue
        size = p.stat().st_size
        digest = bundle.sha256_file(p)
        if digest != f.sha256:
            ctx.add(name, FAIL, (
                f"{f.path} ({f.kind}) was changed: SHA-256 is {digest[:16]}..., the manifest lists {f.sha256[:16]}... "
                f"(size {size} vs listed {f.size})"))
        elif size != f.size:
            ctx.add(name, FAIL, f"{f.path}: size {size} bytes, the manifest lists {f.size}")
        else:
            ctx.add(name, PASS, f"{f.kind}, {f.size} bytes, SHA-256 {digest[:16]}...")
    unlisted = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                      if p.is_file() and str(p.relative_to(root)) not in listed
                      and str(p.relative_to(root)) not in _MANIFEST_FILES)
    if unlisted:
        ctx.add("files:unlisted", FAIL, f"{len(unlisted)} file(s) in the bundle are not in the signed "
                f"manifest, so nothing vouches for them: {unlisted[0]}", problems=unlisted)

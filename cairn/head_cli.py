"""`cairn node head DIR [--run ID] [--out FILE]`: the node's signed ledger head, as the node itself says it.

Prints (or writes) the JSON head of privacy/ledger_head.py, signed with the node's ledger key
(node/head.py `signed_head`): the current head, or with `--run` the head of that federation, which a
bundle of that run must reach. Auditors pass it to `cairn audit verify --node-head FILE|URL`;
`read_node_head` is how that option reads a file or fetches a URL (issue 15).
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import click

from cairn.errors import friendly

FETCH_TIMEOUT_S = 5.0
MAX_HEAD_BYTES = 64 * 1024


@click.command()
@click.argument("dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--run", "run_id", default="", metavar="FEDERATION_ID",
              help="The head of this federation (its last ledger entry for that run); default: the current head.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the head to this file instead of printing it.")
@friendly
def head(dir: Path, run_id: str, out: Path | None) -> None:
    """The node's signed ledger head (JSON): publish it so auditors can check bundles reach it."""
    from node.head import signed_head

    text = json.dumps(signed_head(dir, run_id), indent=2, sort_keys=True) + "\n"
    if out is None:
        click.echo(text, nl=False)
        return
    out.write_text(text, encoding="utf-8")
    click.echo(f"signed ledger head written to {out}", err=True)


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to another http(s) URL (urllib alone would follow one to ftp://)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not newurl.lower().startswith(("http://", "https://")):
            raise urllib.error.URLError(f"refused a redirect to {newurl!r}: a node head is fetched over http(s) only")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _read_bounded(stream, deadline: float) -> bytes:
    """At most MAX_HEAD_BYTES + 1 bytes of `stream`, in chunks, until `deadline` (time.monotonic): a body
    that trickles a byte per socket timeout cannot hold the auditor for longer than FETCH_TIMEOUT_S."""
    data = b""
    while len(data) <= MAX_HEAD_BYTES:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the body took longer than {FETCH_TIMEOUT_S:g} s")
        chunk = stream.read1(min(4096, MAX_HEAD_BYTES + 1 - len(data)))  # what one socket read brings
        if not chunk:
            break
        data += chunk
    return data


def read_node_head(source: str):
    """The LedgerHead in file `source`, or at http(s) URL `source` (GET, JSON body, at most
    MAX_HEAD_BYTES, FETCH_TIMEOUT_S in all, redirects only to http(s)); raises click.BadParameter naming
    the source and the cause. Any other scheme (file://, ftp://) is read as a file name and not found."""
    from privacy.ledger_head import HeadError, parse_json

    deadline = time.monotonic() + FETCH_TIMEOUT_S
    try:
        if source.lower().startswith(("http://", "https://")):
            req = urllib.request.Request(source, headers={"Accept": "application/json"})
            opener = urllib.request.build_opener(_HttpOnlyRedirects)
            with opener.open(req, timeout=FETCH_TIMEOUT_S) as resp:  # noqa: S310 - http(s) only, checked above
                data = _read_bounded(resp, deadline)
        else:
            path = Path(source)
            if not path.is_file():
                raise HeadError("not a file (a node head is a file or an http(s) URL)")
            with path.open("rb") as f:  # never the whole of a huge file
                data = f.read(MAX_HEAD_BYTES + 1)
        if len(data) > MAX_HEAD_BYTES:
            raise HeadError(f"more than {MAX_HEAD_BYTES} bytes: not a ledger head")
        return parse_json(data)
    except (OSError, HeadError, ValueError, http.client.HTTPException) as e:
        raise click.BadParameter(f"{source}: {e}", param_hint="--node-head") from None

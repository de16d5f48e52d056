"""`cairn node serve`, `cairn node invite` and `cairn node policy ...`: the node as a service (node/service/)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cairn.errors import friendly
from cairn.node_cli import node


def _service(fn):
    """Known errors as one line (cairn/errors.py), the service's own refusals too."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from node.service.members import ServiceError

        try:
            return fn(*args, **kwargs)
        except ServiceError as e:
            raise click.ClickException(e.message + (f" (field {e.field})" if e.field else "")) from None

    return friendly(wrapper)


@click.command()
@click.argument("dir", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--port", default=8750, show_default=True, type=int)
@click.option("--tls-cert", type=click.Path(path_type=Path), default=None, help="PEM certificate: serve HTTPS.")
@click.option("--tls-key", type=click.Path(path_type=Path), default=None, help="PEM private key of --tls-cert.")
@click.option("--public-url", default=None, help="Behind a TLS proxy: the https:// address members use "
              "(its host name is answered; cookies Secure, HSTS).")
@_service
def serve(dir: Path, host: str, port: int, tls_cert: Path | None, tls_key: Path | None, public_url: str | None) -> None:
    """Serve the node to its members: the API (/api/v1), member and operator pages."""
    from node.service.server import ServeError
    from node.service.server import serve as run

    try:
        run(dir, host, port, tls_cert, tls_key, echo=click.echo, public_url=public_url)
    except ServeError as e:
        raise click.UsageError(str(e)) from None


@click.command()
@click.argument("dir", type=click.Path(path_type=Path))
@click.option("--count", default=1, show_default=True, type=int, help="How many one-time codes.")
@click.option("--base-url", default="http://127.0.0.1:8750", show_default=True,
              help="The address members reach the service at (for the links).")
@click.option("--json", "as_json", is_flag=True)
@_service
def invite(dir: Path, count: int, base_url: str, as_json: bool) -> None:
    """Print one-time invitation codes (and links) for new members."""
    from node.service.api import invite_url
    from node.service.members import create_invites

    codes = create_invites(dir, count)
    data = {"invites": [{"code": c, "url": invite_url(None, c, base_url)} for c in codes]}
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for item in data["invites"]:
        click.echo(f"{item['code']}  {item['url']}")


@click.group()
def policy() -> None:
    """Propose policy changes (members get a notice period and may object)."""


@policy.command()
@click.argument("dir", type=click.Path(path_type=Path))
@click.option("--file", "file", required=True, type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="The proposed policy.toml.")
@click.option("--json", "as_json", is_flag=True)
@_service
def propose(dir: Path, file: Path, as_json: bool) -> None:
    """Propose FILE as the new policy; it takes effect after the notice period of the policy in force."""
    from node.service.governance import propose as do_propose

    out = do_propose(dir, file.read_text(encoding="utf-8"))
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(f"proposal {out['id']} takes effect at {out['effective_at']} (notice {out['notice_period_hours']:g} h)")
    for k, (old, new) in out["changes"].items():
        click.echo(f"  {k}: {old} -> {new}")


@policy.command(name="list")
@click.argument("dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@_service
def list_(dir: Path, as_json: bool) -> None:
    """Proposals with their status and exact objection counts (the operator's view, on the node)."""
    from node.service.governance import proposals

    items = proposals(dir, operator=True)
    if as_json:
        click.echo(json.dumps({"proposals": [{k: v for k, v in p.items() if k != "policy"} for p in items]}, indent=2))
        return
    for p in items:
        click.echo(f"{p['id']}: {p['status']}, effective {p['effective_at']}, {p['objections']} objection(s)")


@policy.command()
@click.argument("dir", type=click.Path(path_type=Path))
@_service
def apply(dir: Path) -> None:
    """Apply the proposals whose notice period is over (the service does this on its own while it runs)."""
    from node.service.governance import apply_due

    ids = apply_due(dir)
    click.echo(f"applied proposal(s) {', '.join(map(str, ids))}" if ids else "no proposal is due")


def register(group: click.Group) -> None:
    """Add serve, invite and policy to `group`."""
    for cmd in (serve, invite, policy):
        group.add_command(cmd)


register(node)  # imported by the last line of cairn/node_cli.py, after `node` is defined

"""Running the service: `cairn node serve DIR` under uvicorn, loopback by default, HTTPS when given certificates.

The operator token comes from $CAIRN_OPERATOR_TOKEN, else the service makes one on first serve, prints
it once and keeps only its SHA-256 in DIR/keys/operator.token (mode 0600): a stolen node directory does
not hold the operator token. Uvicorn's access log is off: the service logs method, route template and
status only (node/service/security.py), never paths with ids, tokens or invitation codes.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from node.node_dir import NodeDir

OPERATOR_ENV = "CAIRN_OPERATOR_TOKEN"
OPERATOR_FILE = "operator.token"
MIN_OPERATOR_TOKEN = 16
MAX_CONNECTIONS = 256  # beyond: 503 at once, so that slow clients cannot exhaust the process
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8750


class ServeError(ValueError):
    """The service cannot start as asked (half a certificate pair, a missing file)."""


def operator_token_for(nd: NodeDir, echo=print) -> tuple[str, str]:
    """(token or its digest, where it came from): $CAIRN_OPERATOR_TOKEN, else the digest kept in
    DIR/keys/operator.token (created 0600 with a new random token, which is printed once through `echo`)."""
    env = os.environ.get(OPERATOR_ENV)
    if env:
        if len(env.strip()) < MIN_OPERATOR_TOKEN:  # the sign-in form must not be guessable
            raise ServeError(f"${OPERATOR_ENV} is shorter than {MIN_OPERATOR_TOKEN} characters; use a long random "
                             f"token (or unset it: the service then makes one in keys/{OPERATOR_FILE})")
        return env.strip(), f"${OPERATOR_ENV}"
    from node.service.security import operator_digest

    path = nd.key_dir / OPERATOR_FILE
    if not path.exists():
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(operator_digest(token) + "\n")
        echo(f"new operator token (shown once; {path} keeps only its hash): {token}")
    kept = path.read_text().strip()
    if kept and kept != operator_digest(kept):  # a plain token written by an earlier version: keep its hash only
        path.write_text(operator_digest(kept) + "\n")
        kept = operator_digest(kept)
    return kept, str(path)


def allowed_hosts_for(host: str) -> tuple[str, ...] | None:
    """The Host names a service bound to `host` answers: only loopback names when it binds loopback
    (a DNS-rebinding page cannot reach it under its own name), any otherwise (a proxy's name)."""
    from node.service.security import LOOPBACK_HOSTS

    return LOOPBACK_HOSTS if host in LOOPBACK_HOSTS else None


def log_config() -> dict:
    """Uvicorn's logging with the service's quiet access lines (logger cairn.service) on stderr."""
    from uvicorn.config import LOGGING_CONFIG

    cfg = {**LOGGING_CONFIG, "loggers": dict(LOGGING_CONFIG["loggers"])}
    cfg["loggers"]["cairn.service"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return cfg


def serve(node_dir: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, tls_cert: Path | None = None,
          tls_key: Path | None = None, echo=print, public_url: str | None = None) -> None:
    """Serve the node directory until interrupted (uvicorn); HTTPS when `tls_cert` and `tls_key` are given.
    `public_url`: the address members use when a proxy stands in front (its host name is answered too;
    https:// there makes cookies Secure and sends HSTS although this process speaks HTTP to the proxy)."""
    import uvicorn

    from node.service.app import create_app

    if bool(tls_cert) != bool(tls_key):
        raise ServeError("give both --tls-cert and --tls-key, or neither")
    for f in (tls_cert, tls_key):
        if f and not Path(f).is_file():
            raise ServeError(f"{f}: no such file")
    nd = NodeDir(Path(node_dir))
    with nd.open_store():  # a missing passphrase or wrong key is one clear line now, not a failed startup
        pass
    token, where = operator_token_for(nd, echo)
    public = urlsplit(public_url) if public_url else None
    if public is not None and (public.scheme not in ("http", "https") or not public.hostname):
        raise ServeError("--public-url must look like https://feedback.example.org")
    allowed = allowed_hosts_for(host)
    if allowed is not None and public is not None:
        allowed = (*allowed, public.hostname)
    app = create_app(nd.path, operator_token=token, allowed_hosts=allowed,
                     https=bool(tls_cert) or (public is not None and public.scheme == "https"))
    scheme = "https" if tls_cert else "http"
    echo(f"serving node {nd.name!r} on {scheme}://{host}:{port}/ (operator token: {where})")
    if not tls_cert and host not in ("127.0.0.1", "localhost", "::1") and not (public and public.scheme == "https"):
        echo("warning: serving plain HTTP on a non-loopback address; put it behind TLS (--tls-cert/--tls-key)")
    uvicorn.run(app, host=host, port=port, ssl_certfile=str(tls_cert) if tls_cert else None,
                ssl_keyfile=str(tls_key) if tls_key else None, access_log=False, server_header=False,
                proxy_headers=False, log_config=log_config(), limit_concurrency=MAX_CONNECTIONS,
                timeout_keep_alive=5)

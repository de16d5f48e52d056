"""The service's defences (issue 12 item 6): constant-time secrets, CSRF, rate limits, headers, body size.

- Secrets (member tokens, the operator token, CSRF tokens) are compared with `hmac.compare_digest`.
- CSRF: double-submit. A page GET sets the `cairn_csrf` cookie (random, SameSite=Strict) and puts the
  same value in every form's hidden `csrf` field; a form POST must carry both, equal (`require_csrf`).
  The session cookie `cairn_session` (the member's token) is HttpOnly, SameSite=Strict, Secure under TLS.
- Rate limits: a token bucket per bearer token (keyed by a hash, never the token) and per client address.
- Headers: CSP that allows no script at all, no referrer, frames denied, nosniff, no caching of API replies,
  HSTS under TLS.
- Body size: requests over MAX_BODY bytes are refused with 413 before the app reads them.
- Logs carry method, route template and status only: never text, tokens, invitation codes or ids
  (ARCHITECTURE.md invariant 1).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from urllib.parse import urlsplit

from fastapi import HTTPException, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY = 1_000_000  # bytes of one request body
SESSION_COOKIE = "cairn_session"
CSRF_COOKIE = "cairn_csrf"
CSRF_FIELD = "csrf"

# the pages run no script at all and load one stylesheet: everything else is refused
CSP = ("default-src 'none'; script-src 'none'; style-src 'self'; img-src 'self'; object-src 'none'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
HEADERS = {
    "content-security-policy": CSP,
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}

log = logging.getLogger("cairn.service")


def same_secret(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two secrets (False when either is missing)."""
    if not a or not b:
        return False
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header, else None. The API never takes the pages'
    session cookie: a cookie rides along on cross-site requests, a header does not (no CSRF on the API)."""
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return None


def is_tls(request: Request) -> bool:
    """Was this request made over HTTPS (here, or at the TLS proxy that `--public-url https://...` names)?"""
    return request.url.scheme == "https" or bool(getattr(request.app.state, "https", False))


# --- cookies and CSRF ------------------------------------------------------------------------------


def set_session(response: Response, request: Request, token: str) -> None:
    """Set the member's session cookie: HttpOnly, SameSite=Strict, Secure under TLS."""
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", secure=is_tls(request), path="/")


def clear_session(response: Response) -> None:
    """Remove the session cookie."""
    response.delete_cookie(SESSION_COOKIE, path="/")


def csrf_token(request: Request, response: Response | None = None) -> str:
    """The CSRF token for a page's forms: the request's `cairn_csrf` cookie, or a new one set on `response`."""
    token = request.cookies.get(CSRF_COOKIE)
    if not token or len(token) > 100:
        token = secrets.token_urlsafe(24)
        request.state.csrf_new = token
        if response is not None:
            set_csrf_cookie(response, request, token)
    return token


def set_csrf_cookie(response: Response, request: Request, token: str) -> None:
    """Set the CSRF cookie (readable by no script: HttpOnly; SameSite=Strict; Secure under TLS)."""
    response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict", secure=is_tls(request), path="/")


def check_csrf(request: Request, submitted: str | None) -> None:
    """HTTPException(403) unless `submitted` equals the CSRF cookie (constant time), a present
    Origin header is this server's and a present Sec-Fetch-Site says same-origin.

    Under `Referrer-Policy: no-referrer` browsers send `Origin: null` even on same-origin form posts,
    so the Origin check alone lets a sandboxed cross-site frame (also `Origin: null`) through; a
    sibling subdomain can plant ("toss") a known `cairn_csrf` cookie, which defeats a bare double
    submit. Sec-Fetch-Site is set by the browser, untouched by the referrer policy, and names both."""
    origin = request.headers.get("origin")
    # host and port, not the scheme: behind a TLS-terminating proxy the browser's Origin is https:// while
    # this server sees http:// (a same-host other-scheme page is refused by Sec-Fetch-Site below)
    if origin and origin != "null" and urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower():
        raise HTTPException(403, "cross-site form post refused (Origin does not match)")
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise HTTPException(403, "cross-site form post refused (the browser says it came from another site)")
    if not same_secret(request.cookies.get(CSRF_COOKIE), submitted):
        raise HTTPException(403, "missing or wrong CSRF token; reload the page and submit the form again")


async def require_csrf(request: Request) -> None:
    """FastAPI dependency for form POST routes: the form's `csrf` field must match the CSRF cookie."""
    form = await request.form()
    value = form.get(CSRF_FIELD)
    check_csrf(request, value if isinstance(value, str) else None)


# --- rate limits -----------------------------------------------------------------------------------


class RateLimiter:
    """Token buckets: `rate` requests per `per` seconds with bursts up to `rate`, per key."""

    def __init__(self, rate: int, per: float = 60.0):
        self.rate, self.per = rate, per
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        """Take one request from `key`'s bucket; False when it is empty."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.rate), now))
            tokens = min(float(self.rate), tokens + (now - last) * self.rate / self.per)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                return False
            self._buckets[key] = (tokens - 1, now)
            if len(self._buckets) > 100_000:  # forget idle keys rather than grow without bound
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < self.per}
            return True


DIGEST_PREFIX = "sha256:"


def operator_digest(token: str) -> str:
    """What the service keeps of the operator token: its SHA-256 (the token is 256 random bits or a long
    secret, so a plain hash suffices). A stolen keys/operator.token is not the token."""
    return token if token.startswith(DIGEST_PREFIX) else DIGEST_PREFIX + hashlib.sha256(token.encode("utf-8")).hexdigest()


def operator_ok(given: str | None, expected_digest: str | None) -> bool:
    """Is `given` the operator token whose digest is `expected_digest`? Constant time; `given` is always hashed,
    so presenting the digest itself never passes."""
    if not given or not expected_digest:
        return False
    return same_secret(DIGEST_PREFIX + hashlib.sha256(given.encode("utf-8")).hexdigest(), expected_digest)


def operator_session(secret: bytes, operator_token: str | None) -> str | None:
    """The value of the operator's page cookie: a keyed hash of the operator token under this process's
    random secret, never the token itself (a leaked cookie is not the long-lived token, and it dies
    with the process)."""
    if not operator_token:
        return None
    return hmac.new(secret, b"operator-session:" + operator_token.encode("utf-8"), hashlib.sha256).hexdigest()


MAX_JSON_DEPTH = 32


def json_depth_ok(raw: bytes | str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Is the nesting of brackets in a JSON text at most `limit` deep (outside strings)? Checked before
    `json.loads`, whose recursion a deeply nested body would otherwise exhaust (a 500, and CPU)."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    depth = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def client_key(address: str) -> str:
    """The key a client address is rate-limited under: an IPv6 address by its /64 (one host holds a
    whole /64 and could otherwise take a fresh address for every request), IPv4 as is."""
    import ipaddress

    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


def rate_key(secret: str) -> str:
    """The key a token is rate-limited under: a hash, so that the limiter never holds the token."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:32]


# --- ASGI middleware -------------------------------------------------------------------------------


class SecurityMiddleware:
    """Security headers on every response, the body-size limit, quiet access logs, rate limits."""

    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY, per_token: RateLimiter | None = None,
                 per_client: RateLimiter | None = None, allowed_hosts: tuple[str, ...] | None = None,
                 https: bool = False):
        self.app, self.max_body, self.https = app, max_body, https
        self.allowed_hosts = {h.lower() for h in allowed_hosts} if allowed_hosts else None
        self.per_token = per_token or RateLimiter(120)
        self.per_client = per_client or RateLimiter(600)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse oversized or too frequent requests, add the headers, log quietly."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        tls = scope.get("scheme") == "https" or self.https
        status_box = [0]

        async def send_wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = message["status"]
                hs = [(k, v) for k, v in message.get("headers", []) if k.decode("latin-1").lower() not in HEADERS]
                hs += [(k.encode(), v.encode()) for k, v in HEADERS.items()]
                if tls:
                    hs.append((b"strict-transport-security", b"max-age=31536000"))
                if scope["path"].startswith("/api/"):
                    hs.append((b"cache-control", b"no-store"))
                message = {**message, "headers": hs}
            await send(message)

        if self.allowed_hosts is not None and host_name(headers.get("host", "")) not in self.allowed_hosts:
            # DNS rebinding: a web page whose name now resolves to 127.0.0.1 reaches a loopback service
            await _plain(send_wrapped, 421, "unknown host name for this service")
            return self._log(scope, 421)
        try:
            length = int(headers.get("content-length", "0") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > self.max_body:
            await _plain(send_wrapped, 413, f"request body larger than {self.max_body} bytes")
            return self._log(scope, 413)
        auth = headers.get("authorization", "")
        client = client_key((scope.get("client") or ("?", 0))[0])
        if auth[:7].lower() == "bearer " and not self.per_token.allow(rate_key(auth[7:].strip())):
            await _plain(send_wrapped, 429, "too many requests for this token; slow down")
            return self._log(scope, 429)
        if not self.per_client.allow(rate_key(client)):
            await _plain(send_wrapped, 429, "too many requests; slow down")
            return self._log(scope, 429)

        received = [0]

        async def receive_limited() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                received[0] += len(message.get("body", b""))
                if received[0] > self.max_body:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, receive_limited, send_wrapped)
        except BodyTooLarge:
            if not status_box[0]:
                await _plain(send_wrapped, 413, f"request body larger than {self.max_body} bytes")
                status_box[0] = 413
        except Exception as e:  # a crash: a bare 500; the log names the type only, never the message or a traceback
            log.error("internal error: %s", type(e).__name__)
            if not status_box[0]:
                await _plain(send_wrapped, 500, "internal error")
                status_box[0] = 500
        self._log(scope, status_box[0])

    @staticmethod
    def _log(scope: Scope, status: int) -> None:
        route = scope.get("route")
        path = getattr(route, "path", None) or "(unrouted)"  # the template, never the concrete path
        log.info("%s %s %d", scope.get("method"), path, status)


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def host_name(host: str) -> str:
    """The name of a Host header without its port ("[::1]:8750" -> "::1")."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class BodyTooLarge(Exception):
    """A streamed body passed the limit."""


async def _plain(send: Send, status: int, text: str) -> None:
    body = ('{"detail": "%s"}' % text).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

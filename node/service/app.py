"""`create_app(node_dir)`: the node service's ASGI app, which `cairn node serve` runs under uvicorn.

It mounts the JSON API (node/service/api.py), the member and operator pages (node/service/pages.py)
when present, the public signed ledger head (`GET /api/v1/head`), and the security middleware
(node/service/security.py). A background tick stores contributions whose waiting period is over and
applies policy changes whose notice period is over (node/service/members.py `promote_due`,
governance.py `apply_due`). Errors never echo input: the handlers below reply with the service's own
messages, and a crash is a bare 500 whose log line names only the exception type
(ARCHITECTURE.md invariant 1).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from node.node_dir import NodeDir
from node.service import api, governance, members, security
from node.service.security import RateLimiter, SecurityMiddleware
from node.service.store_access import ServiceNodeDir, StoreBusy

TICK_SECONDS = 30.0
HEAD_CACHE_SECONDS = 5.0  # the public signed head is recomputed at most this often
log = logging.getLogger("cairn.service")


def tick(nd: NodeDir) -> None:
    """Store due contributions and apply due policy changes (a busy store waits for the next tick)."""
    try:
        governance.apply_due(nd)
        members.promote_due(nd)
    except StoreBusy:
        log.info("tick skipped: the store is busy")


def create_app(node_dir: Path, *, operator_token: str | None = None, tick_seconds: float = TICK_SECONDS,
               rate_per_token: int = 120, rate_per_client: int = 600, max_body: int | None = None,
               allowed_hosts: tuple[str, ...] | None = None, https: bool = False) -> FastAPI:
    """The service over the node directory `node_dir`; `operator_token` guards the operator page and API.
    `allowed_hosts`: the Host names it answers (others get 421: DNS rebinding); None answers any.
    `https`: members reach it over HTTPS at a TLS proxy (Secure cookies, HSTS) though it serves HTTP."""
    nd = ServiceNodeDir(Path(node_dir))
    nd.config()  # a NodeDirError now, not at the first request

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(tick, nd)
        task = asyncio.create_task(_ticker(nd, tick_seconds)) if tick_seconds > 0 else None
        yield
        if task is not None:
            task.cancel()

    app = FastAPI(title="Cairn node", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.node_dir = nd
    app.state.operator_token = security.operator_digest(operator_token) if operator_token else None  # only its hash
    app.state.https = https
    app.state.secret = secrets.token_bytes(32)
    app.state.head = None
    app.include_router(api.router)
    try:
        from node.service.pages import router as pages_router
    except ImportError:
        pages_router = None
    if pages_router is not None:
        app.include_router(pages_router)

    @app.get("/api/v1/head")
    async def head() -> dict:
        """The node's signed ledger head (public: it says how far the ledger goes, nothing about members)."""
        try:
            from node.head import signed_head
        except ImportError:
            raise HTTPException(501, "this node cannot sign its ledger head yet") from None
        cached = app.state.head
        if cached is None or time.monotonic() - cached[0] > HEAD_CACHE_SECONDS:  # public: never a CPU sink
            cached = app.state.head = (time.monotonic(), await run_in_threadpool(signed_head, nd.path))
        return cached[1]

    @app.get("/healthz")
    async def healthz() -> dict:
        """Liveness."""
        return {"ok": True}

    _handlers(app)
    kw = {"max_body": max_body} if max_body else {}
    app.add_middleware(SecurityMiddleware, per_token=RateLimiter(rate_per_token),
                       per_client=RateLimiter(rate_per_client), allowed_hosts=allowed_hosts, https=https, **kw)
    return app


async def _ticker(nd: NodeDir, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await run_in_threadpool(tick, nd)
        except Exception as e:  # never let the ticker die; never log its message (it could quote data)
            log.warning("tick failed: %s", type(e).__name__)


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(members.ServiceError)
    async def service_error(request: Request, exc: members.ServiceError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"detail": exc.message, "field": exc.field}, status_code=exc.status, headers=headers)

    @app.exception_handler(StoreBusy)
    async def busy(request: Request, exc: StoreBusy) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "2"})

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        field = ".".join(str(x) for x in errs[0].get("loc", ())[1:]) if errs else None
        return JSONResponse({"detail": f"invalid {field or 'request'}", "field": field}, status_code=422)

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error: %s", type(exc).__name__)
        return JSONResponse({"detail": "internal error"}, status_code=500)

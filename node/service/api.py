"""The JSON API (/api/v1/...): a thin HTTP layer over node/service/members.py and governance.py.

Bodies are read as JSON objects by hand (no model echoes the input back in an error); every error
is `{"detail": ..., "field": ...}` naming the field, never quoting text, tokens or ids
(ARCHITECTURE.md invariant 1). Member routes take `Authorization: Bearer TOKEN`;
operator routes take the operator token, both as
`Authorization: Bearer` headers only (never cookies, so the API needs no CSRF token).
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from node.service import governance, members
from node.service.security import MAX_JSON_DEPTH, bearer_token, json_depth_ok, operator_ok

router = APIRouter(prefix="/api/v1")


async def json_body(request: Request) -> dict:
    """The request body as a JSON object; 422 naming 'body' otherwise."""
    raw = await request.body()
    if not json_depth_ok(raw):
        raise members.ServiceError(422, f"the body is nested deeper than {MAX_JSON_DEPTH} levels", "body")
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise members.ServiceError(422, "the body is not valid JSON", "body") from None
    if not isinstance(data, dict):
        raise members.ServiceError(422, "expected a JSON object", "body")
    return data


async def member(request: Request) -> str:
    """Dependency: the member id of the bearer token (401 when missing, unknown or revoked)."""
    member_id = await run_in_threadpool(members.authenticate, request.app.state.node_dir, bearer_token(request))
    if member_id is None:
        raise HTTPException(401, "missing, unknown or revoked token", headers={"WWW-Authenticate": "Bearer"})
    return member_id


def operator(request: Request) -> None:
    """Dependency: the operator token (Bearer), compared in constant time; 401 otherwise."""
    expected = request.app.state.operator_token
    auth = request.headers.get("authorization", "")
    given = auth[7:].strip() if auth[:7].lower() == "bearer " else None  # never a cookie: no CSRF on the API
    if not operator_ok(given, expected):
        raise HTTPException(401, "operator token required", headers={"WWW-Authenticate": "Bearer"})


def _nd(request: Request):
    return request.app.state.node_dir


# --- members ---------------------------------------------------------------------------------------


@router.post("/members", status_code=201)
async def enrol(request: Request) -> dict:
    """Redeem an invitation {"invite": CODE} (or enrol openly when the policy allows): {member_id, token}."""
    body = await json_body(request)
    member_id, token = await run_in_threadpool(members.redeem, _nd(request), body.get("invite"))
    return {"member_id": member_id, "token": token}


@router.post("/contributions", status_code=201)
async def contribute(request: Request, member_id: str = Depends(member)) -> dict:
    """One conversation with its feedback (ShareLM upload or OpenAI-style messages) and a licence."""
    body = await json_body(request)
    return await run_in_threadpool(members.contribute, _nd(request), member_id, body)


@router.delete("/contributions/{cid}", status_code=204)
async def delete_contribution(cid: str, request: Request, member_id: str = Depends(member)) -> Response:
    """Delete one of your contributions (404 for anyone else's)."""
    await run_in_threadpool(members.delete_contribution, _nd(request), member_id, cid)
    return Response(status_code=204)


@router.post("/contributions/{cid}/dissent", status_code=201)
async def dissent(cid: str, request: Request, member_id: str = Depends(member)) -> dict:
    """Attach a dissent note {"note": ...} to one of your contributions (stored as critique feedback)."""
    body = await json_body(request)
    return await run_in_threadpool(governance.dissent, _nd(request), member_id, cid, body.get("note"))


@router.get("/me")
async def me(request: Request, member_id: str = Depends(member)) -> dict:
    """Your contributions, consent, the community's budget and the releases since your consent."""
    return await run_in_threadpool(members.me, _nd(request), member_id)


@router.delete("/me")
async def withdraw(request: Request, member_id: str = Depends(member)) -> dict:
    """Withdraw: everything of yours deleted (as `cairn node forget`), your id tombstoned, your token revoked."""
    return await run_in_threadpool(members.withdraw, _nd(request), member_id)


@router.get("/me/export")
async def export(request: Request, member_id: str = Depends(member)) -> JSONResponse:
    """Your own data: every contribution's (redacted) text and feedback."""
    data = await run_in_threadpool(members.export, _nd(request), member_id)
    return JSONResponse(data, headers={"content-disposition": 'attachment; filename="cairn-export.json"'})


# --- governance ------------------------------------------------------------------------------------


@router.get("/proposals")
async def list_proposals(request: Request, member_id: str = Depends(member)) -> dict:
    """Policy changes proposed, with their notice period; whether you objected."""
    items = await run_in_threadpool(governance.proposals, _nd(request), member_id)
    return {"proposals": items}


@router.post("/proposals/{pid}/objections", status_code=201)
async def object_to(pid: int, request: Request, member_id: str = Depends(member)) -> dict:
    """Object to a pending proposal {"reason": ...} (once; counted, never attributed)."""
    body = await json_body(request)
    return await run_in_threadpool(governance.object_to, _nd(request), member_id, pid, body.get("reason"))


# --- operator --------------------------------------------------------------------------------------


@router.post("/operator/invites", status_code=201, dependencies=[Depends(operator)])
async def operator_invites(request: Request) -> dict:
    """New invitation codes {"count": N}."""
    body = await json_body(request)
    count = body.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int):
        raise members.ServiceError(422, "count must be an integer", "count")
    codes = await run_in_threadpool(members.create_invites, _nd(request), count)
    return {"invites": [{"code": c, "url": invite_url(request, c)} for c in codes]}


@router.get("/operator/proposals", dependencies=[Depends(operator)])
async def operator_proposals(request: Request) -> dict:
    """Every proposal with its exact objection count (on the node only)."""
    return {"proposals": await run_in_threadpool(governance.proposals, _nd(request), None, True)}


@router.post("/operator/proposals", status_code=201, dependencies=[Depends(operator)])
async def operator_propose(request: Request) -> dict:
    """Propose a policy change {"policy": TOML text}; it takes effect after the notice period."""
    body = await json_body(request)
    return await run_in_threadpool(governance.propose, _nd(request), body.get("policy"))


def invite_url(request: Request | None, code: str, base: str = "http://127.0.0.1:8750") -> str:
    """The link a member follows to redeem `code` on the member page."""
    root = str(request.base_url).rstrip("/") if request is not None else base.rstrip("/")
    return f"{root}/join?invite={code}"

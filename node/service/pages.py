"""The member and operator pages (issue 12 item 5): plain server-rendered HTML over the service layer.

Every page is a Jinja2 template in `templates/` rendered with autoescape (every inserted value is
HTML-escaped), styled by one stylesheet in `static/` and uses no JavaScript, so the service's
Content-Security-Policy (node/service/security.py) needs no exception. Pages call the same
functions as the JSON API (node/service/members.py, node/service/governance.py): nothing here decides
who may do what, it presents and forwards. Every form posts with the double-submit CSRF token and
the member's session is the service's `cairn_session` cookie; the operator signs in with the
operator token; the cookie (HttpOnly, SameSite=Strict, scoped to /operator) holds a keyed
hash of it under the process's random secret, never the token. Pages are never
cached and never put text, tokens or ids in URLs (ARCHITECTURE.md invariant 1); an error page says
what was wrong with which field, never echoing the text.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import jinja2
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool

from node.service import api, governance, members, security
from node.service.members import ServiceError
from node.service.page_data import DONE, contribution_payloads, member_view, operator_view
from node.service.store_access import StoreBusy

HERE = Path(__file__).resolve().parent
STATIC_CSS = HERE / "static" / "cairn.css"
OPERATOR_COOKIE = "cairn_operator"
MAX_UPLOAD_ITEMS = 50

router = APIRouter(include_in_schema=False)
_env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                          trim_blocks=True, lstrip_blocks=True)


# --- plumbing ----------------------------------------------------------------------------------------


def _node(request: Request):
    return request.app.state.node_dir


def render(request: Request, template: str, status: int = 200, **values) -> HTMLResponse:
    """The page `template` with the CSRF field, the community's name and notices; never cached."""
    token = security.csrf_token(request)
    nd = _node(request)
    values.setdefault("notices", [])
    values.setdefault("signed_in", False)
    values.setdefault("area", "member")
    html = _env.get_template(template).render(
        request=request, community=nd.name, node_id=nd.node_id, static_url="/static/cairn.css",
        csrf_input=lambda: Markup(f'<input type="hidden" name="{security.CSRF_FIELD}" value="{escape(token)}">'),
        **values)
    response = HTMLResponse(html, status_code=status)
    response.headers["cache-control"] = "no-store"
    if getattr(request.state, "csrf_new", None):
        security.set_csrf_cookie(response, request, token)
    return response


def busy(request: Request, e: StoreBusy, area: str = "member") -> HTMLResponse:
    """The store is held by an import or a round: say so (503), nothing changed."""
    response = render(request, "message.html.j2", 503, title="Busy, try again", area=area, message=str(e),
                      link=f"/{area}", link_text="Try again")
    response.headers["retry-after"] = "2"
    return response


def _notice(text: str, error: bool = False) -> dict:
    return {"text": text, "error": error}


def _error_text(e: ServiceError) -> str:
    return f"{e.message} (field: {e.field})" if e.field else e.message


async def _form(request: Request):
    """The posted form, after the CSRF check (HTTPException 403 when it fails)."""
    form = await request.form()
    value = form.get(security.CSRF_FIELD)
    security.check_csrf(request, value if isinstance(value, str) else None)
    return form


def _text(form, name: str, limit: int = 2000) -> str:
    v = form.get(name)
    return v.strip()[:limit] if isinstance(v, str) else ""


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


async def _member(request: Request) -> str | None:
    token = request.cookies.get(security.SESSION_COOKIE)
    return await run_in_threadpool(members.authenticate, _node(request), token) if token else None


def _operator_session(request: Request) -> str | None:
    """The operator cookie's value: a keyed hash of the operator token (security.operator_session)."""
    return security.operator_session(request.app.state.secret, getattr(request.app.state, "operator_token", None))


def _is_operator(request: Request) -> bool:
    return security.same_secret(request.cookies.get(OPERATOR_COOKIE), _operator_session(request))


@router.get("/static/cairn.css")
async def stylesheet() -> FileResponse:
    """The pages' one stylesheet."""
    return FileResponse(STATIC_CSS, media_type="text/css", headers={"cache-control": "max-age=3600"})


@router.get("/")
async def home() -> RedirectResponse:
    """The service's front page is the member page."""
    return _see_other("/member")


# --- member pages ------------------------------------------------------------------------------------


async def member_page(request: Request, member_id: str | None, status: int = 200, notices=(), invite: str = ""):
    """The member's page, or the join / sign-in page when not signed in."""
    nd = _node(request)
    if member_id is None:
        policy = nd.policy()
        return render(request, "member_signin.html.j2", status, title="Join or sign in", notices=list(notices),
                      invite=invite, open_enrolment=members.open_enrolment(policy))
    view = await run_in_threadpool(member_view, nd, member_id)
    return render(request, "member.html.j2", status, title="Your contributions", signed_in=True,
                  notices=list(notices), **view)


@router.get("/member", response_class=HTMLResponse)
@router.get("/join", response_class=HTMLResponse)
async def member_get(request: Request, done: str = "", invite: str = ""):
    """The member page; `/join?invite=CODE` (the link `cairn node invite` prints) fills in the join form."""
    notices = [_notice(DONE[done])] if done in DONE else []
    try:
        return await member_page(request, await _member(request), notices=notices, invite=invite[:200])
    except StoreBusy as e:
        return busy(request, e)


async def _guard(request: Request, handler):
    """Run a member form handler: CSRF first, the session next, service errors as the page with a notice."""
    try:
        form = await _form(request)
    except HTTPException as e:
        return render(request, "message.html.j2", e.status_code, title="Form refused", message=e.detail,
                      link="/member", link_text="Back to your page")
    try:
        try:
            return await handler(form, await _member(request))
        except ServiceError as e:
            member_id = await _member(request)  # a withdrawn member is no longer signed in
            return await member_page(request, member_id, e.status, [_notice(_error_text(e), error=True)])
    except StoreBusy as e:
        return busy(request, e)


@router.post("/member/redeem")
async def member_redeem(request: Request):
    """Redeem an invitation: sign the new member in and show their token once."""
    async def handle(form, _member_id):
        code = _text(form, "invite", 200) or None
        member_id, token = await run_in_threadpool(members.redeem, _node(request), code)
        response = render(request, "member_token.html.j2", 201, title="Welcome", member_id=member_id, token=token,
                          signed_in=True)
        security.set_session(response, request, token)
        return response
    return await _guard(request, handle)


@router.post("/member/signin")
async def member_signin(request: Request):
    """Sign in with a member token (the session cookie holds it, HttpOnly and SameSite=Strict)."""
    async def handle(form, _member_id):
        token = _text(form, "token", 200)
        if await run_in_threadpool(members.authenticate, _node(request), token) is None:
            raise ServiceError(401, "unknown or revoked token", "token")
        response = _see_other("/member")
        security.set_session(response, request, token)
        return response
    return await _guard(request, handle)


@router.post("/member/signout")
async def member_signout(request: Request):
    """Forget the session cookie."""
    async def handle(_form, _member_id):
        response = _see_other("/member")
        security.clear_session(response)
        return response
    return await _guard(request, handle)


def _signed_in(member_id: str | None) -> str:
    if member_id is None:
        raise ServiceError(401, "sign in first (your session has ended)")
    return member_id


@router.post("/member/contribute")
async def member_contribute(request: Request):
    """Contribute a pasted chat or an uploaded ShareLM / OpenAI-style export, with feedback and a licence."""
    async def handle(form, member_id):
        member_id = _signed_in(member_id)
        upload = form.get("file")
        data = b""
        if upload is not None and not isinstance(upload, str):
            data = await upload.read()
        payloads = contribution_payloads(
            pasted=form.get("chat") if isinstance(form.get("chat"), str) else "", upload=data,
            model=_text(form, "model_name", 200), rating=_text(form, "rating", 10), thumbs=_text(form, "thumbs", 10),
            comment=_text(form, "comment"), licence=_text(form, "licence", 200), max_items=MAX_UPLOAD_ITEMS)
        # one transaction: each is checked before any is stored, and all are stored or none
        await run_in_threadpool(members.contribute_many, _node(request), member_id, payloads)
        return _see_other("/member?done=" + ("contributed" if len(payloads) == 1 else "contributed-many"))
    return await _guard(request, handle)


@router.post("/member/contributions/{cid}/delete")
async def member_delete(request: Request, cid: str):
    """Delete one of the member's own contributions."""
    async def handle(_form, member_id):
        await run_in_threadpool(members.delete_contribution, _node(request), _signed_in(member_id), cid)
        return _see_other("/member?done=deleted")
    return await _guard(request, handle)


@router.post("/member/contributions/{cid}/dissent")
async def member_dissent(request: Request, cid: str):
    """Attach a dissent note to one of the member's own contributions."""
    async def handle(form, member_id):
        await run_in_threadpool(governance.dissent, _node(request), _signed_in(member_id), cid, _text(form, "note"))
        return _see_other("/member?done=dissent")
    return await _guard(request, handle)


@router.post("/member/proposals/{pid}/object")
async def member_object(request: Request, pid: int):
    """Object, with a reason, to a proposed policy change."""
    async def handle(form, member_id):
        await run_in_threadpool(governance.object_to, _node(request), _signed_in(member_id), pid, _text(form, "reason"))
        return _see_other("/member?done=objected")
    return await _guard(request, handle)


@router.get("/member/withdraw", response_class=HTMLResponse)
async def member_withdraw_confirm(request: Request):
    """Ask the member to confirm withdrawal."""
    member_id = await _member(request)
    if member_id is None:
        return _see_other("/member")
    view = await run_in_threadpool(member_view, _node(request), member_id)
    return render(request, "member_withdraw.html.j2", title="Withdraw", signed_in=True, count=len(view["contributions"]))


@router.post("/member/withdraw")
async def member_withdraw(request: Request):
    """Withdraw: everything the member contributed deleted, the id tombstoned, the token revoked."""
    async def handle(form, member_id):
        member_id = _signed_in(member_id)
        if form.get("confirm") != "yes":
            raise ServiceError(422, "tick the box to confirm that you want to withdraw", "confirm")
        out = await run_in_threadpool(members.withdraw, _node(request), member_id)
        response = render(request, "message.html.j2", title="You have withdrawn",
                          message=f"Your membership is closed and everything you contributed is deleted "
                                  f"({out.get('contributions_deleted', 0)} contributions). Thank you for taking part.",
                          link="/member", link_text="Back to the start")
        security.clear_session(response)
        return response
    return await _guard(request, handle)


@router.get("/member/export")
async def member_export(request: Request):
    """The member's own data as a JSON download."""
    member_id = await _member(request)
    if member_id is None:
        return _see_other("/member")
    data = await run_in_threadpool(members.export, _node(request), member_id)
    return Response(json.dumps(data, ensure_ascii=False, indent=2), media_type="application/json",
                    headers={"content-disposition": 'attachment; filename="my-cairn-data.json"', "cache-control": "no-store"})


# --- operator pages ----------------------------------------------------------------------------------


async def operator_page(request: Request, status: int = 200, notices=(), codes=()):
    """The operator's page, or the sign-in form."""
    if not _is_operator(request):
        configured = bool(getattr(request.app.state, "operator_token", None))
        return render(request, "operator_signin.html.j2", status, title="Operator sign-in", area="operator",
                      notices=list(notices), configured=configured)
    view = await run_in_threadpool(operator_view, _node(request))
    invites = [{"code": c, "url": api.invite_url(request, quote(c))} for c in codes]
    return render(request, "operator.html.j2", status, title="Operator", area="operator", signed_in=True,
                  notices=list(notices), invites=invites, **view)


@router.get("/operator", response_class=HTMLResponse)
async def operator_get(request: Request, done: str = ""):
    """Status, budget chart, ledger, policy, proposals and invitations (behind the operator token)."""
    try:
        return await operator_page(request, notices=[_notice(DONE[done])] if done in DONE else [])
    except StoreBusy as e:
        return busy(request, e, "operator")


async def _operator_guard(request: Request, handler):
    try:
        form = await _form(request)
    except HTTPException as e:
        return render(request, "message.html.j2", e.status_code, title="Form refused", area="operator",
                      message=e.detail, link="/operator", link_text="Back")
    try:
        try:
            return await handler(form)
        except ServiceError as e:
            return await operator_page(request, e.status, [_notice(_error_text(e), error=True)])
    except StoreBusy as e:
        return busy(request, e, "operator")


@router.post("/operator/signin")
async def operator_signin(request: Request):
    """Sign the operator in with the operator token."""
    async def handle(form):
        token = _text(form, "token", 200)
        if not security.operator_ok(token, getattr(request.app.state, "operator_token", None)):
            raise ServiceError(401, "wrong operator token", "token")
        response = _see_other("/operator")
        response.set_cookie(OPERATOR_COOKIE, _operator_session(request), httponly=True, samesite="strict",
                            secure=security.is_tls(request), path="/operator")
        return response
    return await _operator_guard(request, handle)


@router.post("/operator/signout")
async def operator_signout(request: Request):
    """Forget the operator's cookie."""
    async def handle(_form):
        response = _see_other("/operator")
        response.delete_cookie(OPERATOR_COOKIE, path="/operator")
        return response
    return await _operator_guard(request, handle)


def _operator(request: Request) -> None:
    if not _is_operator(request):
        raise ServiceError(401, "sign in with the operator token first")


@router.post("/operator/invites")
async def operator_invites(request: Request):
    """Create one-time invitation codes and show them (once) with their links."""
    async def handle(form):
        _operator(request)
        try:
            count = int(_text(form, "count", 10) or "1")
        except ValueError:
            raise ServiceError(422, "a whole number of invitations", "count") from None
        codes = await run_in_threadpool(members.create_invites, _node(request), count)
        return await operator_page(request, 201, [_notice(f"{len(codes)} invitation(s) created; each works once.")],
                                   codes=codes)
    return await _operator_guard(request, handle)


@router.post("/operator/proposals")
async def operator_propose(request: Request):
    """Propose a policy change: it takes effect after the notice period, members may object meanwhile."""
    async def handle(form):
        _operator(request)
        text = form.get("policy") if isinstance(form.get("policy"), str) else ""
        await run_in_threadpool(governance.propose, _node(request), text)
        return _see_other("/operator?done=proposed")
    return await _operator_guard(request, handle)

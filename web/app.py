"""The routes of ``kx serve`` (CONTRACT section 10): pages, forms that act through ``machine.acts`` as the command
line does, the status and event stream for scripts, and the recorded files."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, unquote

import anyio
from jinja2 import Environment, PackageLoader
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ledger.errors import BadInput, KxError, Refused, Unknown
from machine.acts.lifecycle import Act, reopen, review
from machine.defaults import SCHEMA
from machine.outputs.report import seconds_text, size_text
from web import views
from web.security import MAX_NAME, HttpError, SecurityHeaders, TokenGate, allowed_hosts, read_form, text
from web.site import Site, event_json

REVIEWER_COOKIE = "kx-reviewer"
STREAM_POLL_S = 0.25
STREAM_QUIET_S = 15.0  # a comment line this often keeps an idle stream open through proxies
STATUS = {BadInput: 400, Refused: 409, Unknown: 404}


def status_of(error: KxError) -> int:
    return next((code for kind, code in STATUS.items() if isinstance(error, kind)), 500)


def templates() -> Jinja2Templates:
    environment = Environment(loader=PackageLoader("web"), autoescape=True, trim_blocks=True, lstrip_blocks=True)
    environment.filters.update(seconds=seconds_text, size=size_text, short=lambda digest: (digest or "")[:12])
    return Jinja2Templates(env=environment)


def create_app(site: Site) -> Starlette:
    pages = templates()

    def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        shown = {"site": site, "csrf": site.csrf, "forms": not site.read_only, "error": None, **context}
        return pages.TemplateResponse(request, name, shown, status_code=status)

    def failed(request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"schema": SCHEMA, "error": {"code": status, "message": message}}, status_code=status)
        return page(request, "error.html", {"status": status, "message": message}, status)

    async def on_http_error(request: Request, error: HttpError) -> Response:
        return failed(request, error.status, error.message)

    async def on_kx_error(request: Request, error: KxError) -> Response:
        return failed(request, status_of(error), error.message)

    # --- pages -------------------------------------------------------------------------

    def dashboard(request: Request) -> Response:
        return page(request, "dashboard.html", views.dashboard(site))

    def part(request: Request) -> Response:
        return page(request, "part.html", views.part_page(site.workspace(), part_ref(request)))

    def batch_review(request: Request) -> Response:
        return page(request, "review.html", review_context(request))

    def review_context(request: Request) -> dict[str, Any]:
        reviewer = unquote(request.cookies.get(REVIEWER_COOKIE, ""))[:MAX_NAME]
        return {**views.review_page(site, request.path_params["number"]), "reviewer": reviewer,
                "number": request.path_params["number"]}

    # --- forms: the acts of `kx review` and `kx reopen`, through the same code -------------

    async def post_review(request: Request) -> Response:
        form = await read_form(request, site)
        number = request.path_params["number"]
        decision = text(form, "decision", MAX_NAME)
        if decision not in ("approve", "reject"):
            raise HttpError(400, "decision must be 'approve' or 'reject'")
        parts = [ref for ref in form.get("parts", []) if ref.strip()]
        if len(parts) > 1000 or any(len(ref.encode()) > MAX_NAME for ref in parts):
            raise HttpError(400, "name at most 1000 PARTs, each in at most 1 KiB")
        if parts and decision == "approve":
            raise HttpError(400, "PARTs are named only with a rejection")
        note, by = text(form, "note"), text(form, "by", MAX_NAME)
        accept_failed = text(form, "accept_failed", MAX_NAME) is not None
        try:
            await run_in_threadpool(lambda: review(site.workspace(), number, approve=decision == "approve",
                                                   parts=parts, note=note, act=Act(by=by),
                                                   accept_failed=accept_failed))
        except (Refused, BadInput) as error:
            context = await run_in_threadpool(review_context, request)
            return page(request, "review.html", {**context, "error": error.message}, status_of(error))
        response = RedirectResponse(f"/batches/{number}/review", status_code=303)
        if by:
            response.set_cookie(REVIEWER_COOKIE, quote(by), max_age=365 * 86400, httponly=True, samesite="strict")
        return response

    async def post_reopen(request: Request) -> Response:
        form = await read_form(request, site)
        ref = part_ref(request)
        reason, by = text(form, "reason"), text(form, "by", MAX_NAME)
        if reason is None:
            raise HttpError(400, "say why the PART is done again: the reason is recorded")
        try:
            await run_in_threadpool(lambda: reopen(site.workspace(), [ref], reason, Act(by=by)))
        except (Refused, BadInput) as error:
            context = await run_in_threadpool(lambda: views.part_page(site.workspace(), ref))
            return page(request, "part.html", {**context, "error": error.message}, status_of(error))
        return RedirectResponse(f"/parts/{quote(ref)}", status_code=303)

    # --- for scripts ------------------------------------------------------------------

    def api_status(request: Request) -> Response:
        return JSONResponse(site.status())

    async def api_stream(request: Request) -> Response:
        last_seen = request.headers.get("last-event-id", "")
        since = int(last_seen) if last_seen.isdigit() else await run_in_threadpool(site.head)
        return StreamingResponse(event_stream(site, since), media_type="text/event-stream",
                                 headers={"X-Accel-Buffering": "no"})

    def files(request: Request) -> Response:
        workspace, state = site.workspace(), site.state()
        guard = workspace.guard(state)
        served = views.served_files(workspace, state, guard)
        name = request.path_params["path"]
        data = views.read_guarded(guard, served[name]) if name in served else None
        if data is None:
            raise HttpError(404, "no such recorded file: only the knowledge files and drops the ledger records"
                                 " are served")
        return Response(data, media_type="text/plain; charset=utf-8")

    routes = [
        Route("/", dashboard),
        Route("/parts/{ref}", part),
        Route("/parts/{ref}/reopen", post_reopen, methods=["POST"]),
        Route("/batches/{number:int}/review", batch_review),
        Route("/batches/{number:int}/review", post_review, methods=["POST"]),
        Route("/api/status", api_status),
        Route("/api/stream", api_stream),
        Route("/files/{path:path}", files),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Mount("/static", StaticFiles(packages=[("web", "static")]), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(site.host)),
        Middleware(TokenGate, site=site),
    ]
    return Starlette(routes=routes, middleware=middleware,
                     exception_handlers={HttpError: on_http_error, KxError: on_kx_error})


def part_ref(request: Request) -> str:
    ref = request.path_params["ref"]
    if len(ref.encode()) > MAX_NAME:
        raise HttpError(400, f"a PART reference is at most {MAX_NAME} bytes: {ref[:80]!r}...")
    return ref


async def event_stream(site: Site, since: int):
    """Server-sent events: one ``data:`` line of event JSON per event the plan gets, from position ``since`` on."""
    yield "retry: 1000\n\n"
    quiet = 0.0
    while True:
        events, since, caught_up = await run_in_threadpool(site.events_after, since)
        for event in events:
            yield f"id: {event.position}\ndata: {json.dumps(event_json(event), ensure_ascii=False)}\n\n"
        if not caught_up:
            continue
        quiet = 0.0 if events else quiet + STREAM_POLL_S
        if quiet >= STREAM_QUIET_S:
            quiet = 0.0
            yield ": waiting for events\n\n"
        await anyio.sleep(STREAM_POLL_S)

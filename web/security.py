"""The page must not be a way around the ledger: a token on every route, a CSRF value on every form, bounded
bodies, the Host header checked, and headers that keep the page out of frames and every script but ours out of it."""

from __future__ import annotations

import hmac
from urllib.parse import parse_qsl

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web.site import Site

MAX_BODY = 64 * 1024  # a form's body
MAX_TEXT = 4096  # a reason or a note, as on the command line
MAX_NAME = 1024  # a reviewer's name, a PART reference
MAX_FIELDS = 200
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
                               " connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
NO_TOKEN = ("kx serve: this page needs its token. Open the address 'kx serve' printed (it ends in ?token=...),"
            " or send 'Authorization: Bearer TOKEN'.\n")


class HttpError(Exception):
    """A request refused before it reached an act: its status and a line saying why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def allowed_hosts(host: str) -> list[str]:
    """The Host header values a request may carry: the bound host or a loopback name (no DNS rebinding)."""
    bound = f"[{host}]" if ":" in host else host
    return list(dict.fromkeys([bound.lower(), *LOOPBACK_NAMES]))


def same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class SecurityHeaders:
    """Every response, errors included, with the headers in ``HEADERS``."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
                if scope["path"].startswith("/static/"):  # our script and style: the same for every page
                    headers["cache-control"] = "private, max-age=3600"
            await send(message)

        await self.app(scope, receive, send_secured)


class TokenGate:
    """401 without the token. ``?token=`` sets an HttpOnly, SameSite=Strict cookie and sends the browser to the
    same address without it (so it stays out of the history); ``Authorization: Bearer`` works for scripts.
    Under ``--read-only`` every request but GET and HEAD is 403."""

    def __init__(self, app: ASGIApp, site: Site):
        self.app, self.site = app, site

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        reading = request.method in ("GET", "HEAD")
        given = request.query_params.get("token")
        if given is not None and reading and same(given, self.site.token):
            rest = request.url.remove_query_params("token")
            response = RedirectResponse(rest.path + (f"?{rest.query}" if rest.query else ""), status_code=303)
            response.set_cookie(self.site.cookie, self.site.token, httponly=True, samesite="strict", path="/")
            await response(scope, receive, send)
            return
        if not self._carries_token(request, given):
            await PlainTextResponse(NO_TOKEN, status_code=401, headers={"WWW-Authenticate": "Bearer"})(
                scope, receive, send)
            return
        if self.site.read_only and not reading:
            await PlainTextResponse("kx serve --read-only: nothing can be recorded here\n", status_code=403)(
                scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _carries_token(self, request: Request, given: str | None) -> bool:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        bearer = credentials.strip() if scheme.lower() == "bearer" else None
        return any(same(value, self.site.token) for value in (given, request.cookies.get(self.site.cookie), bearer))


# --- forms ---------------------------------------------------------------------------


async def read_form(request: Request, site: Site) -> dict[str, list[str]]:
    """A POSTed form (urlencoded, at most ``MAX_BODY`` bytes) whose ``csrf`` is the page's; else HttpError."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise HttpError(415, "send the form as application/x-www-form-urlencoded, as the page's forms do")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise HttpError(413, f"the form is larger than {MAX_BODY // 1024} KiB")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise HttpError(413, f"the form is larger than {MAX_BODY // 1024} KiB")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise HttpError(400, "the form is not UTF-8 urlencoded text, or has too many fields") from None
    form: dict[str, list[str]] = {}
    for name, value in pairs:
        form.setdefault(name, []).append(value)
    if not same(first(form, "csrf"), site.csrf):
        raise HttpError(403, "the form's csrf value is missing or wrong; reload the page and send it again")
    return form


def first(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def text(form: dict[str, list[str]], name: str, limit: int = MAX_TEXT) -> str | None:
    """A field's text, stripped (None when blank); longer than ``limit`` bytes: HttpError 400."""
    value = (first(form, name) or "").strip()
    if len(value.encode("utf-8")) > limit:
        raise HttpError(400, f"{name} is longer than {limit} bytes: {value[:80]!r}...")
    return value or None

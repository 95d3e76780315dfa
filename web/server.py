"""``kx serve``: bind, say the address with its token, serve until Ctrl-C, and leave nothing behind."""

from __future__ import annotations

import os
import secrets
import signal
import socket
from collections.abc import Callable

import uvicorn

from ledger.errors import BadInput
from machine.acts.workspace import Workspace
from runners.supervisor.review_page import announce, base_url, withdraw
from web.app import create_app
from web.site import Site

TOKEN_ENV = "KX_SERVE_TOKEN"
SHUTDOWN_GRACE_S = 2  # open event streams are cut after this on Ctrl-C


def token_of(given: str | None) -> str:
    """``--token``, else ``$KX_SERVE_TOKEN``, else a random one."""
    token = given if given is not None else os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(24)
    if not token.strip() or len(token) > 1024 or any(c.isspace() for c in token):
        raise BadInput("the token must be 1 to 1024 characters without spaces (--token or $KX_SERVE_TOKEN)")
    return token


def serve(workspace: Workspace, *, host: str, port: int, token: str | None, read_only: bool,
          ready: Callable[[str], None], say: Callable[[str], None]) -> None:
    """Serve the workspace's plan on ``host:port`` (0: a free port) until interrupted. ``ready`` gets the address
    with the token once the port is bound; ``say`` tells a person how it goes."""
    plan, token = workspace.plan_id(), token_of(token)
    sock = listening(host, port)
    port = sock.getsockname()[1]
    site = Site(workspace.ledger.path.resolve(), plan, token, read_only, host, port)
    server = uvicorn.Server(uvicorn.Config(create_app(site), log_level="warning", access_log=False, lifespan="off",
                                           timeout_graceful_shutdown=SHUTDOWN_GRACE_S))
    # uvicorn shuts down gracefully on SIGINT and SIGTERM, then raises the signal again for the handler it found:
    # this one, which ends the run here, so the note beside the ledger is removed whichever signal stopped it
    previous = {signum: signal.signal(signum, _stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    noted = None
    try:
        noted = announce(workspace.ledger.path, plan, host, port)
        ready(f"{base_url(host, port)}/?token={site.token}")
        say(f"serving plan {plan} of {workspace.ledger.path}{' read-only' if read_only else ''}; Ctrl-C stops")
        server.run(sockets=[sock])
    except Stopped:
        say("stopped")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if noted is not None:
            withdraw(noted)
        sock.close()


class Stopped(Exception):
    """Ctrl-C or SIGTERM, after the server shut down."""


def _stop(_signum, _frame) -> None:
    raise Stopped


def listening(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, or BadInput saying why not."""
    sock = None
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise BadInput(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port or --host"
                       ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock

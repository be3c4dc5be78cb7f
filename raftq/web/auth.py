"""Who may use the web app, and which requests count as actions (docs/security.md, "Web").

Credentials: when the cluster has a secret, every route but the login page and the OpenAPI
document needs a token, ``USER.HMAC-SHA256(secret, "raftq-web-token:" + USER)`` in hex: sent as
``Authorization: Bearer TOKEN`` by API callers, or kept in an HttpOnly, SameSite=Strict cookie
after the login form. The token names its user, so the action log says who did what; it is
derived from the secret but does not reveal it, so a leaked token opens the web app, never the
cluster's own port. ``raftq web --print-token USER`` makes one. Without a secret there are no
credentials, and the web app listens on loopback only (``check_listen``), as nodes do.

Actions: every change is a POST (a GET never changes anything). A POST whose ``Origin`` is not
this site, or that the browser marks cross-site (``Sec-Fetch-Site``), is refused (403): a page
on another site cannot make a logged-in browser act. ``--read-only`` refuses every action.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import time
from typing import Any
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from raftq import limits
from raftq.errors import ConfigError
from raftq.transport.network import parse_address

TOKEN_COOKIE = "raftq_token"
USER_PATTERN = re.compile(r"[A-Za-z0-9_@+-][A-Za-z0-9_.@+-]{0,63}")
"""User names in tokens: e-mail-like names, nothing that needs quoting in a log line."""

PUBLIC_PATHS = frozenset({"/login", "/api/v1/openapi.json"})
"""Served without credentials: the login form, and the API's description (no data)."""

UNGUARDED_ACTIONS = frozenset({"/login", "/logout"})
"""POSTs allowed in read-only mode: signing in and out change no job."""


def token_for(secret: bytes, user: str) -> str:
    """The web token of ``user`` for the cluster with ``secret``."""
    if not USER_PATTERN.fullmatch(user):
        raise ConfigError(
            f"user {user!r}: 1 to 64 letters, digits or _.@+- (not starting with a dot)"
        )
    return f"{user}.{_mac(secret, user)}"


def user_of(secret: bytes, token: str) -> str | None:
    """The user a token names, if the token is genuine; else None."""
    user, separator, mac = token.rpartition(".")
    if not separator or not USER_PATTERN.fullmatch(user):
        return None
    return user if hmac.compare_digest(mac, _mac(secret, user)) else None


def _mac(secret: bytes, user: str) -> str:
    return hmac.new(secret, b"raftq-web-token:" + user.encode(), hashlib.sha256).hexdigest()


def check_listen(listen: str, *, secret: bytes | None, insecure: bool) -> None:
    """Without credentials, serve loopback only (as a node does without a secret)."""
    host, _ = parse_address(listen, any_port=True)
    if secret is not None or insecure or _is_loopback(host):
        return
    raise ConfigError(
        f"without a cluster secret the web app listens on loopback only, not on {listen}: "
        "give it --secret-file (then it asks for a token), or pass --insecure to let anyone "
        "who can reach the port see and change jobs"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Guard:
    """ASGI middleware in front of every route: requests in flight, credentials, cross-site
    actions, read-only mode and the body size cap, each refused with a JSON error (API) or a
    page's answer before any route runs."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        secret: bytes | None,
        read_only: bool,
        in_flight_max: int = limits.WEB_REQUESTS_IN_FLIGHT_MAX,
    ) -> None:
        self.app = app
        self.secret = secret
        self.read_only = read_only
        self.in_flight = 0
        """Requests being served: ASGI calls run on one event loop, so a plain count."""
        self.in_flight_max = in_flight_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: Message) -> None:
            """Every answer says how long the server took (Server-Timing), for the
            browser's developer tools and benchmarks/bench_web.py."""
            if message["type"] == "http.response.start":
                duration_ms = (time.perf_counter() - started) * 1000
                timing = (b"server-timing", f"app;dur={duration_ms:.2f}".encode())
                message = {**message, "headers": [*message.get("headers", ()), timing]}
            await send(message)

        if self.in_flight >= self.in_flight_max:
            message = f"{self.in_flight} requests in flight, the most this app serves: retry"
            await send_error(timed_send, 503, "busy", message)
            return
        self.in_flight += 1
        try:
            await self._guarded(scope, receive, timed_send)
        finally:
            self.in_flight -= 1

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope)
        headers = _headers(scope)
        refusal = self._refusal(scope, path, headers)
        if refusal is not None:
            status, code, message = refusal
            is_page = not path.startswith("/api/") and path != "/metrics"
            if status == 401 and is_page and scope["method"] == "GET":
                await _redirect_to_login(scope, send)
                return
            await send_error(send, status, code, message)
            return
        await self.app(scope, receive, send)

    def _refusal(
        self, scope: Scope, path: str, headers: dict[str, str]
    ) -> tuple[int, str, str] | None:
        if self.secret is not None and path not in PUBLIC_PATHS:
            user = self._user(headers)
            if user is None:
                return (
                    401,
                    "unauthorized",
                    (
                        "this cluster has a secret: send 'Authorization: Bearer TOKEN' "
                        "(raftq web --print-token USER makes one) or sign in at /login"
                    ),
                )
            scope["raftq.user"] = user
        if scope["method"] == "POST":
            if not _same_site(scope, headers):
                return 403, "cross_site", "a POST from another site is refused (CSRF)"
            if self.read_only and path not in UNGUARDED_ACTIONS:
                return 403, "read_only", "this raftq web app is read-only: actions are refused"
        length = headers.get("content-length", "0")
        if not length.isdigit():
            return 400, "bad_request", "Content-Length is not a number"
        if int(length) > limits.WEB_BODY_BYTES_MAX:
            return (
                413,
                "too_large",
                (f"the body has {length} bytes; at most {limits.WEB_BODY_BYTES_MAX} are read"),
            )
        return None

    def _user(self, headers: dict[str, str]) -> str | None:
        assert self.secret is not None
        token = ""
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            token = credentials.strip()
        elif (cookie := _cookie(headers.get("cookie", ""), TOKEN_COOKIE)) is not None:
            token = cookie
        return user_of(self.secret, token) if token else None


def route_path(scope: Scope) -> str:
    """The path inside this app: without the prefix it is mounted under."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path or "/"


def _headers(scope: Scope) -> dict[str, str]:
    return {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers", ())
    }


def _same_site(scope: Scope, headers: dict[str, str]) -> bool:
    """Whether a POST comes from this site (or from no browser page at all: curl, clients).
    Browsers send Sec-Fetch-Site (all current ones) and Origin on every POST."""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    if origin is None:
        return True
    if origin == "null":
        return False
    host = headers.get("host", "")
    parts = urlsplit(origin)
    return bool(parts.netloc) and parts.netloc == host and parts.scheme == scope.get("scheme")


def _cookie(header: str, name: str) -> str | None:
    for item in header.split(";"):
        key, separator, value = item.strip().partition("=")
        if separator and key == name:
            return value
    return None


async def send_error(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _redirect_to_login(scope: Scope, send: Send) -> None:
    location = scope.get("root_path", "") + "/login"
    headers: list[tuple[bytes, bytes]] = [
        (b"location", location.encode()),
        (b"content-length", b"0"),
    ]
    start: dict[str, Any] = {"type": "http.response.start", "status": 303, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": b""})

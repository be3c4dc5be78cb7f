"""Who may use the web app, and which requests count as actions (docs/security.md, "Web").

Credentials: when the cluster has a secret, every route but the login page and the OpenAPI
document needs a token, ``USER.EXPIRES.MAC``: EXPIRES is the Unix time (seconds) after which it
is refused, MAC is HMAC-SHA256(secret, "raftq-web-token-v2:" + USER + ":" + EXPIRES) in hex.
It is sent as ``Authorization: Bearer TOKEN`` by API callers, or kept in an HttpOnly,
SameSite=Strict cookie after the login form. The token names its user, so the action log says
who did what; it is derived from the secret but does not reveal it, so a leaked token opens
the web app, never the cluster's own port, and only until it expires. ``raftq web
--print-token USER [--ttl 30d]`` makes one. Tokens of the first format, ``USER.MAC`` without an
expiry, are refused by name (their 401 says to make a new one): nothing lives forever. Without
a secret there are no credentials, and the web app listens on loopback only
(``check_listen``), as nodes do.

Actions: every change is a POST, or a PUT or DELETE of the API (a GET never changes anything).
Every request of a method other than GET, HEAD and OPTIONS counts as an action: one whose
``Origin`` is not this site, or that the browser marks cross-site (``Sec-Fetch-Site``), is
refused (403): a page on another site cannot make a logged-in browser act. ``--read-only``
refuses every action.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import time
from collections.abc import Callable
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

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that change nothing; every other method is an action, guarded as a POST is."""

UNGUARDED_ACTIONS = frozenset({"/login", "/logout"})
"""POSTs allowed in read-only mode: signing in and out change no job."""


TTL_PATTERN = re.compile(r"([0-9]{1,9})([smhd]?)")
TTL_UNITS_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class TokenRefused(Exception):
    """A token that does not let its bearer in; ``code`` for the API's error, ``message``
    says why and what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def token_for(
    secret: bytes,
    user: str,
    *,
    ttl_s: int = limits.WEB_TOKEN_TTL_DEFAULT_S,
    now_s: float | None = None,
) -> str:
    """The web token of ``user`` for the cluster with ``secret``, valid for ``ttl_s`` seconds
    from ``now_s`` (default: now)."""
    if not USER_PATTERN.fullmatch(user):
        raise ConfigError(
            f"user {user!r}: 1 to 64 letters, digits or _.@+- (not starting with a dot)"
        )
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int):
        raise ConfigError(f"ttl_s must be an integer number of seconds, not {ttl_s!r}")
    if not limits.WEB_TOKEN_TTL_MIN_S <= ttl_s <= limits.WEB_TOKEN_TTL_MAX_S:
        raise ConfigError(
            f"a token lives from {limits.WEB_TOKEN_TTL_MIN_S} s to "
            f"{limits.WEB_TOKEN_TTL_MAX_S // 86400} days, not {ttl_s} s"
        )
    expires_s = int(time.time() if now_s is None else now_s) + ttl_s
    return f"{user}.{expires_s}.{_mac(secret, user, expires_s)}"


def parse_ttl(text: str) -> int:
    """``--ttl``: a count of seconds, minutes, hours or days (``90s``, ``15m``, ``12h``,
    ``30d``; a bare number is seconds), within the bounds ``token_for`` takes."""
    match = TTL_PATTERN.fullmatch(text.strip())
    if match is None:
        raise ConfigError(f"--ttl {text!r}: a number and a unit, s, m, h or d (e.g. 30d)")
    ttl_s = int(match.group(1)) * TTL_UNITS_S[match.group(2)]
    if not limits.WEB_TOKEN_TTL_MIN_S <= ttl_s <= limits.WEB_TOKEN_TTL_MAX_S:
        raise ConfigError(
            f"--ttl {text}: a token lives from {limits.WEB_TOKEN_TTL_MIN_S // 60} minute to "
            f"{limits.WEB_TOKEN_TTL_MAX_S // 86400} days"
        )
    return ttl_s


def token_expiry_s(token: str) -> int:
    """When a token that ``check_token`` accepted expires (Unix seconds)."""
    return int(token.rsplit(".", 2)[1])


UNAUTHORIZED = (
    "this cluster has a secret: send 'Authorization: Bearer TOKEN' "
    "(raftq web --print-token USER makes one) or sign in at /login"
)


def check_token(secret: bytes, token: str, *, now_s: float) -> str:
    """The user a genuine, unexpired token names; else ``TokenRefused`` saying which."""
    rest, separator, mac = token.rpartition(".")
    user, _, expires = rest.rpartition(".")
    genuine = (
        separator
        and USER_PATTERN.fullmatch(user)
        and expires.isdigit()
        and len(expires) <= 12
        and hmac.compare_digest(mac, _mac(secret, user, int(expires)))
    )
    if genuine:
        if now_s >= int(expires):
            expired_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(expires)))
            raise TokenRefused(
                "token_expired",
                f"{user}'s token expired at {expired_at}: make a new one with raftq web "
                f"--print-token {user} [--ttl 30d] and send it instead",
            )
        return user
    first_format = separator and USER_PATTERN.fullmatch(rest)
    if first_format and hmac.compare_digest(mac, _mac_v1(secret, rest)):
        raise TokenRefused(
            "token_without_expiry",
            f"{rest}'s token has no expiry (the first token format), and such tokens are no "
            f"longer accepted: make one that expires with raftq web --print-token {rest} "
            "[--ttl 30d]",
        )
    raise TokenRefused("unauthorized", UNAUTHORIZED)


def _mac(secret: bytes, user: str, expires_s: int) -> str:
    message = f"raftq-web-token-v2:{user}:{expires_s}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def _mac_v1(secret: bytes, user: str) -> str:
    """The first format's MAC (no expiry): checked only to say why such a token is refused."""
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
        clock: Callable[[], float] = time.time,
        in_flight_max: int = limits.WEB_REQUESTS_IN_FLIGHT_MAX,
    ) -> None:
        self.app = app
        self.secret = secret
        self.clock = clock
        """Wall time in seconds, against which tokens expire."""
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
                await _redirect_to_login(scope, send, code)
                return
            await send_error(send, status, code, message)
            return
        await self.app(scope, receive, send)

    def _refusal(
        self, scope: Scope, path: str, headers: dict[str, str]
    ) -> tuple[int, str, str] | None:
        if self.secret is not None and path not in PUBLIC_PATHS:
            try:
                scope["raftq.user"] = check_token(self.secret, _token(headers), now_s=self.clock())
            except TokenRefused as refused:
                return 401, refused.code, refused.message
        method = scope["method"]
        if method not in SAFE_METHODS:
            if not _same_site(scope, headers):
                return 403, "cross_site", f"a {method} from another site is refused (CSRF)"
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


def _token(headers: dict[str, str]) -> str:
    """The bearer token, else the login cookie's, else ""."""
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip()
    return _cookie(headers.get("cookie", ""), TOKEN_COOKIE) or ""


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
    """Whether an action comes from this site (or from no browser page at all: curl,
    clients). Browsers send Sec-Fetch-Site (all current ones) and Origin on every POST, PUT
    and DELETE."""
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


async def _redirect_to_login(scope: Scope, send: Send, code: str) -> None:
    """To the login form; an expired token's holder is told why (a fixed word, never text
    from the request)."""
    location = scope.get("root_path", "") + "/login"
    if code == "token_expired":
        location += "?why=expired"
    headers: list[tuple[bytes, bytes]] = [
        (b"location", location.encode()),
        (b"content-length", b"0"),
    ]
    start: dict[str, Any] = {"type": "http.response.start", "status": 303, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": b""})

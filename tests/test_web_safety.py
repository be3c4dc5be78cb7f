"""The web app's safety (docs/security.md, "Web"): bad input of every kind is a 4xx with a JSON
error and never a 500 or a crash; with a cluster secret nothing is served without a token
(bearer or the login cookie); cross-site POSTs are refused; read-only mode refuses every
action; without a secret the web app serves loopback only.

The app here points at an address where nothing listens: every request below must be decided
by the web app itself, before it asks the cluster (which would answer 503)."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from raftq import limits
from raftq.errors import ConfigError
from raftq.web import asgi_app, token_for
from raftq.web.auth import TOKEN_COOKIE, TokenRefused, check_listen, check_token, parse_ttl

NOWHERE = "127.0.0.1:9"
SECRET = b"s" * 32
NOW_S = 1_796_083_200.0
"""2026-12-01T00:00:00Z: the fake wall clock's time where a test sets one."""
JSON_HEADERS = {"content-type": "application/json"}


@pytest.fixture
def http() -> Iterator[TestClient]:
    with TestClient(asgi_app(NOWHERE, timeout=0.5)) as client:
        yield client


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def raw(body: bytes, **headers: str) -> dict[str, Any]:
    return {"content": body, "headers": {**JSON_HEADERS, **headers}}


def job(**fields: Any) -> dict[str, Any]:
    return {"json": {"payload": 1, **fields}}


JOBS = "/api/v1/jobs"
RETRY_DEAD = "/api/v1/jobs/retry-dead"
LONG_ID = "i" * (limits.JOB_ID_CHARS_MAX + 1)
LONG_NAME = "q" * (limits.NAME_CHARS_MAX + 1)
DEEP = json.loads(nested(limits.NESTING_DEPTH_MAX + 1))
HUGE_BODY = b"[" + b" " * limits.WEB_BODY_BYTES_MAX + b"]"
TOO_MANY = [{"payload": 0}] * (limits.JOBS_PER_ENQUEUE_MAX + 1)
SAME_ID = [{"payload": 1, "id": "a"}, {"payload": 2, "id": "a"}]
BAD = "bad_request"
SCHEDULE = "/api/v1/schedules/nightly"
LIMIT = "/api/v1/limits/group/tenant-7"
BIG_PAYLOAD = "x" * (limits.SCHEDULE_PAYLOAD_BYTES_MAX + 1)

BAD_REQUESTS: list[tuple[str, str, dict[str, Any], int, str]] = [
    # (method, path, httpx request options, status, error code)
    ("POST", JOBS, raw(b"{not json"), 400, BAD),
    ("POST", JOBS, raw(b"\xff\xfe"), 400, BAD),
    ("POST", JOBS, raw(b""), 400, BAD),
    ("POST", JOBS, raw(b"null"), 400, BAD),
    ("POST", JOBS, {"content": b'{"payload": 1}'}, 415, "unsupported_media_type"),
    (
        "POST",
        JOBS,
        raw(b'{"payload": 1}', **{"content-type": "text/plain"}),
        415,
        "unsupported_media_type",
    ),
    ("POST", JOBS, {"json": []}, 400, BAD),
    ("POST", JOBS, {"json": "a job"}, 400, BAD),
    ("POST", JOBS, {"json": 7}, 400, BAD),
    ("POST", JOBS, {"json": {"type": "x"}}, 400, BAD),
    ("POST", JOBS, job(colour="red"), 400, BAD),
    ("POST", JOBS, job(priority="high"), 400, BAD),
    ("POST", JOBS, job(priority=10**100), 400, BAD),
    ("POST", JOBS, job(max_attempts=True), 400, BAD),
    ("POST", JOBS, job(type=""), 400, BAD),
    ("POST", JOBS, job(queue=LONG_NAME), 400, BAD),
    ("POST", JOBS, job(id=LONG_ID), 400, BAD),
    ("POST", JOBS, {"json": SAME_ID}, 400, BAD),
    ("POST", JOBS, raw(b'{"payload": NaN}'), 400, BAD),
    ("POST", JOBS, raw(b'{"payload": 1e999}'), 400, BAD),
    ("POST", JOBS, raw(nested(100_000).encode()), 400, BAD),
    ("POST", JOBS, job(payload=DEEP), 400, BAD),
    ("POST", JOBS, job(payload="x" * (limits.JOB_PAYLOAD_BYTES_MAX + 1)), 400, BAD),
    ("POST", JOBS, {"json": TOO_MANY}, 400, BAD),
    ("POST", JOBS, raw(HUGE_BODY), 413, "too_large"),
    ("POST", JOBS, raw(b"{}", **{"content-length": "many"}), 400, BAD),
    ("POST", RETRY_DEAD, {"json": {"limit": "all"}}, 400, BAD),
    ("POST", RETRY_DEAD, {"json": {"queue": ""}}, 400, BAD),
    ("POST", RETRY_DEAD, {"json": {"state": "dead"}}, 400, BAD),
    ("GET", f"{JOBS}/{LONG_ID}", {}, 400, BAD),
    ("POST", f"{JOBS}/{LONG_ID}/cancel", {}, 400, BAD),
    ("POST", f"{JOBS}/{LONG_ID}/retry", {}, 400, BAD),
    ("POST", f"/api/v1/queues/{LONG_NAME}/pause", {}, 400, BAD),
    ("GET", JOBS, {"params": {"cursor": "AAAA"}}, 400, "bad_cursor"),
    ("GET", JOBS, {"params": {"limit": "ten"}}, 400, BAD),
    ("GET", JOBS, {"params": {"limit": "9" * 40}}, 400, BAD),
    ("GET", JOBS, {"params": [("state", "dead"), ("state", "pending")]}, 400, BAD),
    ("PATCH", f"{JOBS}/x/cancel", {}, 405, "method_not_allowed"),
    ("DELETE", f"{JOBS}/x", {}, 405, "method_not_allowed"),
    ("PUT", JOBS, {"json": {}}, 405, "method_not_allowed"),
    ("GET", "/api/v2/jobs", {}, 404, "no_route"),
    # Schedules and limits: checked whole before anything is sent (docs/web.md).
    ("PUT", SCHEDULE, {"json": {"cron": "0 3 * * *"}}, 400, BAD),  # no type
    ("PUT", SCHEDULE, {"json": {"type": "t"}}, 400, BAD),  # neither cron nor every_s
    ("PUT", SCHEDULE, {"json": {"type": "t", "cron": "* * * * *", "every_s": 60}}, 400, BAD),
    ("PUT", SCHEDULE, {"json": {"type": "t", "cron": "61 * * * *"}}, 400, BAD),
    ("PUT", SCHEDULE, {"json": {"type": "t", "cron": "0 0 30 2 *"}}, 400, BAD),  # never fires
    ("PUT", SCHEDULE, {"json": {"type": "t", "cron": "* * * * *", "tz": "Mars/Olympus"}}, 400, BAD),
    ("PUT", SCHEDULE, {"json": {"type": "t", "every_s": 60, "tz": "UTC"}}, 400, BAD),
    ("PUT", SCHEDULE, {"json": {"type": "t", "every_s": 0.5}}, 400, BAD),
    ("PUT", SCHEDULE, {"json": {"type": "t", "every_s": "60"}}, 400, BAD),
    ("PUT", SCHEDULE, {"json": {"type": "t", "every_s": True}}, 400, BAD),
    ("PUT", SCHEDULE, {"json": {"type": "t", "every_s": 10**12}}, 400, BAD),
    ("PUT", SCHEDULE, {"json": {"type": "", "every_s": 60}}, 400, BAD),
    ("PUT", SCHEDULE, {"json": {"type": 7, "every_s": 60}}, 400, BAD),
    ("PUT", SCHEDULE, {"json": {"type": "t", "every_s": 60, "queue": LONG_NAME}}, 400, BAD),
    ("PUT", SCHEDULE, {"json": {"type": "t", "every_s": 60, "catch_up": "some"}}, 400, BAD),
    ("PUT", SCHEDULE, {"json": {"type": "t", "every_s": 60, "colour": "red"}}, 400, BAD),
    ("PUT", SCHEDULE, {"json": {"type": "t", "every_s": 60, "next_ms": 1}}, 400, BAD),
    ("PUT", SCHEDULE, {"json": {"type": "t", "every_s": 60, "name": "other"}}, 400, BAD),
    ("PUT", SCHEDULE, {"json": {"type": "t", "every_s": 60, "payload": DEEP}}, 400, BAD),
    ("PUT", SCHEDULE, {"json": {"type": "t", "every_s": 60, "payload": BIG_PAYLOAD}}, 400, BAD),
    ("PUT", SCHEDULE, {"json": [{"type": "t", "every_s": 60}]}, 400, BAD),
    ("PUT", SCHEDULE, {"json": {"type": "t", "every_s": 60, "priority": "high"}}, 400, BAD),
    ("PUT", SCHEDULE, {"json": {"type": "t", "every_s": 60, "priority": 10**7}}, 400, BAD),
    ("PUT", SCHEDULE, {"json": {"type": "t", "every_s": 60, "max_attempts": 0}}, 400, BAD),
    ("PUT", SCHEDULE, {"json": {"type": "t", "every_s": 60, "timeout_s": 0}}, 400, BAD),
    ("PUT", SCHEDULE, {"json": {"type": "t", "every_s": 60, "timeout": 5}}, 400, BAD),
    ("PUT", SCHEDULE, {"json": {"type": "t", "every_s": 60, "group": LONG_NAME}}, 400, BAD),
    ("PUT", SCHEDULE, raw(b"{not json"), 400, BAD),
    ("PUT", SCHEDULE, {"content": b'{"type": "t", "every_s": 60}'}, 415, "unsupported_media_type"),
    ("PUT", f"/api/v1/schedules/{LONG_NAME}", {"json": {"type": "t", "every_s": 60}}, 400, BAD),
    ("DELETE", f"/api/v1/schedules/{LONG_NAME}", {}, 400, BAD),
    ("POST", SCHEDULE, {"json": {"type": "t", "every_s": 60}}, 405, "method_not_allowed"),
    ("GET", "/api/v1/schedules", {"params": {"name": "x"}}, 400, BAD),
    ("PUT", LIMIT, {"json": {}}, 400, BAD),  # neither concurrency nor rate
    ("PUT", LIMIT, {"json": {"concurrency": 0, "rate": 0}}, 400, BAD),
    ("PUT", LIMIT, {"json": {"concurrency": -1}}, 400, BAD),
    ("PUT", LIMIT, {"json": {"concurrency": True}}, 400, BAD),
    ("PUT", LIMIT, {"json": {"concurrency": 1.5}}, 400, BAD),
    ("PUT", LIMIT, {"json": {"concurrency": limits.LIMIT_CONCURRENCY_MAX + 1}}, 400, BAD),
    ("PUT", LIMIT, {"json": {"rate": 10}}, 400, BAD),  # no window
    ("PUT", LIMIT, {"json": {"concurrency": 1, "window_s": 60}}, 400, BAD),  # no rate
    ("PUT", LIMIT, {"json": {"rate": 10, "window_s": "60"}}, 400, BAD),
    ("PUT", LIMIT, {"json": {"rate": 10, "window_s": 10**9}}, 400, BAD),
    ("PUT", LIMIT, {"json": {"rate": limits.LIMIT_RATE_COUNT_MAX + 1, "window_s": 1}}, 400, BAD),
    ("PUT", LIMIT, {"json": {"concurrency": 1, "running": 0}}, 400, BAD),
    ("PUT", LIMIT, {"json": {"concurrency": 1, "scope": "queue"}}, 400, BAD),
    ("PUT", LIMIT, {"json": {"concurrency": 1, "name": "other"}}, 400, BAD),
    ("PUT", LIMIT, {"json": 1}, 400, BAD),
    ("PUT", "/api/v1/limits/tenant/t", {"json": {"concurrency": 1}}, 400, BAD),
    ("PUT", f"/api/v1/limits/queue/{LONG_NAME}", {"json": {"concurrency": 1}}, 400, BAD),
    ("DELETE", "/api/v1/limits/tenant/t", {}, 400, BAD),
    ("DELETE", "/api/v1/limits", {}, 405, "method_not_allowed"),
]


@pytest.mark.parametrize(
    ("method", "path", "options", "status", "code"),
    BAD_REQUESTS,
    ids=[f"{index}-{row[0]}-{row[3]}" for index, row in enumerate(BAD_REQUESTS)],
)
def test_bad_input_is_a_4xx_json_error_never_a_500(
    http: TestClient, method: str, path: str, options: dict[str, Any], status: int, code: str
) -> None:
    response = http.request(method, path, **options)
    assert response.status_code == status, response.text[:300]
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert response.headers["server-timing"].startswith("app;dur=")


def test_a_huge_body_without_a_length_is_cut_off_at_the_cap(http: TestClient) -> None:
    def chunks() -> Iterator[bytes]:  # sent chunked: no Content-Length to refuse it by
        yield b"["
        for _ in range(limits.WEB_BODY_BYTES_MAX // 65_536 + 1):
            yield b" " * 65_536
        yield b"]"

    response = http.post(JOBS, content=chunks(), headers=JSON_HEADERS)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"


def test_the_app_still_answers_after_the_bad_requests(http: TestClient) -> None:
    for method, path, options, _, _ in BAD_REQUESTS:
        http.request(method, path, **options)
    assert http.get("/api/v1/openapi.json").status_code == 200


def test_a_bad_job_message_names_index_and_field_as_the_cli_does(http: TestClient) -> None:
    body = [{"payload": 1}, {"payload": 2, "priority": "high"}]
    response = http.post("/api/v1/jobs", json=body)
    message = response.json()["error"]["message"]
    assert message == "index 1, field 'priority': must be an integer, not a string"
    # The job file says the same about the same jobs.
    cli = subprocess.run(
        [sys.executable, "-c", "import sys; from raftq.client.jobfile import parse_job_file\n"
         "try:\n parse_job_file(sys.stdin.read())\nexcept Exception as e: print(e)"],
        input=json.dumps(body), capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert cli.stdout.strip() == message


# --- credentials ----------------------------------------------------------------------------------


@pytest.fixture
def guarded() -> Iterator[TestClient]:
    with TestClient(asgi_app(NOWHERE, secret=SECRET, timeout=0.5)) as client:
        yield client


def user_of(token: str, *, secret: bytes = SECRET, now_s: float = NOW_S) -> str:
    """The user ``check_token`` lets in, or the code it refuses with."""
    try:
        return check_token(secret, token, now_s=now_s)
    except TokenRefused as refused:
        return f"refused: {refused.code}"


def test_tokens_name_their_user_and_do_not_forge() -> None:
    token = token_for(SECRET, "alice@example.com", now_s=NOW_S)
    assert user_of(token) == "alice@example.com"
    forged = "refused: unauthorized"
    assert user_of(token, secret=b"t" * 32) == forged
    assert user_of(token.replace("alice", "mallory")) == forged
    assert user_of(token[:-1] + ("0" if token[-1] != "0" else "1")) == forged
    user, expires, mac = token.rsplit(".", 2)
    assert user_of(f"{user}.{int(expires) + 86400}.{mac}") == forged  # a longer life: forged
    for nonsense in ("", ".", "..", "alice", "alice.1.", ".1.ab", "a.99999999999999999999.ab"):
        assert user_of(nonsense) == forged, nonsense
    with pytest.raises(ConfigError):
        token_for(SECRET, "bad user")


def test_a_token_expires_after_its_ttl() -> None:
    """``USER.EXPIRES.MAC``: accepted until EXPIRES (Unix seconds), refused from then on, with
    a message that names the user and the time and says how to get a new token."""
    token = token_for(SECRET, "alice", ttl_s=3_600, now_s=NOW_S)
    assert token.split(".")[1] == str(int(NOW_S) + 3_600)
    assert user_of(token, now_s=NOW_S + 3_599) == "alice"
    assert user_of(token, now_s=NOW_S + 3_600) == "refused: token_expired"
    with pytest.raises(TokenRefused) as refused:
        check_token(SECRET, token, now_s=NOW_S + 86_400)
    assert refused.value.message == (
        "alice's token expired at 2026-12-01T01:00:00Z: make a new one with raftq web "
        "--print-token alice [--ttl 30d] and send it instead"
    )


def test_a_token_without_an_expiry_is_refused_by_name() -> None:
    """The first token format, ``USER.HMAC(secret, "raftq-web-token:" + USER)``, never
    expired: it is refused with a message that says so, not taken for a forgery."""
    mac = hmac.new(SECRET, b"raftq-web-token:alice", hashlib.sha256).hexdigest()
    with pytest.raises(TokenRefused) as refused:
        check_token(SECRET, f"alice.{mac}", now_s=NOW_S)
    assert refused.value.code == "token_without_expiry"
    assert "alice's token has no expiry" in refused.value.message
    assert "raftq web --print-token alice" in refused.value.message
    dotted = hmac.new(SECRET, b"raftq-web-token:a.1767229200", hashlib.sha256).hexdigest()
    assert user_of(f"a.1767229200.{dotted}") == "refused: token_without_expiry"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * 86_400), ("12h", 43_200), ("15m", 900), ("90s", 90), ("600", 600),
     ("365d", 365 * 86_400), (" 1m ", 60)],
)  # fmt: skip
def test_a_ttl_is_a_number_and_a_unit(text: str, seconds: int) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "0d", "59s", "366d", "1w", "-1d", "1.5h", "d"])
def test_a_ttl_out_of_bounds_or_unreadable_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="--ttl"):
        parse_ttl(text)


def test_token_for_bounds_the_lifetime() -> None:
    for ttl_s in (0, limits.WEB_TOKEN_TTL_MIN_S - 1, limits.WEB_TOKEN_TTL_MAX_S + 1):
        with pytest.raises(ConfigError, match="a token lives"):
            token_for(SECRET, "alice", ttl_s=ttl_s)


class FakeClock:
    """Wall time in seconds that a test moves by hand."""

    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def test_an_expired_token_is_refused_by_the_api_and_the_pages() -> None:
    clock = FakeClock(NOW_S)
    token = token_for(SECRET, "alice", ttl_s=600, now_s=NOW_S)
    with TestClient(asgi_app(NOWHERE, secret=SECRET, timeout=0.5, clock=clock)) as client:
        headers = {"authorization": f"Bearer {token}"}
        assert client.get("/api/v1/status", headers=headers).status_code == 503  # let in
        signed_in = client.post("/login", data={"token": token}, follow_redirects=False)
        assert "Max-Age=600" in signed_in.headers["set-cookie"]  # the browser drops it then
        clock.now_s += 600
        refused = client.get("/api/v1/status", headers=headers)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "token_expired"
        assert "alice's token expired at" in refused.json()["error"]["message"]
        page = client.get("/", follow_redirects=False)  # with the (expired) cookie
        assert (page.status_code, page.headers["location"]) == (303, "/login?why=expired")
        assert "Your token expired" in client.get(page.headers["location"]).text
        again = client.post("/login", data={"token": token})
        assert again.status_code == 401
        assert "alice&#x27;s token expired at" in again.text


def test_with_a_secret_every_route_needs_a_token(guarded: TestClient) -> None:
    for method, path in (
        ("GET", "/api/v1/status"),
        ("GET", "/api/v1/jobs"),
        ("POST", "/api/v1/jobs"),
        ("POST", "/api/v1/queues/q/pause"),
        ("GET", "/metrics"),
    ):
        for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": "Basic x"}):
            response = guarded.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, headers)
            assert response.json()["error"]["code"] == "unauthorized"
    page = guarded.get("/", follow_redirects=False)
    assert (page.status_code, page.headers["location"]) == (303, "/login")
    assert guarded.get("/login").status_code == 200  # the form itself is open
    assert guarded.get("/api/v1/openapi.json").status_code == 200


def test_a_bearer_token_gets_through_to_the_cluster(guarded: TestClient) -> None:
    headers = {"authorization": "Bearer " + token_for(SECRET, "alice")}
    response = guarded.get("/api/v1/status", headers=headers)
    assert response.status_code == 503  # past the guard: the cluster (nowhere) did not answer
    assert response.json()["error"]["code"] == "no_quorum"


def test_signing_in_sets_a_strict_http_only_cookie_that_works(guarded: TestClient) -> None:
    refused = guarded.post("/login", data={"token": "alice.0000"})
    assert refused.status_code == 401
    signed_in = guarded.post(
        "/login", data={"token": token_for(SECRET, "alice")}, follow_redirects=False
    )
    assert signed_in.status_code == 303
    cookie = signed_in.headers["set-cookie"]
    assert cookie.startswith(f"{TOKEN_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain HTTP (tests/test_web_serve.py: Secure over HTTPS)
    assert guarded.get("/api/v1/status").status_code == 503  # the cookie got it past the guard
    signed_out = guarded.post("/logout", follow_redirects=False)
    assert signed_out.status_code == 303
    guarded.cookies.clear()
    assert guarded.get("/api/v1/status").status_code == 401


# --- cross-site actions and read-only mode --------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://evil.example"},
        {"origin": "null"},
        {"origin": "https://testserver"},  # another scheme is another origin
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
        {"sec-fetch-site": "same-origin", "origin": "http://evil.example"},
    ],
)
def test_a_cross_site_post_is_refused(http: TestClient, headers: dict[str, str]) -> None:
    for path in ("/api/v1/queues/q/pause", "/api/v1/jobs/x/cancel", "/login"):
        response = http.post(path, headers=headers)
        assert response.status_code == 403, (path, headers)
        assert response.json()["error"]["code"] == "cross_site"
    for method, path in SCHEDULING_ACTIONS:  # a PUT or DELETE is an action as a POST is
        response = http.request(method, path, headers=headers, json=SCHEDULING_BODIES.get(path))
        assert response.status_code == 403, (method, path, headers)
        assert response.json()["error"]["code"] == "cross_site"


SCHEDULING_ACTIONS = [
    ("PUT", SCHEDULE),
    ("DELETE", SCHEDULE),
    ("PUT", LIMIT),
    ("DELETE", LIMIT),
]
SCHEDULING_BODIES = {SCHEDULE: {"type": "t", "every_s": 60}, LIMIT: {"concurrency": 1}}


def test_a_same_origin_post_is_let_through(http: TestClient) -> None:
    headers = {"origin": "http://testserver", "sec-fetch-site": "same-origin"}
    response = http.post("/api/v1/queues/q/pause", headers=headers)
    assert response.status_code == 503  # past the guard, to the cluster (nowhere)


def test_read_only_refuses_every_action_and_serves_reads() -> None:
    with TestClient(asgi_app(NOWHERE, read_only=True, timeout=0.5)) as http:
        for path in (
            "/api/v1/jobs",
            "/api/v1/jobs/x/cancel",
            "/api/v1/jobs/x/retry",
            "/api/v1/jobs/retry-dead",
            "/api/v1/queues/q/pause",
            "/api/v1/queues/q/resume",
        ):
            response = http.post(path, json={"payload": 1})
            assert response.status_code == 403, path
            assert response.json()["error"]["code"] == "read_only"
        for method, path in SCHEDULING_ACTIONS:
            response = http.request(method, path, json=SCHEDULING_BODIES.get(path))
            assert response.status_code == 403, (method, path)
            assert response.json()["error"]["code"] == "read_only"
        assert http.get("/api/v1/schedules").status_code == 503  # reads pass (to nowhere)
        assert http.get("/api/v1/limits").status_code == 503
        assert http.get("/api/v1/status").status_code == 503  # reads pass (to nowhere)


def test_without_a_secret_only_loopback_unless_insecure() -> None:
    check_listen("127.0.0.1:8080", secret=None, insecure=False)
    check_listen("[::1]:8080", secret=None, insecure=False)
    check_listen("localhost:0", secret=None, insecure=False)
    check_listen("0.0.0.0:8080", secret=SECRET, insecure=False)
    check_listen("0.0.0.0:8080", secret=None, insecure=True)
    with pytest.raises(ConfigError, match="loopback only"):
        check_listen("0.0.0.0:8080", secret=None, insecure=False)
    with pytest.raises(ConfigError, match="loopback only"):
        check_listen("example.com:8080", secret=None, insecure=False)


async def test_requests_past_the_in_flight_bound_are_503_at_once() -> None:
    """Guard counts requests being served; one more than the bound is refused at once, and
    a slot freed is a slot taken again."""
    import trio
    import trio.testing

    from raftq.web.auth import Guard

    release = trio.Event()
    started: list[str] = []

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        started.append(scope["path"])
        await release.wait()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    guard = Guard(slow_app, secret=None, read_only=False, in_flight_max=3)
    statuses: list[int] = []

    async def request(path: str) -> None:
        scope = {"type": "http", "method": "GET", "path": path, "headers": []}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await guard(scope, receive, send)

    async with trio.open_nursery() as nursery:
        for n in range(3):
            nursery.start_soon(request, f"/{n}")
        await trio.testing.wait_all_tasks_blocked()
        await request("/one-too-many")
        assert statuses == [503]
        release.set()
    assert sorted(statuses) == [204, 204, 204, 503]
    await request("/after")
    assert statuses[-1] == 204
    assert guard.in_flight == 0

"""The three ways to serve the web app (CONTRACT.md "HTTP"), each against real nodes:

1. ``raftq.web.asgi_app`` mounted under a prefix in a Starlette app running on asyncio: the
   AnyIO client runs on the host's loop, with or without the host running the app's lifespan;
2. ``raftq web`` standalone (Hypercorn's Trio worker) against a 3-node cluster, and read-only;
3. a node's ``--http-addr`` (here through ``raftq run``, the embedded default): dashboard, API
   and ``/metrics`` on one port, behind a token when the cluster has a secret, every action
   logged with who did it; a non-loopback address without a secret is one clear error, exit 2.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import IO

import httpx2 as httpx
import pytest
import sniffio
import trustme
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

import raftq
from raftq import limits
from raftq.local_cluster import LocalCluster, free_ports
from raftq.web import asgi_app, token_for
from raftq.web.auth import TokenRefused, check_token, token_expiry_s
from tests.process_cluster import process_cluster

WAIT_S = 30.0
START_LINES_MAX = 200
"""Lines a starting process may print before the one a test waits for."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with process_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


def host_app(cluster: LocalCluster, *, run_lifespan: bool) -> Starlette:
    """A user's Starlette app with raftq's mounted at /raftq, as docs/web.md shows."""
    web = asgi_app(cluster.client_addresses, timeout=WAIT_S)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if run_lifespan:
            async with web.router.lifespan_context(web):
                yield
        else:
            yield

    async def loop(request: Request) -> JSONResponse:
        return JSONResponse({"loop": sniffio.current_async_library()})

    return Starlette(routes=[Route("/loop", loop), Mount("/raftq", app=web)], lifespan=lifespan)


@pytest.mark.parametrize("run_lifespan", [True, False])
def test_mounted_under_a_prefix_in_an_asyncio_app(
    cluster: LocalCluster, run_lifespan: bool
) -> None:
    with TestClient(host_app(cluster, run_lifespan=run_lifespan)) as http:
        assert http.get("/loop").json() == {"loop": "asyncio"}
        created = http.post("/raftq/api/v1/jobs", json={"type": "echo", "payload": "mounted"})
        assert created.status_code == 201, created.text
        (job_id,) = created.json()["ids"]
        with raftq.SyncClient(cluster.client_addresses, timeout=WAIT_S) as checker:
            assert checker.wait(job_id, timeout=WAIT_S).result == "mounted"
        assert http.get(f"/raftq/api/v1/jobs/{job_id}").json()["state"] == "succeeded"
        page = http.get("/raftq/")
        assert page.status_code == 200
        assert "leader" in page.text
        assert http.get("/raftq/api/v1/nothing").json()["error"]["code"] == "no_route"
        document = http.get("/raftq/api/v1/openapi.json").json()
        assert document["servers"] == [{"url": "/raftq"}]


def test_mounted_with_a_secret_redirects_pages_to_the_prefixed_login(
    cluster: LocalCluster,
) -> None:
    web = asgi_app(cluster.client_addresses, secret=b"k" * 32)
    with TestClient(Starlette(routes=[Mount("/ops/queue", app=web)])) as http:
        page = http.get("/ops/queue/", follow_redirects=False)
        assert (page.status_code, page.headers["location"]) == (303, "/ops/queue/login")
        assert http.get("/ops/queue/login").status_code == 200


# --- processes ------------------------------------------------------------------------------------


def read_until(stream: IO[str], marker: str) -> str:
    """Lines of a starting process until one holds ``marker`` (bounded; no sleeping)."""
    seen = []
    for _ in range(START_LINES_MAX):
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return line
    raise AssertionError(f"never printed {marker!r}: {''.join(seen)[-2000:]}")


@contextmanager
def running(command: list[str]) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=WAIT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=WAIT_S)
        assert process.stdout is not None
        process.stdout.close()


def raftq_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "raftq", *arguments]


def test_raftq_web_serves_the_cluster_and_read_only_refuses_actions(cluster: LocalCluster) -> None:
    addresses = ",".join(cluster.client_addresses)
    (port,) = free_ports(1)
    with running(
        raftq_command("web", "--cluster", addresses, "--listen", f"127.0.0.1:{port}")
    ) as web:
        assert web.stdout is not None
        read_until(web.stdout, "raftq web: serving")
        base = f"http://127.0.0.1:{port}"
        status = httpx.get(f"{base}/api/v1/status", timeout=WAIT_S).json()
        assert sorted(node["id"] for node in status["cluster"]["nodes"]) == ["n1", "n2", "n3"]
        created = httpx.post(
            f"{base}/api/v1/jobs", json=[{"payload": 1}, {"payload": 2}], timeout=WAIT_S
        )
        assert created.status_code == 201
        assert len(created.json()["ids"]) == 2
    assert web.returncode == 0  # SIGTERM: a clean stop
    (port,) = free_ports(1)
    read_only = raftq_command(
        "web", "--cluster", addresses, "--listen", f"127.0.0.1:{port}", "--read-only"
    )
    with running(read_only) as web:
        assert web.stdout is not None
        read_until(web.stdout, "raftq web: serving")
        base = f"http://127.0.0.1:{port}"
        refused = httpx.post(f"{base}/api/v1/queues/default/pause", timeout=WAIT_S)
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "read_only")
        assert httpx.get(f"{base}/api/v1/status", timeout=WAIT_S).status_code == 200


def test_raftq_web_prints_a_token_that_expires_after_its_ttl(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("a cluster secret that is long enough\n")
    print_token = raftq_command("web", "--print-token", "alice", "--secret-file", str(secret_file))
    for ttl, ttl_s in ((None, limits.WEB_TOKEN_TTL_DEFAULT_S), ("2h", 7_200)):
        before_s = int(time.time())
        result = subprocess.run(
            print_token + ([] if ttl is None else ["--ttl", ttl]),
            capture_output=True, text=True, timeout=WAIT_S, check=True,
        )  # fmt: skip
        after_s = int(time.time())
        token = result.stdout.strip()
        expires_s = token_expiry_s(token)
        assert before_s + ttl_s <= expires_s <= after_s + ttl_s, (ttl, token)
        secret = raftq.load_secret(str(secret_file))
        assert check_token(secret, token, now_s=expires_s - 1) == "alice"
        with pytest.raises(TokenRefused):
            check_token(secret, token, now_s=expires_s)
        assert "this token expires at 20" in result.stderr
    for arguments, words in (
        ([*print_token, "--ttl", "0d"], "--ttl 0d: a token lives from 1 minute to 365 days"),
        ([*print_token, "--ttl", "soon"], "--ttl 'soon': a number and a unit"),
        (raftq_command("web", "--ttl", "1d"), "--ttl is how long a token lives"),
    ):
        refused = subprocess.run(arguments, capture_output=True, text=True, timeout=WAIT_S)
        assert (refused.returncode, refused.stdout) == (2, ""), arguments
        assert words in refused.stderr


def test_raftq_web_refuses_a_public_address_without_a_secret() -> None:
    result = subprocess.run(
        raftq_command("web", "--listen", "0.0.0.0:8080"),
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "loopback only" in result.stderr


def test_a_node_serves_dashboard_api_and_metrics_on_its_http_addr(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("a cluster secret that is long enough\n")
    os.chmod(secret_file, 0o600)
    node_port, http_port = free_ports(2)
    command = raftq_command(
        "run", "--data-dir", str(tmp_path / "data"), "--listen", f"127.0.0.1:{node_port}",
        "--workers", "2", "--http-addr", f"127.0.0.1:{http_port}",
        "--secret-file", str(secret_file),
    )  # fmt: skip
    token = subprocess.run(
        raftq_command("web", "--print-token", "alice", "--secret-file", str(secret_file)),
        capture_output=True, text=True, timeout=WAIT_S, check=True,
    ).stdout.strip()  # fmt: skip
    assert check_token(raftq.load_secret(str(secret_file)), token, now_s=time.time()) == "alice"
    with running(command) as node:
        assert node.stdout is not None
        read_until(node.stdout, "web serving")
        base = f"http://127.0.0.1:{http_port}"
        assert httpx.get(f"{base}/api/v1/status", timeout=WAIT_S).status_code == 401
        headers = {"authorization": f"Bearer {token}"}
        created = httpx.post(
            f"{base}/api/v1/jobs",
            json={"type": "echo", "payload": 7},
            headers=headers,
            timeout=WAIT_S,
        )
        assert created.status_code == 201, created.text
        (job_id,) = created.json()["ids"]
        with raftq.SyncClient(
            f"127.0.0.1:{node_port}", secret=raftq.load_secret(str(secret_file)), timeout=WAIT_S
        ) as checker:
            assert checker.wait(job_id, timeout=WAIT_S).result == 7
        metrics = httpx.get(f"{base}/metrics", headers=headers, timeout=WAIT_S)
        assert 'raftq_jobs_enqueued_total{queue="default",type="echo"} 1.0' in metrics.text
        page = httpx.get(f"{base}/", headers=headers, timeout=WAIT_S)
        assert (page.status_code, "leader" in page.text) == (200, True)
        node.send_signal(signal.SIGTERM)
        output = node.communicate(timeout=WAIT_S)[0]
    assert node.returncode == 0
    assert f"web action=enqueue user=alice jobs=1 first={job_id}" in output


def test_a_node_refuses_a_public_http_addr_without_a_secret(tmp_path: Path) -> None:
    (node_port,) = free_ports(1)
    result = subprocess.run(
        raftq_command(
            "run", "--data-dir", str(tmp_path / "data"), "--listen", f"127.0.0.1:{node_port}",
            "--http-addr", "0.0.0.0:8080",
        ),
        capture_output=True, text=True, timeout=WAIT_S,
    )  # fmt: skip
    assert result.returncode == 2
    assert "loopback only" in result.stderr
    assert not (tmp_path / "data").exists()


def write_certificate(directory: Path, name: str) -> None:
    """``ca.pem``, and ``NAME.pem`` with ``NAME.key``: a certificate for 127.0.0.1 that CA
    signed (trustme, as the node TLS tests make theirs)."""
    ca = trustme.CA()
    certificate = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    certificate.private_key_pem.write_to_path(str(directory / f"{name}.key"))
    certificate.cert_chain_pems[0].write_to_path(str(directory / f"{name}.pem"))


def test_a_node_with_tls_serves_its_http_addr_over_https(tmp_path: Path) -> None:
    write_certificate(tmp_path, "n1")
    node_port, http_port = free_ports(2)
    command = raftq_command(
        "run", "--data-dir", str(tmp_path / "data"), "--listen", f"127.0.0.1:{node_port}",
        "--workers", "0", "--http-addr", f"127.0.0.1:{http_port}",
        "--tls-cert", str(tmp_path / "n1.pem"), "--tls-key", str(tmp_path / "n1.key"),
        "--tls-ca", str(tmp_path / "ca.pem"),
    )  # fmt: skip
    with running(command) as node:
        assert node.stdout is not None
        assert "https://" in read_until(node.stdout, "web serving")
        trusted = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        status = httpx.get(
            f"https://127.0.0.1:{http_port}/api/v1/status", verify=trusted, timeout=WAIT_S
        )
        assert [node["id"] for node in status.json()["cluster"]["nodes"]] == ["n1"]
        with pytest.raises(httpx.ConnectError):  # not the CA's: refused
            httpx.get(f"https://127.0.0.1:{http_port}/api/v1/status", timeout=WAIT_S)


def test_raftq_web_serves_https_with_a_secure_session_cookie(tmp_path: Path) -> None:
    """``raftq web --tls-cert/--tls-key`` serves HTTPS (Hypercorn's TLS), in front of a node
    with a secret reached in plain TCP: the login cookie is ``Secure``, plain HTTP is not
    served, and a client that does not trust the certificate is refused."""
    write_certificate(tmp_path, "web")
    secret_file = tmp_path / "secret"
    secret_file.write_text("a cluster secret that is long enough\n")
    node_port, web_port = free_ports(2)
    node = raftq_command(
        "run", "--data-dir", str(tmp_path / "data"), "--listen", f"127.0.0.1:{node_port}",
        "--workers", "0", "--secret-file", str(secret_file),
    )  # fmt: skip
    web = raftq_command(
        "web", "--cluster", f"127.0.0.1:{node_port}", "--listen", f"127.0.0.1:{web_port}",
        "--secret-file", str(secret_file),
        "--tls-cert", str(tmp_path / "web.pem"), "--tls-key", str(tmp_path / "web.key"),
    )  # fmt: skip
    token = token_for(raftq.load_secret(str(secret_file)), "alice")
    trusted = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    with running(node) as node_process, running(web) as web_process:
        assert node_process.stdout is not None
        assert web_process.stdout is not None
        read_until(node_process.stdout, "raft role=leader")
        started = read_until(web_process.stdout, "raftq web: serving")
        assert f"https://127.0.0.1:{web_port}/" in started
        base = f"https://127.0.0.1:{web_port}"
        with httpx.Client(base_url=base, verify=trusted, timeout=WAIT_S) as client:
            status = client.get("/api/v1/status", headers={"authorization": f"Bearer {token}"})
            assert status.status_code == 200, status.text
            assert status.json()["cluster"]["leader"] == "n1"
            signed_in = client.post("/login", data={"token": token}, follow_redirects=False)
            assert signed_in.status_code == 303
            cookie = signed_in.headers["set-cookie"]
            assert "; Secure" in cookie, cookie
            assert "HttpOnly" in cookie
            assert client.get("/", follow_redirects=False).status_code == 200  # the cookie
        with pytest.raises(httpx.ConnectError):  # not the CA's: refused
            httpx.get(f"{base}/api/v1/status", timeout=WAIT_S)
        with pytest.raises(httpx.TransportError):  # plain HTTP is not served there
            httpx.get(f"http://127.0.0.1:{web_port}/api/v1/status", timeout=WAIT_S)


def test_raftq_web_refuses_https_files_that_do_not_go_together_or_load(tmp_path: Path) -> None:
    write_certificate(tmp_path, "web")
    (tmp_path / "not.pem").write_text("not a certificate\n")
    cert, key = str(tmp_path / "web.pem"), str(tmp_path / "web.key")
    for flags, words in (
        (["--tls-cert", cert], "--tls-cert and --tls-key go together"),
        (["--tls-key", key], "--tls-cert and --tls-key go together"),
        (["--tls-cert", str(tmp_path / "not.pem"), "--tls-key", key], "HTTPS certificate"),
        (["--tls-cert", cert, "--tls-key", str(tmp_path / "missing.key")], "missing.key"),
    ):
        result = subprocess.run(
            raftq_command("web", "--listen", "127.0.0.1:0", *flags),
            capture_output=True, text=True, timeout=WAIT_S,
        )  # fmt: skip
        assert result.returncode == 2, flags
        assert result.stderr.count("\n") == 1, result.stderr
        assert words in result.stderr, result.stderr


WITHOUT_THE_WEB_EXTRA = (
    "import sys; sys.modules['hypercorn'] = None  # as if raftq[web] were not installed\n"
    "from raftq.cli import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.mark.parametrize("command", ["node", "web"])
def test_without_the_web_extra_http_is_one_clear_error(tmp_path: Path, command: str) -> None:
    """A node runs without raftq[web]; asking it (or `raftq web`) to serve HTTP is exit 2 with
    one line that says what to install."""
    (node_port,) = free_ports(1)
    arguments = {
        "node": ["node", "--id", "n1", "--cluster", f"n1=127.0.0.1:{node_port}",
                 "--data-dir", str(tmp_path / "data"), "--http-addr", "127.0.0.1:0"],
        "web": ["web", "--listen", "127.0.0.1:0"],
    }[command]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_THE_WEB_EXTRA, *arguments],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert result.returncode == 2
    last_line = result.stderr.splitlines()[-1]
    assert "needs raftq's web extra (hypercorn is not installed)" in last_line
    assert "pip install 'raftq[web]'" in last_line
    assert not (tmp_path / "data").exists()

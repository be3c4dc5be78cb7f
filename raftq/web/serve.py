"""Serving the web app with Hypercorn's Trio worker: inside a node (``--http-addr``) and as
``raftq web`` (standalone). Hypercorn is a complete HTTP/1.1 and HTTP/2 server (h11, h2),
so raftq parses no HTTP itself; given a certificate and key (a node's ``--tls-cert``, ``raftq
web --tls-cert``) it serves HTTPS with Hypercorn's own TLS configuration."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import Sequence
from functools import partial
from typing import cast

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from hypercorn.typing import Framework
from starlette.types import ASGIApp

from raftq import limits
from raftq.errors import ConfigError
from raftq.transport.auth import load_secret
from raftq.transport.network import parse_address
from raftq.transport.tls import tls_config_from
from raftq.web.app import asgi_app
from raftq.web.auth import check_listen, parse_ttl, token_expiry_s, token_for

EXIT_OK = 0
EXIT_BAD_ARGUMENTS = 2

logger = logging.getLogger("raftq.web")


def hypercorn_config(listen: str, *, certfile: str = "", keyfile: str = "") -> Config:
    parse_address(listen, any_port=True)
    config = Config()
    config.bind = [listen]
    config.accesslog = None
    config.errorlog = server_log = logging.getLogger("raftq.web.server")
    server_log.setLevel(logging.WARNING)  # its "Running on ..." line: raftq logs its own
    config.h11_max_incomplete_size = limits.HTTP_HEADER_BYTES_MAX
    config.keep_alive_timeout = limits.HTTP_KEEP_ALIVE_S
    config.read_timeout = limits.HTTP_READ_TIMEOUT_S
    config.graceful_timeout = limits.HTTP_SHUTDOWN_GRACE_S
    if certfile:
        config.certfile, config.keyfile = certfile, keyfile
    return config


async def serve_http(
    app: ASGIApp,
    listen: str,
    *,
    certfile: str = "",
    keyfile: str = "",
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` at ``listen`` (port 0: a free one) until cancelled; ``started(port)``."""
    config = hypercorn_config(listen, certfile=certfile, keyfile=keyfile)

    async def run(*, task_status: trio.TaskStatus[list[str]]) -> None:
        await serve(cast(Framework, app), config, task_status=task_status)

    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(run)
        port = int(binds[0].rsplit(":", 1)[1])
        logger.info("web serving address=%s", binds[0])
        task_status.started(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raftq web",
        description=(
            "Serve the dashboard and the HTTP JSON API (/api/v1) for a cluster, as a client of "
            "it (docs/web.md). With a cluster secret it asks for a token (docs/security.md)."
        ),
    )
    parser.add_argument(
        "--cluster", help="HOST:PORT,... (default $RAFTQ_CLUSTER or 127.0.0.1:7100)"
    )
    parser.add_argument("--cluster-id", default="raftq")
    parser.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT (127.0.0.1:8080)")
    parser.add_argument("--read-only", action="store_true", help="refuse every action")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds a request retries the cluster (10)"
    )
    parser.add_argument("--secret-file", help="the cluster secret (default $RAFTQ_SECRET_FILE)")
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="listen beyond loopback without a secret: anyone who reaches it may change jobs",
    )
    parser.add_argument("--tls-ca", help="reach the nodes with TLS, trusting this CA")
    parser.add_argument(
        "--tls-cert", help="serve HTTPS with this certificate (PEM, its chain after it)"
    )
    parser.add_argument("--tls-key", help="the certificate's private key (PEM)")
    parser.add_argument(
        "--print-token",
        metavar="USER",
        help="print a web token for USER (derived from the secret) and exit",
    )
    parser.add_argument(
        "--ttl",
        metavar="TIME",
        help="how long a printed token lives: N followed by s, m, h or d, up to 365d (30d)",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    return parser


def main(argv: Sequence[str]) -> int:
    arguments = build_parser().parse_args(argv)
    try:
        secret_file = arguments.secret_file or os.environ.get("RAFTQ_SECRET_FILE", "")
        secret = load_secret(secret_file) if secret_file else None
        if arguments.print_token is not None:
            if secret is None:
                raise ConfigError("--print-token needs the cluster secret (--secret-file)")
            ttl_s = (
                limits.WEB_TOKEN_TTL_DEFAULT_S
                if arguments.ttl is None
                else parse_ttl(arguments.ttl)
            )
            token = token_for(secret, arguments.print_token, ttl_s=ttl_s)
            expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(token_expiry_s(token)))
            print(token)
            print(f"raftq web: this token expires at {expires}", file=sys.stderr)
            return EXIT_OK
        if arguments.ttl is not None:
            raise ConfigError("--ttl is how long a token lives: it goes with --print-token USER")
        check_listen(arguments.listen, secret=secret, insecure=arguments.insecure)
        certfile, keyfile = arguments.tls_cert or "", arguments.tls_key or ""
        check_https_files(certfile, keyfile)
        app = asgi_app(
            arguments.cluster or os.environ.get("RAFTQ_CLUSTER") or "127.0.0.1:7100",
            read_only=arguments.read_only,
            secret=secret,
            cluster_id=arguments.cluster_id,
            timeout=arguments.timeout,
            tls=tls_config_from(ca_file=arguments.tls_ca or os.environ.get("RAFTQ_TLS_CA", "")),
        )
    except ConfigError as error:
        print(f"raftq web: error: {error}", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    logging.basicConfig(
        level=arguments.log_level.upper(), format="%(asctime)s %(name)s %(message)s"
    )
    trio.run(_serve_until_signal, app, arguments.listen, certfile, keyfile)
    return EXIT_OK


def check_https_files(certfile: str, keyfile: str) -> None:
    """``--tls-cert`` and ``--tls-key`` go together and must load, checked before serving:
    a wrong file is one clear error at start, not a failure on the first connection."""
    if bool(certfile) != bool(keyfile):
        raise ConfigError("--tls-cert and --tls-key go together (HTTPS needs both)")
    if not certfile:
        return
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(f"HTTPS certificate {certfile} with key {keyfile}: {error}") from None


async def _serve_until_signal(app: ASGIApp, listen: str, certfile: str, keyfile: str) -> None:
    scheme = "https" if certfile else "http"
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(
                partial(serve_http, app, listen, certfile=certfile, keyfile=keyfile)
            )
            host = listen.rsplit(":", 1)[0]
            print(f"raftq web: serving {scheme}://{host}:{port}/", flush=True)
            async for received in signals:
                logger.info("stopping signal=%s", signal.Signals(received).name)
                nursery.cancel_scope.cancel()
                break

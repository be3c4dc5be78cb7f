"""What every route of the web app shares: how to reach the cluster, and its mode.

Routes (the JSON API in ``api.py``, the pages in ``pages.py``) read it with
``web_context(request)``; nothing here holds job state: every answer comes from the cluster
through the client library, so nothing the web app does bypasses the replicated log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
from starlette.requests import HTTPConnection

from raftq.client.client import Client, connect
from raftq.transport.tls import TlsConfig


@attrs.define(kw_only=True)
class WebContext:
    """Made once per app by ``asgi_app``; found at ``request.app.state.raftq``."""

    addresses: str | Sequence[str]
    cluster_id: str = "raftq"
    timeout_s: float = 10.0
    secret: bytes | None = None
    """The cluster secret: the client proves it to the nodes, and the web app requires
    credentials derived from it (``raftq.web.auth``). None: no credentials, loopback only."""
    tls: TlsConfig | None = None
    read_only: bool = False
    """Every action (POST) is refused with 403; pages show no buttons."""
    clock: Callable[[], float] = time.time
    """Wall time in seconds, against which tokens expire (tests pass a fake one)."""
    shared: Client | None = None
    """The client the app's lifespan opened; None outside it (then one per request)."""

    @asynccontextmanager
    async def client(self) -> AsyncIterator[Client]:
        """The shared client, or (when the host app did not run this app's lifespan) a client
        for this one request: slower, a connection per request, but correct."""
        if self.shared is not None:
            yield self.shared
            return
        async with self._connect() as client:
            yield client

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The app's lifespan: one client, connected lazily, shared by every request."""
        async with self._connect() as client:
            self.shared = client
            try:
                yield
            finally:
                self.shared = None

    def _connect(self) -> Any:
        return connect(
            self.addresses,
            cluster_id=self.cluster_id,
            timeout=self.timeout_s,
            secret=self.secret,
            tls=self.tls,
        )

    @property
    def auth_required(self) -> bool:
        return self.secret is not None


def web_context(connection: HTTPConnection) -> WebContext:
    context = connection.app.state.raftq
    assert isinstance(context, WebContext), "asgi_app sets app.state.raftq"
    return context


def current_user(connection: HTTPConnection) -> str:
    """Who is making this request, for the action log: the token's user name when the
    cluster has a secret, else "anonymous" (loopback only) with the peer's address."""
    user = connection.scope.get("raftq.user")
    if isinstance(user, str):
        return user
    client = connection.client
    return f"anonymous@{client.host}" if client else "anonymous"


def log_action(connection: HTTPConnection, action: str, **details: object) -> None:
    """One line per action taken through the API or the dashboard, with who took it."""
    fields = " ".join(f"{key}={value}" for key, value in details.items())
    logging.getLogger("raftq.web").info(
        "web action=%s user=%s %s", action, current_user(connection), fields
    )

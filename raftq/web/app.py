"""``asgi_app``: the dashboard and the HTTP JSON API as one Starlette application.

Served three ways (docs/web.md): standalone by ``raftq web`` (Hypercorn, Trio worker), by a node
with ``--http-addr`` (the same, plus ``/metrics``, in the node's nursery), or mounted in a
user's FastAPI/Starlette app, where it runs on the host's asyncio loop through the AnyIO client.

The seam with the dashboard pages: ``raftq/web/pages.py`` owns the pages (the Schedules and
Limits ones are in ``pages_scheduling.py``), with their templates in ``raftq/web/templates/``
and assets in ``raftq/web/static/``. This module calls one function from each,
``page_routes()`` and ``scheduling_page_routes()``, and mounts the routes they return at the
app's root (next to ``/api/v1``, ``/login``, ``/logout`` and ``/metrics``, which are not the
pages'). A page handler reaches the cluster with ``async with web_context(request).client() as
client`` (the client library: nothing bypasses the replicated log), reads
``web_context(request).read_only`` to hide buttons, and ``current_user(request)`` for who is
signed in. Every action a page offers
is a ``<form method="post">`` to an ``/api/v1`` route or to a POST route of its own: ``Guard``
(``raftq.web.auth``) checks credentials, CSRF (Origin / Sec-Fetch-Site) and read-only mode for
every route before it runs, pages included. Links must be built with ``request.url_for`` or
``request.scope["root_path"]`` so they work when the app is mounted under a prefix.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from raftq.transport.auth import check_secret
from raftq.transport.tls import TlsConfig
from raftq.web import pages
from raftq.web.api import api_routes, http_error
from raftq.web.api_scheduling import scheduling_api_routes
from raftq.web.auth import Guard
from raftq.web.context import WebContext
from raftq.web.login import login_routes
from raftq.web.pages_scheduling import scheduling_page_routes


def asgi_app(
    cluster: str | Sequence[str],
    read_only: bool = False,
    *,
    secret: bytes | str | None = None,
    cluster_id: str = "raftq",
    timeout: float = 10.0,
    tls: TlsConfig | None = None,
    metrics_registry: CollectorRegistry | None = None,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The raftq web app over the cluster at ``cluster`` ("HOST:PORT,..." or a list).

    ``secret``: the cluster secret; the app then requires a token (docs/security.md).
    ``read_only``: refuse every action (403) and show no buttons. ``metrics_registry``: also
    serve it at ``/metrics`` (a node does). ``clock``: wall time in seconds, against which
    tokens expire (tests pass a fake one). Mounted in another app, run this app's lifespan
    from the host's (``async with web.router.lifespan_context(web):``) so that requests share
    one client; otherwise each request connects anew (correct, slower)."""
    context = WebContext(
        addresses=cluster,
        cluster_id=cluster_id,
        timeout_s=timeout,
        secret=None if secret is None else check_secret(secret),
        tls=tls,
        read_only=read_only,
        clock=clock,
    )
    routes: list[BaseRoute] = [*api_routes(), *scheduling_api_routes(), *login_routes()]
    if metrics_registry is not None:
        routes.append(Route("/metrics", _metrics_endpoint(metrics_registry), methods=["GET"]))
    routes.extend(pages.page_routes())
    routes.extend(scheduling_page_routes())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with context.running():
            yield

    app = Starlette(
        routes=routes,
        middleware=[Middleware(Guard, secret=context.secret, read_only=read_only, clock=clock)],
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error},
    )
    app.state.raftq = context
    return app


def _metrics_endpoint(
    registry: CollectorRegistry,
) -> Callable[[Request], Awaitable[Response]]:
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics

"""The dashboard's pages (owned by the dashboard work; ``app.py`` explains the seam).

``page_routes()`` is the one function ``asgi_app`` calls. For now it serves the overview as a
plain server-rendered page of the cluster's status; the dashboard replaces it with the full
set of pages, templates and static assets.
"""

from __future__ import annotations

import html

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from raftq.errors import RaftqError
from raftq.web.context import web_context


async def overview(request: Request) -> Response:
    try:
        async with web_context(request).client() as client:
            status = await client.status()
    except RaftqError as error:
        return HTMLResponse(_page("<p role=alert>" + html.escape(str(error)) + "</p>"), 503)
    cluster = status["cluster"]
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(node.get(key, '')))}</td>"
            for key in ("id", "addr", "role", "term", "commit_index", "applied_index")
        )
        + "</tr>"
        for node in cluster["nodes"]
    )
    counts = "".join(
        f"<li>{html.escape(state)}: {count}</li>" for state, count in status["jobs"].items()
    )
    body = (
        f"<h1>raftq</h1><p>leader: {html.escape(str(cluster['leader']))}</p>"
        "<table><tr><th>node</th><th>address</th><th>role</th><th>term</th>"
        f"<th>commit</th><th>applied</th></tr>{rows}</table><ul>{counts}</ul>"
    )
    return HTMLResponse(_page(body))


def _page(body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>raftq</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
        f"<body><main>{body}</main></body></html>"
    )


def page_routes() -> list[BaseRoute]:
    """The dashboard's routes, mounted at the web app's root."""
    return [Route("/", overview, methods=["GET"])]

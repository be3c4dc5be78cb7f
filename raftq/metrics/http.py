"""A minimal HTTP/1.1 endpoint for Prometheus: ``GET /metrics``, one response per connection.

prometheus_client's own server runs in a thread; this one is a Trio task in the node's
nursery, so it needs no thread and stops with the node.
"""

from __future__ import annotations

import contextlib
import logging

import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

logger = logging.getLogger("raftq.metrics")

REQUEST_BYTES_MAX = 8192
"""A scrape request is a few hundred bytes; more is not a scrape."""


async def handle_scrape(stream: trio.abc.Stream, registry: CollectorRegistry) -> None:
    async with stream:
        request = b""
        with trio.move_on_after(5):
            while b"\r\n\r\n" not in request and len(request) < REQUEST_BYTES_MAX:
                data = await stream.receive_some(4096)
                if not data:
                    break
                request += data
        line = request.split(b"\r\n", 1)[0].split()
        if len(line) >= 2 and line[0] == b"GET" and line[1].split(b"?")[0] == b"/metrics":
            status, content_type, body = (
                b"200 OK",
                CONTENT_TYPE_LATEST.encode(),
                generate_latest(registry),
            )
        else:
            status, content_type, body = b"404 Not Found", b"text/plain", b"see /metrics\n"
        head = b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(head % (status, content_type, len(body)) + body)

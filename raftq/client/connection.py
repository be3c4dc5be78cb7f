"""One client connection to one node: the handshake, then many requests in flight at once.

A node serves a client's requests concurrently and answers each with the same ``request_id``,
in any order (``raftq.transport.wire``). So a connection is a writer shared under a lock plus one
reader task that hands each ``ClientResponse`` to the caller waiting for it. The reader runs in
a task group its owner (the ``Client``) provides, because a task must not outlive its owner.

Everything here is AnyIO, so it runs under asyncio and Trio alike (a node's forwarder uses it
too, from its Trio nursery). Timeouts raise the built-in ``TimeoutError``.

A connection never retries and never chooses another node: it either answers or raises
``ConnectionClosed``, and the ``Client`` decides what to do next.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import anyio

from raftq import limits
from raftq.errors import (
    AuthenticationError,
    ConfigError,
    LocalProtocolError,
    RaftqError,
    RemoteProtocolError,
)
from raftq.transport.connections import introduce
from raftq.transport.network import ClientNetwork, FramedByteStream, Network, client_network
from raftq.transport.tls import refusal_reason, tls_failure
from raftq.transport.wire import (
    ClientCall,
    ClientReply,
    ClientRequest,
    ClientResponse,
    ErrorFrame,
    Welcome,
)

logger = logging.getLogger("raftq.client")

OUTSTANDING_REQUESTS_MAX = 256
"""Requests in flight on one connection. A worker with N slots has about N+2 (claims, reports,
heartbeats); 256 covers any sane concurrency while bounding the waiters a dead node strands.
Callers past it wait for a slot instead of piling up."""

REFUSALS_THAT_ARE_CONFIGURATION = frozenset(
    {"bad_version", "wrong_cluster", "auth_required", "bad_auth", "tls_plaintext"}
)
"""Handshake refusals that no retry can fix: the client talks to the wrong cluster, speaks
another protocol version, lacks the cluster secret or TLS, or has the wrong secret. They
surface as ``ConfigError`` at once."""


STREAM_FAILURES = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)
"""What a broken connection raises (a TLS failure is an ``ssl.SSLError``, an ``OSError``)."""


class TaskStarter(Protocol):
    """Where a connection starts its reader: an AnyIO task group or a Trio nursery."""

    def start_soon(self, func: Callable[[], Coroutine[Any, Any, None]], /) -> object: ...


class ConnectionClosed(RaftqError):
    """The connection to a node broke, could not be opened, or the node refused the handshake
    for a reason a retry (perhaps on another node) may fix. The ``Client`` retries elsewhere."""


class _Waiter:
    """One request waiting for its response; ``reply`` stays None if the connection broke."""

    __slots__ = ("event", "reply")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.reply: ClientReply | None = None


class ClientConnection:
    """Use ``await ClientConnection.open(...)``; then ``call`` from any number of tasks."""

    def __init__(
        self,
        connection: FramedByteStream,
        *,
        address: str,
        node_id: str,
        outstanding_max: int = OUTSTANDING_REQUESTS_MAX,
    ) -> None:
        assert outstanding_max > 0, outstanding_max
        self.address = address
        self.node_id = node_id
        """The node's id from its ``Welcome``."""
        self._connection = connection
        self._send_lock = anyio.Lock()
        self._slots = anyio.Semaphore(outstanding_max)
        self._waiting: dict[int, _Waiter] = {}
        self._next_request_id = 1
        self._reader_scope = anyio.CancelScope()
        self.closed_because: str | None = None
        """Why the connection is unusable, or None while it works."""

    @classmethod
    async def open(
        cls,
        network: ClientNetwork | Network,
        address: str,
        *,
        cluster_id: str,
        nursery: TaskStarter,
        timeout: float,
        outstanding_max: int = OUTSTANDING_REQUESTS_MAX,
        secret: bytes | None = None,
    ) -> ClientConnection:
        """Connect and handshake within ``timeout`` seconds (proving ``secret``, if given),
        then start the reader in ``nursery`` (a task group or nursery). ``network``: a
        client's, or a node's own (whose Trio streams are adapted). Raises
        ``ConnectionClosed`` (try elsewhere) or ``ConfigError`` (wrong cluster, protocol
        version, secret or certificate: no node of this cluster will take us)."""
        dialer = client_network(network, None)
        welcome, connection = await _handshake(dialer, address, cluster_id, timeout, secret)
        client_connection = cls(
            connection, address=address, node_id=welcome.node_id, outstanding_max=outstanding_max
        )
        nursery.start_soon(client_connection._read_replies)
        return client_connection

    @property
    def is_open(self) -> bool:
        return self.closed_because is None

    async def call(self, call: ClientCall, timeout: float) -> ClientReply:
        """Send ``call`` and wait up to ``timeout`` seconds for its reply.

        Raises ``ConnectionClosed`` if the connection breaks first, ``TimeoutError`` on
        timeout (the connection stays usable: a late reply is dropped), and ``ConfigError`` if
        the request is too large to send at all."""
        if self.closed_because is not None:
            raise ConnectionClosed(f"{self.address}: {self.closed_because}")
        with anyio.fail_after(timeout):
            async with self._slots:
                request_id = self._next_request_id
                self._next_request_id += 1
                waiter = self._waiting[request_id] = _Waiter()
                try:
                    await self._send(ClientRequest(request_id=request_id, call=call))
                    await waiter.event.wait()
                finally:
                    del self._waiting[request_id]
        if waiter.reply is None:
            raise ConnectionClosed(f"{self.address}: {self.closed_because}")
        return waiter.reply

    async def _send(self, request: ClientRequest) -> None:
        async with self._send_lock:
            try:
                await self._connection.send(request)
            except LocalProtocolError as error:  # raised before any byte is written
                raise ConfigError(f"the request cannot be sent: {error}") from None
            except STREAM_FAILURES as error:
                self._break(f"sending failed: {error!r}")
                raise ConnectionClosed(f"{self.address}: {self.closed_because}") from None
            except BaseException:
                # Cancelled mid-write: part of a frame may be on the wire, so the stream can no
                # longer be framed. Give it up rather than send the node garbage.
                self._break("a request was interrupted while being sent")
                raise

    def close(self) -> None:
        """Stop using the connection; the reader closes the stream on its way out."""
        self._break("closed by the client")

    def _break(self, reason: str) -> None:
        if self.closed_because is None:
            self.closed_because = reason
            logger.debug("client connection closed address=%s reason=%r", self.address, reason)
        for waiter in self._waiting.values():
            waiter.event.set()  # reply stays None: the caller raises ConnectionClosed
        self._reader_scope.cancel()

    async def _read_replies(self) -> None:
        """Hand each response to its waiter until the node hangs up or misbehaves. Never
        raises: a broken connection is recorded in ``closed_because`` for the callers."""
        reason = "the client stopped"
        try:
            with self._reader_scope:
                try:
                    reason = await self._deliver_replies()
                except RemoteProtocolError as error:
                    reason = f"the node sent bad bytes: {error}"
                except STREAM_FAILURES as error:
                    reason = f"the connection broke: {error!r}"
        finally:  # also when the owner's task group is cancelled
            self._break(reason)
            await anyio.aclose_forcefully(self._connection.stream)

    async def _deliver_replies(self) -> str:
        while True:
            message = await self._connection.receive()
            if message is None:
                return "the node closed the connection"
            if isinstance(message, ErrorFrame):
                return f"the node refused us ({message.code}): {message.message}"
            if not isinstance(message, ClientResponse):
                return f"the node sent an unexpected {type(message).__name__}"
            waiter = self._waiting.get(message.request_id)
            if waiter is not None:  # else its caller gave up (timeout): drop the late reply
                waiter.reply = message.reply
                waiter.event.set()


async def _handshake(
    network: ClientNetwork, address: str, cluster_id: str, timeout: float, secret: bytes | None
) -> tuple[Welcome, FramedByteStream]:
    try:
        with anyio.fail_after(timeout):
            stream = await network.connect(address)
            connection = FramedByteStream(stream, max_bytes=limits.HANDSHAKE_FRAME_BYTES_MAX)
            try:
                answer = await introduce(
                    connection, cluster_id=cluster_id, caller_id="", secret=secret
                )
            except BaseException:
                await anyio.aclose_forcefully(stream)
                raise
    except TimeoutError:
        raise ConnectionClosed(f"{address}: no handshake within {timeout:.3g} s") from None
    except STREAM_FAILURES as error:
        failure = tls_failure(error)
        if isinstance(failure, ssl.SSLCertVerificationError):
            raise ConfigError(f"{address}: TLS: {failure.verify_message or failure}") from None
        if failure is not None and refusal_reason(failure) == "tls_certificate":
            raise ConfigError(f"{address}: the node refused our certificate: {failure}") from None
        raise ConnectionClosed(f"{address}: cannot connect: {failure or error}") from None
    except AuthenticationError as error:
        raise ConfigError(f"{address}: {error}") from None
    except RemoteProtocolError as error:
        raise ConnectionClosed(f"{address}: bad handshake answer: {error}") from None
    if isinstance(answer, Welcome):
        connection.max_bytes = limits.FRAME_BYTES_MAX
        return answer, connection
    await anyio.aclose_forcefully(stream)
    if isinstance(answer, ErrorFrame):
        problem = f"{address} refused the handshake ({answer.code}): {answer.message}"
        if answer.code in REFUSALS_THAT_ARE_CONFIGURATION:
            raise ConfigError(problem)
        raise ConnectionClosed(problem)
    what = "nothing" if answer is None else type(answer).__name__
    raise ConnectionClosed(f"{address} answered the handshake with {what}")

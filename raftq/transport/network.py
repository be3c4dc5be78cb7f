"""The ``Network`` seams, and framed connections over any byte stream.

A node reaches the world only through ``Network``: ``TcpNetwork`` here, the simulator's own in
``sim/``. Both hand out ``trio.abc.Stream``s; ``FramedConnection`` turns one into a sequence of
``WireMessage``s.

The client side (``raftq.connect``, remote workers) runs on AnyIO, under asyncio or Trio, so it
dials through ``ClientNetwork``, which hands out ``anyio.abc.ByteStream``s: ``ClientTcpNetwork``
is its real one. A node's own ``Network`` serves its clients too (a node's in-process workers and
its forwarder, the simulator's producers): ``client_network`` adapts it, wrapping each Trio
stream in ``TrioByteStream``. ``FramedByteStream`` is ``FramedConnection`` over such a stream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio
import anyio.abc
import trio

from raftq import limits
from raftq.errors import ConfigError, RemoteProtocolError
from raftq.transport.framing import FrameDecoder, frame
from raftq.transport.tls import TlsConfig, open_client_tls, open_tls
from raftq.transport.wire import WireMessage, decode_wire, encode_wire

Handler = Callable[[trio.abc.Stream], Awaitable[None]]

RECEIVE_BYTES = 64 * 1024


def parse_address(text: str, *, any_port: bool = False) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) -> (host, port), or ``ConfigError`` saying why.
    With ``any_port``, port 0 (let the system choose) is accepted."""
    host, separator, port_text = text.rpartition(":")
    host = host.strip("[]")
    lowest = 0 if any_port else 1
    if not separator or not host or not port_text.isdigit():
        raise ConfigError(f"address {text!r} must be HOST:PORT")
    if not lowest <= int(port_text) < 65536:
        raise ConfigError(f"address {text!r}: the port must be from {lowest} to 65535")
    return host, int(port_text)


class Network(Protocol):
    async def serve(
        self, address: str, handler: Handler, *, task_status: trio.TaskStatus[int]
    ) -> None:
        """Accept connections on ``address`` (port 0: any free one), each in a new task run by
        ``handler``; ``task_status.started(port)`` once listening."""
        ...

    async def connect(self, address: str) -> trio.abc.Stream: ...


class TcpNetwork:
    """TCP, with TLS on every connection when given ``tls``. Accepted streams are then
    ``trio.SSLStream``s whose TLS handshake has not run yet: the connection actor runs it
    (``transport.connections.accept``), within its handshake timeout, and counts failures.

    TLS runs ``https_compatible``: a peer that closes without a TLS close_notify ends the
    stream instead of breaking it. That is safe here because frames carry their own length,
    so a truncated stream is still caught (``FrameDecoder``), and it keeps a client that just
    goes away from looking like an attack."""

    def __init__(self, tls: TlsConfig | None = None) -> None:
        self._server_context = tls.server_context() if tls and tls.cert_file else None
        self._client_context = tls.client_context() if tls else None

    async def serve(
        self, address: str, handler: Handler, *, task_status: trio.TaskStatus[int]
    ) -> None:
        host, port = parse_address(address, any_port=True)
        tcp_listeners = await trio.open_tcp_listeners(port, host=host)
        task_status.started(tcp_listeners[0].socket.getsockname()[1])
        listeners: list[trio.abc.Listener[trio.abc.Stream]] = list(tcp_listeners)
        if self._server_context is not None:
            listeners = [
                trio.SSLListener(listener, self._server_context, https_compatible=True)
                for listener in tcp_listeners
            ]
        await trio.serve_listeners(handler, listeners)

    async def connect(self, address: str) -> trio.abc.Stream:
        host, port = parse_address(address)
        stream = await trio.open_tcp_stream(host, port)
        if self._client_context is None:
            return stream
        return await open_tls(stream, self._client_context, host)


class FramedConnection:
    """Whole ``WireMessage``s over a stream. ``receive`` returns None at a clean end."""

    def __init__(self, stream: trio.abc.Stream, max_bytes: int = limits.FRAME_BYTES_MAX) -> None:
        self.stream = stream
        self._decoder = FrameDecoder(max_bytes)
        self._max_bytes = max_bytes

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, value: int) -> None:
        """The largest frame sent or accepted from now on."""
        self._max_bytes = self._decoder.max_bytes = value

    async def send(self, message: WireMessage) -> None:
        await self.stream.send_all(frame(encode_wire(message), self._max_bytes))

    async def send_many(self, messages: list[WireMessage]) -> None:
        """Several messages in one write: the batching that keeps syscalls few."""
        await self.stream.send_all(
            b"".join(frame(encode_wire(message), self._max_bytes) for message in messages)
        )

    async def receive(self) -> WireMessage | None:
        while True:
            body = self._decoder.next_frame()
            if body is not None:
                return decode_wire(body)
            data = await self.stream.receive_some(RECEIVE_BYTES)
            if not data:
                self._decoder.close()
                if self._decoder.next_frame() is None:
                    return None
                raise RemoteProtocolError("unreachable: a frame completed at end of stream")
            self._decoder.feed(data)

    async def aclose(self) -> None:
        await self.stream.aclose()


# --- the client side: AnyIO --------------------------------------------------------------------


class ClientNetwork(Protocol):
    """How a client dials a node: an ``anyio.abc.ByteStream`` per connection."""

    async def connect(self, address: str) -> anyio.abc.ByteStream: ...


class ClientTcpNetwork:
    """TCP from the client side on AnyIO (asyncio or Trio), with TLS when given ``tls``: the
    node's certificate is verified against ``tls.ca_file`` for the host dialled, and the
    client's own (``tls.cert_file``), if any, is presented. TLS runs without requiring a
    close_notify at the end, as the node's does (see ``TcpNetwork``)."""

    def __init__(self, tls: TlsConfig | None = None) -> None:
        self._context = tls.client_context() if tls else None

    async def connect(self, address: str) -> anyio.abc.ByteStream:
        host, port = parse_address(address)
        stream = await anyio.connect_tcp(host, port)
        if self._context is None:
            return stream
        return await open_client_tls(stream, self._context, host)


class TrioByteStream(anyio.abc.ByteStream):
    """A ``trio.abc.Stream`` (from a node's ``Network``) as an AnyIO byte stream, with AnyIO's
    exceptions: what broke it stays the ``__cause__`` (``tls.tls_failure`` finds a TLS error
    there). Only ever used under Trio, where the stream lives."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream

    async def send(self, item: bytes) -> None:
        try:
            await self.stream.send_all(item)
        except trio.BrokenResourceError as error:
            raise anyio.BrokenResourceError(str(error)) from error
        except trio.ClosedResourceError as error:
            raise anyio.ClosedResourceError(str(error)) from error

    async def receive(self, max_bytes: int = RECEIVE_BYTES) -> bytes:
        try:
            data = await self.stream.receive_some(max_bytes)
        except trio.BrokenResourceError as error:
            raise anyio.BrokenResourceError(str(error)) from error
        except trio.ClosedResourceError as error:
            raise anyio.ClosedResourceError(str(error)) from error
        if not data:
            raise anyio.EndOfStream
        return data if isinstance(data, bytes) else bytes(data)

    async def send_eof(self) -> None:
        raise NotImplementedError("raftq connections are never half-closed")

    async def aclose(self) -> None:
        await self.stream.aclose()


class _EitherNetwork:
    """Dials through a node's ``Network`` or a ``ClientNetwork``, whichever it is given."""

    def __init__(self, network: Network | ClientNetwork) -> None:
        self._network = network

    async def connect(self, address: str) -> anyio.abc.ByteStream:
        try:
            stream = await self._network.connect(address)
        except trio.BrokenResourceError as error:  # e.g. a TLS handshake that failed
            raise anyio.BrokenResourceError(str(error)) from error
        if isinstance(stream, anyio.abc.ByteStream):
            return stream
        return TrioByteStream(stream)


def client_network(network: Network | ClientNetwork | None, tls: TlsConfig | None) -> ClientNetwork:
    """The network a client dials through: its own TCP (``tls``: with TLS) when given none;
    else ``network``, a ``ClientNetwork`` or a node's ``Network`` (whose Trio streams are
    adapted)."""
    if network is None:
        return ClientTcpNetwork(tls)
    if isinstance(network, ClientTcpNetwork | _EitherNetwork):
        return network
    return _EitherNetwork(network)


class FramedByteStream:
    """``FramedConnection`` over an ``anyio.abc.ByteStream``: whole ``WireMessage``s;
    ``receive`` returns None at a clean end."""

    def __init__(
        self, stream: anyio.abc.ByteStream, max_bytes: int = limits.FRAME_BYTES_MAX
    ) -> None:
        self.stream = stream
        self._decoder = FrameDecoder(max_bytes)
        self._max_bytes = max_bytes

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, value: int) -> None:
        """The largest frame sent or accepted from now on."""
        self._max_bytes = self._decoder.max_bytes = value

    async def send(self, message: WireMessage) -> None:
        await self.stream.send(frame(encode_wire(message), self._max_bytes))

    async def receive(self) -> WireMessage | None:
        while True:
            body = self._decoder.next_frame()
            if body is not None:
                return decode_wire(body)
            try:
                data = await self.stream.receive(RECEIVE_BYTES)
            except anyio.EndOfStream:
                self._decoder.close()
                if self._decoder.next_frame() is None:
                    return None
                raise RemoteProtocolError(
                    "unreachable: a frame completed at end of stream"
                ) from None
            self._decoder.feed(data)

    async def aclose(self) -> None:
        await self.stream.aclose()

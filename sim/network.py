"""``SimNetwork``: the node's ``Network`` seam in memory, with delays, resets, stalls and
partitions, all drawn from the run's seeded RNG.

Every endpoint (a node, or a producer) gets its own view (``endpoint(name)``) so a connection
knows both of its ends. A connection is two one-way pipes. A pipe delivers its chunks in order,
each after a drawn delay; while its direction is cut by a partition its data waits (a stall,
like TCP retransmitting) until the partition heals or the connection is reset; its buffer is
bounded, so a writer into a stalled pipe blocks as it would on a full TCP window. A connect
across a cut fails after a SYN timeout; a connect to an address nobody serves is refused.
"""

from __future__ import annotations

import collections
import errno
import math
import random

import attrs
import trio

from raftq.transport.network import Handler
from sim.trace import Trace

PIPE_BYTES_MAX = 256 * 1024
"""Bytes in flight per direction before the writer blocks (a TCP window and socket buffers)."""

BACKLOG_MAX = 64
"""Connections waiting to be accepted per listener; more are refused, as a full backlog is."""

SYN_TIMEOUT_S = 1.0
"""How long a connect across a partition hangs before failing."""

CONNECTIONS_MAX = 4096
"""Open connections the simulator tracks; a leak past this is a bug (assertion)."""


@attrs.frozen(kw_only=True)
class NetworkProfile:
    """What this seed's network does (swarm testing: each seed picks its own mix)."""

    delay_min_ms: float = 0.1
    delay_max_ms: float = 2.0
    spike_probability: float = 0.0
    """Chance that a chunk is delayed by a spike (a congested link, a GC pause)."""
    spike_max_ms: float = 200.0
    reset_per_second: float = 0.0
    """Expected connection resets per simulated second, across the network."""

    @classmethod
    def draw(cls, rng: random.Random) -> NetworkProfile:
        fast = rng.random() < 0.5
        return cls(
            delay_min_ms=0.05 if fast else rng.uniform(0.1, 2.0),
            delay_max_ms=rng.uniform(0.5, 3.0) if fast else rng.uniform(2.0, 20.0),
            spike_probability=rng.choice([0.0, 0.0, 0.001, 0.01]),
            spike_max_ms=rng.uniform(50, 500),
            reset_per_second=rng.choice([0.0, 0.0, 0.2, 1.0]),
        )


class _Pipe:
    """One direction of a connection: ordered chunks, each due at its delivery time.

    A reader waiting for a chunk that is on its way sleeps until the chunk is due, not until
    it is sent: the sender moves the reader's wake-up deadline instead of waking it (one
    scheduler step per chunk instead of three). Everything else that changes what the reader
    sees (a reset, the end of the stream, a partition cut or healed) wakes it at once.
    """

    def __init__(self, network: SimNetwork, source: str, target: str) -> None:
        self.network = network
        self.source = source
        self.target = target
        self.chunks: collections.deque[tuple[float, bytes]] = collections.deque()
        self.buffered = 0
        self.last_due = 0.0
        self.eof = False
        """The writer closed: the reader sees end of stream after the buffered data."""
        self.broken = False
        """Reset: both ends fail at once."""
        self.changed = trio.Event()
        self._reader_wake: trio.CancelScope | None = None
        """The scope a waiting reader sleeps in; its deadline is when the head chunk is due."""

    def notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def cut(self) -> bool:
        return self.network.is_cut(self.source, self.target)

    async def send(self, data: bytes) -> None:
        while self.buffered >= PIPE_BYTES_MAX and not self.broken:
            await self.changed.wait()
        if self.broken or self.eof:
            raise trio.BrokenResourceError(f"connection {self.source}->{self.target} reset")
        due = max(trio.current_time() + self.network.draw_delay_s(), self.last_due)
        self.last_due = due
        self.chunks.append((due, data))
        self.buffered += len(data)
        self.network.mix(self.source, self.target, len(data))
        if self._reader_wake is not None and len(self.chunks) == 1:
            self._reader_wake.deadline = due  # the reader wakes when it arrives
        # Not a full checkpoint: a writer's next await (the link's queue, a reply) yields
        # anyway, and a yield here cost every message a scheduler step of its own.
        await trio.lowlevel.checkpoint_if_cancelled()

    async def receive(self, max_bytes: int) -> bytes:
        waited = False
        while True:
            if self.broken:
                raise trio.BrokenResourceError(f"connection {self.source}->{self.target} reset")
            wake_at = math.inf
            if self.chunks and not self.cut():
                due, data = self.chunks[0]
                if due <= trio.current_time():
                    if len(data) > max_bytes:
                        self.chunks[0] = (due, data[max_bytes:])
                        data = data[:max_bytes]
                    else:
                        self.chunks.popleft()
                    self.buffered -= len(data)
                    self.notify()  # a writer may wait for room
                    if not waited:
                        await trio.lowlevel.checkpoint()
                    return data
                wake_at = due
            elif self.eof and not self.chunks:
                if not waited:
                    await trio.lowlevel.checkpoint()
                return b""
            with trio.CancelScope(deadline=wake_at) as self._reader_wake:
                try:
                    await self.changed.wait()
                finally:
                    self._reader_wake = None
            waited = True

    def reset(self) -> None:
        self.broken = True
        self.chunks.clear()
        self.buffered = 0
        self.notify()


class SimStream(trio.abc.Stream):
    """One end of a simulated connection."""

    def __init__(self, outgoing: _Pipe, incoming: _Pipe, connection: Connection) -> None:
        self._outgoing = outgoing
        self._incoming = incoming
        self._connection = connection
        self._closed = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise trio.ClosedResourceError("stream closed")
        if data:
            await self._outgoing.send(bytes(data))
        else:
            await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._closed:
            raise trio.ClosedResourceError("stream closed")
        return await self._incoming.receive(max_bytes or 65536)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._outgoing.eof = True
            self._outgoing.notify()
            if self._outgoing.chunks:  # cut off: still delivered once the cut heals
                self._connection.network.linger(self._outgoing)
            # The peer's further writes fail, as writes to a closed socket do.
            self._incoming.reset()
            self._connection.network.forget(self._connection)
        await trio.lowlevel.checkpoint()


@attrs.define(eq=False)
class Connection:
    network: SimNetwork
    client: str
    server: str
    forward: _Pipe
    backward: _Pipe

    def reset(self) -> None:
        self.forward.reset()
        self.backward.reset()
        self.network.forget(self)


class SimEndpoint:
    """The network as one endpoint (a node, its workers, or a producer) sees it."""

    def __init__(self, network: SimNetwork, name: str) -> None:
        self.network = network
        self.name = name

    async def serve(
        self, address: str, handler: Handler, *, task_status: trio.TaskStatus[int]
    ) -> None:
        await self.network.serve(self.name, address, handler, task_status=task_status)

    async def connect(self, address: str) -> trio.abc.Stream:
        return await self.network.connect(self.name, address)


class SimNetwork:
    def __init__(self, rng: random.Random, profile: NetworkProfile, trace: Trace) -> None:
        self.rng = rng
        self.profile = profile
        self.trace = trace
        self._listeners: dict[str, tuple[str, trio.MemorySendChannel[SimStream]]] = {}
        """address -> (owner endpoint, accept queue)."""
        self._cut: dict[tuple[str, str], None] = {}
        """(source, target) directions that deliver nothing (ordered: never iterate a set)."""
        self._silenced: dict[str, None] = {}
        """Endpoints whose every outgoing direction delivers nothing, whatever the partition
        (a schedule's cut, which the random partitions coming and going must not undo)."""
        self._connections: dict[int, Connection] = {}
        self._lingering: dict[int, _Pipe] = {}
        """Directions whose writer closed while their data waited behind a cut: the end of the
        cut must still wake their reader (TCP delivers what was sent before its FIN once the
        route is back), though the connection itself is forgotten."""
        self._next_lingering = 0
        self._next_connection = 0
        self.resets = 0
        self.bytes_moved = 0

    def endpoint(self, name: str) -> SimEndpoint:
        return SimEndpoint(self, name)

    # --- faults ---------------------------------------------------------------------------------

    def draw_delay_s(self) -> float:
        profile = self.profile
        delay = self.rng.uniform(profile.delay_min_ms, profile.delay_max_ms)
        if profile.spike_probability and self.rng.random() < profile.spike_probability:
            delay += self.rng.uniform(0, profile.spike_max_ms)
        return delay / 1000

    def is_cut(self, source: str, target: str) -> bool:
        return (source, target) in self._cut or source in self._silenced

    def set_cuts(self, cuts: list[tuple[str, str]]) -> None:
        """Replace the partition: these directions deliver nothing until the next call."""
        self._cut = dict.fromkeys(sorted(cuts))
        self._notify_every_pipe()

    def heal(self) -> None:
        self.set_cuts([])

    def silence(self, name: str, silenced: bool) -> None:
        """Stop (or resume) delivering what ``name`` sends, on top of the partition: its
        data waits in its pipes, as TCP retransmits into a dead route."""
        if silenced:
            self._silenced[name] = None
        else:
            self._silenced.pop(name, None)
        self._notify_every_pipe()

    def _notify_every_pipe(self) -> None:
        """What a reader sees may have changed: wake every waiting one."""
        for connection in list(self._connections.values()):
            connection.forward.notify()
            connection.backward.notify()
        for key, pipe in list(self._lingering.items()):
            if pipe.broken or not pipe.chunks:
                del self._lingering[key]
            else:
                pipe.notify()

    def linger(self, pipe: _Pipe) -> None:
        assert len(self._lingering) < CONNECTIONS_MAX, "lingering pipes leak"
        self._next_lingering += 1
        self._lingering[self._next_lingering] = pipe

    def reset_random_connection(self) -> None:
        if not self._connections:
            return
        keys = sorted(self._connections)
        connection = self._connections[keys[self.rng.randrange(len(keys))]]
        self.trace.record("net", f"reset {connection.client}->{connection.server}")
        self.resets += 1
        connection.reset()

    def reset_endpoint(self, name: str) -> None:
        """A process died: the kernel resets every connection it had."""
        for key in sorted(self._connections):
            connection = self._connections.get(key)
            if connection is not None and name in (connection.client, connection.server):
                connection.reset()
        for key, pipe in list(self._lingering.items()):
            if name in (pipe.source, pipe.target):
                pipe.reset()
                del self._lingering[key]

    def mix(self, source: str, target: str, length: int) -> None:
        self.bytes_moved += length
        self.trace.mix(f"{source}>{target}:{length}@{trio.current_time():.4f}")

    def forget(self, connection: Connection) -> None:
        for key, known in list(self._connections.items()):
            if known is connection:
                del self._connections[key]

    # --- the seam -------------------------------------------------------------------------------

    async def serve(
        self, owner: str, address: str, handler: Handler, *, task_status: trio.TaskStatus[int]
    ) -> None:
        assert address not in self._listeners, f"{address} is already served"
        accept_send, accept_receive = trio.open_memory_channel[SimStream](BACKLOG_MAX)
        self._listeners[address] = (owner, accept_send)
        try:
            async with trio.open_nursery() as nursery:
                task_status.started(int(address.rpartition(":")[2]))
                async for stream in accept_receive:
                    nursery.start_soon(handler, stream)
        finally:
            del self._listeners[address]
            accept_send.close()

    async def connect(self, client: str, address: str) -> trio.abc.Stream:
        await trio.sleep(self.draw_delay_s())
        listener = self._listeners.get(address)
        if listener is None:
            raise OSError(errno.ECONNREFUSED, f"connection refused: {address}")
        server, accept = listener
        if self.is_cut(client, server) or self.is_cut(server, client):
            await trio.sleep(SYN_TIMEOUT_S)
            raise OSError(errno.ETIMEDOUT, f"connect to {address} timed out")
        forward = _Pipe(self, client, server)
        backward = _Pipe(self, server, client)
        connection = Connection(
            network=self, client=client, server=server, forward=forward, backward=backward
        )
        assert len(self._connections) < CONNECTIONS_MAX, "simulated connections leak"
        try:
            accept.send_nowait(SimStream(backward, forward, connection))
        except (trio.WouldBlock, trio.BrokenResourceError):
            raise OSError(errno.ECONNREFUSED, f"connection refused: {address}") from None
        self._next_connection += 1
        self._connections[self._next_connection] = connection
        return SimStream(forward, backward, connection)

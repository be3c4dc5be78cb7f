"""Followers forward client commands to the leader, so clients may talk to any node.

A follower keeps one client connection to each peer it has forwarded to (opened on first use,
in the node's nursery) and relays the leader's reply. If the leader cannot be reached, the
client gets ``Redirect`` and finds the leader itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs
import trio

from raftq.client.connection import ClientConnection, ConnectionClosed
from raftq.errors import ConfigError
from raftq.transport.network import Network, client_network
from raftq.transport.wire import ClientReply, SubmitCommand

logger = logging.getLogger("raftq.node")


class Forwarder:
    def __init__(
        self,
        network: Network,
        address_of: Callable[[str], str],
        cluster_id: str,
        nursery: trio.Nursery,
        secret: bytes | None = None,
    ) -> None:
        self._secret = secret
        self._network = client_network(network, None)  # the client side speaks AnyIO
        self._address_of = address_of
        self._cluster_id = cluster_id
        self._nursery = nursery
        self._connections: dict[str, ClientConnection] = {}
        self._locks: dict[str, trio.Lock] = {}
        self.forwarded = 0
        self.failed = 0

    async def forward(
        self, leader: str, call: SubmitCommand, timeout_s: float
    ) -> ClientReply | None:
        """The leader's reply, or None if it could not be reached in time."""
        try:
            connection = await self._connection_to(leader, timeout_s)
            reply = await connection.call(attrs.evolve(call, follow_redirects=True), timeout_s)
        except (ConnectionClosed, ConfigError, TimeoutError, OSError) as error:
            self.failed += 1
            self._connections.pop(leader, None)
            logger.info("forward failed leader=%s error=%r", leader, str(error))
            return None
        self.forwarded += 1
        return reply

    async def _connection_to(self, leader: str, timeout_s: float) -> ClientConnection:
        lock = self._locks.setdefault(leader, trio.Lock())
        async with lock:
            connection = self._connections.get(leader)
            if connection is None or not connection.is_open:
                address = self._address_of(leader)
                if not address:
                    raise ConnectionClosed(f"{leader} is not a known member")
                connection = await ClientConnection.open(
                    self._network,
                    address,
                    cluster_id=self._cluster_id,
                    nursery=self._nursery,
                    timeout=timeout_s,
                    secret=self._secret,
                )
                self._connections[leader] = connection
            return connection

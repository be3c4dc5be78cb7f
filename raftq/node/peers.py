"""The outbound links to the other members, following the membership as it changes.

A node starts with the members its configuration lists (``--cluster``). Members added at run
time (``raftq cluster add ID=HOST:PORT``) arrive in a replicated ``Membership``, with their
address: the Raft peer reports every membership it applies, and ``Peers`` starts a link to each
new member and stops the link of each removed one. It also keeps the set of node ids allowed to
connect as peers (the transport's handshake check), and answers "where does X listen".
"""

from __future__ import annotations

import logging
import random

import trio

from raftq.ids import NodeId
from raftq.raft.messages import Message
from raftq.raft.types import Membership
from raftq.transport.connections import Identity, PeerLink
from raftq.transport.network import Network

logger = logging.getLogger("raftq.node")


class Peers:
    def __init__(
        self,
        network: Network,
        identity: Identity,
        configured: dict[NodeId, str],
        rng: random.Random,
    ) -> None:
        self._network = network
        self._identity = identity
        self._configured = dict(configured)
        self._rng = rng
        self._membership = Membership()
        self.links: dict[NodeId, PeerLink] = {}
        self._scopes: dict[NodeId, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None

    def address_of(self, node: str) -> str:
        """Where ``node`` listens: as replicated with the membership, else as configured."""
        return self._membership.address_of(NodeId(node)) or self._configured.get(NodeId(node), "")

    def addresses(self) -> dict[NodeId, str]:
        """Every known member's address (configured ones included), by node id."""
        known = dict(self._configured)
        known.update(self._membership.addresses)
        return dict(sorted(known.items()))

    def wake(self, node: NodeId) -> None:
        """``node`` connected to us: our link to it, if down, reconnects now."""
        link = self.links.get(node)
        if link is not None:
            link.wake()

    def send(self, message: Message) -> None:
        link = self.links.get(message.recipient)
        if link is not None:
            link.send_nowait(message)

    async def run(
        self,
        membership: Membership,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Link to every configured member and every member of ``membership``; then follow
        ``update``s until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for node in sorted(self._configured):
                self._link(node)
            self.update(membership)
            task_status.started()
            await trio.sleep_forever()

    def update(self, membership: Membership) -> None:
        """Follow a newly applied membership: link new members, unlink removed ones (a node
        listed in the configuration keeps its link: it may not have been added yet)."""
        previous, self._membership = self._membership, membership
        for node in membership.members:
            self._link(node)
        departed = set(previous.members) - set(membership.members) - set(self._configured)
        for node in sorted(departed):
            self._unlink(node)

    def _link(self, node: NodeId) -> None:
        if node == self._identity.node_id or node in self.links:
            return
        address = self.address_of(node)
        if not address:
            logger.warning("member without an address node=%s: cannot reach it", node)
            return
        assert self._nursery is not None, "run() starts the links"
        link = PeerLink(
            self._network, self._identity, node, address, random.Random(self._rng.random())
        )
        scope = trio.CancelScope()
        self.links[node] = link
        self._scopes[node] = scope
        self._identity.peers.add(node)
        self._nursery.start_soon(_run_link, link, scope)
        logger.info("peer link started node=%s address=%s", node, address)

    def _unlink(self, node: NodeId) -> None:
        link = self.links.pop(node, None)
        if link is None:
            return
        self._scopes.pop(node).cancel()
        self._identity.peers.discard(node)
        logger.info("peer link stopped node=%s (no longer a member)", node)


async def _run_link(link: PeerLink, scope: trio.CancelScope) -> None:
    with scope:
        await link.run()

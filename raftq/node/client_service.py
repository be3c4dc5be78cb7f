"""The client service: one task per client connection, requests served concurrently.

Commands go to the leader's Raft peer and are answered once applied; a follower forwards them
to the leader (``node/forwarder.py``), or answers ``Redirect`` if it cannot. Reads (a job, a
listing) wait for a ReadIndex point and for the applier to reach it, so they are linearizable
on any node. Status is this node's own view, served at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from raftq import limits
from raftq.errors import RemoteProtocolError
from raftq.jobs.commands import Claim, ClaimResult
from raftq.node.applier import Applier
from raftq.node.forwarder import Forwarder
from raftq.node.raft_peer import RaftPeer
from raftq.node.waiters import NotLeaderHere, Waiter
from raftq.raft.ready import Role
from raftq.transport.network import FramedConnection
from raftq.transport.wire import (
    ClientCall,
    ClientReply,
    ClientRequest,
    ClientResponse,
    CommandReply,
    Failure,
    GetJob,
    GetStatus,
    JobReply,
    JobsReply,
    ListJobs,
    QueueStatus,
    Redirect,
    StatusReply,
    SubmitCommand,
)

logger = logging.getLogger("raftq.node")


class ClientService:
    def __init__(
        self,
        raft: RaftPeer,
        applier: Applier,
        *,
        address_of: Callable[[str], str],
        node_address: str,
        fsync: bool,
        forwarder: Forwarder | None = None,
    ) -> None:
        self._forwarder = forwarder
        self._raft = raft
        self._applier = applier
        self._address_of = address_of
        self._node_address = node_address
        self._fsync = fsync
        self.requests = 0

    async def serve(self, connection: FramedConnection) -> None:
        """Serve one client connection until it closes."""
        send_lock = trio.Lock()
        slots = trio.CapacityLimiter(limits.CLIENT_REQUESTS_IN_FLIGHT_MAX)
        async with trio.open_nursery() as nursery:
            while True:
                request = await connection.receive()
                if request is None:
                    break
                if not isinstance(request, ClientRequest):
                    raise RemoteProtocolError(f"a client sent {type(request).__name__}")
                await slots.acquire_on_behalf_of(request)
                nursery.start_soon(self._answer, connection, send_lock, slots, request)

    async def _answer(
        self,
        connection: FramedConnection,
        send_lock: trio.Lock,
        slots: trio.CapacityLimiter,
        request: ClientRequest,
    ) -> None:
        try:
            self.requests += 1
            reply = await self.handle(request.call)
            async with send_lock:
                await connection.send(ClientResponse(request_id=request.request_id, reply=reply))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            logger.debug("client gone before its answer request=%d", request.request_id)
        finally:
            slots.release_on_behalf_of(request)

    async def handle(self, call: ClientCall) -> ClientReply:
        if isinstance(call, GetStatus):
            return self.status()
        timeout_s = limits.CLIENT_REQUEST_TIMEOUT_MS / 1000
        with trio.move_on_after(timeout_s):
            if isinstance(call, SubmitCommand):
                if isinstance(call.command, Claim) and not await self._claimable(call.command):
                    return CommandReply(result=ClaimResult(leases=()))
                outcome = await _outcome(self._raft.propose(call.command))
                leader = self._leader_to_forward_to(outcome, call)
                if leader and self._forwarder is not None:
                    forwarded = await self._forwarder.forward(leader, call, timeout_s)
                    if forwarded is not None:
                        return forwarded
                return self._reply(outcome)
            read = await _outcome(self._raft.read_index())
            if not isinstance(read, int):
                return self._reply(read)
            await self._applier.wait_applied(read)
            machine = self._applier.machine
            if isinstance(call, GetJob):
                return JobReply(job=machine.get(call.job_id))
            assert isinstance(call, ListJobs)
            return JobsReply(
                jobs=tuple(
                    machine.list_jobs(
                        state=call.state or None, queue=call.queue or None, limit=call.limit
                    )
                )
            )
        return Failure(
            code="no_quorum",
            message=f"no answer from a majority within {timeout_s:g} s; retry",
        )

    async def _claimable(self, claim: Claim) -> bool:
        """On the leader, wait (up to the long-poll) until the claim would find a job, so a
        claim that would come back empty never becomes a log entry. Elsewhere: True (the
        command is forwarded, and the leader decides)."""
        if self._raft.core.role is not Role.LEADER:
            return True
        with trio.move_on_after(limits.CLAIM_LONG_POLL_MS / 1000):
            while not self._applier.machine.has_claimable(claim.queues, claim.types):
                await self._applier.wait_applied(self._applier.applied_index + 1)
            return True
        return False

    @staticmethod
    def _leader_to_forward_to(outcome: object, call: SubmitCommand) -> str:
        """The leader to forward ``call`` to, or "" (not ours to forward, or no leader)."""
        if call.follow_redirects or not isinstance(outcome, NotLeaderHere):
            return ""
        return outcome.leader_id

    def _reply(self, outcome: object) -> ClientReply:
        if isinstance(outcome, NotLeaderHere):
            leader = outcome.leader_id
            return Redirect(
                leader_id=leader, leader_address=self._address_of(leader) if leader else ""
            )
        if isinstance(outcome, Failure):
            return outcome
        return CommandReply(result=outcome)  # type: ignore[arg-type]

    def status(self) -> StatusReply:
        core = self._raft.core
        machine = self._applier.machine
        role = core.role
        if role is Role.PRE_CANDIDATE:
            role_name = "candidate"
        elif role is Role.FOLLOWER and core.id in core.membership.learners:
            role_name = "learner"
        else:
            role_name = role.value
        return StatusReply(
            node_id=core.id,
            address=self._node_address,
            role=role_name,
            term=core.term,
            leader_id=core.leader or "",
            commit_index=core.log.committed,
            applied_index=self._applier.applied_index,
            jobs=machine.state_counts(),
            queues={
                name: QueueStatus(paused=machine.is_paused(name), counts=counts)
                for name, counts in machine.queue_counts().items()
            },
            fsync=self._fsync,
        )


async def _outcome(waiter: Waiter) -> object:
    await waiter.event.wait()
    return waiter.outcome

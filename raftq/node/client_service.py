"""The client service: one task per client connection, requests served concurrently.

Commands go to the leader's Raft peer and are answered once applied; a follower forwards them
to the leader (``node/forwarder.py``), or answers ``Redirect`` if it cannot. Reads (a job, a
listing) wait for a ReadIndex point and for the applier to reach it, so they are linearizable
on any node. Status is this node's own view, served at once.
"""

from __future__ import annotations

import functools
import logging
import math

import attrs
import trio

from raftq import limits
from raftq.errors import (
    ConfigError,
    LogCompacted,
    MembershipChangeError,
    RemoteProtocolError,
    StorageError,
)
from raftq.ids import NodeId
from raftq.jobs.commands import Claim, ClaimResult, Command, Enqueue, PutSchedule, Report
from raftq.jobs.provenance import job_story
from raftq.node.applier import Applier
from raftq.node.forwarder import Forwarder
from raftq.node.peers import Peers
from raftq.node.raft_peer import RaftPeer
from raftq.node.scheduler import schedule_problem, schedules_page
from raftq.node.waiters import NotLeaderHere, Waiter
from raftq.raft.ready import Role
from raftq.raft.types import Membership
from raftq.transport.network import FramedConnection, parse_address
from raftq.transport.wire import (
    ChangeMembership,
    ClientCall,
    ClientReply,
    ClientRequest,
    ClientResponse,
    CommandReply,
    Drain,
    Failure,
    GetJob,
    GetJobStory,
    GetStatus,
    JobReply,
    JobsPage,
    JobsReply,
    JobStoryReply,
    LimitRow,
    LimitsReply,
    ListJobs,
    ListLimits,
    ListSchedules,
    MembershipReply,
    PageJobs,
    QueueStatus,
    Redirect,
    StatusReply,
    SubmitCommand,
    TransferLeader,
    WireMessage,
)

logger = logging.getLogger("raftq.node")

ELECTION_WAIT_TIMEOUTS = 3
"""A request that finds no leader waits this many election timeouts for one (pre-vote, vote,
and a split vote's second round) before it is answered with "no leader"."""

REPLIES_PER_WRITE_MAX = 256
"""Replies coalesced into one write to a client."""


class ClientService:
    def __init__(
        self,
        raft: RaftPeer,
        applier: Applier,
        *,
        peers: Peers,
        node_address: str,
        fsync: bool,
        election_timeout_s: float,
        forwarder: Forwarder | None = None,
    ) -> None:
        self._election_timeout_s = election_timeout_s
        self._forwarder = forwarder
        self._raft = raft
        self._applier = applier
        self._peers = peers
        self._node_address = node_address
        self._fsync = fsync
        self.requests = 0
        self.drainable = False
        """Set by a node process that acts on ``drain_requested`` (``python -m raftq.node``)."""
        self.drain_requested = trio.Event()
        self._claim_turn = trio.Lock()
        self._next_claim: _WaitingClaim | None = None
        """The long-poll claim whose turn it is, while it waits for work: an enqueue of jobs it
        would take proposes it right behind itself (``_propose_with_waiting_claim``)."""
        self._stories = trio.Semaphore(limits.STORIES_AT_ONCE)
        self._riders: list[_Rider] = []
        """Workers' reports on the leader waiting (``limits.REPORT_RIDE_MS`` at most) for the
        next proposal, to go in its Raft round (``_ride``)."""

    async def serve(self, connection: FramedConnection) -> None:
        """Serve one client connection until it closes: each request in a task of its own;
        one writer sends the replies, as many in one write as are ready (batching under load
        at no cost to a lone request)."""
        # A request holds its slot until its reply is written: the queue never overflows. A
        # semaphore, not a CapacityLimiter on behalf of each request: that hashed the whole
        # request (an attrs value: every job of an Enqueue, every outcome of a Report) to
        # borrow and again to return (1.7% of a busy leader's samples).
        slots = trio.Semaphore(limits.CLIENT_REQUESTS_IN_FLIGHT_MAX)
        replies_in, replies_out = trio.open_memory_channel[ClientResponse](
            limits.CLIENT_REQUESTS_IN_FLIGHT_MAX
        )
        async with trio.open_nursery() as writing:
            writing.start_soon(self._write_replies, connection, replies_out, slots)
            async with replies_in, trio.open_nursery() as answering:
                while True:
                    request = await connection.receive()
                    if request is None:
                        break
                    if not isinstance(request, ClientRequest):
                        raise RemoteProtocolError(f"a client sent {type(request).__name__}")
                    await slots.acquire()
                    answering.start_soon(self._answer, replies_in, request)
            # Every answer is queued and the queue closed: the writer finishes and returns.

    async def _answer(
        self,
        replies: trio.MemorySendChannel[ClientResponse],
        request: ClientRequest,
    ) -> None:
        self.requests += 1
        reply = await self.handle(request.call)
        response = ClientResponse(request_id=request.request_id, reply=reply)
        try:
            replies.send_nowait(response)
        except trio.BrokenResourceError:  # the writer is gone: so is the client
            logger.debug("client gone before its answer request=%d", request.request_id)

    @staticmethod
    async def _write_replies(
        connection: FramedConnection,
        replies: trio.MemoryReceiveChannel[ClientResponse],
        slots: trio.Semaphore,
    ) -> None:
        async with replies:
            async for first in replies:
                batch: list[WireMessage] = [first]
                while len(batch) < REPLIES_PER_WRITE_MAX:
                    try:
                        batch.append(replies.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                try:
                    await connection.send_many(batch)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    logger.debug("client gone before its answers requests=%d", len(batch))
                    return
                finally:
                    for _ in batch:
                        slots.release()

    async def handle(self, call: ClientCall) -> ClientReply:
        if isinstance(call, GetStatus):
            return self.status()
        if isinstance(call, Drain):
            if not self.drainable:
                return Failure(code="rejected", message="this node is embedded: stop it there")
            logger.info("drain requested by a client")
            self.drain_requested.set()
            return self.status()
        timeout_s = limits.CLIENT_REQUEST_TIMEOUT_MS / 1000
        with trio.move_on_after(timeout_s):
            if isinstance(call, ChangeMembership):
                return await self._change_membership(call)
            if isinstance(call, TransferLeader):
                return await self._transfer_leader(call)
            if isinstance(call, SubmitCommand):
                if problem := self._storage_problem():
                    return Failure(
                        code="storage_error",
                        message=f"node {self._raft.node_id} cannot persist writes: {problem}",
                    )
                if isinstance(call.command, Enqueue) and not self._has_room(call.command):
                    return Failure(
                        code="busy",
                        message="the cluster holds its maximum number of jobs or bytes; "
                        "retry once finished jobs are purged",
                    )
                if isinstance(call.command, PutSchedule) and (
                    problem := schedule_problem(call.command.schedule)
                ):
                    return Failure(code="bad_request", message=problem)
                if isinstance(call.command, Claim) and self._must_wait_for_work(call.command):
                    return await self._long_poll_claim(call.command)
                if isinstance(call.command, Report) and self._leads():
                    outcome = await _outcome(await self._ride(call.command))
                else:
                    outcome = await _outcome(self._propose_with_waiting_claim(call.command))
                if await self._election_settled(outcome):
                    outcome = await _outcome(self._raft.propose(call.command))
                leader = self._leader_to_forward_to(outcome, call)
                if leader and self._forwarder is not None:
                    forwarded = await self._forwarder.forward(leader, call, timeout_s)
                    if forwarded is not None:
                        return forwarded
                return self._reply(outcome)
            read = await _outcome(self._raft.read_index())
            if await self._election_settled(read):
                read = await _outcome(self._raft.read_index())
            if not isinstance(read, int):
                return self._reply(read)
            await self._applier.wait_applied(read)
            machine = self._applier.jobs
            if isinstance(call, GetJob):
                return JobReply(job=machine.get(call.job_id))
            if isinstance(call, GetJobStory):
                return await self._job_story(call.job_id, read)
            if isinstance(call, PageJobs):
                views, cursor = machine.page_jobs(
                    state=call.state or None,
                    queue=call.queue or None,
                    job_type=call.type or None,
                    cursor=call.cursor,
                    limit=call.limit,
                    newest_first=call.newest_first,
                )
                return JobsPage(jobs=tuple(views), cursor=cursor)
            if isinstance(call, ListLimits):
                rows = machine.limit_rows()
                return LimitsReply(limits=tuple(LimitRow(**row) for row in rows))
            if isinstance(call, ListSchedules):
                return schedules_page(machine.schedule_page(call.after))
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

    async def _job_story(self, job_id: str, through: int) -> ClientReply:
        """Replay the newest snapshot and the log after it, up to ``through``, for one job's
        whole story (``raftq.jobs.provenance``); one replay at a time."""
        async with self._stories:
            try:
                data, index, entries = await self._raft.log_after_snapshot(through)
            except (LogCompacted, StorageError) as error:
                return Failure(code="storage_error", message=f"cannot read the log: {error}")
            story = await self._applier.offload(lambda: job_story(job_id, data, index, entries))
        return JobStoryReply(story=story, job=self._applier.jobs.get(job_id))

    def _must_wait_for_work(self, claim: Claim) -> bool:
        """On the leader, a claim that would come back empty now waits for work (a long
        poll) instead of becoming a log entry. Elsewhere: False (the command is forwarded,
        and the leader decides)."""
        return self._raft.role is Role.LEADER and not self._claimable(claim)

    def _claimable(self, claim: Claim) -> bool:
        jobs = self._applier.jobs
        return jobs.has_claimable(claim.queues, claim.types, self._raft.clock_ms())

    async def _long_poll_claim(self, claim: Claim) -> ClientReply:
        """Wait (up to the long poll) until the claim would find a job, then propose it.

        Waiting claims take turns (``trio.Lock`` is first come, first served) and the one
        whose turn it is keeps it until its claim is applied: one new job wakes one claim,
        not every idle worker's, so a job costs one Claim entry however many workers wait.
        While it waits, an enqueue of jobs it would take proposes it right behind the enqueue
        (``_propose_with_waiting_claim``): both go in the same Raft round, so the claim costs no
        round of its own, and the next enqueue does not queue behind it. Only the wait is
        bounded by the long poll; a proposed claim is always waited for, as its leases must
        reach the worker."""
        proposed: Waiter | None = None
        waiting = _WaitingClaim(claim)
        with trio.move_on_after(limits.CLAIM_LONG_POLL_MS / 1000):
            await self._claim_turn.acquire()
            try:
                self._next_claim = waiting
                while waiting.proposed is None and not self._claimable(claim):
                    with trio.move_on_at(math.inf) as woken:
                        waiting.woken = woken
                        with trio.move_on_after(self._recheck_s()):
                            await self._applier.wait_applied(self._applier.applied_index + 1)
                proposed = waiting.proposed or self._propose_with_riders(claim)
            finally:
                if self._next_claim is waiting:
                    self._next_claim = None
                if proposed is None:
                    proposed = waiting.proposed  # proposed by an enqueue as the wait ended
                if proposed is None:
                    self._claim_turn.release()
        if proposed is None:
            return CommandReply(result=ClaimResult(leases=()))
        try:
            return self._reply(await _outcome(proposed))
        finally:
            self._claim_turn.release()

    def _recheck_s(self) -> float:
        """How long a waiting claim may sleep without a new entry: for ever, unless a rate
        limit may open a window as time passes (``LIMIT_RECHECK_MS``)."""
        rated = self._applier.jobs.has_rate_limits()
        return limits.LIMIT_RECHECK_MS / 1000 if rated else math.inf

    def _propose_with_waiting_claim(self, command: Command) -> Waiter:
        """Propose ``command``; if it enqueues a job due now that the waiting claim would take,
        propose that claim right behind it (no task switch between: the same Raft round)."""
        proposed = self._propose_with_riders(command)
        waiting = self._next_claim
        if waiting is not None and isinstance(command, Enqueue) and self._feeds(command, waiting):
            self._next_claim = None
            waiting.proposed = self._raft.propose(waiting.claim)
            if waiting.woken is not None:
                waiting.woken.cancel()
        return proposed

    def _propose_with_riders(self, command: Command) -> Waiter:
        """Propose ``command``, then the reports waiting to ride (the same Raft round)."""
        proposed = self._raft.propose(command)
        riders, self._riders = self._riders, []
        for rider in riders:
            rider.proposed = self._raft.propose(rider.report)
            rider.woken.cancel()
        return proposed

    async def _ride(self, report: Report) -> Waiter:
        """Propose a worker's report with the next proposal, or alone after
        ``limits.REPORT_RIDE_MS``. A report is never urgent (the work is done, the lease runs
        on), but proposed alone it is a Raft round of its own that the next enqueue waits
        behind; one enqueue at a time while workers run each job took two rounds per job."""
        rider = _Rider(report=report, woken=trio.CancelScope())
        self._riders.append(rider)
        try:
            with rider.woken:
                await trio.sleep(limits.REPORT_RIDE_MS / 1000)
        finally:
            if rider.proposed is None:  # not taken along: on its own (or not at all, if cancelled)
                self._riders.remove(rider)
        if rider.proposed is None:
            rider.proposed = self._propose_with_riders(report)
        return rider.proposed

    def _leads(self) -> bool:
        return self._raft.role is Role.LEADER

    def _feeds(self, enqueue: Enqueue, waiting: _WaitingClaim) -> bool:
        machine = self._applier.jobs
        claim = waiting.claim
        return any(
            not job.delay_ms
            and (not claim.types or job.type in claim.types)
            and (not claim.queues or job.queue in claim.queues)
            and not machine.is_paused(job.queue)
            for job in enqueue.jobs
        )

    async def _change_membership(self, call: ChangeMembership) -> ClientReply:
        if call.action == "add_learner":
            try:
                parse_address(call.address)
            except ConfigError as error:
                return Failure(code="bad_request", message=str(error))
        change = functools.partial(_changed, call, self._peers.addresses())
        outcome = await _outcome(self._raft.change_membership(change))
        if isinstance(outcome, Membership):
            return self._membership_reply(outcome)
        return self._reply(outcome)

    async def _election_settled(self, outcome: object) -> bool:
        """If ``outcome`` says this node knows no leader (an election is under way), wait up
        to ``ELECTION_WAIT_TIMEOUTS`` election timeouts for one to be known; True if one is
        (the caller then tries again: a redirect to it, or the answer if it is this node).
        Otherwise a client would sleep through the end of the election in its retry backoff,
        adding up to its longest pause to a failover."""
        if not isinstance(outcome, NotLeaderHere) or outcome.leader_id:
            return False
        with trio.move_on_after(ELECTION_WAIT_TIMEOUTS * self._election_timeout_s):
            while not self._raft.leader:
                await self._raft.role_changed()
            return True
        return False

    async def _transfer_leader(self, call: TransferLeader) -> ClientReply:
        """Ask the Raft core to hand over, then wait (up to two election timeouts) until this
        node follows another leader."""
        raft = self._raft
        target = NodeId(call.node_id)
        if raft.role is not Role.LEADER:
            return self._reply(NotLeaderHere(leader_id=raft.leader or ""))
        if target == raft.node_id:
            return self._membership_reply(raft.membership)
        if target not in raft.membership.voters:
            return Failure(code="rejected", message=f"{target} is not a voter of this cluster")
        raft.transfer_leadership(target)
        with trio.move_on_after(2 * self._election_timeout_s):
            while not _follows_another_leader(raft):
                await raft.role_changed()
            return self._membership_reply(raft.membership)
        return Failure(
            code="no_quorum",
            message=f"{target} did not take over within {2 * self._election_timeout_s:g} s",
        )

    def _membership_reply(self, membership: Membership) -> MembershipReply:
        return MembershipReply(
            voters=membership.voters,
            learners=membership.learners,
            leader_id=self._raft.leader or "",
        )

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
                leader_id=leader, leader_address=self._peers.address_of(leader) if leader else ""
            )
        if isinstance(outcome, Failure):
            return outcome
        return CommandReply(result=outcome)  # type: ignore[arg-type]

    def status(self) -> StatusReply:
        raft = self._raft.status()
        machine = self._applier.jobs
        role = raft.role
        if role is Role.PRE_CANDIDATE:
            role_name = "candidate"
        elif role is Role.FOLLOWER and raft.node_id in raft.membership.learners:
            role_name = "learner"
        else:
            role_name = role.value
        return StatusReply(
            node_id=raft.node_id,
            address=self._node_address,
            role=role_name,
            term=raft.term,
            leader_id=raft.leader or "",
            commit_index=raft.commit,
            applied_index=self._applier.applied_index,
            jobs=machine.state_counts(),
            queues={
                name: QueueStatus(paused=machine.is_paused(name), counts=counts)
                for name, counts in machine.queue_counts().items()
            },
            fsync=self._fsync,
            voters=raft.membership.voters,
            learners=raft.membership.learners,
            addresses={str(node): address for node, address in self._peers.addresses().items()},
            match={
                peer: progress.match
                for peer, progress in sorted(raft.peers.items())
                if peer != raft.node_id
            }
            if role is Role.LEADER
            else {},
            storage_error=self._storage_problem(),
            enqueued_total=machine.next_seq - 1,
        )

    def _has_room(self, enqueue: Enqueue) -> bool:
        """Admission control at the edge: refuse before the log grows (the state machine
        refuses too, deterministically, for what slips past while proposals are in flight)."""
        payload_bytes = sum(len(job.payload) for job in enqueue.jobs)
        return self._applier.jobs.has_room(len(enqueue.jobs), payload_bytes)

    def _storage_problem(self) -> str:
        """Why this node's disk refuses writes ("" while it is fine)."""
        return self._raft.storage_problem or ""


@attrs.define(eq=False)
class _Rider:
    report: Report
    woken: trio.CancelScope
    proposed: Waiter | None = None


@attrs.define(eq=False)
class _WaitingClaim:
    claim: Claim
    proposed: Waiter | None = None
    """Set when an enqueue proposed this claim behind itself."""
    woken: trio.CancelScope | None = None
    """Cancelled to wake the claim's wait for the next applied entry."""


def _follows_another_leader(raft: RaftPeer) -> bool:
    return raft.role is not Role.LEADER and raft.leader not in (None, raft.node_id)


def _changed(
    call: ChangeMembership, addresses: dict[NodeId, str], current: Membership
) -> Membership | None:
    """The membership after ``call``, or None if it is so already. Every membership entry
    carries the address of every member, so that any node can reach them all."""
    node = NodeId(call.node_id)
    voters, learners = set(current.voters), set(current.learners)
    known = dict(addresses)
    known.update(current.addresses)
    if call.action == "add_learner":
        if node in voters | learners and known.get(node) == call.address:
            return None  # so already (a learner, or a voter if the whole add was done before)
        if node in voters | learners:
            role = "voter" if node in voters else "learner"
            raise MembershipChangeError(
                f"{node} is already a {role} at {known.get(node)}; to move it, remove it first"
            )
        learners.add(node)
        known[node] = call.address
    elif call.action == "promote":
        if node in voters:
            return None
        if node not in learners:
            raise MembershipChangeError(f"{node} is not a learner; add it first")
        learners.discard(node)
        voters.add(node)
    else:
        if node not in voters and node not in learners:
            return None
        voters.discard(node)
        learners.discard(node)
    members = voters | learners
    return Membership(
        voters=tuple(sorted(voters)),
        learners=tuple(sorted(learners)),
        addresses=tuple(sorted((n, a) for n, a in known.items() if n in members and a)),
    )


async def _outcome(waiter: Waiter) -> object:
    await waiter.event.wait()
    return waiter.outcome

"""The client library: ``raftq.connect`` and the ``Client`` it yields.

A ``Client`` talks to whichever node leads. It starts at a random listed node, follows
``Redirect``s to the leader, and retries across nodes with jittered exponential backoff
(``raftq.backoff``) until its ``timeout`` when a node is unreachable or answers ``Failure`` busy,
dropped, no_quorum or shutting_down. A retried request is the very same request: an enqueue
keeps its idempotency key, so the state machine dedupes it and a lost acknowledgement never
duplicates a job (DESIGN.md "An enqueue, end to end"). Out of time, it raises ``NoQuorum`` (or
``Busy`` if the cluster last said so); ``NotLeader`` never reaches callers.

It is built on AnyIO: the same code runs under ``asyncio.run`` and ``trio.run`` (and inside a
node, and in the simulator, where it is Trio underneath).
"""

from __future__ import annotations

import builtins
import random
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar, Unpack

import anyio
import anyio.abc
import attrs

from raftq import limits, tracing
from raftq.backoff import Backoff
from raftq.client.connection import ClientConnection, ConnectionClosed
from raftq.client.job import HistoryEntry, Job
from raftq.client.jobfile import encode_json, seconds_to_ms, specs_from_objects
from raftq.client.options import EnqueueOptions, job_spec
from raftq.client.schedules import ScheduleOptions, schedule_json, schedule_spec
from raftq.client.status import cluster_status
from raftq.errors import (
    Busy,
    ConfigError,
    JobNotFound,
    LeaseLost,
    NoQuorum,
    RaftqError,
    RemoteProtocolError,
)
from raftq.jobs.commands import (
    Cancel,
    Claim,
    ClaimResult,
    Command,
    Complete,
    Count,
    Done,
    Enqueue,
    Enqueued,
    EnqueueResult,
    Extend,
    ExtendResult,
    Fail,
    JobSpec,
    Lease,
    Outcome,
    PauseQueue,
    Progress,
    ProgressResult,
    PutSchedule,
    Rejected,
    Release,
    ReleaseResult,
    RemoveLimit,
    RemoveSchedule,
    Report,
    ReportResult,
    Result,
    ResumeQueue,
    Retry,
    RetryDead,
    SetLimit,
    enqueue_bytes,
)
from raftq.jobs.job import JobState
from raftq.jobs.provenance import Story
from raftq.transport.auth import check_secret
from raftq.transport.network import ClientNetwork, Network, client_network, parse_address
from raftq.transport.tls import TlsConfig
from raftq.transport.wire import (
    ChangeMembership,
    ClientCall,
    ClientReply,
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
    Redirect,
    SchedulesPage,
    StatusReply,
    SubmitCommand,
    TransferLeader,
)

RETRYABLE_FAILURES = frozenset(
    {"busy", "dropped", "no_quorum", "shutting_down", "not_ready", "storage_error"}
)
"""``Failure`` codes that mean "not done, try again" (``raftq.transport.wire.Failure``)."""

RETRY_BACKOFF = Backoff(min_s=0.02, max_s=0.25, jitter=(0.5, 1.5))
"""Retry backoff, doubling from 20 ms to 250 ms, with jitter of 50-150%: an election takes a few
hundred ms, so the first retries are quick, and the cap keeps a client from sleeping through the
end of one (a longer cap added up to a second to failovers). A long outage costs each client
about four cheap attempts (a refused connection or a redirect) a second."""

ATTEMPT_TIMEOUT_S = 5.0
"""One request to one node: a healthy commit takes milliseconds, so a node silent this long is
stuck or partitioned away, and another node is worth trying (the request is safe to repeat)."""

CONNECT_TIMEOUT_S = 2.0
"""Connect and handshake with one node; a reachable node answers in milliseconds."""

STATUS_ANSWER_TIMEOUT_S = 2.0
"""A node that cannot report on itself this fast counts as unreachable in ``status``; waiting
the full timeout per dead node would make ``status`` as slow as the slowest dead node."""

ADDRESSES_MAX = 64
"""Nodes one client knows (listed, or learned from redirects): a cluster has 1 to 5 voters and a
few learners; this bounds the connections one client holds."""

WAIT_POLL_BACKOFF = Backoff(min_s=0.01, max_s=0.5, jitter=(1.0, 1.0))
"""``wait`` polls the job with backoff from 10 ms to 500 ms: quick for short jobs, cheap for long
ones. No jitter: one caller's polls of one job need no spreading."""

LIST_LIMIT_MAX = 10_000
"""The most jobs one ``list`` returns (``ListJobs.limit``)."""

JOB_STATES = frozenset(state.value for state in JobState)


@attrs.frozen(kw_only=True)
class JobPage:
    """One page of ``Client.page``: its jobs, and the cursor of the next page (None: the
    last). A cursor is the enqueue order of the last job examined: jobs enqueued after it come
    on later pages, so paging neither repeats nor skips a job."""

    jobs: builtins.list[Job]
    cursor: int | None


class CommandRejected(RaftqError):
    """The cluster refused a command (``code``: finished, running, not_retryable, id_taken,
    too_many_names, ...); the message says why. Nothing changed."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


def parse_addresses(addresses: str | Sequence[str]) -> builtins.list[str]:
    """``"h:p,h:p"`` or a list of ``"h:p"`` -> checked addresses without repeats."""
    items = addresses.split(",") if isinstance(addresses, str) else builtins.list(addresses)
    parsed: builtins.list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"address {item!r} must be a string HOST:PORT")
        address = item.strip()
        parse_address(address)
        if address not in parsed:
            parsed.append(address)
    if not parsed:
        raise ConfigError("no cluster address given: pass HOST:PORT[,HOST:PORT...]")
    if len(parsed) > ADDRESSES_MAX:
        raise ConfigError(f"{len(parsed)} addresses given; at most {ADDRESSES_MAX}")
    return parsed


@asynccontextmanager
async def connect(
    addresses: str | Sequence[str],
    *,
    cluster_id: str = "raftq",
    timeout: float = 10.0,
    network: ClientNetwork | Network | None = None,
    secret: bytes | str | None = None,
    tls: TlsConfig | None = None,
    rng: random.Random | None = None,
) -> AsyncIterator[Client]:
    """A ``Client`` of the cluster at ``addresses``, connected lazily; every call retries until
    ``timeout`` seconds. Connections close when the block ends.

    ``secret``: the cluster secret (``raftq.load_secret(path)`` reads a secret file), proven
    to every node in the handshake and never sent. ``tls``: connect with TLS, verifying the
    nodes' certificates against ``tls.ca_file`` (and presenting ``tls.cert_file``, if any).
    ``network``: how to reach the nodes (default: TCP); a node's own ``Network`` (Trio) works
    too. ``rng`` (retry jitter and the starting node) defaults to a fresh random one; the
    simulator passes a seeded one.

    The same call works under ``asyncio.run`` and ``trio.run`` (AnyIO)."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ConfigError(f"timeout must be a positive number of seconds, not {timeout!r}")
    known = parse_addresses(addresses)
    checked_secret = None if secret is None else check_secret(secret)
    body_error: BaseException | None = None
    dialer = client_network(network, tls)
    async with anyio.create_task_group() as tasks:
        client = Client(known, cluster_id, timeout, dialer, tasks, rng=rng)
        client.secret = checked_secret
        try:
            yield client
        except BaseException as error:
            # Re-raised below, outside the task group, so a caller catches ``JobNotFound``
            # itself rather than an ExceptionGroup around it.
            body_error = error
        finally:
            client.close()
            tasks.cancel_scope.cancel()
    if body_error is not None:
        raise body_error


class Client:
    """Made by ``raftq.connect``. Safe to share between tasks: calls run concurrently."""

    def __init__(
        self,
        addresses: builtins.list[str],
        cluster_id: str,
        timeout: float,
        network: ClientNetwork,
        tasks: anyio.abc.TaskGroup,
        *,
        rng: random.Random | None = None,
    ) -> None:
        assert addresses, "parse_addresses guarantees one"
        self.addresses = addresses
        self.cluster_id = cluster_id
        self.timeout = timeout
        self._network = network
        self._tasks = tasks
        # Jitter and the starting node only; nothing replicated depends on this randomness.
        self._rng = rng or random.Random(secrets.randbits(64))
        self._cursor = self._rng.randrange(len(addresses))
        self._leader: str | None = None
        self._connections: dict[str, ClientConnection] = {}
        self._connecting: dict[str, anyio.Lock] = {}
        self.node_ids: dict[str, str] = {}
        """Address -> node id, as learned from handshakes, for reports on unreachable nodes."""
        self.secret: bytes | None = None
        """The cluster secret proven in every handshake (None: the cluster has none)."""

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()

    # --- producers --------------------------------------------------------------------------------

    async def enqueue(
        self, type: str, payload: object = None, **options: Unpack[EnqueueOptions]
    ) -> str:
        """Enqueue one job and return its id once committed. The options
        (``raftq.client.options.EnqueueOptions``): ``queue``, ``priority``, ``delay`` and
        ``timeout`` in seconds, ``max_attempts``, ``key`` (default: ``id`` if given, else a
        fresh random key: it dedupes retries), ``id``, ``group`` (the concurrency and rate
        group it counts in, ``set_limit``), ``depends_on`` (ids of jobs it waits for: it runs
        once they have succeeded; if one ends dead or cancelled it is cancelled, or runs anyway
        with ``on_parent_failure="run"``), ``unique_while_active`` (a key: while another job
        with it is pending, waiting or running, nothing is enqueued and that job's id is
        returned), and ``backoff``, ``backoff_max`` (seconds) and ``jitter_percent``, the job's
        own retry policy (docs/handlers.md "Retry policy"; left out, the default's)."""
        (job_id,) = await self.enqueue_specs([job_spec(type, payload, options)])
        return job_id

    async def enqueue_many(self, jobs: Sequence[Mapping[str, Any]]) -> builtins.list[str]:
        """Enqueue dicts in the job-file format (CONTRACT.md) in one command and one commit;
        their ids in order. Every job is checked before anything is sent."""
        return await self.enqueue_specs(specs_from_objects(builtins.list(jobs)))

    async def enqueue_specs(self, specs: Sequence[JobSpec]) -> builtins.list[str]:
        """Enqueue checked ``JobSpec``s as one command. A job without a key gets a fresh random
        one first, so a retry of this very command dedupes instead of enqueueing twice. If the
        cluster rejects a job (``CommandRejected``), the others of the batch are enqueued."""
        if not specs:
            return []
        if len(specs) > limits.JOBS_PER_ENQUEUE_MAX:
            raise ConfigError(
                f"{len(specs)} jobs in one enqueue; at most {limits.JOBS_PER_ENQUEUE_MAX}"
            )
        keyed = tuple(spec if spec.key else attrs.evolve(spec, key=new_key()) for spec in specs)
        if (size := enqueue_bytes(keyed)) > limits.COMMAND_BYTES_MAX:
            raise ConfigError(
                f"{size} bytes of jobs in one enqueue; at most {limits.COMMAND_BYTES_MAX}: "
                "send them in smaller batches"
            )
        span, keyed = tracing.start_enqueue(keyed)
        try:
            result = await self._submit(Enqueue(now_ms=0, jobs=keyed))
        except BaseException as error:
            tracing.end_enqueue(span, error=error)
            raise
        outcome = _expect(result, EnqueueResult)
        tracing.end_enqueue(span, [job.job_id for job in outcome.jobs if isinstance(job, Enqueued)])
        if len(outcome.jobs) != len(keyed):
            raise RemoteProtocolError(f"{len(keyed)} jobs enqueued, {len(outcome.jobs)} answers")
        ids: builtins.list[str] = []
        for index, enqueued in enumerate(outcome.jobs):
            if isinstance(enqueued, Rejected):
                raise _rejection(enqueued, f"job {index} of the batch: ")
            ids.append(enqueued.job_id)
        return ids

    # --- queries ----------------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job:
        """The job now, from the leader; ``JobNotFound`` if there is none."""
        reply = await self._request(GetJob(job_id=job_id))
        if not isinstance(reply, JobReply):
            raise _unexpected(reply)
        if reply.job is None:
            raise JobNotFound(f"no job {job_id}")
        return Job.from_view(reply.job)

    async def history(self, job_id: str) -> Story:
        """The job's whole story from the log (``raftq job ID --history``): every entry
        that touched it since the answering node's newest snapshot, with its index, term,
        leader, worker, attempt and fence, refused reports included; before that snapshot,
        the events it kept (docs/jobs.md, "Provenance"). ``JobNotFound`` if neither the log
        nor the state knows the job."""
        reply = await self._request(GetJobStory(job_id=job_id))
        if not isinstance(reply, JobStoryReply):
            raise _unexpected(reply)
        if reply.job is None and not reply.story.events:
            raise JobNotFound(f"no job {job_id}")
        return reply.story

    async def wait(self, job_id: str, timeout: float) -> Job:
        """The job once succeeded, dead or cancelled; ``TimeoutError`` after ``timeout``
        seconds. Polls with backoff: a finished job is seen within ``WAIT_POLL_BACKOFF.max_s``."""
        polls = WAIT_POLL_BACKOFF.delays()
        with anyio.fail_after(timeout):
            while True:
                job = await self.get(job_id)
                if job.finished:
                    return job
                await anyio.sleep(polls.next_s())

    async def list(
        self, state: str | None = None, queue: str | None = None, limit: int = 100
    ) -> builtins.list[Job]:
        """Jobs in enqueue order, filtered by state and queue; at most ``limit``."""
        if state is not None and state not in JOB_STATES:
            raise ConfigError(f"state {state!r} is none of {', '.join(sorted(JOB_STATES))}")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= 10_000:
            raise ConfigError(f"limit must be an integer from 1 to {LIST_LIMIT_MAX}")
        reply = await self._request(ListJobs(state=state or "", queue=queue or "", limit=limit))
        if not isinstance(reply, JobsReply):
            raise _unexpected(reply)
        return [Job.from_view(view) for view in reply.jobs]

    async def page(
        self,
        state: str | None = None,
        queue: str | None = None,
        type: str | None = None,
        *,
        cursor: int | None = None,
        limit: int = 100,
        newest_first: bool = False,
    ) -> JobPage:
        """A page of jobs, filtered by state, queue and type, in enqueue order (or newest
        first) from ``cursor`` (the previous page's; None: the first page). At most ``limit``
        (up to ``limits.JOBS_PAGE_MAX``) jobs; fewer when the node examined its bound of jobs
        for one page (``limits.LIST_SCAN_JOBS_MAX``): the cursor then goes on from there."""
        try:
            call = PageJobs(
                state=state or "",
                queue=queue or "",
                type=type or "",
                cursor=cursor or 0,
                limit=limit,
                newest_first=newest_first,
            )
        except (TypeError, ValueError) as error:
            raise ConfigError(f"bad page request: {error}") from None
        reply = await self._request(call)
        if not isinstance(reply, JobsPage):
            raise _unexpected(reply)
        return JobPage(
            jobs=[Job.from_view(view) for view in reply.jobs], cursor=reply.cursor or None
        )

    async def status(self) -> dict[str, Any]:
        """The cluster as ``raftq status --json`` shows it: every listed node asked for its own
        view; those that do not answer (within a couple of seconds each) are "unreachable".
        While none answers, it asks again until the client's timeout; then ``NoQuorum``."""
        replies: dict[str, StatusReply | None] = {}
        refusals: builtins.list[ConfigError] = []

        async def ask(address: str) -> None:
            try:
                replies[address] = await self._status_of(address)
            except ConfigError as error:  # e.g. a wrong secret: said plainly if none answers
                replies[address] = None
                refusals.append(error)

        deadline = anyio.current_time() + self.timeout
        delays = RETRY_BACKOFF.delays(self._rng)
        while True:  # until one node answers (a cluster may still be starting) or time is up
            async with anyio.create_task_group() as tasks:
                for address in self.addresses:
                    tasks.start_soon(ask, address)
            remaining = deadline - anyio.current_time()
            if refusals or remaining <= 0 or any(r is not None for r in replies.values()):
                break
            await anyio.sleep(min(delays.next_s(), remaining))
        # Members the listed nodes know of but we were not given (added at run time).
        answered_ids = {reply.node_id for reply in replies.values() if reply is not None}
        more = sorted(
            {
                address
                for reply in replies.values()
                if reply is not None
                for node, address in reply.addresses.items()
                if node not in answered_ids and address not in replies
            }
        )[: max(0, ADDRESSES_MAX - len(replies))]
        async with anyio.create_task_group() as tasks:
            for address in more:
                tasks.start_soon(ask, address)
        answered = {a: r for a, r in replies.items() if r is not None}
        if not answered:
            if refusals:
                raise refusals[0]
            raise NoQuorum(f"no node answered within {self.timeout:.3g} s")
        views = [(a, replies[a]) for a in self.addresses + more]
        return cluster_status(views, self.node_ids)

    async def _status_of(self, address: str) -> StatusReply | None:
        """One node's own view, or None if it cannot give it in time (never raises)."""
        try:
            with anyio.fail_after(self._status_timeout()):
                connection = await self._connection_to(address, self._status_timeout())
                reply = await connection.call(GetStatus(), self._status_timeout())
        except (ConnectionClosed, TimeoutError):
            self._forget(address)
            return None
        return reply if isinstance(reply, StatusReply) else None

    def _status_timeout(self) -> float:
        return min(self.timeout, STATUS_ANSWER_TIMEOUT_S)

    # --- operators --------------------------------------------------------------------------------

    async def cancel(self, job_id: str) -> str:
        """Cancel a job; returns its state after (a running job stays running until its worker
        reports, then it is cancelled). ``JobNotFound``, or ``CommandRejected`` if finished."""
        return _expect(await self._submit(Cancel(now_ms=0, job_id=job_id)), Done).state

    async def retry(self, job_id: str) -> str:
        """Run a dead or failed job again now; returns its state after."""
        return _expect(await self._submit(Retry(now_ms=0, job_id=job_id)), Done).state

    async def retry_dead(
        self,
        queue: str | None = None,
        type: str | None = None,
        limit: int = limits.RETRY_DEAD_JOBS_MAX,
    ) -> int:
        """Retry the dead jobs of a queue and type (None: any), oldest death first, at most
        ``limit`` (up to ``limits.RETRY_DEAD_JOBS_MAX``) in one command; how many it retried.
        Fewer than ``limit``: no matching dead job is left."""
        try:
            command = RetryDead(now_ms=0, queue=queue or "", type=type or "", max_jobs=limit)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"bad retry: {error}") from None
        return _expect(await self._submit(command), Count).count

    async def pause(self, queue: str) -> None:
        """Stop handing out the queue's jobs (running ones finish)."""
        _expect(await self._submit(PauseQueue(now_ms=0, queue=_queue_name(queue))), Done)

    async def resume(self, queue: str) -> None:
        _expect(await self._submit(ResumeQueue(now_ms=0, queue=_queue_name(queue))), Done)

    # --- concurrency and rate limits (docs/limits.md) -----------------------------------------

    async def set_limit(
        self,
        *,
        queue: str | None = None,
        group: str | None = None,
        concurrency: int | None = None,
        rate: int | None = None,
        per: float | None = None,
    ) -> None:
        """Limit a queue or a group (exactly one): at most ``concurrency`` of its jobs running
        at once, at most ``rate`` started per ``per`` seconds. Replaces its earlier limit; a
        lower one never stops running jobs. ``ConfigError`` for values that are no limit."""
        scope, name = _limit_scope(queue, group)
        if (rate is None) != (per is None):
            raise ConfigError("a rate needs both a count and a window in seconds (rate=, per=)")
        for what, count in (("concurrency", concurrency), ("rate", rate)):
            if count is not None and (not isinstance(count, int) or count < 1):
                raise ConfigError(f"a {what} limit must be 1 or more, not {count!r}")
        window_ms = 0
        if per is not None:
            window_ms = seconds_to_ms(
                "rate window", per, lowest_ms=1, highest_ms=limits.LIMIT_RATE_WINDOW_MS_MAX
            )
        try:
            command = SetLimit(
                now_ms=0,
                scope=scope,
                name=name,
                concurrency=concurrency or 0,
                rate=rate or 0,
                window_ms=window_ms,
            )
        except (TypeError, ValueError) as error:
            raise ConfigError(f"bad limit: {error}") from None
        _expect(await self._submit(command), Done)

    async def remove_limit(self, *, queue: str | None = None, group: str | None = None) -> None:
        """Remove the limit of a queue or a group: its waiting jobs may start at once.
        ``CommandRejected`` (code ``not_found``) if it has none."""
        scope, name = _limit_scope(queue, group)
        try:
            _expect(await self._submit(RemoveLimit(now_ms=0, scope=scope, name=name)), Done)
        except JobNotFound as error:
            raise CommandRejected(str(error), code="not_found") from None

    async def limits(self) -> builtins.list[dict[str, Any]]:
        """Every limit, by scope and name, with what runs under it now: ``{"scope", "name",
        "concurrency", "rate", "window_s", "running", "pending", "started_in_window"}``
        (0 for a concurrency or rate it does not set)."""
        reply = await self._request(ListLimits())
        if not isinstance(reply, LimitsReply):
            raise _unexpected(reply)
        return [limit_json(row) for row in reply.limits]

    # --- schedules (docs/schedules.md) ---------------------------------------------------------

    async def add_schedule(
        self, name: str, type: str, payload: object = None, **options: Unpack[ScheduleOptions]
    ) -> str:
        """Add schedule ``name``, or replace the one of that name: a job of ``type`` with
        ``payload`` at each slot of ``cron`` (in ``tz``) or every ``every`` seconds; the
        options (``raftq.client.schedules.ScheduleOptions``) also give the fired jobs'
        ``queue``, ``priority``, ``max_attempts``, ``timeout`` and ``group``. Returns "added",
        "updated" or "unchanged". A bad expression, zone or option is a ``ConfigError``."""
        spec = schedule_spec(name, type, payload, options)
        return _expect(await self._submit(PutSchedule(now_ms=0, schedule=spec)), Done).state

    async def schedules(self) -> builtins.list[dict[str, Any]]:
        """Every schedule by name, as ``raftq schedule list --json`` shows it."""
        shown: builtins.list[dict[str, Any]] = []
        after = ""
        for _ in range(limits.SCHEDULES_MAX):  # a page holds one schedule at least
            reply = await self._request(ListSchedules(after=after))
            if not isinstance(reply, SchedulesPage):
                raise _unexpected(reply)
            shown.extend(schedule_json(view) for view in reply.schedules)
            after = reply.after
            if not after:
                break
        return shown

    async def remove_schedule(self, name: str) -> None:
        """Remove schedule ``name`` (a slot it was firing as this applies is refused);
        ``CommandRejected`` with code not_found if there is none."""
        try:
            command = RemoveSchedule(now_ms=0, name=name)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"bad schedule name: {error}") from None
        reply = await self._request(SubmitCommand(command=command, follow_redirects=True))
        if not isinstance(reply, CommandReply):
            raise _unexpected(reply)
        if isinstance(reply.result, Rejected):
            raise CommandRejected(reply.result.message, code=reply.result.code)
        _expect(reply.result, Done)

    # --- cluster membership ---------------------------------------------------------------------

    async def add_node(self, node_id: str, address: str) -> dict[str, Any]:
        """Add the node listening at ``address`` (started with ``--cluster`` listing the members
        and itself): first as a learner, which receives the log (or a snapshot) without voting,
        then, once it has caught up, as a voter. Returns the membership; ``NoQuorum`` (or
        ``RaftqError`` if it is still catching up) past the timeout. Safe to repeat."""
        parse_address(address)
        await self._change_membership("add_learner", node_id, address)
        return await self._change_membership("promote", node_id)

    async def remove_node(self, node_id: str) -> dict[str, Any]:
        """Remove a voter or learner (a leader removing itself steps down once the change is
        committed). Its running jobs are not lost: their leases expire and they run again."""
        return await self._change_membership("remove", node_id)

    async def transfer_leader(self, node_id: str) -> dict[str, Any]:
        """Hand leadership to the voter ``node_id``; returns once another node leads."""
        reply = await self._request(TransferLeader(node_id=node_id))
        if not isinstance(reply, MembershipReply):
            raise _unexpected(reply)
        self._leader = None  # it has moved
        return _membership_json(reply)

    async def drain(self, address: str) -> dict[str, Any]:
        """Drain the node at ``address`` (not the leader: that very node): it stops claiming,
        hands leadership over, lets its running jobs finish, and exits. Returns its status as
        it started draining. ``RaftqError`` if it is embedded in an application."""
        try:
            with anyio.fail_after(self._status_timeout()):
                connection = await self._connection_to(address, self._status_timeout())
                reply = await connection.call(Drain(), self._status_timeout())
        except (ConnectionClosed, TimeoutError) as error:
            raise NoQuorum(f"{address} did not take the drain: {error}") from None
        if isinstance(reply, Failure):
            raise RaftqError(f"{address} refused to drain ({reply.code}): {reply.message}")
        if not isinstance(reply, StatusReply):
            raise _unexpected(reply)
        node: dict[str, Any] = cluster_status([(address, reply)], self.node_ids)["cluster"][
            "nodes"
        ][0]
        return node

    async def _change_membership(
        self, action: str, node_id: str, address: str = ""
    ) -> dict[str, Any]:
        try:
            call = ChangeMembership(action=action, node_id=node_id, address=address)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"bad membership change: {error}") from None
        reply = await self._request(call)
        if not isinstance(reply, MembershipReply):
            raise _unexpected(reply)
        return _membership_json(reply)

    # --- workers ----------------------------------------------------------------------------------

    async def claim(
        self,
        claimer: str,
        types: Sequence[str] = (),
        queues: Sequence[str] = (),
        max_jobs: int = 1,
        hold_ms: int = 0,
    ) -> tuple[Lease, ...]:
        """Lease up to ``max_jobs`` due jobs of these types and queues (empty: any). With
        ``hold_ms``, each lease runs that much longer than the job's timeout: the time the
        caller may keep the job before starting it (then ``release`` it if it did not)."""
        try:
            command = Claim(
                now_ms=0,
                claimer=claimer,
                types=tuple(types),
                queues=tuple(queues),
                max_jobs=max_jobs,
                hold_ms=hold_ms,
            )
        except (TypeError, ValueError) as error:
            raise ConfigError(f"bad claim: {error}") from None
        return _expect(await self._submit(command), ClaimResult).leases

    async def complete(self, job_id: str, fence: int, result: object = None) -> str:
        """Report success with a JSON-able ``result``; ``LeaseLost`` if the lease moved on."""
        try:
            encoded = encode_json(result, limits.JOB_RESULT_BYTES_MAX)
        except ValueError as error:
            raise ConfigError(f"result of job {job_id}: {error}") from None
        command = Complete(now_ms=0, job_id=job_id, fence=fence, result=encoded)
        return _expect(await self._submit(command), Done).state

    async def fail(self, job_id: str, fence: int, error: str, retryable: bool = True) -> str:
        """Report a failed attempt; ``error`` keeps its last ``JOB_ERROR_CHARS_MAX``
        characters (a traceback's end names the exception)."""
        text = error[-limits.JOB_ERROR_CHARS_MAX :]
        command = Fail(now_ms=0, job_id=job_id, fence=fence, error=text, retryable=retryable)
        return _expect(await self._submit(command), Done).state

    async def report(self, outcomes: Sequence[Outcome]) -> tuple[str | None, ...]:
        """Report the ends of many attempts in one command (one log entry); what a ``Worker``
        sends. For each outcome, in order: the job's state after, or None if the lease was
        lost (or the job is gone), as ``complete`` and ``fail`` would have raised."""
        if not outcomes:
            return ()
        if len(outcomes) > limits.REPORT_OUTCOMES_MAX:
            raise ConfigError(
                f"{len(outcomes)} outcomes in one report; at most {limits.REPORT_OUTCOMES_MAX}"
            )
        command = Report(now_ms=0, outcomes=tuple(outcomes))
        result = _expect(await self._submit(command), ReportResult)
        if len(result.outcomes) != len(outcomes):
            raise RemoteProtocolError(
                f"{len(outcomes)} outcomes reported, {len(result.outcomes)} answers"
            )
        return tuple(each.state if isinstance(each, Done) else None for each in result.outcomes)

    async def extend(
        self, leases: Sequence[tuple[str, int]], until_ms: int
    ) -> tuple[str | None, ...]:
        """Renew (job id, fence) leases to at least ``until_ms`` (the cluster's clock). For each,
        the job's state after ("running" if still held; "cancelled" if a cancel was waiting for
        it), or None if the lease is lost."""
        command = Extend(
            now_ms=0,
            job_ids=tuple(job_id for job_id, _ in leases),
            fences=tuple(fence for _, fence in leases),
            until_ms=until_ms,
        )
        outcome = _expect(await self._submit(command), ExtendResult)
        return tuple(each.state if isinstance(each, Done) else None for each in outcome.outcomes)

    async def release(self, leases: Sequence[tuple[str, int]]) -> tuple[str | None, ...]:
        """Give back (job id, fence) leases of jobs that never started: each goes back to
        pending with no attempt counted. For each, the job's state after, or None if the
        lease was already lost."""
        try:
            command = Release(
                now_ms=0,
                job_ids=tuple(job_id for job_id, _ in leases),
                fences=tuple(fence for _, fence in leases),
            )
        except (TypeError, ValueError) as error:
            raise ConfigError(f"bad release: {error}") from None
        outcome = _expect(await self._submit(command), ReleaseResult)
        return tuple(each.state if isinstance(each, Done) else None for each in outcome.outcomes)

    async def progress(self, values: Sequence[tuple[str, int, bytes]]) -> tuple[str | None, ...]:
        """Show (job id, fence, JSON bytes) progress values of held leases, in one command;
        what a ``Worker`` sends. For each, the job's state after, or None if the lease was
        lost (the value was refused)."""
        try:
            command = Progress(
                now_ms=0,
                job_ids=tuple(job_id for job_id, _, _ in values),
                fences=tuple(fence for _, fence, _ in values),
                values=tuple(value for _, _, value in values),
            )
        except (TypeError, ValueError) as error:
            raise ConfigError(f"bad progress: {error}") from None
        outcome = _expect(await self._submit(command), ProgressResult)
        return tuple(each.state if isinstance(each, Done) else None for each in outcome.outcomes)

    # --- requests with retries --------------------------------------------------------------------

    async def _submit(self, command: Command) -> Result:
        # follow_redirects: this client finds the leader itself (no forwarding hops).
        reply = await self._request(SubmitCommand(command=command, follow_redirects=True))
        if not isinstance(reply, CommandReply):
            raise _unexpected(reply)
        if isinstance(reply.result, Rejected):
            raise _rejection(reply.result)
        return reply.result

    async def _request(self, call: ClientCall) -> ClientReply:
        """``call`` answered by the leader, retrying until ``self.timeout``."""
        deadline = anyio.current_time() + self.timeout
        delays = RETRY_BACKOFF.delays(self._rng)
        problem, busy, not_ready = "no node was tried", False, False
        answered = False  # a node said why it failed: a cut-short timeout keeps that reason
        hops = 0
        while (remaining := deadline - anyio.current_time()) > 0:
            address = self._leader or self.addresses[self._cursor % len(self.addresses)]
            try:
                connection = await self._connection_to(address, min(remaining, CONNECT_TIMEOUT_S))
                reply = await connection.call(call, min(remaining, ATTEMPT_TIMEOUT_S))
            except (ConnectionClosed, TimeoutError) as error:
                self._forget(address)
                out_of_time = anyio.current_time() >= deadline  # our deadline, not the node
                if not (out_of_time and isinstance(error, TimeoutError) and answered):
                    problem, busy = str(error) or f"{address}: no answer in time", False
            else:
                if isinstance(reply, Redirect):
                    problem, busy = f"{address} is not the leader", False
                    if self._follow(address, reply) and hops < len(self.addresses):
                        hops += 1
                        continue  # straight to the leader it named
                elif isinstance(reply, Failure):
                    problem, busy = self._failed(address, reply)
                    answered = True
                    not_ready = reply.code == "not_ready"
                else:
                    self._leader = address
                    return reply
            hops = 0
            pause = delays.next_s()
            await anyio.sleep(min(pause, max(deadline - anyio.current_time(), 0)))
        if not_ready:  # the leader answered: the change itself is what did not happen in time
            raise RaftqError(f"not done within {self.timeout:.3g} s: {problem}")
        message = f"no leader answered within {self.timeout:.3g} s; last: {problem}"
        raise Busy(message) if busy else NoQuorum(message)

    def _follow(self, address: str, redirect: Redirect) -> bool:
        """Take note of the leader a redirect names; whether it names another node."""
        leader = redirect.leader_address
        if redirect.leader_id:
            self.node_ids.setdefault(leader, redirect.leader_id)
        if not leader or leader == address:
            self._leader = None
            self._cursor += 1
            return False
        if leader not in self.addresses:
            try:
                parse_address(leader)
            except ConfigError:
                raise RemoteProtocolError(f"{address} redirected to {leader!r}") from None
            if len(self.addresses) >= ADDRESSES_MAX:
                raise RemoteProtocolError(f"redirected to more than {ADDRESSES_MAX} addresses")
            self.addresses.append(leader)
        self._leader = leader
        return True

    def _failed(self, address: str, failure: Failure) -> tuple[str, bool]:
        problem = f"{address} failed the request ({failure.code}): {failure.message}"
        if failure.code == "bad_request":
            raise ConfigError(problem)
        if failure.code not in RETRYABLE_FAILURES:
            raise RaftqError(problem)
        if failure.code not in ("busy", "not_ready"):  # the leader is fine: ask it again
            self._leader = None
            self._cursor += 1
        return problem, failure.code == "busy"

    def _forget(self, address: str) -> None:
        connection = self._connections.pop(address, None)
        if connection is not None:
            connection.close()
        if self._leader == address:
            self._leader = None
        if self.addresses[self._cursor % len(self.addresses)] == address:
            self._cursor += 1

    async def _connection_to(self, address: str, timeout: float) -> ClientConnection:
        connection = self._connections.get(address)
        if connection is not None and connection.is_open:
            return connection  # the common case: no lock, no checkpoint on the hot path
        lock = self._connecting.get(address)
        if lock is None:
            lock = self._connecting[address] = anyio.Lock()
        async with lock:  # one connection per node, even when many tasks call at once
            connection = self._connections.get(address)
            if connection is None or not connection.is_open:
                connection = await ClientConnection.open(
                    self._network,
                    address,
                    cluster_id=self.cluster_id,
                    secret=self.secret,
                    nursery=self._tasks,
                    timeout=timeout,
                )
                self._connections[address] = connection
                self.node_ids[address] = connection.node_id
            return connection


def _limit_scope(queue: str | None, group: str | None) -> tuple[str, str]:
    if (queue is None) == (group is None):
        raise ConfigError("a limit is on a queue or on a group: give exactly one")
    if queue is not None:
        return "queue", _queue_name(queue)
    assert group is not None
    if not isinstance(group, str) or not 0 < len(group) <= limits.NAME_CHARS_MAX:
        raise ConfigError(f"group must be a name of 1 to {limits.NAME_CHARS_MAX} characters")
    return "group", group


def limit_json(row: LimitRow) -> dict[str, Any]:
    """A limit as ``raftq limit list --json`` shows it (the window in seconds)."""
    return {
        "scope": row.scope,
        "name": row.name,
        "concurrency": row.concurrency,
        "rate": row.rate,
        "window_s": row.window_ms / 1000,
        "running": row.running,
        "pending": row.pending,
        "started_in_window": row.started_in_window,
    }


def new_key() -> str:
    """An idempotency key for a job whose caller gave none: made once, reused on every retry."""
    return "auto-" + secrets.token_hex(16)


def _queue_name(queue: object) -> str:
    if not isinstance(queue, str) or not 0 < len(queue) <= limits.NAME_CHARS_MAX:
        raise ConfigError(f"queue must be a name of 1 to {limits.NAME_CHARS_MAX} characters")
    return queue


R = TypeVar("R")


def _expect(result: Result, kind: type[R]) -> R:
    if not isinstance(result, kind):
        raise RemoteProtocolError(f"expected {kind.__name__}, the node answered {result!r}")
    return result


def _unexpected(reply: ClientReply) -> RemoteProtocolError:
    return RemoteProtocolError(f"the node answered with an unexpected {type(reply).__name__}")


def _membership_json(reply: MembershipReply) -> dict[str, Any]:
    return {
        "voters": list(reply.voters),
        "learners": list(reply.learners),
        "leader": reply.leader_id or None,
    }


def _rejection(rejected: Rejected, context: str = "") -> RaftqError:
    message = context + rejected.message
    if rejected.code == "not_found":
        return JobNotFound(message)
    if rejected.code == "lease_lost":
        return LeaseLost(message)
    if rejected.code == "full":  # admission control: the cluster holds all it may
        return Busy(message)
    return CommandRejected(message, code=rejected.code)


__all__ = ["Client", "CommandRejected", "HistoryEntry", "Job", "JobPage", "connect", "new_key"]

"""Safety checkers, run continuously while the simulation runs.

The ``CommittedLog`` collects every entry any node reports as committed, and keeps it for the
whole run, across every crash: a node that later holds something else at a committed index
(committed prefixes differ, or a committed entry disappeared) is a violation. The
``JobOracle`` replays that one committed log through its own ``JobStateMachine`` and checks the
job rules on each command as it applies: no job succeeds twice, a completion or failure with a
stale fence is never accepted, one job's leases never overlap (a new lease only after the
previous one ended, and a lease ends by expiry only once its expiry time has passed).
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

import attrs

from raftq import codec
from raftq.client.job import Job
from raftq.errors import DecodeError
from raftq.jobs.commands import (
    ClaimResult,
    Command,
    Complete,
    Done,
    Enqueue,
    Enqueued,
    EnqueueResult,
    Fail,
    Report,
    ReportResult,
    Result,
)
from raftq.jobs.job import JobState, JobView, view_of
from raftq.jobs.machine import JobStateMachine
from raftq.raft.ready import Role
from raftq.raft.types import Entry, EntryKind, HardState
from raftq.storage import hard_state as hard_state_file
from raftq.storage import record
from raftq.storage.memory_disk import MemoryDisk
from raftq.storage.wal import segment_name

JobKey = tuple[str, int, int, int, tuple[int, str, int, str, int]] | None

DIGESTS_KEPT = 4096
"""Applied index -> state digest, remembered for comparing replicas (oldest forgotten)."""


class Violation(Exception):
    """A safety or liveness property failed; the message names it."""

    def __init__(self, property_name: str, detail: str) -> None:
        super().__init__(f"{property_name}: {detail}")
        self.property_name = property_name
        self.detail = detail


@attrs.define(eq=False)
class _HeldLease:
    fence: int
    expires_ms: int


class CommittedLog:
    """Index -> (term, kind, data) of every entry seen committed anywhere."""

    def __init__(self) -> None:
        self.entries: dict[int, Entry] = {}
        self.forgotten_below = 1
        self.leaders: dict[int, str] = {}
        """Term -> the one node seen leading it."""
        self.digests: collections.OrderedDict[int, tuple[str, str]] = collections.OrderedDict()

    def observe_leader(self, term: int, node: str) -> None:
        known = self.leaders.setdefault(term, node)
        if known != node:
            raise Violation("one leader per term", f"term {term} led by {known} and {node}")

    def observe_committed(self, node: str, entry: Entry) -> None:
        assert entry.index >= self.forgotten_below, (node, entry.index, self.forgotten_below)
        known = self.entries.get(entry.index)
        if known is None:
            self.entries[entry.index] = entry
            return
        if (known.term, known.kind, known.data) != (entry.term, entry.kind, entry.data):
            raise Violation(
                "committed entries never change",
                f"{node} has term {entry.term} at committed index {entry.index}, "
                f"committed earlier with term {known.term}",
            )

    def forget_below(self, index: int) -> None:
        """Drop entries below ``index``: no node's log holds them any more (each starts after
        a snapshot past them) and the oracle has applied them, so nothing can be compared with
        them again. Keeps the record bounded by the nodes' logs, not by the run's length."""
        for old in range(self.forgotten_below, index):
            self.entries.pop(old, None)
        self.forgotten_below = max(self.forgotten_below, index)

    def observe_digest(self, source: str, applied_index: int, digest: str) -> None:
        known = self.digests.get(applied_index)
        if known is None:
            self.digests[applied_index] = (source, digest)
            while len(self.digests) > DIGESTS_KEPT:
                self.digests.popitem(last=False)
        elif known[1] != digest:
            raise Violation(
                "equal state at equal applied index",
                f"{source} and {known[0]} differ at applied index {applied_index}",
            )


def command_of(entry: Entry) -> Command | None:
    """The command ``entry`` carries, or None if its bytes are not one. The oracle and every
    rule read each committed entry in turn (``Simulation.catch_up``): it is decoded once for
    all of them (commands are frozen values, and no reader changes them)."""
    if entry is not _last_decoded[0]:
        try:
            command: Command | None = codec.decode(entry.data, Command)
        except DecodeError:
            command = None
        _last_decoded[0], _last_decoded[1] = entry, command
    decoded: Command | None = _last_decoded[1]
    return decoded


_last_decoded: list[Any] = [None, None]
"""The entry ``command_of`` decoded last, and its command."""


class JobOracle:
    """The committed log replayed, with the job rules checked on every command."""

    def __init__(self) -> None:
        self.machine = JobStateMachine()
        self.applied_index = 0
        self.twin: JobStateMachine | None = None
        """A copy restored from the oracle's own snapshot (``fork_twin``)."""
        self.twin_from = 0
        self.held: dict[str, _HeldLease] = {}
        self.succeeded: dict[str, int] = {}
        """Job id -> the index of the completion that made it succeed."""
        self.enqueued_keys: dict[str, str] = {}
        self.stale_rejected = 0
        self.commands = 0
        self.fences: dict[str, int] = {}
        """Job id -> the fence of its latest lease (each new lease's fence is higher)."""
        self.watched: dict[str, list[tuple[int, JobKey]]] = {}
        """Job id -> its versions (index where each began, key) while reads of it are judged
        (``ReadChecker``)."""

    def fork_twin(self, snapshot: bytes) -> None:
        """From here on, apply every entry to a twin as well: a machine restored from
        ``snapshot``, the oracle's state now. Both must decide every command alike. A real
        node restores only at a restart or a leader's snapshot, which may miss the moment a
        derived index (lanes, wake-ups, the ready heaps) went wrong; the twin restores at every
        digest and compares each result, so a fact that a snapshot drops or rebuilds otherwise
        shows as soon as a command reads it (the mutant ``limit_wake_stale``)."""
        self.twin = JobStateMachine.restore(snapshot)
        self.twin_from = self.applied_index

    def catch_up(self, log: CommittedLog) -> None:
        while (entry := log.entries.get(self.applied_index + 1)) is not None:
            self.apply(entry)

    def apply(self, entry: Entry) -> None:
        assert entry.index == self.applied_index + 1, (entry.index, self.applied_index)
        self.applied_index = entry.index
        if entry.kind is not EntryKind.COMMAND:
            return
        command = command_of(entry)
        if command is None:
            return  # the nodes skip it too (Applier._apply)
        stale = self._stale_reports(command)
        result = self.machine.apply(entry.index, command, entry.term)
        if self.twin is not None:
            twin_result = self.twin.apply(entry.index, command, entry.term)
            if twin_result != result:
                raise Violation(
                    "a restored state decides as the state it was saved from",
                    f"{type(command).__name__} at index {entry.index}: {result!r} here, "
                    f"{twin_result!r} in a copy restored from the snapshot of index "
                    f"{self.twin_from}",
                )
        self.commands += 1
        self._check(entry.index, command, result)
        self._check_stale_reports(entry.index, stale)
        for job_id, versions in self.watched.items():
            job = self.machine.jobs.get(job_id)
            key = job_key(view_of(job) if job is not None else None)
            if key != versions[-1][1]:
                versions.append((entry.index, key))

    def _stale_reports(self, command: Command) -> list[tuple[str, int, int]]:
        """(job id, fence, history length) of each report in ``command`` whose fence is not
        the lease the job holds: applying it must record nothing under that fence."""
        reports: list[tuple[str, int]] = []
        if isinstance(command, Complete | Fail):
            reports.append((command.job_id, command.fence))
        elif isinstance(command, Report):
            reports += [(outcome.job_id, outcome.fence) for outcome in command.outcomes]
        stale = []
        for job_id, fence in reports:
            held = self.held.get(job_id)
            job = self.machine.jobs.get(job_id)
            if job is not None and (held is None or held.fence != fence):
                stale.append((job_id, fence, len(view_of(job).history)))
        return stale

    def _check_stale_reports(self, index: int, stale: list[tuple[str, int, int]]) -> None:
        for job_id, fence, length in stale:
            job = self.machine.jobs.get(job_id)
            new_events = view_of(job).history[length:] if job is not None else ()
            if any(event.fence == fence for event in new_events):
                raise Violation(
                    "a stale fence changes nothing",
                    f"index {index}: a report of {job_id} with stale fence {fence} recorded "
                    f"{[event.event for event in new_events]}",
                )

    def _check(self, index: int, command: Command, result: Result) -> None:
        now_ms = self.machine.now_ms
        reports: list[tuple[str, int, Result]] = []
        if isinstance(command, Complete | Fail):
            reports.append((command.job_id, command.fence, result))
        if isinstance(command, Report) and isinstance(result, ReportResult):
            reports += [
                (outcome.job_id, outcome.fence, settled)
                for outcome, settled in zip(command.outcomes, result.outcomes, strict=True)
            ]
        settled_here: set[str] = set()
        for job_id, fence, settled in reports:
            if not isinstance(settled, Done):
                continue
            held = self.held.get(job_id)
            if held is None or held.fence != fence or job_id in settled_here:
                raise Violation(
                    "no stale fence accepted",
                    f"index {index}: {type(command).__name__} of {job_id} with fence "
                    f"{fence} accepted; the lease held is {held.fence if held else 'none'}",
                )
            settled_here.add(job_id)
        touched = list(self.held)
        if isinstance(result, ClaimResult):
            touched += [lease.job_id for lease in result.leases]
        touched += [job_id for job_id, _, _ in reports]
        if isinstance(command, Enqueue) and isinstance(result, EnqueueResult):
            for spec, enqueued in zip(command.jobs, result.jobs, strict=True):
                if isinstance(enqueued, Enqueued) and spec.key:
                    self._check_key(index, spec.key, enqueued.job_id)
        for job_id in dict.fromkeys(touched):
            self._check_job(index, job_id, now_ms, type(command).__name__)

    def _check_key(self, index: int, key: str, job_id: str) -> None:
        known = self.enqueued_keys.setdefault(key, job_id)
        if known != job_id:
            raise Violation(
                "idempotency keys dedupe",
                f"index {index}: key {key} gave job {job_id}, earlier {known}",
            )

    def _check_job(self, index: int, job_id: str, now_ms: int, command: str) -> None:
        job = self.machine.jobs.get(job_id)
        held = self.held.get(job_id)
        running = job is not None and job.state is JobState.RUNNING and job.run is not None
        fence = job.run.fence if running and job is not None and job.run is not None else 0
        if held is not None and held.fence != fence:
            # The lease ended in this command.
            if command in ("ExpireLeases", "Claim") and now_ms < held.expires_ms:
                raise Violation(
                    "leases end only by report, cancel or expiry",
                    f"index {index}: lease {held.fence} of {job_id} ended by {command} at "
                    f"{now_ms} ms, before it expires at {held.expires_ms} ms",
                )
            del self.held[job_id]
            held = None
        if running and job is not None and job.run is not None:
            if held is None:
                previous = self.fences.get(job_id, 0)
                if not previous < fence <= index:
                    raise Violation(
                        "fences increase",
                        f"index {index}: {job_id} leased with fence {fence} after {previous}",
                    )
                self.fences[job_id] = fence
                self.held[job_id] = _HeldLease(fence=fence, expires_ms=job.run.lease_expires_ms)
            else:
                held.expires_ms = job.run.lease_expires_ms
        if job is not None and job.state is JobState.SUCCEEDED and job_id not in self.succeeded:
            self.succeeded[job_id] = index
        elif job is not None and job_id in self.succeeded and job.state is not JobState.SUCCEEDED:
            raise Violation(
                "no job succeeds twice",
                f"index {index}: {job_id} succeeded at {self.succeeded[job_id]}, "
                f"now {job.state.value} after {command}",
            )

    def final(self, job_id: str) -> bool:
        job = self.machine.jobs.get(job_id)
        return job is not None and job.state in (
            JobState.SUCCEEDED,
            JobState.DEAD,
            JobState.CANCELLED,
        )


# --- what the disks hold, what reads return, what commit indexes do ---------------------------


def job_key(job: JobView | Job | None) -> JobKey:
    """One version of a job, as a read shows it (None: no such job). The history only grows,
    so two versions of one job never have equal keys."""
    if job is None:
        return None
    last = job.history[-1]
    return (
        job.state,
        job.attempts,
        job.run_at_ms,
        len(job.history),
        (last.at_ms, last.event, last.attempt, last.node, last.fence),
    )


def enqueue_index(job_id: str) -> int:
    """The log index of the enqueue that made ``job_id`` (``ids.derived_job_id``)."""
    return int(job_id[1:].partition("-")[0])


class DurableView:
    """What one node's disk would give back after a power cut now: the SimDisk's durable bytes
    read directly, never the node's own bookkeeping. Each WAL segment is scanned once, then
    only as its durable part grows."""

    def __init__(self) -> None:
        self._scanned: dict[str, tuple[int, list[int], int]] = {}
        """Segment path -> (id of its inode, record offsets, bytes scanned)."""
        self._hard_state: tuple[tuple[int, int, bool], HardState | None] | None = None
        """The last hard state read, with the (inode, synced length) it was read from: the
        file is replaced whole (a new inode) at every save, so that names its content."""

    def hard_state(self, disk: MemoryDisk) -> HardState | None:
        inode = disk._durable_files.get(hard_state_file.PATH)
        if inode is None:
            return None
        version = (id(inode), inode.synced_length, inode.truncated_from is None)
        if self._hard_state is not None and self._hard_state[0] == version:
            return self._hard_state[1]
        state = self._read_hard_state(inode.durable())
        self._hard_state = (version, state)
        return state

    @staticmethod
    def _read_hard_state(data: bytes) -> HardState | None:
        records = list(record.scan(data[len(hard_state_file.MAGIC) :], []))
        if not data.startswith(hard_state_file.MAGIC) or not records:
            return None
        return codec.decode(bytes(records[0][1]), HardState)

    def holds(self, disk: MemoryDisk, index: int, term: int) -> bool:
        """Whether the disk holds the entry (``index``, ``term``) durably, or a durable
        snapshot past it. A miss is checked again from a fresh scan: a segment truncated and
        rewritten in place may leave the remembered record offsets out of date."""
        if self.term_at(disk, index) in (term, -1):
            return True
        self._scanned.clear()
        return self.term_at(disk, index) in (term, -1)

    def term_at(self, disk: MemoryDisk, index: int) -> int | None:
        """The term of the durable entry at ``index``; -1 if a durable snapshot covers it;
        None if the disk does not hold it durably."""
        files = disk._durable_files
        for path in files:
            if path.startswith("snapshots/") and path.endswith(".snap"):
                name = path.rpartition("/")[2].removesuffix(".snap")
                if name.partition("-")[2].isdigit() and int(name.partition("-")[2]) >= index:
                    return -1
        firsts = [
            int(path[4:].removesuffix(".log"))
            for path in files
            if path.startswith("wal/") and path.endswith(".log")
        ]
        starts = [first for first in firsts if first <= index]
        if not starts:
            return None
        path = f"wal/{segment_name(max(starts))}"
        inode = files[path]
        data = inode.durable()
        offsets = self._offsets(path, id(inode), data)
        position = index - max(starts)
        if position >= len(offsets):
            return None
        for _, body in record.scan(data[offsets[position] :], []):
            entry: Entry = codec.decode(bytes(body), Entry)
            return entry.term if entry.index == index else None
        return None  # the remembered offset is out of date (``holds`` scans afresh)

    def _offsets(self, path: str, inode_id: int, data: bytes) -> list[int]:
        known, offsets, scanned = self._scanned.get(path, (inode_id, [], 0))
        if known != inode_id or scanned > len(data):
            offsets, scanned = [], 0  # replaced, truncated, or cut back by a crash
        ends: list[record.ScanEnd] = []
        for offset, _ in record.scan(data[scanned:], ends):
            offsets.append(scanned + offset)
        scanned += ends[0].offset if ends else 0
        self._scanned[path] = (inode_id, offsets, scanned)
        return offsets


@attrs.define(eq=False)
class _Read:
    node: str
    job_id: str
    floor: int
    """Every enqueue acknowledged before the read was sent is at or below this index."""
    ceiling: int = 0
    """The highest commit index any node had when the answer came."""
    key: JobKey = None
    answered: bool = False


class ReadChecker:
    """Linearizable reads: a read returns a version of the job that was current at some index
    between ``floor`` (every write acknowledged before it was sent) and the commit index when
    it was answered; so never a version already replaced at ``floor``.

    The oracle records the versions of the jobs being read as it applies the committed log
    (``JobOracle.watched``); a read is judged once the oracle has applied past its ceiling."""

    def __init__(self, oracle: JobOracle) -> None:
        self.oracle = oracle
        self.reads: list[_Read] = []
        self.checked = 0

    def sent(self, node: str, job_id: str, floor: int) -> _Read:
        read = _Read(node=node, job_id=job_id, floor=floor)
        oracle = self.oracle
        if job_id not in oracle.watched:
            current = oracle.machine.jobs.get(job_id)
            key = job_key(view_of(current) if current is not None else None)
            oracle.watched[job_id] = [(oracle.applied_index, key)]
        self.reads.append(read)
        return read

    def answered(self, read: _Read, key: JobKey, ceiling: int) -> None:
        read.key, read.ceiling, read.answered = key, ceiling, True

    def abandoned(self, read: _Read) -> None:
        self.reads.remove(read)
        self._unwatch(read.job_id)

    def check(self) -> None:
        applied = self.oracle.applied_index
        for read in [r for r in self.reads if r.answered and applied >= max(r.floor, r.ceiling)]:
            self.reads.remove(read)
            self._judge(read)
            self._unwatch(read.job_id)

    def _judge(self, read: _Read) -> None:
        self.checked += 1
        versions = self.oracle.watched[read.job_id]
        watched_from = versions[0][0]
        for number, (index, key) in enumerate(versions):
            replaced_at = versions[number + 1][0] if number + 1 < len(versions) else None
            if key == read.key and index <= read.ceiling:
                if replaced_at is not None and replaced_at <= read.floor:
                    break  # a version replaced before the read was sent: stale
                return
        else:
            # A version from before the oracle watched the job: undecidable, except "no such
            # job" for a job enqueued at or below the floor (it exists from its enqueue on;
            # a purge after that would be among the versions).
            missing_since_floor = read.key is None and enqueue_index(read.job_id) <= read.floor
            if watched_from > read.floor and not missing_since_floor:
                return
        raise Violation(
            "linearizable reads",
            f"a read of {read.job_id} through {read.node} returned {read.key}, a version "
            f"already replaced at index {read.floor} (enqueues up to there were acknowledged "
            f"before the read was sent); versions (index, key): {versions}",
        )

    def _unwatch(self, job_id: str) -> None:
        if not any(read.job_id == job_id for read in self.reads):
            self.oracle.watched.pop(job_id, None)


DROPPED_ENTRIES_KEPT = 256
"""Entries a node dropped from its log, remembered until some node commits that index: a
legitimate truncation drops only entries that never commit, so few stay for long."""


class StepWatch:
    """Every message a node's Raft core steps, seen from outside: the commit index must not
    go back in any step (a sample every ``CHECK_INTERVAL_S`` missed a commit index that fell
    back for a few milliseconds, until the next append), and an entry the node drops from
    its log (its last index falls) is remembered: if that very entry (index and term) is
    committed anywhere, the node threw away a committed entry, which only a conflicting,
    never-committed suffix may be (Raft 5.3; figure 13 step 6 keeps the log after a snapshot
    that it already holds)."""

    def __init__(self) -> None:
        self.cores: dict[str, object] = {}
        """Node -> the core whose ``step`` is wrapped (a restart makes a new one)."""
        self.regressions: list[str] = []
        self.dropped: collections.OrderedDict[tuple[str, int], int] = collections.OrderedDict()
        """(node, index) -> term of the last entry a node's log held before it shrank."""

    def watch(self, name: str, core: Any) -> None:
        if self.cores.get(name) is core:
            return
        self.cores[name] = core
        step, log = core.step, core.log

        def watched_step(message: object) -> None:
            committed, last = log.committed, log.last_index()
            last_term = log.term(last)
            step(message)
            if log.committed < committed:
                self.regressions.append(
                    f"{name} had commit index {committed}, {log.committed} after a "
                    f"{type(message).__name__}"
                )
            if log.last_index() < last:
                self.dropped[(name, last)] = last_term
                while len(self.dropped) > DROPPED_ENTRIES_KEPT:
                    self.dropped.popitem(last=False)

        core.step = watched_step

    def check(self, logs: Sequence[Any]) -> None:
        """``logs``: the Raft logs of the running nodes."""
        if self.regressions:
            raise Violation("commit index never goes back", self.regressions[0])
        for (name, index), term in list(self.dropped.items()):
            for log in logs:
                if not log.first_index() <= index <= log.committed:
                    continue
                if log.term(index) == term:
                    raise Violation(
                        "committed entries are never dropped",
                        f"{name} dropped entry {index} (term {term}) from its log; it is committed",
                    )
                del self.dropped[(name, index)]  # a conflicting entry: rightly dropped
                break


class NodeChecks:
    """Per node, against its disk: every acknowledged enqueue is durable on a majority when
    acknowledged, and no node's commit index ever goes back (within a process, nor across a
    restart below the commit index it had saved durably; and, through ``StepWatch``, in
    no single step)."""

    def __init__(self) -> None:
        self.steps = StepWatch()
        self.views: dict[str, DurableView] = {}
        self.commits: dict[str, tuple[int, int, int]] = {}
        """Node -> (id of its disk, process start count, commit index last seen)."""
        self.durable_commits: dict[str, tuple[int, int]] = {}
        """Node -> (id of its disk, highest commit index seen saved durably on it)."""
        self.acks_checked = 0

    def acknowledged(self, nodes: Sequence[Any], job_id: str) -> None:
        """An enqueue was just acknowledged: its entry must be durable on a majority of the
        nodes (counted over every node's disk, running or not). The majority is that of the
        configuration that committed it: the leader's, or the one before it, which may have
        had one voter fewer (an entry committed just before a promotion applied); so the
        quorum of one voter fewer than the leader's, counted over the leader's voters only (a
        learner's copy does not protect an entry: the voters elect without it). A disk the
        simulator rotted on purpose counts as holding it (its durable bytes were destroyed
        after the fact)."""
        index = enqueue_index(job_id)
        logs = [simnode.node.raft.core.log for simnode in nodes if simnode.node is not None]
        terms = [log.term(index) for log in logs if log.first_index() <= index <= log.committed]
        leaders = [
            simnode.node.raft.core
            for simnode in nodes
            if simnode.node is not None and simnode.node.raft.core.role is Role.LEADER
        ]
        if not terms or not leaders:
            return
        term = terms[0]
        voters = max(leaders, key=lambda core: core.term).membership.voters
        quorum = max(1, (len(voters) - 1) // 2 + 1)
        holding = []
        for simnode in nodes:
            view = self.views.setdefault(simnode.id, DurableView())
            voter_holds = simnode.id in voters and view.holds(simnode.disk.memory, index, term)
            if simnode.rotten or voter_holds:
                holding.append(simnode.id)
        self.acks_checked += 1
        if len(holding) < quorum:
            raise Violation(
                "acknowledged enqueues are durable on a majority",
                f"{job_id} (index {index}, term {term}) acknowledged while durable only on "
                f"{holding or 'no node'} (quorum {quorum})",
            )

    def check(self, nodes: Sequence[Any]) -> None:
        logs = []
        for simnode in nodes:
            if simnode.node is not None:
                self.steps.watch(simnode.id, simnode.node.raft.core)
                logs.append(simnode.node.raft.core.log)
        self.steps.check(logs)
        for simnode in nodes:
            disk_id = id(simnode.disk)
            known_disk, saved = self.durable_commits.get(simnode.id, (disk_id, 0))
            if known_disk != disk_id:
                saved = 0  # wiped and started empty (an operator's repair)
            node = simnode.node
            if node is None:
                continue
            commit = node.raft.core.log.committed
            last_disk, last_start, last_commit = self.commits.get(
                simnode.id, (disk_id, simnode.starts, 0)
            )
            if last_disk == disk_id and last_start == simnode.starts and commit < last_commit:
                raise Violation(
                    "commit index never goes back",
                    f"{simnode.id} had commit index {last_commit}, now {commit}",
                )
            if last_start != simnode.starts and commit < saved:
                raise Violation(
                    "commit index never goes back",
                    f"{simnode.id} restarted at commit index {commit}, below the {saved} "
                    "it had saved durably",
                )
            self.commits[simnode.id] = (disk_id, simnode.starts, commit)
            hard_state = self.views.setdefault(simnode.id, DurableView()).hard_state(
                simnode.disk.memory
            )
            durable = hard_state.commit if hard_state is not None else 0
            self.durable_commits[simnode.id] = (disk_id, max(saved, durable))

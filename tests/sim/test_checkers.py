"""The simulator's checkers catch what they are for. Each planted bug (patched in for one run,
never in the product) must make its checker fire on a fixed seed; the durable view is also
checked directly against a disk whose tail is not synced. Patches are undone after each test
(pytest's monkeypatch)."""

from __future__ import annotations

import itertools

import pytest

from raftq import codec
from raftq.ids import derived_job_id
from raftq.jobs import machine
from raftq.jobs.commands import Cancel, Claim, Enqueue
from raftq.jobs.machine import JobStateMachine
from raftq.node.raft_peer import RaftPeer
from raftq.node.waiters import Waiter
from raftq.raft.core import RaftCore
from raftq.raft.ready import Role
from raftq.raft.types import Entry
from raftq.storage import record
from raftq.storage.memory_disk import MemoryDisk
from raftq.storage.wal import segment_name
from sim.checkers import DurableView, JobOracle, ReadChecker, StepWatch, Violation, job_key
from sim.disk import SimFile
from sim.runner import Report, run_seed
from tests.sim.committed_log import CommittedLog
from tests.test_jobs_commands import spec as job_spec


def violated(report: Report) -> list[str]:
    return [violation.split(":")[0] for violation in report.violations]


def test_stale_follower_reads_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted: a follower answers a read at its own commit index, without asking the leader
    (no ReadIndex). The read checker sees a job acknowledged before the read missing."""
    original = RaftPeer._start_read

    def read_locally(self: RaftPeer, waiter: Waiter) -> None:
        if self.core.role is not Role.LEADER:
            waiter.resolve(self.core.log.committed)
        else:
            original(self, waiter)

    monkeypatch.setattr(RaftPeer, "_start_read", read_locally)
    # A seed that partitions (swarm testing: a seed runs only the fault kinds it draws).
    report = run_seed(100, sim_seconds=10.0, force=("partition",))
    assert violated(report) == ["linearizable reads"]


def test_acknowledging_before_the_fsync_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted: fdatasync does nothing (so nothing is ever durable). The first acknowledged
    enqueue is found on no disk's durable bytes."""

    async def no_sync(self: object) -> None:
        return None

    monkeypatch.setattr(SimFile, "fdatasync", no_sync)
    report = run_seed(11, sim_seconds=5.0)
    assert violated(report)[:1] == ["acknowledged enqueues are durable on a majority"]


def test_a_restart_below_the_saved_commit_index_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted: a restarted core forgets part of its commit index (it re-learns it from the
    leader, but a node must never go back on what it saved as committed)."""
    original = RaftCore.__init__

    def forgetful(self: RaftCore, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        if self.log.committed > self.log.first_index():
            self.log.committed -= 1

    monkeypatch.setattr(RaftCore, "__init__", forgetful)
    # A seed that crashes nodes (swarm testing: a seed runs only the fault kinds it draws).
    report = run_seed(100, sim_seconds=10.0, force=("crash",))
    assert "commit index never goes back" in violated(report)


def test_reused_fences_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted: every lease gets fence 1. The oracle (which replays the same machine) sees a
    job leased again under a fence that did not increase."""
    original = JobStateMachine._claim

    def constant_fences(self: JobStateMachine, index: int, command: Claim) -> object:
        result = original(self, index, command)
        for lease in getattr(result, "leases", ()):
            run = self.jobs[lease.job_id].run
            assert run is not None
            run.fence = 1
        return result

    monkeypatch.setitem(machine._HANDLERS, Claim, constant_fences)
    assert violated(run_seed(8, sim_seconds=10.0))[:1] == ["fences increase"]


def test_replicas_that_diverge_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted: applying an enqueue depends on something other than the log (which process
    applies it), so replicas at the same applied index hold different states."""
    original = JobStateMachine._enqueue
    calls = itertools.count()

    def nondeterministic(self: JobStateMachine, index: int, command: Enqueue) -> object:
        result = original(self, index, command)
        job = self.jobs.get(derived_job_id(index, 0))
        if job is not None and next(calls) % 2:
            job.timeout_ms += 1  # differs between the machines applying the same entry
        return result

    monkeypatch.setitem(machine._HANDLERS, Enqueue, nondeterministic)
    assert violated(run_seed(11, sim_seconds=5.0))[:1] == ["equal state at equal applied index"]


# --- the pieces, directly -----------------------------------------------------------------------


async def test_the_durable_view_sees_synced_entries_only() -> None:
    disk = MemoryDisk()
    await disk.make_directory("wal")
    path = f"wal/{segment_name(1)}"
    file = await disk.open(path)
    entries = [Entry(index=index, term=2, data=b"x" * index) for index in range(1, 6)]
    frames = [record.frame(codec.encode(entry, Entry)) for entry in entries]
    await file.write(b"".join(frames[:3]), sync=False)
    await file.fdatasync()
    await disk.fsync_directory("wal")
    await file.write(b"".join(frames[3:]), sync=False)
    view = DurableView()
    assert [view.holds(disk, index, 2) for index in range(1, 6)] == [True] * 3 + [False] * 2
    assert not view.holds(disk, 2, 3)  # another term at that index
    await file.fdatasync()
    assert view.holds(disk, 5, 2)


def test_a_read_older_than_an_acknowledged_write_is_a_violation() -> None:
    oracle = JobOracle()
    reads = ReadChecker(oracle)
    oracle.applied_index = 10
    read = reads.sent("n2", "j5-0", floor=12)  # no such job at 10: version None from there
    oracle.watched["j5-0"].append((12, ("pending", 0, 0, 1, (0, "enqueued", 0, "", 0))))
    reads.answered(read, None, ceiling=12)
    oracle.applied_index = 12
    with pytest.raises(Violation, match="linearizable reads"):
        reads.check()


def test_a_read_of_the_version_current_at_its_floor_passes() -> None:
    oracle = JobOracle()
    reads = ReadChecker(oracle)
    oracle.applied_index = 10
    read = reads.sent("n3", "j5-0", floor=12)
    version = ("pending", 0, 0, 1, (0, "enqueued", 0, "", 0))
    oracle.watched["j5-0"].append((11, version))
    oracle.watched["j5-0"].append((14, ("running", 1, 0, 2, (5, "claimed", 1, "n1", 14))))
    reads.answered(read, version, ceiling=13)
    oracle.applied_index = 14
    reads.check()
    assert reads.checked == 1
    assert "j5-0" not in oracle.watched
    assert job_key(None) is None


def test_a_job_missing_from_a_read_after_its_enqueue_was_applied_is_a_violation() -> None:
    """The oracle had applied the enqueue (index 12) before the read was sent, so the versions
    it watched start after it; "no such job" is still a version older than the floor."""
    oracle = JobOracle()
    reads = ReadChecker(oracle)
    oracle.applied_index = 14
    read = reads.sent("n1", "j12-0", floor=12)
    oracle.watched["j12-0"] = [(14, ("pending", 0, 0, 1, (0, "enqueued", 0, "", 0)))]
    reads.answered(read, None, ceiling=14)
    with pytest.raises(Violation, match="linearizable reads"):
        reads.check()


class _Log:
    """What ``StepWatch`` reads of a Raft log: a list of terms, a commit index."""

    def __init__(self, terms: list[int], committed: int) -> None:
        self.terms, self.committed = terms, committed

    def first_index(self) -> int:
        return 1

    def last_index(self) -> int:
        return len(self.terms)

    def term(self, index: int) -> int:
        return self.terms[index - 1]


class _Core:
    def __init__(self, log: _Log) -> None:
        self.log = log
        self.next_step: tuple[list[int], int] | None = None

    def step(self, message: object) -> None:
        assert self.next_step is not None
        self.log.terms, self.log.committed = self.next_step


def test_a_commit_index_that_falls_back_within_one_step_is_caught() -> None:
    """Between two checks the commit index fell from 5 to 3 and rose back to 5: the checks
    every 20 ms saw 5 both times; the watch on every step sees it."""
    watch, core = StepWatch(), _Core(_Log([1] * 6, committed=5))
    watch.watch("n1", core)
    for terms, committed in (([1] * 6, 3), ([1] * 6, 5)):
        core.next_step = (terms, committed)
        core.step("Heartbeat")
    with pytest.raises(Violation, match="commit index never goes back: n1 had commit index 5"):
        watch.check([])


def test_a_dropped_entry_is_a_violation_only_once_it_is_seen_committed() -> None:
    """n1 drops entries 5-6 (term 2). Entry 6 of term 3 committed elsewhere: a conflicting
    suffix, rightly dropped. Entry 6 of term 2 committed elsewhere: a committed entry lost."""
    for committed_term, caught in ((3, False), (2, True)):
        watch, core = StepWatch(), _Core(_Log([1, 1, 1, 1, 2, 2], committed=3))
        watch.watch("n1", core)
        core.next_step = ([1, 1, 1, 1], 3)
        core.step("InstallSnapshot")
        elsewhere = _Log([1, 1, 1, 1, 2, committed_term], committed=6)
        if caught:
            with pytest.raises(Violation, match="committed entries are never dropped: n1"):
                watch.check([elsewhere])
        else:
            watch.check([elsewhere])
            assert not watch.dropped


def test_a_crash_during_a_snapshot_install_keeps_what_the_disk_holds_comparable() -> None:
    """The committed-entry record forgets entries below what every node holds; it took the
    first index of each node's log in memory, which a leader's snapshot being installed moves
    ahead of the disk. Seed 1 with ``slow_snapshot`` (simspeed14) crashes n3 while an install
    is slow: n3 came back from its disk with its older log, and the checker failed on its own
    assertion ("simulator error: AssertionError: ('n3', 122, 738)") instead of comparing n3's
    entries. Seen failing before the fix."""
    report = run_seed(1, sim_seconds=20.0, force=("slow_snapshot",))
    assert report.faults.slow_snapshots > 0
    assert report.verdict == "pass", report.violations


class _NoRules:
    def before(self, entry: Entry, oracle: JobOracle) -> None:
        pass

    def observe(self, entry: Entry, oracle: JobOracle) -> None:
        pass


def test_a_restore_that_decides_otherwise_is_caught_by_the_twin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Planted: a restore that loses the ready queues (an empty machine). Nothing differs until
    a command reads them: the claim after the fork hands out the job here, nothing in the twin."""
    log = CommittedLog(_NoRules())
    spec = job_spec(type="t", timeout_ms=1_000)
    log.commit(Enqueue(now_ms=0, jobs=(spec, spec)))
    log.commit(Claim(now_ms=10, claimer="w1", hold_ms=500))
    log.oracle.fork_twin(log.oracle.machine.snapshot())
    log.commit(Claim(now_ms=20, claimer="w1", hold_ms=500))  # the faithful twin agrees
    monkeypatch.setattr(JobStateMachine, "restore", classmethod(lambda cls, data: cls()))
    log.oracle.fork_twin(log.oracle.machine.snapshot())
    log.commit(Enqueue(now_ms=30, jobs=(spec,)))  # applied to both: no read of the old state
    with pytest.raises(Violation, match="a restored state decides as the state it was saved"):
        log.commit(Cancel(now_ms=40, job_id="j1-0"))

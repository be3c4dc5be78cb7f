"""The job state machine's snapshot layout and restore (``raftq.jobs.snapshot``) and the job
state transition table (``raftq.jobs.job.TRANSITIONS``), beyond the behavioural round trips in
test_jobs_commands.py: a bug of ours during a restore is raised as itself, never reported as a
corrupt snapshot; a restore in slices gives the same machine as one at once; every move of
the state machine is in the table, and one outside it raises."""

from __future__ import annotations

from typing import Any

import pytest

from raftq import codec, limits
from raftq.errors import DecodeError, LocalProtocolError
from raftq.jobs import snapshot as snapshot_module
from raftq.jobs.commands import Cancel, Enqueue, ExpireLeases, Purge, Retry, RetryDead
from raftq.jobs.job import TRANSITIONS, Job, JobRun, JobState
from raftq.jobs.machine import JobStateMachine
from tests.test_jobs_commands import EVERYTHING, SCENARIO, Log, spec


def _scenario_snapshot() -> bytes:
    log = Log()
    for command in SCENARIO:
        log.apply(command)
    return log.machine.snapshot()


def test_a_bug_while_restoring_is_raised_as_itself_not_as_a_corrupt_snapshot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An assertion of ours failing while a snapshot is rebuilt is our bug: reporting it as a
    ``DecodeError`` (what a damaged file gives) would send an operator after the disk."""
    snapshot = _scenario_snapshot()

    def planted_bug(run: JobRun) -> None:
        raise AssertionError("planted bug")

    monkeypatch.setattr(JobRun, "__init__", planted_bug)
    with pytest.raises(AssertionError, match="planted bug"):
        JobStateMachine.restore(snapshot)


def test_expiring_leases_leaves_finished_jobs_finished() -> None:
    """A lease's heap entry outlives the lease (lazy deletion): when the expiry of a job that
    already succeeded surfaces, the job stays succeeded."""
    log = Log()
    log.enqueue(spec(id="done", timeout_ms=1_000), spec(id="late", timeout_ms=1_000))
    done, late = log.claim(max_jobs=2)
    log.complete(done, now_ms=10)
    assert log.count(ExpireLeases(now_ms=5_000)) == 1
    view = log.machine.get("done")
    assert view is not None
    assert view.state == "succeeded"
    view = log.machine.get(late.job_id)
    assert view is not None
    assert view.state == "failed"


@pytest.mark.parametrize("retry", ["retry", "retry_dead"])
def test_a_job_finished_twice_in_one_millisecond_is_in_the_finish_order_once(retry: str) -> None:
    """A job that dies, is retried and dies again within one millisecond of the leader's
    clock: the replica that applied it all, and one restored from a snapshot taken while it
    waited for its second run, hold the same state, bit for bit (a sweep's seed 930021 found
    them differing: the first death stayed in the live finish order next to the second; the
    seed no longer reaches that case since the #17 workloads changed every run)."""
    now_ms = 1_000
    log = Log()
    log.enqueue(spec(id="twice", max_attempts=1), spec(id="other", max_attempts=1), now_ms=now_ms)
    log.fail(log.claim_one(now_ms=now_ms), now_ms=now_ms, retryable=False)
    if retry == "retry":
        log.single(Retry(now_ms=now_ms, job_id="twice"))
    else:
        assert log.count(RetryDead(now_ms=now_ms, max_jobs=1)) == 1
    between = Log(JobStateMachine.restore(log.machine.snapshot()), index=log.index)
    for replica in (log, between):
        replica.fail(replica.claim_one(now_ms=now_ms), now_ms=now_ms, retryable=False)
        replica.fail(replica.claim_one(now_ms=now_ms), now_ms=now_ms, retryable=False)
    assert log.machine.snapshot() == between.machine.snapshot()
    assert log.count(Purge(now_ms=now_ms + 1, before_ms=now_ms + 1)) == 2
    assert log.machine.snapshot() == JobStateMachine.restore(log.machine.snapshot()).snapshot()


# --- earlier layouts ---------------------------------------------------------------------------


def version_4_snapshot(machine: JobStateMachine) -> bytes:
    """The layout raftq wrote before version 5 (one CBOR item per job), written here from a
    machine, so that the readers of versions 1 to 4 are tested on the states they held."""

    def row(job: Job) -> list[Any]:
        run = job.run
        run_row = None
        if run is not None:
            run_row = [
                run.fence,
                run.lease_expires_ms,
                run.claimer,
                run.result,
                run.error,
                run.finished_ms,
                run.cancel_requested,
                [list(event) for event in run.history],
            ]
        return [
            job.id,
            job.type,
            job.queue,
            job.priority,
            job.payload,
            job.state.value,
            job.attempts,
            job.max_attempts,
            job.timeout_ms,
            job.run_at_ms,
            job.enqueued_ms,
            job.seq,
            job.ready,
            run_row,
        ]

    dead, finished, keys = machine.snapshot_orders()
    header = [
        4,
        machine.now_ms,
        machine.next_seq,
        list(machine.paused),
        list(machine.names),
        len(machine.jobs),
    ]
    tail = [
        dead,
        [[finished_ms, job.id] for finished_ms, job in finished],
        [list(key) for key in keys],
    ]
    return codec.encode_plain_sequence([header, *map(row, machine.jobs.values()), tail])


def _scenario_log() -> Log:
    log = Log()
    for command in SCENARIO:
        log.apply(command)
    return log


def test_restore_reads_a_version_4_snapshot() -> None:
    log = _scenario_log()
    restored = JobStateMachine.restore(version_4_snapshot(log.machine))
    assert restored.digest() == log.machine.digest()
    assert restored.snapshot() == log.machine.snapshot()  # written back as the latest version


def test_restore_reads_a_version_3_snapshot() -> None:
    """Version 3 history events have seven items (no error): read with no error, and held
    bytes recounted without one."""
    log = _scenario_log()
    header, *rows, tail = codec.decode_plain_sequence(version_4_snapshot(log.machine))
    errors = [event[7] for row in rows if row[-1] is not None for event in row[-1][-1]]
    assert any(errors)  # SCENARIO fails attempts: version 4 writes their errors
    for row in rows:
        if row[-1] is not None:
            row[-1][-1] = [event[:7] for event in row[-1][-1]]
    version_3 = codec.encode_plain_sequence([[3, *header[1:]], *rows, tail])
    restored = JobStateMachine.restore(version_3)
    views = restored.list_jobs(limit=EVERYTHING)
    assert {event.error for job in views for event in job.history} == {""}
    assert restored.held_bytes == log.machine.held_bytes - sum(map(len, errors))
    expected = log.machine.list_jobs(limit=EVERYTHING)
    assert [(job.id, job.state, job.error) for job in views] == [
        (job.id, job.state, job.error) for job in expected
    ]


def test_restore_reads_a_version_1_snapshot() -> None:
    """Version 1 (one CBOR array: ``[1, now_ms, next_seq, paused, rows, dead, finished, keys,
    names]``) is what nodes wrote before version 2: a data directory from then still starts."""
    log = _scenario_log()
    header, *rows, tail = codec.decode_plain_sequence(version_4_snapshot(log.machine))
    _version, now_ms, next_seq, paused, names, job_count = header
    assert len(rows) == job_count
    dead, finished, keys = tail
    version_1 = codec.encode_plain_sequence(
        [[1, now_ms, next_seq, paused, rows, dead, finished, keys, names]]
    )
    restored = JobStateMachine.restore(version_1)
    assert restored.digest() == log.machine.digest()
    assert restored.snapshot() == log.machine.snapshot()  # written back as the latest version


def test_restore_reads_a_version_2_snapshot() -> None:
    """Version 2 history events have five items (no index, no term): read as index 0."""
    log = _scenario_log()
    header, *rows, tail = codec.decode_plain_sequence(version_4_snapshot(log.machine))
    assert header[0] == 4
    for row in rows:
        run = row[-1]
        if run is not None:
            run[-1] = [event[:5] for event in run[-1]]
    version_2 = codec.encode_plain_sequence([[2, *header[1:]], *rows, tail])
    restored = JobStateMachine.restore(version_2)
    views = restored.list_jobs(limit=EVERYTHING)
    assert [job.id for job in views] == [job.id for job in log.machine.list_jobs(limit=EVERYTHING)]
    events = [event for job in views for event in job.history]
    assert events
    assert {(event.index, event.term) for event in events} == {(0, 0)}


def test_an_unknown_version_is_refused_by_number() -> None:
    data = codec.encode_plain_sequence([[99, 0, 1, [], [], 0]])
    with pytest.raises(DecodeError, match="version 99; this raftq reads 1 to 6"):
        JobStateMachine.restore(data)


# --- version 5: columns, slices ------------------------------------------------------------------


def _many_jobs(count: int) -> Log:
    """Jobs of two queues and three types, some delayed, some claimed, failed or finished."""
    log = Log()
    specs = [
        spec(
            queue=f"q{n % 2}",
            type=f"t{n % 3}",
            priority=n % 4,
            delay_ms=(n % 5) * 1_000,
            key=f"key-{n}" if n % 7 else "",
            payload=b"x" * (n % 50),
        )
        for n in range(count)
    ]
    for start in range(0, count, 500):
        log.enqueue(*specs[start : start + 500], now_ms=start)
    leases = log.claim(now_ms=count, max_jobs=min(count // 3, limits.CLAIM_JOBS_MAX))
    for number, lease in enumerate(leases):
        if number % 3 == 0:
            log.complete(lease, now_ms=count + 1)
        elif number % 3 == 1:
            log.fail(lease, now_ms=count + 1, retryable=number % 2 == 0)
    return log


def test_a_restore_in_slices_gives_the_same_machine_as_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(limits, "RESTORE_SLICE_JOBS", 100)  # written and read in chunks of 100
    log = _many_jobs(1_050)
    data = log.machine.snapshot()
    restore = snapshot_module.Restore(data)
    steps = 1
    while not restore.step():
        steps += 1
        assert steps < 100
    assert steps >= 1_050 // 100
    assert restore.machine.digest() == log.machine.digest()
    assert restore.machine.snapshot() == data
    at_once = JobStateMachine.restore(data)
    assert at_once.digest() == log.machine.digest()
    # The same behaviour from here on, not only the same bytes.
    restored = Log(restore.machine, index=log.index)
    for command in (
        Enqueue(now_ms=5_000, jobs=(spec(key="key-1"), spec(key="new"))),
        Retry(now_ms=5_001, job_id=next(iter(log.machine.dead), "none")),
    ):
        assert restored.apply(command) == log.apply(command)
    assert restored.claimed_ids(now_ms=9_000, max_jobs=500) == log.claimed_ids(
        now_ms=9_000, max_jobs=500
    )
    assert restored.machine.digest() == log.machine.digest()


def test_jobs_of_one_kind_share_their_field_values_after_a_restore() -> None:
    """Every job of a batch has the same enqueue time and timeout: restored, they share one
    integer object each (a million jobs, tens of megabytes), as they did when applied."""
    log = Log()
    log.enqueue(*(spec(timeout_ms=123_456) for _ in range(100)), now_ms=1_767_225_600_000)
    restored = JobStateMachine.restore(log.machine.snapshot())
    jobs = list(restored.jobs.values())
    assert len({id(job.timeout_ms) for job in jobs}) == 1
    assert len({id(job.enqueued_ms) for job in jobs}) == 1
    assert all(job.queue is restored.names["default"] for job in jobs)


def _items(data: bytes) -> list[Any]:
    return list(codec.decode_plain_sequence(data))


def _encode(items: list[Any]) -> bytes:
    return codec.encode_plain_sequence(items)


@pytest.mark.parametrize(
    "damage",
    [
        "count",
        "column_code",
        "column_width",
        "state",
        "type_name",
        "id_type",
        "run_position",
        "dead_unknown",
        "seq_order",
        "chunk_short",
        "sections_not_a_map",
        "sections_missing",
    ],
)
def test_a_version_5_snapshot_that_contradicts_itself_is_a_decode_error(damage: str) -> None:
    log = _scenario_log()
    items = _items(log.machine.snapshot())
    header, columns, runs, chunk, tail, sections = items
    assert sections == {}
    if damage == "count":
        header[5] += 1
    elif damage == "column_code":
        columns[0][1] = b"\x09" * (len(columns[0][1]))
    elif damage == "column_width":
        columns[2][1] = columns[2][1] + b"\x00"
    elif damage == "state":
        columns[3][0][0] = "sleeping"
    elif damage == "type_name":
        columns[0][0][0] = "not-a-name"
    elif damage == "id_type":
        chunk[0][0] = 7
    elif damage == "run_position":
        runs[0][0] = 10_000
    elif damage == "dead_unknown":
        tail[0] = ["nobody"]
    elif damage == "seq_order":
        columns[9] = columns[9][8:16] + columns[9][:8] + columns[9][16:]
    elif damage == "chunk_short":
        chunk[1] = chunk[1][:-1]
    elif damage == "sections_not_a_map":
        items[-1] = [["schedules", []]]
    elif damage == "sections_missing":
        items.pop()
    with pytest.raises(DecodeError):
        JobStateMachine.restore(_encode(items))


def test_a_section_this_raftq_does_not_know_is_refused_by_name() -> None:
    """A snapshot written by a newer raftq, with state this one has no place for: refused,
    naming the section, rather than restored without it (which would lose that state)."""
    items = _items(_scenario_log().machine.snapshot())
    items[-1] = {"from_the_future": [1, 2, 3]}
    with pytest.raises(DecodeError, match="from_the_future"):
        JobStateMachine.restore(_encode(items))


def test_restore_reads_a_version_5_snapshot() -> None:
    """Version 5 is version 6 without the sections item."""
    log = _scenario_log()
    items = _items(log.machine.snapshot())
    items[0][0] = 5
    items.pop()
    restored = JobStateMachine.restore(_encode(items))
    assert restored.snapshot() == log.machine.snapshot()


# --- the transition table ------------------------------------------------------------------------


def test_every_transition_the_scenario_makes_is_in_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: set[tuple[JobState, JobState]] = set()
    original = JobStateMachine._set_state

    def recording(machine: JobStateMachine, job: Job, state: JobState) -> None:
        made.add((job.state, state))
        original(machine, job, state)

    monkeypatch.setattr(JobStateMachine, "_set_state", recording)
    _scenario_log()
    _many_jobs(300)
    dependent = Log()  # waiting is only ever a first state: both ways out of it
    dependent.enqueue(
        spec(id="p"), spec(id="c", depends_on=("p",)), spec(id="d", depends_on=("p",))
    )
    dependent.apply(Cancel(now_ms=0, job_id="d"))
    dependent.complete(dependent.claim_one())
    assert dependent.machine.jobs["c"].state is JobState.PENDING
    assert {(JobState.WAITING, JobState.CANCELLED), (JobState.WAITING, JobState.PENDING)} <= made
    assert made <= {(old, new) for old, news in TRANSITIONS.items() for new in news}
    # The scenarios reach every state but waiting (a first state) through the table's moves.
    assert {new for _, new in made} == set(JobState) - {JobState.WAITING}


@pytest.mark.parametrize(
    ("old", "new"),
    [(old, new) for old in JobState for new in JobState if new not in TRANSITIONS[old]],
)
def test_a_move_outside_the_table_raises_and_changes_nothing(old: JobState, new: JobState) -> None:
    log = Log()
    log.enqueue(spec(id="j"))
    machine = log.machine
    job = machine.jobs["j"]
    job.state = old  # placed there directly: only the move under test goes through the table
    machine.counts = {("default", old): 1}
    before = machine.state_counts()
    with pytest.raises(LocalProtocolError, match=f"{old.value} to {new.value}"):
        machine._set_state(job, new)
    assert job.state is old
    assert machine.state_counts() == before


def test_finished_states_are_final() -> None:
    for state in (JobState.SUCCEEDED, JobState.CANCELLED):
        assert TRANSITIONS[state] == frozenset()
    assert set(TRANSITIONS) == set(JobState)

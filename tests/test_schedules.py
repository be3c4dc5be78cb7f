"""Schedules (docs/schedules.md): the state machine's rules, the slots of cron expressions and
intervals, and the leader's scheduler against a fake Raft peer on Trio's mock clock.

The rules: a slot fires at most once, ever (a slot not after the schedule's last fired one is
refused, through edits, removal and re-adding, snapshots and replay); slots start after the
entry that added or changed the schedule; a firing computed for an older revision, or for a
removed schedule, is refused; an interval's slot is a multiple of it; no slot is fired before
its time. The scheduler fires each due slot once, and a new leader the latest missed slot
(or every one with catch-up all, at most ``SCHEDULE_SLOTS_PER_FIRING_MAX`` per entry).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from raftq import limits, slots
from raftq.errors import ConfigError, DecodeError
from raftq.jobs.commands import (
    Command,
    Done,
    Enqueue,
    Enqueued,
    EnqueueResult,
    FireSchedule,
    JobSpec,
    PutSchedule,
    Rejected,
    RemoveSchedule,
    ScheduleSpec,
)
from raftq.jobs.machine import JobStateMachine
from raftq.jobs.schedules import slot_key
from raftq.node.scheduler import Scheduler
from raftq.node.waiters import Waiter
from raftq.raft.ready import Role

EVERY_S = ScheduleSpec(name="tick", type="t", every_ms=1_000)


class Log:
    """A machine and the commands applied to it, in order."""

    def __init__(self) -> None:
        self.machine = JobStateMachine()
        self.commands: list[Command] = []

    def apply(self, command: Command) -> Any:
        self.commands.append(command)
        return self.machine.apply(len(self.commands), command, 1)

    def put(self, spec: ScheduleSpec, now_ms: int) -> Any:
        return self.apply(PutSchedule(now_ms=now_ms, schedule=spec))

    def fire(self, name: str, slots_ms: tuple[int, ...], now_ms: int, revision: int = 0) -> Any:
        revision = revision or self.machine.schedules.by_name[name].revision
        return self.apply(FireSchedule(now_ms=now_ms, name=name, revision=revision, slots=slots_ms))

    def fired_keys(self) -> list[str]:
        return sorted(key for key in self.machine.keys if key.startswith("schedule:"))


def assert_refused(result: Any, code: str) -> None:
    assert isinstance(result, Rejected), result
    assert result.code == code, result


def created(result: Any) -> list[str]:
    assert isinstance(result, EnqueueResult), result
    return [job.job_id for job in result.jobs if isinstance(job, Enqueued) and job.created]


# --- the state machine ------------------------------------------------------------------------


def test_a_slot_fires_once_and_a_second_firing_of_it_is_refused() -> None:
    log = Log()
    assert log.put(EVERY_S, 500) == Done(job_id="", state="added")
    assert len(created(log.fire("tick", (1_000, 2_000), 2_100))) == 2
    again = log.fire("tick", (2_000,), 2_200)
    assert_refused(again, "fired")
    older = log.fire("tick", (1_000,), 2_200)
    assert_refused(older, "fired")
    assert log.fired_keys() == [slot_key("tick", 1_000), slot_key("tick", 2_000)]
    assert len(log.machine.jobs) == 2


def test_the_last_fired_slot_is_the_guard_not_the_idempotency_key() -> None:
    """Once the key's dedupe window has passed the key is forgotten; the slot stays refused."""
    log = Log()
    log.put(EVERY_S, 0)
    log.fire("tick", (1_000,), 1_000)
    later_ms = 1_000 + limits.DEDUPE_WINDOW_MS + 1
    log.apply(Enqueue(now_ms=later_ms, jobs=()))  # forgets keys older than the window
    assert log.fired_keys() == []
    refused = log.fire("tick", (1_000,), later_ms)
    assert_refused(refused, "fired")
    assert len(log.machine.jobs) == 1


def test_a_key_someone_took_does_not_stop_the_slot_and_stays_theirs() -> None:
    log = Log()
    log.put(EVERY_S, 0)
    mine = JobSpec(
        id="mine",
        type="t",
        payload=b"",
        queue="default",
        priority=0,
        delay_ms=0,
        max_attempts=1,
        timeout_ms=1,
        key=slot_key("tick", 1_000),
    )
    log.apply(Enqueue(now_ms=900, jobs=(mine,)))
    fired = created(log.fire("tick", (1_000,), 1_000))
    assert len(fired) == 1
    assert fired != ["mine"]
    assert log.machine.keys[slot_key("tick", 1_000)] == "mine"
    assert log.machine.schedules.by_name["tick"].last_fired_ms == 1_000


def test_slots_start_after_the_schedule_was_added() -> None:
    log = Log()
    log.put(EVERY_S, 2_000)
    refused = log.fire("tick", (2_000,), 2_500)
    assert_refused(refused, "fired")
    assert len(created(log.fire("tick", (3_000,), 3_000))) == 1


def test_an_edit_restarts_the_slots_after_it_and_keeps_the_last_fired() -> None:
    log = Log()
    log.put(EVERY_S, 0)
    log.fire("tick", (1_000,), 1_000)
    slower = attrs.evolve(EVERY_S, every_ms=2_000)
    assert log.put(slower, 5_500) == Done(job_id="", state="updated")
    assert log.put(slower, 5_600) == Done(job_id="", state="unchanged")
    record = log.machine.schedules.by_name["tick"]
    assert (record.revision, record.since_ms, record.last_fired_ms) == (3, 5_500, 1_000)
    refused = log.fire("tick", (4_000,), 6_000)  # a slot of the new interval before the edit
    assert_refused(refused, "fired")
    assert len(created(log.fire("tick", (6_000,), 6_000))) == 1


def test_a_firing_computed_before_an_edit_or_a_removal_is_refused() -> None:
    log = Log()
    log.put(EVERY_S, 0)
    old_revision = log.machine.schedules.by_name["tick"].revision
    log.put(attrs.evolve(EVERY_S, type="other"), 100)
    stale = log.fire("tick", (1_000,), 1_000, revision=old_revision)
    assert_refused(stale, "stale")
    assert log.apply(RemoveSchedule(now_ms=1_000, name="tick")) == Done(job_id="", state="removed")
    gone = log.fire("tick", (2_000,), 2_000, revision=old_revision)
    assert_refused(gone, "not_found")
    missing = log.apply(RemoveSchedule(now_ms=2_000, name="tick"))
    assert_refused(missing, "not_found")
    assert log.machine.jobs == {}


def test_removed_and_added_again_in_the_same_millisecond_never_refires_a_slot() -> None:
    log = Log()
    log.put(EVERY_S, 0)
    log.fire("tick", (1_000,), 1_000)
    log.apply(RemoveSchedule(now_ms=1_000, name="tick"))
    log.put(EVERY_S, 1_000)
    refused = log.fire("tick", (1_000,), 1_000)
    assert_refused(refused, "fired")


@pytest.mark.parametrize(
    ("slots_ms", "code"),
    [((3_000,), "early"), ((1_500,), "not_a_slot"), ((2_000, 1_000), "not_a_slot")],
)
def test_a_slot_not_due_not_of_the_interval_or_out_of_order_is_refused(
    slots_ms: tuple[int, ...], code: str
) -> None:
    log = Log()
    log.put(EVERY_S, 0)
    refused = log.fire("tick", slots_ms, 2_500)
    assert_refused(refused, code)
    assert log.machine.schedules.by_name["tick"].last_fired_ms == 0


def test_a_full_cluster_fires_what_fits_and_leaves_the_rest_unfired() -> None:
    log = Log()
    log.machine.jobs_max = 1
    log.put(EVERY_S, 0)
    result = log.fire("tick", (1_000, 2_000), 2_000)
    assert isinstance(result, EnqueueResult)
    assert_refused(result.jobs[-1], "full")
    assert log.machine.schedules.by_name["tick"].last_fired_ms == 1_000


def test_the_table_is_bounded() -> None:
    from raftq.jobs.schedules import Schedule

    log = Log()
    table = log.machine.schedules.by_name
    for number in range(limits.SCHEDULES_MAX):
        spec = attrs.evolve(EVERY_S, name=f"s{number}")
        table[spec.name] = Schedule(spec, revision=1, since_ms=0)
    refused = log.put(EVERY_S, 0)
    assert_refused(refused, "too_many_schedules")
    assert log.put(attrs.evolve(EVERY_S, name="s1", type="u"), 0).state == "updated"


def test_a_snapshot_keeps_the_table_and_a_restored_machine_refuses_fired_slots() -> None:
    log = Log()
    log.put(EVERY_S, 0)
    log.put(ScheduleSpec(name="nightly", type="r", cron="0 3 * * *", tz="Europe/Berlin"), 10)
    log.fire("tick", (1_000,), 1_000)
    restored = JobStateMachine.restore(log.machine.snapshot())
    assert restored.snapshot() == log.machine.snapshot()
    assert restored.schedule_page() == log.machine.schedule_page()
    revision = restored.schedules.by_name["tick"].revision
    refused = restored.apply(
        9, FireSchedule(now_ms=2_000, name="tick", revision=revision, slots=(1_000,))
    )
    assert_refused(refused, "fired")


def test_a_fired_job_has_the_schedule_s_job_options_through_a_snapshot() -> None:
    """A schedule gives its jobs a priority, attempts, a timeout (a job longer than the
    default 30 s) and a group; a restored machine fires with the same options, and a row
    written before schedules had them (11 fields) reads with the job file's defaults."""
    from raftq.jobs.schedules import ScheduleTable

    nightly = attrs.evolve(
        EVERY_S, priority=7, max_attempts=1, timeout_ms=3_600_000, group="reports"
    )
    log = Log()
    log.put(nightly, 0)
    (job_id,) = created(log.fire("tick", (1_000,), 1_000))
    job = log.machine.get(job_id)
    assert job is not None
    assert (job.priority, job.max_attempts, job.timeout_ms, job.group) == (
        7, 1, 3_600_000, "reports"
    )  # fmt: skip
    restored = JobStateMachine.restore(log.machine.snapshot())
    assert restored.schedules.by_name["tick"].spec == nightly
    revision = restored.schedules.by_name["tick"].revision
    fired = restored.apply(
        9, FireSchedule(now_ms=2_000, name="tick", revision=revision, slots=(2_000,))
    )
    (again,) = created(fired)
    assert restored.get(again) is not None
    assert restored.get(again).group == "reports"  # type: ignore[union-attr]
    (row,) = log.machine.schedules.rows()
    older = ScheduleTable.from_rows([row[:11]])
    assert older.by_name["tick"].spec == EVERY_S


def test_the_snapshot_is_the_same_whatever_order_the_table_was_built_in() -> None:
    """Replayed, the table holds b before a (a was removed and added again); restored, it
    holds them by name: the snapshots must still be the same bytes."""
    log = Log()
    for name in ("a", "b"):
        log.put(attrs.evolve(EVERY_S, name=name), 0)
    log.apply(RemoveSchedule(now_ms=0, name="a"))
    log.put(attrs.evolve(EVERY_S, name="a"), 0)
    assert list(log.machine.schedules.by_name) == ["b", "a"]
    restored = JobStateMachine.restore(log.machine.snapshot())
    assert list(restored.schedules.by_name) == ["a", "b"]
    assert restored.snapshot() == log.machine.snapshot()


@pytest.mark.parametrize(
    "rows",
    [{"a": 1}, [[1, 2]], [["t", "t", b"", "q", "", "", 5, "latest", 1, 0, 0]]],
    ids=["not a list", "short row", "interval below the minimum"],
)
def test_a_bad_schedules_section_is_refused_as_corrupt(rows: object) -> None:
    from raftq.jobs.schedules import ScheduleTable

    with pytest.raises(DecodeError, match="schedules"):
        ScheduleTable.from_rows(rows)


def test_a_schedule_has_a_cron_or_an_interval_and_a_zone_only_with_cron() -> None:
    for bad in (
        {"cron": "* * * * *", "every_ms": 1_000},
        {},
        {"every_ms": 1_000, "tz": "UTC"},
        {"every_ms": 999},
        {"every_ms": 1_000, "catch_up": "some"},
    ):
        with pytest.raises(ValueError, match=r"cron|interval|time zone|every_ms|catch_up"):
            ScheduleSpec(name="s", type="t", **bad)


# --- slots ------------------------------------------------------------------------------------


def ms(*when: int, tz: str = "UTC") -> int:
    moment = datetime.datetime(*when, tzinfo=slots.zone(tz))  # type: ignore[misc]
    return round(moment.timestamp() * 1000)


def test_an_interval_s_slots_are_its_multiples_since_the_epoch() -> None:
    minute = ScheduleSpec(name="m", type="t", every_ms=60_000)
    assert slots.next_slot_ms(minute, 59_999) == 60_000
    assert slots.next_slot_ms(minute, 60_000) == 120_000
    led = {"leading_since_ms": 245_000}
    assert slots.due_slots(minute, 60_000, 250_000, **led) == (240_000,)
    assert slots.due_slots(attrs.evolve(minute, catch_up="all"), 60_000, 250_000, **led) == (
        120_000,
        180_000,
        240_000,
    )
    assert slots.due_slots(minute, 240_000, 250_000, **led) == ()


def test_a_leader_fires_every_slot_of_its_own_reign_and_the_latest_missed_before_it() -> None:
    """Slots 1-5 s fell before this leader led (at 5.5 s): only 5 s of them fires; 6 s and 7 s
    fell while it led (its firing was slow): both fire."""
    every = ScheduleSpec(name="s", type="t", every_ms=1_000)
    assert slots.due_slots(every, 0, 7_200, leading_since_ms=5_500) == (5_000, 6_000, 7_000)
    assert slots.due_slots(every, 0, 7_200, leading_since_ms=0) == (
        1_000,
        2_000,
        3_000,
        4_000,
        5_000,
        6_000,
        7_000,
    )
    assert slots.due_slots(every, 0, 7_200, leading_since_ms=8_000) == (7_000,)
    assert slots.due_slots(every, 5_000, 7_200, leading_since_ms=5_500) == (6_000, 7_000)


def test_catch_up_all_fires_at_most_the_bound_per_entry() -> None:
    every = ScheduleSpec(name="s", type="t", every_ms=1_000, catch_up="all")
    due = slots.due_slots(every, 0, 1_000_000)
    assert len(due) == limits.SCHEDULE_SLOTS_PER_FIRING_MAX
    assert due == tuple(range(1_000, 1_000 * len(due) + 1, 1_000))


def test_a_cron_expression_is_read_in_its_time_zone() -> None:
    nightly = ScheduleSpec(name="n", type="t", cron="0 3 * * *", tz="America/New_York")
    after = ms(2026, 1, 10, 12, 0)
    assert slots.next_slot_ms(nightly, after) == ms(2026, 1, 11, 3, 0, tz="America/New_York")
    assert slots.next_slot_ms(attrs.evolve(nightly, tz=""), after) == ms(2026, 1, 11, 3, 0)


def test_daylight_saving_a_missing_local_time_fires_after_the_gap() -> None:
    """Europe/Berlin skips 02:00-03:00 on 2026-03-29: 02:30 fires at 03:00 local, once."""
    spec = ScheduleSpec(name="n", type="t", cron="30 2 * * *", tz="Europe/Berlin")
    start = ms(2026, 3, 28, 12, 0, tz="Europe/Berlin")
    first = slots.next_slot_ms(spec, start)
    assert first == ms(2026, 3, 29, 1, 0)  # 03:00 CEST
    assert slots.next_slot_ms(spec, first or 0) == ms(2026, 3, 30, 0, 30)  # 02:30 CEST


def test_daylight_saving_a_repeated_local_time_fires_at_both_instants() -> None:
    """Europe/Berlin repeats 02:00-03:00 on 2026-10-25: 02:30 occurs (and fires) twice."""
    spec = ScheduleSpec(name="n", type="t", cron="30 2 * * *", tz="Europe/Berlin")
    first = slots.next_slot_ms(spec, ms(2026, 10, 24, 12, 0))
    second = slots.next_slot_ms(spec, first or 0)
    assert first == ms(2026, 10, 25, 0, 30)  # 02:30 CEST
    assert second == ms(2026, 10, 25, 1, 30)  # 02:30 CET, an hour later


def test_the_latest_due_cron_slot_is_exact_at_its_own_millisecond() -> None:
    hourly = ScheduleSpec(name="h", type="t", cron="0 * * * *")
    slot = ms(2026, 5, 1, 10, 0)
    floor = slot - 3 * 3_600_000
    assert slots.due_slots(hourly, floor, slot, leading_since_ms=slot + 1) == (slot,)
    assert slots.due_slots(hourly, floor, slot - 1, slot) == (slot - 3_600_000,)


@pytest.mark.parametrize(
    ("cron", "tz", "problem"),
    [
        ("61 * * * *", "", "bad cron expression '61 * * * *'"),
        ("every day", "", "bad cron expression"),
        ("0 0 30 2 *", "", "bad cron expression"),
        ("0 3 * * *", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
    ],
)
def test_a_bad_expression_or_zone_is_one_clear_line(cron: str, tz: str, problem: str) -> None:
    with pytest.raises(ConfigError) as refused:
        slots.check(ScheduleSpec(name="s", type="t", cron=cron, tz=tz))
    assert problem in str(refused.value)
    assert "\n" not in str(refused.value)


# --- the scheduler, against a fake leader on the mock clock -------------------------------------


class FakeLeader:
    """A Raft peer that leads and applies each proposal at once to a machine (the applier's
    view), stamping it with ``now_ms``; ``lead`` and ``depose`` change its role."""

    def __init__(self, clock: Callable[[], int]) -> None:
        self.now_ms = clock
        self.log = Log()
        self.role = Role.LEADER
        self.term = 1
        self.applied_index = 0
        self._applied = trio.Event()
        self._role = trio.Event()
        self.proposals: list[Command] = []
        self.unanswered = False
        """Proposals are neither applied nor answered (a majority that stopped answering)."""

    # RaftPeer
    def propose(self, command: Command) -> Waiter:
        waiter = Waiter()
        self.proposals.append(command)
        if self.role is not Role.LEADER:
            waiter.resolve(Rejected(code="not_leader", message=""))
            return waiter
        if self.unanswered:
            return waiter
        waiter.resolve(self.log.apply(attrs.evolve(command, now_ms=self.now_ms())))
        self.applied_index = len(self.log.commands)
        self._applied.set()
        self._applied = trio.Event()
        return waiter

    async def role_changed(self) -> None:
        await self._role.wait()

    def set_role(self, role: Role) -> None:
        self.role = role
        self.term += 1
        self._role.set()
        self._role = trio.Event()

    # Applier
    @property
    def jobs(self) -> JobStateMachine:
        return self.log.machine

    async def wait_applied(self, index: int) -> None:
        while self.applied_index < index:
            await self._applied.wait()

    def fired(self, name: str) -> list[int]:
        return [
            int(key.rsplit(":", 1)[1])
            for key in self.log.machine.keys
            if key.startswith(f"schedule:{name}:")
        ]


class MockWallClock:
    START_MS = 1_800_000_000_000

    def now_ms(self) -> int:
        return self.START_MS + round(trio.current_time() * 1000)


async def scheduling(
    leader: FakeLeader, clock: MockWallClock, seconds: float, **options: Any
) -> Scheduler:
    scheduler = Scheduler(leader, leader, clock, **options)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()
    return scheduler


async def test_every_slot_fires_once_at_its_time_and_nothing_polls_between(
    autojump_clock: trio.testing.MockClock,
) -> None:
    clock = MockWallClock()
    leader = FakeLeader(clock.now_ms)
    leader.log.put(ScheduleSpec(name="tick", type="t", every_ms=2_000), clock.now_ms())
    scheduler = await scheduling(leader, clock, 60.5)
    fired = leader.fired("tick")
    assert len(fired) == 30
    assert fired == sorted(set(fired))
    assert all(slot % 2_000 == 0 for slot in fired)
    # Each firing's command was stamped at its slot's own millisecond (the wake is exact).
    stamps = [c.now_ms for c in leader.log.commands if isinstance(c, FireSchedule)]
    assert stamps == [
        slot for c in leader.log.commands if isinstance(c, FireSchedule) for slot in c.slots
    ]
    assert scheduler.statistics.plans <= 2 * len(fired) + 2  # woken per slot, never per tick


async def test_a_new_leader_fires_the_latest_missed_slot_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    clock = MockWallClock()
    leader = FakeLeader(clock.now_ms)
    leader.log.put(ScheduleSpec(name="tick", type="t", every_ms=1_000), clock.now_ms())
    leader.role = Role.FOLLOWER
    async with trio.open_nursery() as nursery:
        scheduler = Scheduler(leader, leader, clock)  # type: ignore[arg-type]
        await nursery.start(scheduler.run)
        await trio.sleep(10.5)  # no leader: ten slots pass unfired
        assert leader.fired("tick") == []
        leader.set_role(Role.LEADER)
        await trio.sleep(0.1)
        assert leader.fired("tick") == [clock.START_MS + 10_000]
        await trio.sleep(1.0)
        assert leader.fired("tick") == [clock.START_MS + 10_000, clock.START_MS + 11_000]
        nursery.cancel_scope.cancel()


async def test_a_leader_deposed_while_its_firing_waits_fires_every_slot_when_it_leads_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Found by the simulator (seed 1000013): a leader proposed a firing, lost the majority
    and its leadership, and led again a moment later; its scheduler still waited out the old
    term's firing (``COMMIT_WAIT_S``, 10 s), then took its new reign to start then, so the
    slots of those seconds counted as missed before it led and only the latest fired."""
    clock = MockWallClock()
    leader = FakeLeader(clock.now_ms)
    leader.log.put(ScheduleSpec(name="tick", type="t", every_ms=1_000), clock.now_ms())
    async with trio.open_nursery() as nursery:
        await nursery.start(Scheduler(leader, leader, clock).run)  # type: ignore[arg-type]
        leader.unanswered = True
        await trio.sleep(1.5)  # slot 1 s proposed, never answered
        leader.set_role(Role.FOLLOWER)
        leader.unanswered = False
        await trio.sleep(0.7)  # slot 2 s passes without a leader
        leader.set_role(Role.LEADER)
        await trio.sleep(4.0)
        nursery.cancel_scope.cancel()
    start = clock.START_MS
    assert leader.fired("tick") == [
        start + 2_000,
        start + 3_000,
        start + 4_000,
        start + 5_000,
        start + 6_000,
    ]


async def test_catch_up_all_fires_every_missed_slot_a_bounded_batch_per_entry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    clock = MockWallClock()
    leader = FakeLeader(clock.now_ms)
    spec = ScheduleSpec(name="tick", type="t", every_ms=1_000, catch_up="all")
    leader.log.put(spec, clock.now_ms())
    leader.role = Role.FOLLOWER
    async with trio.open_nursery() as nursery:
        await nursery.start(Scheduler(leader, leader, clock).run)  # type: ignore[arg-type]
        await trio.sleep(250.5)
        leader.set_role(Role.LEADER)
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    fired = leader.fired("tick")
    assert fired == [clock.START_MS + 1_000 * n for n in range(1, 251)]
    firings = [c for c in leader.log.commands if isinstance(c, FireSchedule)]
    assert [len(c.slots) for c in firings] == [100, 100, 50]


async def test_a_schedule_added_while_leading_wakes_the_scheduler(
    autojump_clock: trio.testing.MockClock,
) -> None:
    clock = MockWallClock()
    leader = FakeLeader(clock.now_ms)
    async with trio.open_nursery() as nursery:
        await nursery.start(Scheduler(leader, leader, clock).run)  # type: ignore[arg-type]
        await trio.sleep(5)
        leader.propose(PutSchedule(now_ms=0, schedule=EVERY_S))
        await trio.sleep(3.5)
        nursery.cancel_scope.cancel()
    assert leader.fired("tick") == [clock.START_MS + 1_000 * n for n in (6, 7, 8)]


async def test_declared_schedules_are_put_once_when_missing_or_different(
    autojump_clock: trio.testing.MockClock,
) -> None:
    clock = MockWallClock()
    leader = FakeLeader(clock.now_ms)
    kept = ScheduleSpec(name="kept", type="t", every_ms=60_000)
    changed = ScheduleSpec(name="changed", type="t", every_ms=60_000)
    leader.log.put(kept, clock.now_ms())
    leader.log.put(attrs.evolve(changed, type="old"), clock.now_ms())
    new = ScheduleSpec(name="new", type="t", cron="0 3 * * *")
    await scheduling(leader, clock, 1.0, declared=(kept, changed, new))
    puts = [c.schedule.name for c in leader.proposals if isinstance(c, PutSchedule)]
    assert puts == ["changed", "new"]
    table = leader.log.machine.schedules.by_name
    assert table["changed"].spec == changed
    assert table["new"].spec == new

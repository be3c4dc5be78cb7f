"""The simulator's limit rules (``sim.checkers_limits``) fire on a machine that breaks them,
and stay quiet on one that keeps them."""

from __future__ import annotations

import itertools

import attrs
import pytest

from raftq import codec
from raftq.jobs.commands import Claim, Command, Complete, Enqueue, JobSpec, SetLimit
from raftq.jobs.limits_table import LimitsTable
from raftq.raft.types import Entry, EntryKind
from sim.checkers import JobOracle, Violation
from sim.checkers_limits import LimitRules

SPEC = JobSpec(
    id="",
    type="t",
    payload=b"",
    queue="q",
    priority=0,
    delay_ms=0,
    max_attempts=3,
    timeout_ms=10_000,
    key="",
    group="g",
)


class Log:
    def __init__(self) -> None:
        self.oracle = JobOracle()
        self.rules = LimitRules()
        self.index = itertools.count(1)

    def commit(self, command: Command) -> None:
        data = codec.encode(command, Command)
        entry = Entry(index=next(self.index), term=1, kind=EntryKind.COMMAND, data=data)
        self.oracle.apply(entry)
        self.rules.observe(entry, self.oracle)


def run(log: Log) -> None:
    log.commit(SetLimit(now_ms=1_000, scope="group", name="g", concurrency=1))
    log.commit(SetLimit(now_ms=1_000, scope="queue", name="q", rate=2, window_ms=1_000))
    log.commit(Enqueue(now_ms=1_000, jobs=tuple(attrs.evolve(SPEC, id=f"j{n}") for n in range(4))))
    log.commit(Claim(now_ms=1_000, claimer="w", max_jobs=4))
    fence = log.oracle.held["j0"].fence
    log.commit(Complete(now_ms=1_100, job_id="j0", fence=fence))
    log.commit(Claim(now_ms=1_200, claimer="w", max_jobs=4))
    log.commit(Claim(now_ms=1_500, claimer="w", max_jobs=4))


def test_a_machine_that_keeps_its_limits_passes() -> None:
    log = Log()
    run(log)
    assert log.rules.limited_handouts == 4  # two jobs, each in a limited queue and group
    assert log.rules.idle_claims_checked > 0


def test_a_group_past_its_concurrency_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LimitsTable, "group_open", lambda *_: True)
    with pytest.raises(Violation, match="concurrency limit is never exceeded"):
        run(Log())


def test_a_queue_past_its_rate_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    log = Log()
    log.commit(SetLimit(now_ms=1_000, scope="queue", name="q", rate=2, window_ms=1_000))
    jobs = tuple(attrs.evolve(SPEC, id=f"j{n}", group="") for n in range(4))
    log.commit(Enqueue(now_ms=1_000, jobs=jobs))
    log.commit(Claim(now_ms=1_000, claimer="w", max_jobs=2))
    log.commit(Claim(now_ms=1_999, claimer="w", max_jobs=2))  # the window is full: none
    monkeypatch.setattr(LimitsTable, "queue_open", lambda *_: True)
    with pytest.raises(Violation, match="a rate limit is never exceeded"):
        log.commit(Claim(now_ms=1_999, claimer="w", max_jobs=1))


def test_a_slot_that_is_never_freed_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    moved = LimitsTable.moved

    def keeps_the_slot(self: LimitsTable, group: str, old: object, new: object) -> bool:
        freed = moved(self, group, old, new)  # type: ignore[arg-type]
        if freed:
            self.group_running[group] = self.group_running.get(group, 0) + 1
        return False

    monkeypatch.setattr(LimitsTable, "moved", keeps_the_slot)
    with pytest.raises(Violation, match="holds back only what it must"):
        run(Log())

"""The rules of schedules (docs/schedules.md), checked on the committed log and the leaders:

- no slot fired twice: every job a ``FireSchedule`` created is one (schedule, slot) pair, and
  no pair is created twice in the whole run (the key set of the fired jobs), whatever the
  dedupe window or the leaders believed;
- while a leader existed, no slot skipped: a slot of an interval schedule whose time came
  while one node led throughout (from a second before it to half a second after, by that
  leader's own clock, which did not jump, and committing meanwhile), and that leader then,
  still leading, committed every entry it held a tenth of a second after the slot (so it was
  writing and replicating when the slot came: its firing was proposed and committed), must be
  fired within ``FIRED_WITHIN_S``. A leader whose reign ends before that (its disk failing
  when the slot came, say) may lose its firing with its uncommitted entries: the slot is then
  a missed one, the catch-up's (next rule);
- a slot missed while there was no leader fires once a leader returns: when a new leader
  then leads for ``NEW_LEADER_STABLE_S``, committing, the latest slot before it took over
  (by its clock) must be fired within ``FIRED_WITHIN_S`` (unless another slot falls so close
  to its start that which one is "the latest missed" depends on milliseconds, or a leader of
  an earlier term already fired a later slot: one whose clock ran ahead caught up with the
  slot latest by its clock, and the catch-up fires one slot).

``observe`` runs right after the oracle applies each entry: it decodes an entry only when the
oracle's schedule table changed. ``check`` runs at every simulator check: it samples who leads
and judges the slots whose window has closed.
"""

from __future__ import annotations

import collections
from typing import Any

import attrs
import trio

from raftq.jobs.commands import FireSchedule
from raftq.jobs.schedules import ScheduleTable
from raftq.raft.ready import Role
from raftq.raft.types import Entry, EntryKind
from sim.checkers import JobOracle, Violation, command_of
from sim.cluster import EPOCH_MS

SETTLED_BEFORE_S = 1.0
SETTLED_AFTER_S = 0.5
"""A slot is judged only if one leader led from this long before its time to this long after
(by the leader's clock): settled in, and still there to propose it."""

FIRED_WITHIN_S = 15.0
"""A judged slot must be fired by then: its firing is proposed at its time, and commits as
soon as the majority the leader had answers (slow disks and delays make it seconds)."""

ADDED_BEFORE_MS = 2_000
"""A slot is judged only if its schedule was added or last changed this long before it (by
the stamp of that entry), so that the leader had it applied when the slot came."""

PROPOSED_WITHIN_S = 0.1
"""A leader that is writing appends a slot's firing within this long of the slot (it proposes
at the slot's time; a round or two later the firing is in its log)."""

NEW_LEADER_STABLE_S = 2.0
"""How long a new leader must lead, committing, before its catch-up is judged."""

SAMPLES_KEPT = 2_000
"""Leader samples kept (one per check, 20 ms apart: 40 s), far more than a window needs."""


@attrs.frozen
class _Sample:
    at_s: float
    leader: tuple[str, int, int] | None
    """(node, term, clock skew in ms) of the only leader, or None."""
    commit: int
    last: int
    """The leader's last log index (0 without a leader)."""


class ScheduleRules:
    def __init__(self) -> None:
        self.fired: set[tuple[str, int]] = set()
        self.firings = 0
        self.slots_judged = 0
        self.slots_skipped_unjudged = 0
        self._table: ScheduleTable | None = None
        self._changes = 0
        self._next_seq = 1
        self._samples: collections.deque[_Sample] = collections.deque(maxlen=SAMPLES_KEPT)
        self._skew_s_max = 0.0
        """The most any node's clock was off so far (``clock_skew``, ``lease_skew``): a slot's
        window is looked at only once this long has passed after it, by virtual time."""
        self._judged: dict[tuple[str, int], int] = {}
        """(schedule, revision) -> its last slot judged (or passed over)."""
        self._leadership: tuple[tuple[str, int, int], float, int] | None = None
        """The current leader (node, term, skew), since when, and the commit then; None once
        its catch-up was judged."""
        self._latest_by_term: dict[str, dict[int, int]] = {}
        """Schedule -> term -> the latest slot fired by entries of that term."""
        self._awaited: dict[tuple[str, int], tuple[float, int, str]] = {}
        """(schedule, slot) judged due -> by when (virtual time) it must be fired, the
        schedule's revision (an edit or removal since lets it go unfired), and why it must."""

    # --- the committed log ----------------------------------------------------------------------

    def observe(self, entry: Entry, oracle: JobOracle) -> None:
        """Call right after ``oracle.apply(entry)``."""
        machine = oracle.machine
        seq_before, self._next_seq = self._next_seq, machine.next_seq
        table = machine.schedules
        if table is self._table and table.changes == self._changes:
            return
        self._table, self._changes = table, table.changes
        if entry.kind is not EntryKind.COMMAND:
            return
        command = command_of(entry)
        if not isinstance(command, FireSchedule):
            return
        created = machine.next_seq - seq_before  # a firing stops at its first refused slot
        self.firings += 1
        for slot in command.slots[:created]:
            fired = (command.name, slot)
            if fired in self.fired:
                raise Violation(
                    "a schedule slot fires at most once",
                    f"index {entry.index}: slot {slot} of {command.name} fired again "
                    f"(job schedule:{command.name}:{slot} exists twice)",
                )
            self.fired.add(fired)
            self._awaited.pop(fired, None)
            latest = self._latest_by_term.setdefault(command.name, {})
            latest[entry.term] = max(slot, latest.get(entry.term, slot))

    # --- the leaders ----------------------------------------------------------------------------

    def check(self, simulation: Any) -> None:
        """Sample who leads now; judge the slots whose window closed."""
        now_s = trio.current_time()
        self._samples.append(_sample(simulation, now_s))
        skews_s = (abs(simnode.clock.skew_ms) / 1000 for simnode in simulation.nodes)
        self._skew_s_max = max(self._skew_s_max, *skews_s)
        table = simulation.oracle.machine.schedules
        self._judge_new_leader(table, now_s)
        for (name, slot), (due_s, revision, why) in list(self._awaited.items()):
            record = table.by_name.get(name)
            if record is None or record.revision != revision:
                del self._awaited[(name, slot)]  # edited or removed: its slots start again
            elif now_s > due_s:
                raise Violation(
                    "a schedule slot fires while a leader exists",
                    f"slot {slot} of {name} {why}, and was not fired within {FIRED_WITHIN_S:.0f} s",
                )
        for name, record in table.by_name.items():
            every_ms = record.spec.every_ms
            if every_ms:
                self._judge(name, record.revision, record.since_ms, every_ms, now_s)

    def _judge_new_leader(self, table: ScheduleTable, now_s: float) -> None:
        sample = self._samples[-1]
        previous = self._samples[-2].leader if len(self._samples) > 1 else None
        if sample.leader is None or sample.leader != previous:
            self._leadership = None
            if sample.leader is not None:
                self._leadership = (sample.leader, now_s, sample.commit)
            return
        if self._leadership is None or now_s - self._leadership[1] < NEW_LEADER_STABLE_S:
            return
        leader, since_s, commit = self._leadership
        self._leadership = None  # judged once
        if sample.commit <= commit:
            return  # led without a majority: not judged
        clock_ms = EPOCH_MS + round(since_s * 1000) + leader[2]
        for name, record in table.by_name.items():
            every_ms = record.spec.every_ms
            if not every_ms:
                continue
            latest = clock_ms // every_ms * every_ms
            close = latest + every_ms - clock_ms < 500 or clock_ms - latest < 100
            if close or latest <= record.since_ms + ADDED_BEFORE_MS:
                continue
            earlier = self._latest_by_term.get(name, {})
            if any(slot > latest for term, slot in earlier.items() if term < leader[1]):
                continue  # a leader whose clock ran ahead caught up with a later slot
            self.slots_judged += 1
            if (name, latest) not in self.fired:
                why = f"was the latest missed before {leader[0]} led (term {leader[1]})"
                self._awaited[(name, latest)] = (now_s + FIRED_WITHIN_S, record.revision, why)

    def _judge(self, name: str, revision: int, since_ms: int, every_ms: int, now_s: float) -> None:
        judged = self._judged.get((name, revision), since_ms + ADDED_BEFORE_MS)
        slot = (judged // every_ms + 1) * every_ms
        oldest_s = self._samples[0].at_s
        while True:
            window = self._window(slot, now_s)
            if window is None:
                break  # not closed yet: judged at a later check
            judged = slot
            if window and (name, slot) not in self.fired:
                why = "fell while one leader led throughout"
                self._awaited[(name, slot)] = (now_s + FIRED_WITHIN_S, revision, why)
            if window:
                self.slots_judged += 1
            elif (slot - EPOCH_MS) / 1000 > oldest_s:
                self.slots_skipped_unjudged += 1
            slot += every_ms
        self._judged[(name, revision)] = judged

    def _window(self, slot_ms: int, now_s: float) -> bool | None:
        """Whether one leader led throughout the slot's window, by its own clock, and then
        committed what it held once the slot's firing was proposed (None: not known yet)."""
        samples = self._samples
        unskewed_s = (slot_ms - EPOCH_MS) / 1000
        skew_s_max = self._skew_s_max
        if unskewed_s + skew_s_max + SETTLED_AFTER_S >= now_s:
            return None
        if unskewed_s - skew_s_max - SETTLED_BEFORE_S < samples[0].at_s:
            return False  # before the samples kept (or the run) began
        near = min(samples, key=lambda sample: abs(sample.at_s - unskewed_s))
        leader = near.leader
        if leader is None:
            return False
        at_s = unskewed_s - leader[2] / 1000  # when the leader's clock read slot_ms
        if at_s - SETTLED_BEFORE_S < samples[0].at_s:
            return False
        inside = [
            sample
            for sample in samples
            if at_s - SETTLED_BEFORE_S <= sample.at_s <= at_s + SETTLED_AFTER_S
        ]
        if not (
            inside
            and all(sample.leader == leader for sample in inside)
            and inside[-1].commit > inside[0].commit
        ):
            return False
        # Then, still leading, it must commit what it held once its firing was proposed.
        later = [sample for sample in samples if sample.at_s >= at_s + PROPOSED_WITHIN_S]
        if not later:
            return None
        held = later[0].last
        for sample in later:
            if sample.leader != leader:
                return False  # its reign ended first: a missed slot (the catch-up rule's)
            if sample.commit >= held:
                return True
        return None  # still leading, not there yet


def _sample(simulation: Any, now_s: float) -> _Sample:
    leaders = []
    commit = last = 0
    for simnode in simulation.nodes:
        node = simnode.node
        if node is None:
            continue
        core = node.raft.core
        if core.role is Role.LEADER:
            leaders.append((simnode.id, core.term, simnode.clock.skew_ms))
            commit, last = core.log.committed, core.log.last_index()
    if len(leaders) != 1:
        return _Sample(at_s=now_s, leader=None, commit=0, last=0)
    return _Sample(at_s=now_s, leader=leaders[0], commit=commit, last=last)

"""Trio's scheduler, made deterministic for one seed.

Trio runs the tasks that became runnable together in a random order (``trio._core._run._r``),
to shake out ordering bugs. With ``_ALLOW_DETERMINISTIC_SCHEDULING`` set, it first sorts them by
creation counter and then shuffles with ``_r``: seeding ``_r`` makes that order a function of
the seed. This is what trio's own Hypothesis plugin does (``_hypothesis_plugin_setup``). Both are
private names, which is why pyproject.toml pins trio to one minor version: re-check this module
when upgrading it.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import gc
import math
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import trio

# ``trio.testing.MockClock`` itself, from where ``trio.testing`` takes it: importing
# ``trio.testing`` imports pytest when it is installed (for ``RaisesGroup``): 0.1 of the 0.6
# CPU seconds each seed's process spent importing, for nothing the simulator uses.
from trio._core._mock_clock import MockClock

_run_module = trio._core._run


@contextlib.contextmanager
def deterministic_scheduling(seed: int) -> Iterator[None]:
    """Within the block, trio's scheduling order is a function of ``seed``; after it, trio is
    as it was (tests run other trio code in the same process)."""
    assert hasattr(_run_module, "_ALLOW_DETERMINISTIC_SCHEDULING"), "trio internals moved"
    assert isinstance(_run_module._r, random.Random), "trio internals moved"
    allowed = _run_module._ALLOW_DETERMINISTIC_SCHEDULING
    state = _run_module._r.getstate()
    setattr(_run_module, "_ALLOW_DETERMINISTIC_SCHEDULING", True)  # noqa: B010 (a Final name)
    _run_module._r.seed(seed)
    try:
        yield
    finally:
        setattr(_run_module, "_ALLOW_DETERMINISTIC_SCHEDULING", allowed)  # noqa: B010
        _run_module._r.setstate(state)


@contextlib.contextmanager
def collections_on_schedule() -> Iterator[None]:
    """Within the block Python's cyclic garbage collector runs only when ``collect_garbage`` is
    called. Left alone, it runs when allocation counts cross thresholds, which depends on
    everything the process did before (other seeds of a sweep): and collecting a cycle can
    finalize an unfinished async generator, which trio does in a new task, so the schedule
    would depend on the process's history."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    # What is alive now (modules, classes, other seeds' leftovers) is no garbage of this run:
    # set it aside, so the full collections of the run scan only what the run allocated.
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()


def collect_garbage(generation: int) -> None:
    """Collect now (the simulator calls this at fixed points of virtual time)."""
    gc.collect(generation)


TIME_GRAIN_S = 0.001
"""The virtual clock's jumps land on whole multiples of this (a jump to a deadline between two
of them goes on to the next one): every timer due within one grain fires in the same scheduler
loop, as on a real machine whose timers have slack, and the tasks woken together run in the
seed's shuffled order. Network deliveries and disk operations (``sim.network``, ``sim.disk``)
complete on it too: events that fall in one grain run in one batch instead of one wake-up
each. It used to be a 0.5 ms grid for deliveries and disk operations alone; with a grain for
every timer 12 seeds ran at 11.51 simulated seconds per CPU second against 10.75 (session 11).
A timer fires at most one grain late, against ticks of 30 ms."""


def virtual_clock(grain_s: float = TIME_GRAIN_S) -> MockClock:
    """Trio's ``MockClock`` that only jumps (rate 0, autojump), reading its time directly, and
    jumping to the next multiple of ``grain_s`` at or after the next deadline (0: to the
    deadline itself, as ``MockClock`` does).

    ``MockClock.current_time`` computes the time from ``perf_counter()`` times the rate, which
    is 0, and the simulator asks for the time some 4,000 times per simulated second (3% of a
    run, profiled). With rate 0 that computation returns the base exactly, so reading the
    base gives the same values to the bit. (``MockClock`` is final: the method is replaced on
    the instance, and the rate must stay 0.)"""
    assert grain_s >= 0, grain_s
    clock = MockClock(rate=0.0, autojump_threshold=0.0)
    assert hasattr(clock, "_virtual_base"), "trio internals moved"
    assert clock.current_time() == clock._virtual_base
    setattr(clock, "current_time", functools.partial(getattr, clock, "_virtual_base"))  # noqa: B010

    def autojump() -> None:
        # ``MockClock._autojump`` without building a whole ``RunStatistics`` (epoll statistics
        # and all) for the one number it reads: trio calls it at every jump, some 1,000 times
        # per simulated second (3% of a run, profiled).
        deadline = _run_module.GLOBAL_RUN_CONTEXT.runner.deadlines.next_deadline()
        if grain_s and deadline < math.inf:
            # ``max``: a product of floats may round to just below the deadline.
            deadline = max(deadline, math.ceil(deadline / grain_s) * grain_s)
        jump = deadline - clock._virtual_base
        if 0 < jump < math.inf:
            clock.jump(jump)

    assert hasattr(clock, "_autojump"), "trio internals moved"
    setattr(clock, "_autojump", autojump)  # noqa: B010
    return clock


IO_POLL_EVERY_LOOPS = 64
"""How often, in scheduler loops, a simulated run asks the operating system for I/O events.
Trio polls epoll once per loop (a system call each, 3% of a run, profiled: with the
autojumping clock the poll never waits), but a simulation does no real I/O: the only event
that can come is trio's own wake-up (a signal, as Ctrl-C, or a call from another thread),
which then waits at most this many loops (microseconds of wall time, no virtual time)."""


def poll_io_every(loops: int, on_poll: Callable[[], None]) -> None:
    """From inside ``trio.run``: poll for I/O events only every ``loops`` scheduler loops (a
    loop that skips its poll reports that its zero timeout passed, which is what the poll
    would have said: no events), calling ``on_poll`` at each real poll (a wall-clock
    watchdog). Scheduling is unchanged: traces are the same. Trio calls the run's I/O
    manager's ``get_events`` once per loop (``trio._core._run.run``); the manager is wrapped
    for the rest of this run only."""
    runner: Any = _run_module.GLOBAL_RUN_CONTEXT.runner
    assert loops >= 1, loops
    assert callable(runner.io_manager.get_events), "trio internals moved"
    runner.io_manager = _SparsePolls(runner.io_manager, loops, on_poll)


class _SparsePolls:
    """The run's I/O manager, polling every ``loops``-th time it is asked for events; the
    rest (waiting for a socket, the wake-up, closing) goes to the manager itself."""

    def __init__(self, manager: Any, loops: int, on_poll: Callable[[], None]) -> None:
        self._manager = manager
        self._loops = loops
        self._on_poll = on_poll
        self._skipped = 0

    def get_events(self, timeout: float) -> Any:
        if timeout == 0 and self._skipped < self._loops - 1:
            self._skipped += 1
            return ()  # false: "the timeout expired", as an empty poll says
        self._skipped = 0
        self._on_poll()
        return self._manager.get_events(timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._manager, name)


class _HoldingRunq(collections.deque):  # type: ignore[type-arg]
    """Trio's run queue while a process is paused (``hold_tasks``): the held tasks stay in
    it, in order, but trio's loop does not see them. Trio reads the queue only as this class
    answers: ``if runner.runq`` (anything to run now, or may the clock jump), ``list(runq)``
    (the batch to run) and ``runq.clear()`` (the batch taken), and adds with ``append``."""

    def __init__(self, tasks: Iterable[Any], held: Callable[[Any], bool]) -> None:
        super().__init__(tasks)
        self._held = held

    def __iter__(self) -> Iterator[Any]:
        held = self._held
        return (task for task in super().__iter__() if not held(task))

    def __len__(self) -> int:
        held = self._held
        return sum(1 for task in super().__iter__() if not held(task))

    def __bool__(self) -> bool:
        held = self._held
        return any(not held(task) for task in super().__iter__())

    def clear(self) -> None:
        held = self._held
        kept = [task for task in super().__iter__() if held(task)]
        super().clear()
        super().extend(kept)

    def every_task(self) -> list[Any]:
        return list(super().__iter__())


@contextlib.contextmanager
def hold_tasks(root: Any) -> Iterator[None]:
    """Within the block, trio runs none of ``root``'s tasks (``root`` and every task
    descending from it through nurseries): they stay runnable, or become runnable as their
    deadlines pass and their data arrives, and all run once the block ends. A process stopped
    with SIGSTOP and continued: its timers fire late, all at once, and its clock has jumped.
    Called from inside ``trio.run``; one hold at a time."""
    runner: Any = _run_module.GLOBAL_RUN_CONTEXT.runner
    assert isinstance(runner.runq, collections.deque), "trio internals moved"
    assert not isinstance(runner.runq, _HoldingRunq), "one hold at a time"
    known: dict[Any, bool] = {}

    def held(task: Any) -> bool:
        found = known.get(task)
        if found is None:
            found = _descends(task, root)
            known[task] = found
        return found

    holding = _HoldingRunq(runner.runq, held)
    runner.runq = holding
    try:
        yield
    finally:
        runner.runq = collections.deque(holding.every_task())


def _descends(task: Any, root: Any) -> bool:
    for _ in range(10_000):  # a task tree is never this deep
        if task is root:
            return True
        nursery = task.parent_nursery
        if nursery is None:
            return False
        task = nursery.parent_task
    raise AssertionError("a task tree deeper than 10,000")

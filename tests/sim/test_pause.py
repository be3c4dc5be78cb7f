"""A process paused as by SIGSTOP (``sim.determinism.hold_tasks``, the ``pause`` fault kind):
none of its tasks runs while the others go on; its timers fire late, all at once."""

from __future__ import annotations

import trio
import trio.testing

from sim.determinism import hold_tasks
from sim.options import EXTRA_KINDS, Options
from sim.runner import run_seed


async def _ticker(name: str, log: list[tuple[str, float]], ticks: int) -> None:
    for _ in range(ticks):
        await trio.sleep(0.1)
        log.append((name, round(trio.current_time(), 3)))


async def _process(
    name: str, log: list[tuple[str, float]], *, task_status: trio.TaskStatus[trio.lowlevel.Task]
) -> None:
    """A "process": a root task with a child nursery, as a node's tasks are."""
    task_status.started(trio.lowlevel.current_task())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_ticker, name, log, 10)


def test_a_held_task_tree_runs_nothing_until_released_and_then_its_timers_fire_at_once() -> None:
    log: list[tuple[str, float]] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            stopped = await nursery.start(_process, "stopped", log)
            await nursery.start(_process, "running", log)
            await trio.sleep(0.25)
            with hold_tasks(stopped):
                await trio.sleep(0.5)  # 0.25 .. 0.75: "stopped" misses four ticks' times
                assert [at for name, at in log if name == "stopped"] == [0.1, 0.2]
            await trio.sleep(0.01)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    stopped = [at for name, at in log if name == "stopped"]
    running = [at for name, at in log if name == "running"]
    assert running == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    # Its sleep due at 0.3 ends when it continues at 0.75, late; the next ticks count on
    # from there, as a stopped process's timers do.
    assert stopped[:3] == [0.1, 0.2, 0.75]
    assert stopped[3] == 0.85
    assert len(stopped) == 10


def test_pause_is_drawn_and_a_forced_seed_pauses_and_passes() -> None:
    """About one seed in six draws ``pause`` (an extra kind, ``sim.options.EXTRA_KINDS``);
    forcing it runs the seed's schedules with it, and the run passes with processes and a
    leader's Raft peer paused."""
    assert "pause" in EXTRA_KINDS
    drawing = [seed for seed in range(1, 201) if "pause" in Options.draw(seed, None, 20.0).swarm]
    assert 20 <= len(drawing) <= 50, len(drawing)
    report = run_seed(1, sim_seconds=12.0, force=("pause",), keep_trace=True)
    assert report.verdict == "pass", report.violations
    lines = report.trace_lines
    stops = [line for line in lines if "stopped (SIGSTOP)" in line or "stands still" in line]
    assert 2 <= len(stops) <= report.faults.pauses  # a step finding no process up stops none
    # Seed 1's first pause stands the leader n2's Raft peer still while n3 answers and rots;
    # the removal of n1 asked right after is refused (it would leave n3, dead, and n2).
    assert "n2 its Raft peer stands still" in stops[0]
    assert any("corrupt    n3" in line for line in lines)
    assert any("remove n1 beside n3: refused" in line for line in lines)
    assert any("stopped (SIGSTOP)" in line for line in stops)

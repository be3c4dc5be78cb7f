"""``raftq.backoff``: the one retry policy of the client, the worker and the peer links. Pure:
bounds, doubling, reset, and the same delays from the same seed (the simulator's runs repeat)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from raftq.backoff import Backoff
from raftq.client.client import RETRY_BACKOFF, WAIT_POLL_BACKOFF
from raftq.transport.connections import RECONNECT_BACKOFF
from tests.test_layering import FORBIDDEN_IN_PURE, global_random_uses, imported_modules

MODULE = Path(__file__).resolve().parent.parent / "raftq" / "backoff.py"


def test_without_jitter_delays_double_up_to_the_cap() -> None:
    delays = Backoff(min_s=0.01, max_s=0.1, jitter=(1.0, 1.0)).delays()
    assert [delays.next_s() for _ in range(7)] == pytest.approx(
        [0.01, 0.02, 0.04, 0.08, 0.1, 0.1, 0.1]
    )


def test_another_multiplier() -> None:
    delays = Backoff(min_s=1, max_s=100, multiplier=3, jitter=(1.0, 1.0)).delays()
    assert [delays.next_s() for _ in range(5)] == pytest.approx([1, 3, 9, 27, 81])


def test_jittered_delays_stay_within_the_jitter_range_of_each_step() -> None:
    policy = Backoff(min_s=0.02, max_s=0.25, jitter=(0.5, 1.5))
    delays = policy.delays(random.Random(7))
    for _ in range(1000):
        base_s = delays.base_s
        delay_s = delays.next_s()
        assert 0.5 * base_s <= delay_s <= 1.5 * base_s
        assert delays.base_s == min(base_s * 2, 0.25)
    assert delays.base_s == 0.25  # capped, never above


def test_jitter_spreads_the_delays() -> None:
    policy = Backoff(min_s=1, max_s=1)
    delays = policy.delays(random.Random(1))
    seen = [delays.next_s() for _ in range(200)]
    assert min(seen) < 0.6
    assert max(seen) > 1.4
    assert len(set(seen)) == 200


def test_reset_starts_over_at_the_minimum() -> None:
    delays = Backoff(min_s=0.05, max_s=2, jitter=(1.0, 1.0)).delays()
    for _ in range(10):
        delays.next_s()
    assert delays.base_s == 2
    delays.reset()
    assert delays.base_s == 0.05
    assert delays.next_s() == 0.05


def test_the_same_seed_gives_the_same_delays() -> None:
    policy = Backoff(min_s=0.05, max_s=2)
    first = policy.delays(random.Random(11))
    second = policy.delays(random.Random(11))
    other = policy.delays(random.Random(12))
    a = [first.next_s() for _ in range(20)]
    assert a == [second.next_s() for _ in range(20)]
    assert a != [other.next_s() for _ in range(20)]


def test_one_draw_per_delay_and_none_without_jitter() -> None:
    """The simulator's traces depend on how much randomness each step consumes: exactly one
    ``random()`` per jittered delay (as the loops it replaced drew), none without jitter."""
    rng, twin = random.Random(3), random.Random(3)
    delays = Backoff(min_s=0.02, max_s=0.25).delays(rng)
    for step in range(5):
        assert delays.next_s() == pytest.approx(min(0.02 * 2**step, 0.25) * (0.5 + twin.random()))
    assert rng.getstate() == twin.getstate()
    unjittered = Backoff(min_s=1, max_s=1, jitter=(1.0, 1.0)).delays(rng)
    unjittered.next_s()
    assert rng.getstate() == twin.getstate()


def test_bad_policies_are_refused() -> None:
    for bad in (
        {"min_s": 0, "max_s": 1},
        {"min_s": 2, "max_s": 1},
        {"min_s": 1, "max_s": 2, "multiplier": 0.5},
        {"min_s": 1, "max_s": 2, "jitter": (1.5, 0.5)},
        {"min_s": 1, "max_s": 2, "jitter": (-1.0, 1.0)},
    ):
        with pytest.raises(ValueError, match=r"must|need"):
            Backoff(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs an rng"):
        Backoff(min_s=1, max_s=2).delays()


def test_the_callers_policies() -> None:
    """The figures the hand-written loops used, now in one place each."""
    assert (RETRY_BACKOFF.min_s, RETRY_BACKOFF.max_s, RETRY_BACKOFF.jitter) == (
        0.02,
        0.25,
        (0.5, 1.5),
    )
    assert (WAIT_POLL_BACKOFF.min_s, WAIT_POLL_BACKOFF.max_s) == (0.01, 0.5)
    assert not WAIT_POLL_BACKOFF.jittered
    assert (RECONNECT_BACKOFF.min_s, RECONNECT_BACKOFF.max_s) == (0.05, 2.0)


def test_the_policy_is_pure() -> None:
    """No I/O, clock or global random: it computes delays, callers sleep."""
    assert not {name.split(".")[0] for name in imported_modules(MODULE)} & {
        *FORBIDDEN_IN_PURE,
        "anyio",
    }
    assert global_random_uses(MODULE) == []


def test_no_hand_written_backoff_loop_is_left() -> None:
    """The jittered-doubling loops of the client, worker and peer links all use the policy."""
    root = MODULE.parent
    for path in sorted(root.rglob("*.py")):
        if path.parent.name in ("raft", "jobs"):
            continue  # replicated retry schedules: integer ms, deterministic jitter by job id
        text = path.read_text()
        assert "0.5 + self._rng.random()" not in text, path
        assert "* (0.5 +" not in text, path

"""One retry policy for every loop that waits before trying again: doubling delays with jitter.

The client's requests, its ``status`` and ``wait`` polls, a worker's empty claims and a node's
reconnects to a peer all back off the same way: start at ``min_s``, multiply by ``multiplier``
after each try up to ``max_s``, and scale each delay by a factor drawn uniformly from
``jitter`` (so many clients that failed together do not retry together). A success resets it.

Pure: it computes delays and never sleeps (the caller sleeps, on whatever event loop it runs),
and its randomness is an injected ``random.Random``, so the simulator's seeded runs repeat
exactly. Each draw is one ``rng.random()`` call; a policy without jitter draws nothing.
"""

from __future__ import annotations

import random

import attrs


@attrs.frozen(kw_only=True)
class Backoff:
    """The policy: delays from ``min_s`` doubling (``multiplier``) to ``max_s``, each scaled by
    a factor uniform in ``jitter`` = (low, high). ``Backoff(min_s=..., max_s=...).delays(rng)``
    gives one loop its ``Delays``."""

    min_s: float
    max_s: float
    multiplier: float = 2.0
    jitter: tuple[float, float] = (0.5, 1.5)

    def __attrs_post_init__(self) -> None:
        low, high = self.jitter
        if not 0 < self.min_s <= self.max_s:
            raise ValueError(f"need 0 < min_s <= max_s, not {self.min_s!r}, {self.max_s!r}")
        if not self.multiplier >= 1:
            raise ValueError(f"multiplier must be at least 1, not {self.multiplier!r}")
        if not 0 <= low <= high:
            raise ValueError(f"jitter must be (low, high) with 0 <= low <= high, not {self.jitter}")

    @property
    def jittered(self) -> bool:
        return self.jitter[0] != self.jitter[1]

    def delays(self, rng: random.Random | None = None) -> Delays:
        """A fresh sequence of delays for one retry loop; ``rng`` is required with jitter."""
        if self.jittered and rng is None:
            raise ValueError("a jittered backoff needs an rng (random.Random)")
        return Delays(self, rng)


class Delays:
    """The delays of one retry loop: ``next_s()`` before each retry, ``reset()`` on success."""

    __slots__ = ("_base_s", "_rng", "policy")

    def __init__(self, policy: Backoff, rng: random.Random | None) -> None:
        assert rng is not None or not policy.jittered, "Backoff.delays checks this"
        self.policy = policy
        self._rng = rng
        self._base_s = policy.min_s

    @property
    def base_s(self) -> float:
        """The next delay before jitter: ``min_s`` after a reset, at most ``max_s``."""
        return self._base_s

    def next_s(self) -> float:
        """The delay to sleep before the next try; the one after it is ``multiplier`` times
        longer (before jitter), up to ``max_s``."""
        policy = self.policy
        low, high = policy.jitter
        delay_s = self._base_s * low
        if self._rng is not None and high != low:
            delay_s = self._base_s * (low + (high - low) * self._rng.random())
        self._base_s = min(self._base_s * policy.multiplier, policy.max_s)
        assert 0 <= delay_s <= policy.max_s * high, (delay_s, policy)
        return delay_s

    def reset(self) -> None:
        """After a success: the next delay is ``min_s`` again."""
        self._base_s = self.policy.min_s

"""Retry delays: exponential, capped, with deterministic jitter.

Jitter must spread retries apart yet be the same on every node, so it comes from a checksum of
the job id and attempt number, never from a random generator or Python's salted ``hash``.

A job may carry its own ``RetryPolicy`` (base, cap, jitter percent); one without keeps the
default, computed exactly as before policies existed (``retry_delay_ms``), so that a log
written then replays to the same state. A policy's delay is integers only (``policy_delay_ms``).
"""

from __future__ import annotations

import attrs
from crc32c import crc32c

from raftq import codec, limits

JITTER_FRACTION = 0.25
JITTER_PERCENT_DEFAULT = 25
"""The default's jitter, as a policy spells it: up to 25% added."""

_SPREAD_MAX = 0xFFFFFFFF


def _ms(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{attribute.name} must be an integer")
    if not 0 <= value <= limits.RETRY_POLICY_MS_MAX:
        raise ValueError(f"{attribute.name} must be from 0 to {limits.RETRY_POLICY_MS_MAX}")


def _percent(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise ValueError(f"{attribute.name} must be an integer from 0 to 100")


@codec.register_positional
@attrs.frozen(kw_only=True)
class RetryPolicy:
    """One job's backoff: attempt ``n``'s failure waits ``min(max_ms, base_ms * 2^(n-1))``
    plus up to ``jitter_percent`` of that, from a checksum of the job id and ``n``."""

    base_ms: int = attrs.field(validator=_ms)
    max_ms: int = attrs.field(validator=_ms)
    jitter_percent: int = attrs.field(validator=_percent)

    def __attrs_post_init__(self) -> None:
        if self.max_ms < self.base_ms:
            raise ValueError(f"backoff max {self.max_ms} ms is below its base {self.base_ms} ms")


def retry_delay_ms(
    job_id: str,
    attempt: int,
    *,
    base_ms: int = limits.RETRY_BASE_MS,
    cap_ms: int = limits.RETRY_CAP_MS,
) -> int:
    """The wait after failed attempt number ``attempt`` (1 for the first), by default."""
    assert attempt >= 1, attempt
    delay = min(cap_ms, base_ms << min(attempt - 1, 40))
    spread = crc32c(f"{job_id}:{attempt}".encode()) / 0xFFFFFFFF
    return delay + int(delay * JITTER_FRACTION * spread)


def policy_delay_ms(job_id: str, attempt: int, policy: RetryPolicy | None) -> int:
    """The wait after failed attempt ``attempt`` of a job with ``policy`` (None: the default,
    ``retry_delay_ms``, kept bit for bit). Integer arithmetic only: the same on every node."""
    if policy is None:
        return retry_delay_ms(job_id, attempt)
    assert attempt >= 1, attempt
    delay = min(policy.max_ms, policy.base_ms << min(attempt - 1, 40))
    spread = crc32c(f"{job_id}:{attempt}".encode())
    return delay + delay * policy.jitter_percent * spread // (100 * _SPREAD_MAX)


def least_delay_ms(attempt: int, policy: RetryPolicy | None) -> int:
    """The wait after failed attempt ``attempt``, jitter aside (jitter only adds)."""
    if policy is None:
        return min(limits.RETRY_CAP_MS, limits.RETRY_BASE_MS << min(attempt - 1, 40))
    return min(policy.max_ms, policy.base_ms << min(attempt - 1, 40))

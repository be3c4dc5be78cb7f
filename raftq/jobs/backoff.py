"""Retry delays: exponential, capped, with deterministic jitter.

Jitter must spread retries apart yet be the same on every node, so it comes from a checksum of
the job id and attempt number, never from a random generator or Python's salted ``hash``.
"""

from __future__ import annotations

from crc32c import crc32c

from raftq import limits

JITTER_FRACTION = 0.25


def retry_delay_ms(
    job_id: str,
    attempt: int,
    *,
    base_ms: int = limits.RETRY_BASE_MS,
    cap_ms: int = limits.RETRY_CAP_MS,
) -> int:
    """The wait after failed attempt number ``attempt`` (1 for the first)."""
    assert attempt >= 1, attempt
    delay = min(cap_ms, base_ms << min(attempt - 1, 40))
    spread = crc32c(f"{job_id}:{attempt}".encode()) / 0xFFFFFFFF
    return delay + int(delay * JITTER_FRACTION * spread)

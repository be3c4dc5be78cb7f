"""Job rules the ``JobOracle`` (``sim.checkers``) does not check, on the same committed log:

- a new leader extends leases before it expires any: an ``ExpireLeases`` that ends a lease is
  preceded, in its own term, by a committed ``ExtendAll`` (DESIGN.md: "a new leader first
  extends every outstanding lease by one lease period in a committed entry");
- a retry waits its backoff: attempt ``n + 1`` is claimed no sooner than
  ``min(cap, base * 2 ** (n - 1))`` after attempt ``n`` failed or its lease expired (the
  jitter only adds);
- a job never runs more than ``max_attempts`` times.

They read the oracle's own state machine after each entry it applies (``observe``), so they
cost a set difference per entry and a decode only for the few entries that matter.
"""

from __future__ import annotations

from raftq import limits
from raftq.jobs.commands import ExpireLeases, ExtendAll
from raftq.jobs.job import retry_policy_of
from raftq.raft.types import Entry, EntryKind
from sim.checkers import JobOracle, Violation, command_of

TERMS_REMEMBERED = 1024
"""Terms whose ExtendAll was seen; older ones are forgotten (a run has a few dozen terms)."""

FAILURE_EVENTS = ("failed", "lease expired")


def minimum_backoff_ms(failed_attempt: int) -> int:
    """The least wait after attempt ``failed_attempt`` (1 for the first) failed, jitter aside."""
    return min(limits.RETRY_CAP_MS, limits.RETRY_BASE_MS << min(failed_attempt - 1, 40))


class LeaseAndRetryRules:
    def __init__(self) -> None:
        self.extended_terms: dict[int, None] = {}
        self._held: set[str] = set()
        self.retries_checked = 0
        self.expiries_checked = 0

    def observe(self, entry: Entry, oracle: JobOracle) -> None:
        """Call right after ``oracle.apply(entry)``."""
        if entry.kind is not EntryKind.COMMAND:
            return
        held = set(oracle.held)
        ended = self._held - held
        started = held - self._held
        self._held = held
        if entry.term not in self.extended_terms or ended:
            command = _decode(entry)
            if isinstance(command, ExtendAll):
                self._extended(entry.term)
            if ended and isinstance(command, ExpireLeases):
                self._check_expiry(entry, sorted(ended))
        for job_id in sorted(started):
            self._check_claim(entry.index, job_id, oracle)

    def _extended(self, term: int) -> None:
        self.extended_terms[term] = None
        while len(self.extended_terms) > TERMS_REMEMBERED:
            del self.extended_terms[next(iter(self.extended_terms))]

    def _check_expiry(self, entry: Entry, ended: list[str]) -> None:
        self.expiries_checked += 1
        if entry.term not in self.extended_terms:
            raise Violation(
                "a new leader extends leases before expiring any",
                f"index {entry.index} (term {entry.term}) expired the lease of {ended[0]} "
                f"with no ExtendAll committed in term {entry.term}",
            )

    def _check_claim(self, index: int, job_id: str, oracle: JobOracle) -> None:
        job = oracle.machine.jobs[job_id]
        if job.attempts > job.max_attempts:
            raise Violation(
                "at most max_attempts attempts",
                f"index {index}: {job_id} claimed for attempt {job.attempts} of {job.max_attempts}",
            )
        history = job.run.history if job.run is not None else []
        if job.attempts < 2 or len(history) < 2:
            return
        failed_at_ms, event, failed_attempt = history[-2][0], history[-2][1], history[-2][2]
        if event not in FAILURE_EVENTS or retry_policy_of(job) is not None:
            return  # an operator's retry: no backoff promised; a policy's: checkers_policy
        self.retries_checked += 1
        claimed_at_ms = history[-1][0]
        waited_ms = claimed_at_ms - failed_at_ms
        if waited_ms < minimum_backoff_ms(failed_attempt):
            raise Violation(
                "retries wait their backoff",
                f"index {index}: {job_id} attempt {job.attempts} claimed {waited_ms} ms after "
                f"attempt {failed_attempt} {event}; the backoff is at least "
                f"{minimum_backoff_ms(failed_attempt)} ms",
            )


def _decode(entry: Entry) -> object:
    return command_of(entry)

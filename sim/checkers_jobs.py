"""Job rules added with issue #15 (the web app's history and bulk retry), on the committed log
as the ``JobOracle`` (``sim.checkers``) applies it:

- every history event names the entry that caused it: an event recorded while applying the
  entry at index ``i`` of term ``t`` carries ``index == i`` and ``term == t``. Checked on the
  events every lease's start and end record (a claim, whose fence is ``i`` too; an outcome,
  an expiry or a cancel that ends a lease) and on the event of a ``Cancel`` or ``Retry``;
- one ``RetryDead`` retries at most its ``max_jobs`` dead jobs, itself at most
  ``limits.RETRY_DEAD_JOBS_MAX``: in its entry the dead-letter list shrinks by no more
  (a bulk command stays one bounded entry, as its docstring promises).

Like ``sim.checkers_more`` they read the oracle's state after each entry (``observe``): a set
difference of the leases held per entry, and a decode only for the entries that need one.
"""

from __future__ import annotations

from raftq import limits
from raftq.jobs.commands import Cancel, Retry, RetryDead
from raftq.raft.types import Entry, EntryKind
from sim.checkers import JobOracle, Violation, command_of

ONE_JOB_COMMANDS = (b"Cancel", b"Retry")
"""Tags of the commands these rules decode (Cancel, Retry, RetryDead): an entry whose bytes
hold neither is not decoded (a payload that happens to hold one only costs a decode)."""


class HistoryAndBulkRules:
    def __init__(self) -> None:
        self._held: set[str] = set()
        self._command: object = None
        """The entry's command, decoded in ``before`` when a rule needs it."""
        self._named: dict[str, object] = {}
        """The job a Cancel or Retry names -> its newest event before the entry (None: none)."""
        self._dead = 0
        """The dead-letter list's length before the entry."""
        self.events_checked = 0
        self.bulk_retries_checked = 0

    def before(self, entry: Entry, oracle: JobOracle) -> None:
        """Call right before ``oracle.apply(entry)``."""
        self._command, self._named = None, {}
        if entry.kind is not EntryKind.COMMAND:
            return
        if any(tag in entry.data for tag in ONE_JOB_COMMANDS):  # RetryDead holds "Retry"
            self._command = command = _decode(entry)
            if isinstance(command, Cancel | Retry):
                self._named[command.job_id] = _newest_event(oracle, command.job_id)
            self._dead = len(oracle.machine.dead)

    def observe(self, entry: Entry, oracle: JobOracle) -> None:
        """Call right after ``oracle.apply(entry)``."""
        if entry.kind is not EntryKind.COMMAND:
            return
        held = set(oracle.held)
        recorded = sorted(held ^ self._held)  # a lease that starts or ends records an event
        self._held = held
        for job_id, newest in self._named.items():
            # Accepted, it recorded a new event (the bounded history may have dropped its
            # oldest, so the length does not tell); refused, it recorded nothing.
            if _newest_event(oracle, job_id) is not newest:
                recorded.append(job_id)
        for job_id in recorded:
            self._check_last_event(entry, job_id, oracle)
        if isinstance(self._command, RetryDead):
            retried = self._dead - len(oracle.machine.dead)
            self._check_bulk_retry(entry, self._command, retried)

    def _check_last_event(self, entry: Entry, job_id: str, oracle: JobOracle) -> None:
        job = oracle.machine.jobs.get(job_id)
        if job is None or job.run is None:
            return  # gone in the same entry: no event of it left to judge
        _, event, _, _, fence, index, term, _ = job.run.history[-1]
        self.events_checked += 1
        if (index, term) != (entry.index, entry.term):
            raise Violation(
                "history events name their entry",
                f"index {entry.index} (term {entry.term}) recorded {event!r} for {job_id} "
                f"as index {index}, term {term}",
            )
        if event == "claimed" and fence != entry.index:
            raise Violation(
                "history events name their entry",
                f"index {entry.index}: {job_id} claimed under fence {fence}, not the claim's "
                "own index",
            )

    def _check_bulk_retry(self, entry: Entry, command: RetryDead, retried: int) -> None:
        self.bulk_retries_checked += 1
        bound = min(command.max_jobs, limits.RETRY_DEAD_JOBS_MAX)
        if retried > bound:
            raise Violation(
                "a bulk retry stays within its bound",
                f"index {entry.index}: RetryDead(max_jobs={command.max_jobs}) took {retried} "
                f"jobs off the dead-letter list; at most {bound}",
            )


def _newest_event(oracle: JobOracle, job_id: str) -> object:
    job = oracle.machine.jobs.get(job_id)
    run = job.run if job is not None else None
    return run.history[-1] if run is not None and run.history else None


def _decode(entry: Entry) -> object:
    return command_of(entry)

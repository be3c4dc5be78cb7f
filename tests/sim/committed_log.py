"""A committed log fed to the job oracle and one set of entry rules (``before`` and
``observe`` around each entry, as the simulator calls them), for the checkers' tests."""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar

from raftq import codec
from raftq.jobs.commands import Command
from raftq.raft.types import Entry, EntryKind
from sim.checkers import JobOracle


class EntryRules(Protocol):
    def before(self, entry: Entry, oracle: JobOracle) -> None: ...
    def observe(self, entry: Entry, oracle: JobOracle) -> None: ...


R = TypeVar("R", bound=EntryRules)


class CommittedLog(Generic[R]):
    def __init__(self, rules: R) -> None:
        self.oracle = JobOracle()
        self.rules = rules
        self.index = 0

    def commit(self, command: Command) -> Any:
        """Commit ``command`` at the next index; the oracle's result."""
        self.index += 1
        entry = Entry(
            index=self.index, term=1, kind=EntryKind.COMMAND, data=codec.encode(command, Command)
        )
        self.rules.before(entry, self.oracle)
        result = self.oracle.apply(entry)
        self.rules.observe(entry, self.oracle)
        return result

"""The raftq error tree.

Two kinds of error, as in h11: our own misuse raises ``LocalProtocolError`` (a bug: fail fast),
while bad bytes from a stranger raise ``RemoteProtocolError`` (a peer: close that link) or
``CorruptionError`` (a file: refuse that data directory). Everything a user can catch derives from
``RaftqError``; messages say what happened, where, and what to do.
"""

from __future__ import annotations


class RaftqError(Exception):
    """Base of every error raftq raises on purpose."""


class ConfigError(RaftqError):
    """Bad arguments, configuration or input file (CLI exit code 2)."""


class NotLeader(RaftqError):
    """This node is not the leader; ``leader_id`` names the one it knows of, if any."""

    def __init__(self, message: str, *, leader_id: str | None = None) -> None:
        super().__init__(message)
        self.leader_id = leader_id


class NoQuorum(RaftqError):
    """No majority of the cluster could be reached in time (CLI exit code 4)."""


class Busy(RaftqError):
    """A bound was reached (queue full, too many uncommitted entries): retry later."""


class JobNotFound(RaftqError):
    """No job with this id exists (or it was purged after its retention period)."""


class LeaseLost(RaftqError):
    """A report carried a stale fence: the job's lease expired and it was handed to another."""


class DataDirError(RaftqError):
    """The data directory cannot be used: locked by another process, unreadable (exit code 3)."""


class CorruptionError(DataDirError):
    """A file in the data directory holds bytes raftq did not write; names the file and offset."""

    def __init__(self, message: str, *, path: str, offset: int) -> None:
        super().__init__(f"{path} at byte {offset}: {message}")
        self.path = path
        self.offset = offset


class StorageError(RaftqError):
    """A write or fsync failed (ENOSPC, EIO). Nothing it covered may be acknowledged."""


class DecodeError(RaftqError):
    """Bytes do not decode to the expected type; callers turn it into one of the two kinds."""


class RemoteProtocolError(RaftqError):
    """A peer or client sent bytes that break the protocol: that connection is closed."""


class AuthenticationError(RemoteProtocolError):
    """The other side of a handshake could not prove the cluster secret, or demands one that
    we do not have: a wrong or missing secret, never fixed by a retry."""


class LocalProtocolError(RaftqError):
    """raftq itself misused an interface: a bug, never caused by input."""


class LogCompacted(RaftqError):
    """The requested log entries are covered by a snapshot and no longer kept."""


class LogUnavailable(RaftqError):
    """The requested log entries are past the end of the log."""


class MembershipChangeError(RaftqError):
    """A membership change was refused: another is in progress, or it changes more than one
    server, or a learner is not caught up yet. The message says which. ``retryable``: the
    same change will go through once the cluster has moved on (a change in progress, a new
    leader's first commit or its first answers, a learner catching up); otherwise it never will."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable

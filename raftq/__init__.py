"""raftq: a durable, Raft-replicated job queue for Python on Trio."""

from raftq.errors import (
    Busy,
    ConfigError,
    CorruptionError,
    DataDirError,
    JobNotFound,
    LeaseLost,
    NoQuorum,
    NotLeader,
    RaftqError,
    StorageError,
)

__all__ = [
    "Busy",
    "ConfigError",
    "CorruptionError",
    "DataDirError",
    "JobNotFound",
    "LeaseLost",
    "NoQuorum",
    "NotLeader",
    "RaftqError",
    "StorageError",
]

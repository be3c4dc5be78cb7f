"""raftq: a durable, Raft-replicated job queue for Python on Trio."""

from raftq.app import App, JobContext, JobFailed, handler
from raftq.client import Client, CommandRejected, HistoryEntry, Job, Worker, connect
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
    "App",
    "Busy",
    "Client",
    "CommandRejected",
    "ConfigError",
    "CorruptionError",
    "DataDirError",
    "HistoryEntry",
    "Job",
    "JobContext",
    "JobFailed",
    "JobNotFound",
    "LeaseLost",
    "NoQuorum",
    "NotLeader",
    "RaftqError",
    "StorageError",
    "Worker",
    "connect",
    "handler",
]

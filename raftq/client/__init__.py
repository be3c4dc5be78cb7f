"""The client library: connect to a cluster, enqueue and inspect jobs, run remote workers."""

from raftq.client.client import Client, CommandRejected, HistoryEntry, Job, connect
from raftq.client.connection import ConnectionClosed
from raftq.client.worker import Worker

__all__ = [
    "Client",
    "CommandRejected",
    "ConnectionClosed",
    "HistoryEntry",
    "Job",
    "Worker",
    "connect",
]

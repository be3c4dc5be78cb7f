"""The client library: connect to a cluster (async, or blocking with ``SyncClient``), enqueue
and inspect jobs, run remote workers."""

from raftq.client.client import Client, CommandRejected, HistoryEntry, Job, connect
from raftq.client.connection import ConnectionClosed
from raftq.client.sync_client import ClientClosed, SyncClient
from raftq.client.worker import Worker

__all__ = [
    "Client",
    "ClientClosed",
    "CommandRejected",
    "ConnectionClosed",
    "HistoryEntry",
    "Job",
    "SyncClient",
    "Worker",
    "connect",
]

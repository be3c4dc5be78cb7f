"""raftq: a durable, Raft-replicated job queue for Python on Trio."""

from raftq.app import App, Fail, JobContext, JobFailed, Retry, handler
from raftq.client import (
    Client,
    ClientClosed,
    CommandRejected,
    HistoryEntry,
    Job,
    SyncClient,
    Worker,
    connect,
)
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
from raftq.handler_function import HandlerFunction
from raftq.node.config import NodeConfig
from raftq.node.node import Node, open_node
from raftq.sync_queue import Queue
from raftq.transport.auth import load_secret
from raftq.transport.tls import TlsConfig

__all__ = [
    "App",
    "Busy",
    "Client",
    "ClientClosed",
    "CommandRejected",
    "ConfigError",
    "CorruptionError",
    "DataDirError",
    "Fail",
    "HandlerFunction",
    "HistoryEntry",
    "Job",
    "JobContext",
    "JobFailed",
    "JobNotFound",
    "LeaseLost",
    "NoQuorum",
    "Node",
    "NodeConfig",
    "NotLeader",
    "Queue",
    "RaftqError",
    "Retry",
    "StorageError",
    "SyncClient",
    "TlsConfig",
    "Worker",
    "connect",
    "handler",
    "load_secret",
    "open_node",
]

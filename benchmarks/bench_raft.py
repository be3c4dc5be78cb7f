"""Raft core benchmark: committed entries per second of a 3-node cluster of pure RaftCores.

Run by hand; figures, not a test. Measures the CPU cost of the Raft logic alone: all three
cores live in this one process, messages are delivered instantly (no network, no encoding)
and each node persists into a ``MemoryStorage`` (no disk). One core does all the work, so
entries/s is bounded by this process's single thread.

The loop, for each batch size (1, 16 and 256 commands of 100 bytes, one ``propose`` call per
batch), after electing n1 and letting the cluster go quiet:

1. Proposal: if fewer than ``--depth`` batches are outstanding on the leader (proposed but
   not yet handed out in its ``Ready.committed_entries``), the leader ``propose``s one more
   batch: at most one per round, so each AppendEntries carries about one batch. A batch takes
   three rounds to commit (leader sends; followers persist and answer; leader hands it out),
   so depth 1 is lockstep (3 rounds, 8 messages per batch) and depth >= 3 a full pipeline (1
   round, 4 messages per batch: the commit index rides on the next AppendEntries).
2. One Ready round: every node (leader first) that ``has_ready()`` takes its ``ready()``,
   queues ``early_messages``, persists ``entries`` and ``hard_state`` into its MemoryStorage,
   queues ``messages``, applies ``committed_entries`` (the state machine only records the
   applied index) and calls ``advance``. Like a node that snapshots, it then compacts its
   storage (``create_snapshot``) to ``--keep`` entries behind its applied index once twice that
   many have piled up, so memory stays bounded (``--keep 0``: never; the log then grows for
   the whole run and, at batch 256, the cyclic GC's full collections over it take ~20% of
   the time instead of ~8%).
3. Delivery: every message queued in step 2 is handed to its recipient's ``step``, in order.

Steps 1-3 repeat for ``--seconds``; then proposals stop and rounds run until the cluster is
quiet, so every proposed entry is committed (and applied by every node) inside the measured
time. Committed entries = the COMMAND entries the leader handed out in
``Ready.committed_entries``. entries/s divides them by wall time (``perf_counter``); CPU
us/entry divides this process's CPU time (``process_time``) by them. There are no ticks: no
heartbeats and no elections happen during a measurement (checked at the end). "gc" is the
share of the wall time spent in the cyclic garbage collector (included in the figures).

    python benchmarks/bench_raft.py [--seconds 3] [--depth 4] [--keep 10000]
                                    [--batches 1,16,256] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from collections import deque
from typing import Any

from raftq.ids import NodeId
from raftq.raft.core import RaftConfig, RaftCore
from raftq.raft.messages import Message
from raftq.raft.ready import Role
from raftq.raft.storage import MemoryStorage
from raftq.raft.types import EntryKind, Membership, SnapshotMeta

COMMAND_BYTES = 100
NODES = (NodeId("n1"), NodeId("n2"), NodeId("n3"))
DEFAULT_BATCHES = (1, 16, 256)
DEFAULT_DEPTH = 4
DEFAULT_KEEP = 10_000


class Node:
    """One peer: its core, its storage, and the index its (empty) state machine applied."""

    def __init__(self, node_id: NodeId, membership: Membership, keep: int) -> None:
        self.id = node_id
        self.keep = keep
        self.storage = MemoryStorage()
        self.core = RaftCore(
            RaftConfig(node_id=node_id),
            self.storage,
            random.Random(f"bench:{node_id}"),
            initial_membership=membership,
        )
        self.applied_index = 0
        self.applied_commands = 0

    def handle_ready(self, outbox: list[Message]) -> bool:
        """Play the node's part of one Ready; queue what it sends. False if nothing was due."""
        core = self.core
        if not core.has_ready():
            return False
        ready = core.ready()
        assert ready.snapshot is None
        outbox.extend(ready.early_messages)  # may go out before the local write
        self.storage.append(ready.entries)
        if ready.hard_state is not None:
            self.storage.hard_state = ready.hard_state
        outbox.extend(ready.messages)  # only once persisted
        committed = ready.committed_entries
        if committed:
            first, last = committed[0].index, committed[-1].index
            assert first == self.applied_index + 1
            self.applied_index = last
            self.applied_commands += len(committed)
        core.advance(ready)
        if self.keep and self.applied_index - self.storage.snapshot_meta.index >= 2 * self.keep:
            index = self.applied_index - self.keep
            meta = SnapshotMeta(index=index, term=self.storage.term(index))
            self.storage.create_snapshot(meta, b"")
        return True


class Cluster:
    def __init__(self, keep: int) -> None:
        membership = Membership(voters=NODES)
        self.nodes = {node_id: Node(node_id, membership, keep) for node_id in NODES}
        self.order = list(self.nodes.values())  # n1 (the leader) first
        self.messages = 0

    def round(self) -> bool:
        """Every node handles one Ready, then every message is delivered. False if quiet."""
        outbox: list[Message] = []
        busy = False
        for node in self.order:
            busy = node.handle_ready(outbox) or busy
        nodes = self.nodes
        for message in outbox:
            nodes[message.recipient].core.step(message)
        self.messages += len(outbox)
        return busy or bool(outbox)

    def settle(self, rounds_max: int = 10_000) -> int:
        for rounds in range(rounds_max):
            if not self.round():
                return rounds
        raise AssertionError("the cluster did not go quiet")

    def elect(self) -> Node:
        leader = self.nodes[NODES[0]]
        leader.core.campaign()
        self.settle()
        assert leader.core.role is Role.LEADER
        return leader


class GcTimer:
    """Wall time spent in the cyclic garbage collector while installed."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._began


def measure(batch: int, depth: int, seconds: float, keep: int) -> dict[str, Any]:
    """Propose ``batch`` commands per call, ``depth`` batches in flight, for ``seconds``."""
    cluster = Cluster(keep)
    leader = cluster.elect()
    core = leader.core
    term = core.term
    commands = [i.to_bytes(4, "big") * (COMMAND_BYTES // 4) for i in range(batch)]
    outstanding: deque[int] = deque()  # last index of each batch not yet committed
    proposed = 0
    rounds = 0
    base_commands = leader.applied_commands
    base_messages = cluster.messages

    gc.collect()
    gc_timer = GcTimer()
    gc.callbacks.append(gc_timer)
    start_cpu = time.process_time()
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        while outstanding and outstanding[0] <= leader.applied_index:
            outstanding.popleft()
        if time.perf_counter() >= deadline:
            break
        if len(outstanding) < depth:
            outstanding.append(core.propose(commands).last_index)
            proposed += batch
        cluster.round()
        rounds += 1
    rounds += cluster.settle()  # drain: everything proposed gets committed and applied
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - start_cpu
    gc.callbacks.remove(gc_timer)

    committed = leader.applied_commands - base_commands
    assert committed == proposed, (committed, proposed)
    assert core.role is Role.LEADER, "the leader stepped down"
    assert core.term == term, "an election disturbed the run"
    last = core.log.last_index()
    for node in cluster.nodes.values():
        assert node.applied_index == last == node.storage.last_index(), node.id
        assert all(
            entry.kind is EntryKind.COMMAND
            for entry in node.storage.entries(
                max(node.storage.first_index(), last - proposed + 1), last + 1
            )
        )
    return {
        "batch": batch,
        "depth": depth,
        "entries": committed,
        "seconds": elapsed,
        "entries_per_second": committed / elapsed,
        "cpu_us_per_entry": cpu / committed * 1e6,
        "cpu_share": cpu / elapsed,
        "gc_share": gc_timer.seconds / elapsed,
        "keep": keep,
        "rounds_per_batch": rounds / (proposed // batch),
        "messages_per_batch": (cluster.messages - base_messages) / (proposed // batch),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument(
        "--depth",
        type=int,
        default=DEFAULT_DEPTH,
        help=f"batches in flight (1 = lockstep; default {DEFAULT_DEPTH})",
    )
    parser.add_argument(
        "--keep",
        type=int,
        default=DEFAULT_KEEP,
        help=f"entries kept behind a compaction (0 = never compact; default {DEFAULT_KEEP})",
    )
    parser.add_argument(
        "--batches",
        default=",".join(map(str, DEFAULT_BATCHES)),
        help="comma-separated commands per propose() call",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    arguments = parser.parse_args()
    if arguments.depth < 1 or arguments.keep < 0:
        parser.error("need --depth >= 1 and --keep >= 0")
    batches = [int(value) for value in arguments.batches.split(",")]
    runs = [measure(batch, arguments.depth, arguments.seconds, arguments.keep) for batch in batches]
    report = {
        "nodes": len(NODES),
        "command_bytes": COMMAND_BYTES,
        "python": sys.version.split()[0],
        "runs": runs,
    }
    if arguments.json:
        json.dump(report, sys.stdout)
        print()
        return
    print(
        f"3 nodes in one process, instant delivery, MemoryStorage; {COMMAND_BYTES}-byte "
        f"commands, {arguments.depth} batch(es) in flight, keep {arguments.keep or 'all'}"
    )
    print(
        f"{'batch':>5} {'entries/s':>11} {'CPU us/entry':>13} {'entries':>10} "
        f"{'rounds/batch':>13} {'msgs/batch':>11} {'gc':>5}"
    )
    for run in runs:
        print(
            f"{run['batch']:>5} {run['entries_per_second']:>11,.0f} "
            f"{run['cpu_us_per_entry']:>13.2f} {run['entries']:>10,} "
            f"{run['rounds_per_batch']:>13.2f} {run['messages_per_batch']:>11.2f} "
            f"{run['gc_share']:>5.1%}"
        )


if __name__ == "__main__":
    main()

"""The cluster view of ``raftq status --json`` (CONTRACT.md), assembled from each node's own.

Every node reports only itself (``StatusReply``); the cluster's leader, term and job counts are
taken from the leader's own report when it answered, since followers may lag behind it. Each
node other than the leader also gets ``match_index`` from the leader's report: the highest log
index known replicated to it (a learner catching up shows it rising to ``commit_index``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from raftq.jobs.job import FINISHED
from raftq.transport.wire import StatusReply

_FINISHED = frozenset(state.value for state in FINISHED)


def cluster_status(
    views: Sequence[tuple[str, StatusReply | None]], node_ids: Mapping[str, str]
) -> dict[str, Any]:
    """``views``: (address asked, its reply or None if it did not answer), in listing order.
    ``node_ids`` names nodes that are unreachable now but answered a handshake before; an
    unreachable node never seen has id None."""
    answered = [reply for _, reply in views if reply is not None]
    assert answered, "the caller raises NoQuorum when no node answers"
    leader = _leader_report(answered)
    freshest = leader or max(answered, key=lambda r: (r.term, r.applied_index))
    nodes = [_node(address, reply, node_ids) for address, reply in views]
    if leader is not None:  # how far each member has caught up, as the leader sees it
        for node in nodes:
            if node["id"] in leader.match:
                node["match_index"] = leader.match[node["id"]]
    if leader is not None:
        leader_id: str | None = leader.node_id
    else:  # a follower may know a leader that we could not reach ourselves
        leader_id = max(answered, key=lambda r: r.term).leader_id or None
    return {
        "cluster": {
            "leader": leader_id,
            "term": max(reply.term for reply in answered),
            "commit_index": freshest.commit_index,
            "nodes": nodes,
        },
        "jobs": dict(freshest.jobs),
        "totals": _totals(freshest),
        "queues": {
            name: {
                "paused": queue.paused,
                "pending": queue.counts.get("pending", 0),
                "running": queue.counts.get("running", 0),
            }
            for name, queue in sorted(freshest.queues.items())
        },
    }


def _totals(reply: StatusReply) -> dict[str, int]:
    """Jobs ever enqueued and ever finished, for rates (the dashboard's chart): counters that
    only grow while jobs flow, unlike ``jobs``, from which old finished jobs are purged. A job
    retried out of the dead-letter list is no longer finished, so ``finished`` drops by one."""
    unfinished = sum(count for state, count in reply.jobs.items() if state not in _FINISHED)
    return {"enqueued": reply.enqueued_total, "finished": reply.enqueued_total - unfinished}


def _leader_report(answered: Sequence[StatusReply]) -> StatusReply | None:
    """The report of the node that leads in the highest term (an old leader cut off by a
    partition may still think it leads, in an older term)."""
    leaders = [reply for reply in answered if reply.role == "leader"]
    return max(leaders, key=lambda r: r.term) if leaders else None


def _node(address: str, reply: StatusReply | None, node_ids: Mapping[str, str]) -> dict[str, Any]:
    if reply is None:
        return {
            "id": node_ids.get(address),
            "addr": address,
            "role": "unreachable",
            "term": 0,
            "commit_index": 0,
            "applied_index": 0,
            "fsync": None,
            "storage_error": None,
        }
    return {
        "id": reply.node_id,
        "addr": reply.address or address,
        "role": reply.role,
        "term": reply.term,
        "commit_index": reply.commit_index,
        "applied_index": reply.applied_index,
        "fsync": reply.fsync,
        "storage_error": reply.storage_error or None,
    }

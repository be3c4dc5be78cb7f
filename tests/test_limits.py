"""Every externally supplied field is bounded at the edge (``raftq/limits.py``), and a cluster
that holds its maximum of jobs answers ``Busy`` instead of growing until it runs out of memory.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import cbor2
import pytest

from raftq import limits
from raftq.client.client import connect
from raftq.errors import Busy, ConfigError, RemoteProtocolError
from raftq.ids import NodeId
from raftq.jobs.commands import (
    Cancel,
    Claim,
    Complete,
    Enqueue,
    Enqueued,
    EnqueueResult,
    Extend,
    Fail,
    Outcome,
    Purge,
    Rejected,
    Report,
    Retry,
)
from raftq.jobs.machine import JobStateMachine
from raftq.node.config import NodeConfig
from raftq.node.node import open_node
from raftq.transport.wire import ClientRequest, GetJob, ListJobs, SubmitCommand, decode_wire
from tests.node_helpers import member_map, spec, wait_until

LONG_ID = "j" * (limits.JOB_ID_CHARS_MAX + 1)
LONG_NAME = "q" * (limits.NAME_CHARS_MAX + 1)


def over_the_limit() -> list[tuple[str, Any]]:
    """(what, a constructor call that must be refused), one per bounded field."""
    megabyte = b"x" * limits.JOB_PAYLOAD_BYTES_MAX
    return [
        ("payload", lambda: spec(payload=megabyte + b"x")),
        ("job id", lambda: spec(id=LONG_ID)),
        ("key", lambda: spec(key="k" * (limits.JOB_KEY_CHARS_MAX + 1))),
        ("queue", lambda: spec(queue=LONG_NAME)),
        ("type", lambda: spec(type="")),
        ("jobs per enqueue", lambda: Enqueue(now_ms=0, jobs=(spec(),) * 10_001)),
        ("enqueue bytes", lambda: Enqueue(now_ms=0, jobs=(spec(payload=megabyte),) * 9)),
        ("claim types", lambda: Claim(now_ms=0, claimer="w", types=("t",) * 1001)),
        ("claim queue name", lambda: Claim(now_ms=0, claimer="w", queues=(LONG_NAME,))),
        ("claim size", lambda: Claim(now_ms=0, claimer="w", max_jobs=1001)),
        ("complete id", lambda: Complete(now_ms=0, job_id=LONG_ID, fence=1)),
        ("fail id", lambda: Fail(now_ms=0, job_id=LONG_ID, fence=1)),
        ("fail error", lambda: Fail(now_ms=0, job_id="j", fence=1, error="e" * 8193)),
        ("cancel id", lambda: Cancel(now_ms=0, job_id=LONG_ID)),
        ("retry id", lambda: Retry(now_ms=0, job_id=LONG_ID)),
        (
            "extend ids",
            lambda: Extend(now_ms=0, job_ids=("j",) * 1001, fences=(1,) * 1001, until_ms=1),
        ),
        ("extend id", lambda: Extend(now_ms=0, job_ids=(LONG_ID,), fences=(1,), until_ms=1)),
        ("outcome id", lambda: Outcome(job_id=LONG_ID, fence=1, succeeded=True)),
        (
            "report outcomes",
            lambda: Report(
                now_ms=0, outcomes=(Outcome(job_id="j", fence=1, succeeded=True),) * 1001
            ),
        ),
        (
            "report bytes",
            lambda: Report(
                now_ms=0,
                outcomes=(Outcome(job_id="j", fence=1, succeeded=True, result=megabyte),) * 9,
            ),
        ),
        ("get id", lambda: GetJob(job_id=LONG_ID)),
        ("list queue", lambda: ListJobs(queue=LONG_NAME)),
        ("list limit", lambda: ListJobs(limit=10_001)),
    ]


@pytest.mark.parametrize(
    ("what", "build"), over_the_limit(), ids=lambda x: x if isinstance(x, str) else ""
)
def test_every_bounded_field_is_refused_past_its_bound(what: str, build: Any) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (attrs validators raise plain ValueError)
        build()


def test_a_stranger_sending_an_oversized_field_gets_a_protocol_error() -> None:
    """The same bounds hold when decoding what arrives on the wire."""
    request = {
        "_t": "ClientRequest",
        "request_id": 1,
        "call": {
            "_t": "SubmitCommand",
            "command": {"_t": "Cancel", "now_ms": 0, "job_id": LONG_ID},
            "follow_redirects": False,
        },
    }
    with pytest.raises(RemoteProtocolError, match="ClientRequest"):
        decode_wire(cbor2.dumps(request))
    request["call"]["command"]["job_id"] = "j"  # type: ignore[index]
    decoded = decode_wire(cbor2.dumps(request))
    assert isinstance(decoded, ClientRequest)
    assert isinstance(decoded.call, SubmitCommand)


def test_the_limits_fit_together() -> None:
    # Parsing a document at the nesting limit costs a few frames a level (json, cattrs):
    # far from Python's recursion limit, even from deep inside a handler's call stack.
    assert sys.getrecursionlimit() > limits.NESTING_DEPTH_MAX * 4
    assert limits.COMMAND_BYTES_MAX + 1024 * 1024 < limits.WAL_RECORD_BYTES_MAX
    assert limits.WAL_RECORD_BYTES_MAX < limits.FRAME_BYTES_MAX
    assert limits.JOBS_HELD_BYTES_MAX < limits.SNAPSHOT_BYTES_MAX
    assert limits.COMMAND_BYTES_MAX >= limits.JOB_PAYLOAD_BYTES_MAX


def enqueue(machine: JobStateMachine, index: int, payload: bytes = b"{}") -> Enqueued | Rejected:
    result = machine.apply(index, Enqueue(now_ms=index, jobs=(spec(payload=payload),)))
    assert isinstance(result, EnqueueResult)
    return result.jobs[0]


def test_the_state_machine_refuses_enqueues_past_its_job_and_byte_bounds() -> None:
    machine = JobStateMachine()
    machine.jobs_max = 3
    assert all(isinstance(enqueue(machine, index), Enqueued) for index in (1, 2, 3))
    full = enqueue(machine, 4)
    assert isinstance(full, Rejected)
    assert full.code == "full"
    claim = machine.apply(5, Claim(now_ms=5, claimer="w", max_jobs=1))
    lease = claim.leases[0]  # type: ignore[union-attr]
    machine.apply(6, Complete(now_ms=6, job_id=lease.job_id, fence=lease.fence))
    machine.apply(7, Purge(now_ms=7, before_ms=100))
    assert isinstance(enqueue(machine, 8), Enqueued)  # a purge made room

    machine = JobStateMachine()
    machine.held_bytes_max = 150
    assert isinstance(enqueue(machine, 1, b"x" * 60), Enqueued)
    assert isinstance(enqueue(machine, 2, b"x" * 100), Rejected)
    claim = machine.apply(3, Claim(now_ms=3, claimer="w", max_jobs=1))
    lease = claim.leases[0]  # type: ignore[union-attr]
    machine.apply(4, Complete(now_ms=4, job_id=lease.job_id, fence=lease.fence, result=b"r" * 100))
    job = machine.get(lease.job_id)
    assert job is not None
    assert job.state == "succeeded"  # the outcome stands; its output did not fit
    assert job.result == b""
    assert "dropped" in job.error
    assert machine.held_bytes <= 150
    restored = JobStateMachine.restore(machine.snapshot())
    assert restored.held_bytes == machine.held_bytes


async def test_a_full_cluster_answers_busy_and_takes_jobs_again_after_a_purge(
    tmp_path: Path,
) -> None:
    config = NodeConfig(node_id=NodeId("n1"), members=member_map(1), data_dir=str(tmp_path))
    async with open_node(config) as node:
        await wait_until(lambda: node.steward.extend_alls > 0)
        node.applier.machine.jobs_max = 2
        async with connect(config.address, timeout=1) as client:
            first = await client.enqueue("noop", {})
            await client.enqueue("noop", {})
            with pytest.raises(Busy, match="maximum"):
                await client.enqueue("noop", {})
            await client.cancel(first)
            node.applier.machine.jobs_max = 3
            await client.enqueue("noop", {})  # room again
            with pytest.raises(ConfigError, match="smaller batches"):
                await client.enqueue_many(
                    [{"payload": "x" * (limits.JOB_PAYLOAD_BYTES_MAX // 2)}] * 20
                )

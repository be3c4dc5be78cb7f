"""Run by tests/test_packaging.py with the Python of a fresh virtual environment in which raftq
was installed from its wheel (not this repository): enqueue one job on the cluster at
``sys.argv[1]``, wait for it, and print what came back as one JSON line.

A separate file so that it can switch to ``raftq.SyncClient`` (the blocking client) when that
lands; it uses ``raftq.connect`` under ``trio.run`` until then."""

from __future__ import annotations

import json
import sys

import trio

import raftq


async def enqueue_and_wait(cluster: str) -> dict[str, object]:
    async with raftq.connect(cluster, timeout=30) as client:
        job_id = await client.enqueue("echo", {"from": "the wheel"})
        job = await client.wait(job_id, timeout=30)
    return {"id": job_id, "state": job.state, "result": job.result, "raftq": raftq.__file__}


if __name__ == "__main__":
    print(json.dumps(trio.run(enqueue_and_wait, sys.argv[1])))

"""Run by tests/test_packaging.py with the Python of a fresh virtual environment in which raftq
was installed from its wheel (not this repository): enqueue one job on the cluster at
``sys.argv[1]`` through the blocking ``raftq.SyncClient``, wait for it, and print what came back
as one JSON line."""

from __future__ import annotations

import json
import sys

import raftq


def enqueue_and_wait(cluster: str) -> dict[str, object]:
    with raftq.SyncClient(cluster, timeout=30) as client:
        job_id = client.enqueue("echo", {"from": "the wheel"})
        job = client.wait(job_id, timeout=30)
    return {"id": job_id, "state": job.state, "result": job.result, "raftq": raftq.__file__}


if __name__ == "__main__":
    print(json.dumps(enqueue_and_wait(sys.argv[1])))

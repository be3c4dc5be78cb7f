"""``raftq.Queue``: the synchronous facade, a single-node cluster in a background thread."""

from __future__ import annotations

from pathlib import Path

import raftq
from tests.node_helpers import free_ports


def test_the_sync_queue_runs_jobs_and_keeps_them_across_restarts(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    app = raftq.App()

    @app.handler("double")
    def double(job: raftq.JobContext) -> object:  # a sync handler: runs in a thread
        return {"doubled": 2 * job.payload["n"]}  # type: ignore[index]

    with raftq.Queue(str(tmp_path), workers=2, app=app, listen=f"127.0.0.1:{port}") as queue:
        job_id = queue.enqueue("double", {"n": 21}, key="first")
        assert queue.wait(job_id, timeout=20).result == {"doubled": 42}
        assert queue.status()["jobs"]["succeeded"] == 1
    with raftq.Queue(str(tmp_path), workers=0, listen=f"127.0.0.1:{port}") as queue:
        assert queue.get(job_id).state == "succeeded"  # durable across the restart
        assert queue.enqueue("double", {"n": 1}, key="first") == job_id  # deduplicated

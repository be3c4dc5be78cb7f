"""Enqueue jobs and wait for them through the Python API (README "The Python API")."""

import os

import trio

import raftq


async def main() -> None:
    cluster = os.environ.get("RAFTQ_CLUSTER", "127.0.0.1:7100")
    async with raftq.connect(cluster, timeout=30) as client:
        # One job; the key makes a retried enqueue return the same job instead of a second one.
        job_id = await client.enqueue("echo", {"file": "a.png"}, key="a.png:v1")
        assert await client.enqueue("echo", {"file": "a.png"}, key="a.png:v1") == job_id
        # Many jobs in one command and one commit (dicts in the job-file format).
        ids = await client.enqueue_many(
            [{"type": "sleep", "payload": {"sleep_ms": 10 * n}} for n in range(5)]
        )
        job = await client.wait(job_id, timeout=30)
        print(job.id, job.state, job.result)
        for other in ids:
            print(other, (await client.wait(other, timeout=30)).state)
        status = await client.status()
        print("leader:", status["cluster"]["leader"], "jobs:", status["jobs"])


trio.run(main)

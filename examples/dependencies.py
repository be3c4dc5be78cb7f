"""Chains, fan-out/fan-in, a batch callback and unique jobs with depends_on (docs/handlers.md)."""

import asyncio
import os

import raftq


async def main() -> None:
    async with raftq.connect(os.environ.get("RAFTQ_CLUSTER", "127.0.0.1:7100")) as client:
        # A chain: each step waits until the one before has succeeded.
        extract = await client.enqueue("echo", {"step": "extract"})
        transform = await client.enqueue("echo", {"step": "transform"}, depends_on=[extract])
        load = await client.enqueue("echo", {"step": "load"}, depends_on=[transform])
        # Fan-out, then fan-in: a batch, and a callback that waits for the whole batch.
        batch = await client.enqueue_many([{"type": "echo", "payload": n} for n in range(20)])
        report = await client.enqueue("echo", {"parts": len(batch)}, depends_on=batch)
        # A parent that fails: its child is cancelled, naming it; a cleanup runs anyway.
        broken = await client.enqueue("fail", max_attempts=1)
        skipped = await client.enqueue("echo", depends_on=[broken])
        cleanup = await client.enqueue("echo", depends_on=[broken], on_parent_failure="run")
        for job_id in (load, report, skipped, cleanup):
            job = await client.wait(job_id, timeout=30)
            print(f"{job_id}: {job.state} {job.error or job.result}")
        # Unique while active: one nightly report at a time, another once it has finished.
        first = await client.enqueue("sleep", {"sleep_ms": 300}, unique_while_active="nightly")
        again = await client.enqueue("sleep", {"sleep_ms": 300}, unique_while_active="nightly")
        print("while active, the same job:", again == first)
        await client.wait(first, timeout=30)
        later = await client.enqueue("sleep", {"sleep_ms": 0}, unique_while_active="nightly")
        print("once finished, a new job:", later != first)


asyncio.run(main())  # or trio.run(main): raftq.connect runs under either

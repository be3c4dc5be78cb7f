"""Enqueue jobs by their handler, with checked arguments, from asyncio (docs/handlers.md)."""

import asyncio
import os

from tasks import resize

import raftq


async def main() -> None:
    async with raftq.connect(os.environ.get("RAFTQ_CLUSTER", "127.0.0.1:7100")) as client:
        job_id = await resize.enqueue(client, file="a.png", width=64)
        urgent = await resize.options(priority=10, key="b.png:v1").enqueue(client, "b.png")
        batch = await client.enqueue_many([resize.job(file=f"{n}.png") for n in range(3)])
        try:
            await resize.enqueue(client, path="c.png")  # no such argument: nothing is sent
        except TypeError as error:
            print("refused:", error)
        for each in [job_id, urgent, *batch]:
            print((await client.wait(each, timeout=30)).result)


asyncio.run(main())  # or trio.run(main): raftq.connect runs under either

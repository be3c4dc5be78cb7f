"""A handler that takes long enough for a test to kill its worker mid-job."""

from __future__ import annotations

import trio

import raftq

app = raftq.App()


@app.handler("slow")
async def slow(job: raftq.JobContext) -> object:
    """The first attempt takes ``seconds``; later attempts finish at once."""
    if job.attempt == 1:
        await trio.sleep(float(job.payload.get("seconds", 30)))  # type: ignore[union-attr]
    return {"attempt": job.attempt}

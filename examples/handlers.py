"""Job handlers for a node or a remote worker: ``--import handlers`` (docs/handlers.md)."""

import hashlib
import os
import time

import anyio
import anyio.lowlevel

import raftq

app = raftq.App()


@app.handler("checksum")
async def checksum(job: raftq.JobContext) -> object:
    """Hash the payload's text in chunks, renewing the lease between chunks."""
    text = str(job.payload["text"]).encode()
    digest = hashlib.sha256()
    for start in range(0, len(text), 1 << 20):
        digest.update(text[start : start + (1 << 20)])
        await job.heartbeat()  # long work: keep the lease (raises LeaseLost if it is gone)
        await anyio.lowlevel.checkpoint()  # let other jobs run: on whichever loop runs the worker
    return {"sha256": digest.hexdigest(), "attempt": job.attempt, "fence": job.fence}


@app.handler("flaky")
async def flaky(job: raftq.JobContext) -> object:
    """Fails its first attempt (retried after about a second), succeeds on the second."""
    if job.attempt == 1:
        raise raftq.JobFailed("first attempts always fail here")
    return {"attempt": job.attempt}


@app.handler("invalid")
async def invalid(job: raftq.JobContext) -> object:
    """A failure that no retry can fix: dead at once, whatever attempts it has left."""
    raise raftq.Fail(f"cannot handle {job.payload!r}")


@app.handler("blocking")
def blocking(job: raftq.JobContext) -> object:
    """A sync handler runs in a worker thread: blocking calls are fine here."""
    time.sleep(0.01)
    job.heartbeat_from_thread()
    return {"slept_ms": 10}


@app.handler("snooze")
def snooze(job: raftq.JobContext) -> object:
    """Waits for a file: until it exists, run again in a second without using up an attempt."""
    if not os.path.exists(job.payload["path"]):
        job.progress_from_thread(f"waiting for {job.payload['path']}")
        raise raftq.Retry(delay_s=1)
    return {"attempt": job.attempt}


@app.handler("steps")
async def steps(job: raftq.JobContext) -> object:
    """Long work in steps, showing how far it got (the latest value, at most every second)."""
    total = int(job.payload["steps"])
    for done in range(1, total + 1):
        await anyio.sleep(0.01)  # one step of work
        await job.progress({"done": done, "total": total})
    return {"steps": total}


@app.handler("steps_sync")
def steps_sync(job: raftq.JobContext) -> object:
    """The same in a sync handler: ``progress_from_thread``."""
    total = int(job.payload["steps"])
    for done in range(1, total + 1):
        time.sleep(0.01)
        job.progress_from_thread({"done": done, "total": total})
    return {"steps": total}

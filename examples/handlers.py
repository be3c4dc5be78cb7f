"""Job handlers for a node or a remote worker: ``--import handlers`` (docs/handlers.md)."""

import hashlib
import time

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
    """A failure that no retry can fix: dead at once."""
    raise raftq.JobFailed(f"cannot handle {job.payload!r}", retryable=False)


@app.handler("blocking")
def blocking(job: raftq.JobContext) -> object:
    """A sync handler runs in a worker thread: blocking calls are fine here."""
    time.sleep(0.01)
    job.heartbeat_from_thread()
    return {"slept_ms": 10}

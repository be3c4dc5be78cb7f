"""Handlers whose arguments declare their payload, enqueued by their object (docs/handlers.md)."""

import raftq

app = raftq.App()


@app.handler("resize")
async def resize(job: raftq.JobContext, file: str, width: int = 800) -> object:
    """The payload of a ``resize`` job is ``{"file": ..., "width": ...}``: these arguments."""
    return {"file": file, "width": width, "attempt": job.attempt}

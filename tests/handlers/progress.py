"""A handler that snoozes once and reports progress, for the web app's tests: a job's API
object and page show its progress and snoozes as a real worker sets them."""

from __future__ import annotations

from pathlib import Path

import raftq

app = raftq.App()


@app.handler("progress")
async def progress(job: raftq.JobContext) -> object:
    """``payload["snooze_once"]``: a path; while it exists, the handler removes it and snoozes
    (so exactly once). Then it reports ``payload["progress"]`` and succeeds."""
    assert isinstance(job.payload, dict), job.payload
    flag = Path(str(job.payload["snooze_once"]))
    if flag.exists():
        flag.unlink()
        raise raftq.Retry(delay_s=0.1)
    await job.progress(job.payload["progress"])
    return {"attempt": job.attempt}

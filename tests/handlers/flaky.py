"""A handler that fails while a file exists: a test makes a job dead, removes the file, and
retries it (from the dashboard) to see it succeed."""

from __future__ import annotations

from pathlib import Path

import raftq

app = raftq.App()


@app.handler("flaky")
def flaky(job: raftq.JobContext) -> object:
    """``payload["fail_while"]``: a path; the job fails while that file exists."""
    assert isinstance(job.payload, dict), job.payload
    flag = Path(str(job.payload["fail_while"]))
    if flag.exists():
        raise raftq.JobFailed(f"{flag} exists (attempt {job.attempt})")
    return {"attempt": job.attempt}

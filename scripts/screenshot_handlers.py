"""A handler for the dashboard's screenshots (``scripts/web_screenshots.py``): a long import
that reports how far it got, then keeps running, so that its job's page shows its progress."""

from __future__ import annotations

import trio

import raftq

app = raftq.App()


@app.handler("import-catalog")
async def import_catalog(job: raftq.JobContext) -> object:
    """Reports ``payload["done"]`` of ``payload["total"]`` and runs until the node stops it."""
    assert isinstance(job.payload, dict), job.payload
    await job.progress({"done": job.payload["done"], "total": job.payload["total"]})
    await trio.sleep(float(job.payload.get("seconds", 600)))
    return {"imported": job.payload["total"]}

"""A Flask app that enqueues through one shared raftq.SyncClient (README "Web frameworks")."""

import atexit
import os

from flask import Flask, request
from tasks import resize

import raftq

# One client for every thread of the process; a pre-fork server's workers each reconnect.
client = raftq.SyncClient(os.environ.get("RAFTQ_CLUSTER", "127.0.0.1:7100"))
atexit.register(client.close)

app = Flask(__name__)


@app.post("/resize")
def enqueue_resize() -> tuple[dict[str, str], int]:
    job_id = resize.enqueue_sync(client, file=request.json["file"])
    return {"id": job_id}, 201


@app.get("/jobs/<job_id>")
def job_state(job_id: str) -> dict[str, object] | tuple[dict[str, str], int]:
    try:
        job = client.get(job_id)
    except raftq.JobNotFound:
        return {"error": f"no job {job_id}"}, 404
    return {"state": job.state, "result": job.result}

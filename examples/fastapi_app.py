"""A FastAPI app whose lifespan opens one raftq.connect client for every request (README)."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel
from tasks import resize

import raftq


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with raftq.connect(os.environ.get("RAFTQ_CLUSTER", "127.0.0.1:7100")) as client:
        app.state.raftq = client
        yield


app = FastAPI(lifespan=lifespan)


class Resize(BaseModel):
    file: str
    width: int = 800


@app.post("/resize", status_code=201)
async def enqueue_resize(body: Resize, request: Request) -> dict[str, str]:
    job_id = await resize.enqueue(request.app.state.raftq, file=body.file, width=body.width)
    return {"id": job_id}


@app.get("/jobs/{job_id}")
async def job_state(job_id: str, request: Request) -> dict[str, object]:
    try:
        job = await request.app.state.raftq.get(job_id)
    except raftq.JobNotFound:
        raise HTTPException(404, f"no job {job_id}") from None
    return {"state": job.state, "result": job.result}

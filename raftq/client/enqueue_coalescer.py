"""Single enqueues made at the same time travel as one command (what ``SyncClient`` does).

Each thread of a threaded program enqueues one job at a time. Sent alone, every one of them
costs the cluster a request, a proposal and its share of a commit; the cluster's CPU, not the
network, is what bounds their rate. So the enqueues that arrive while one command is in flight
wait for it and then go together, as the next command: one commit for all of them (the worker
batches its reports the same way). A lone caller never waits: its command goes at once.

Every job is given its idempotency key before it is first sent, so a batch is safe to resend
one job at a time. That is what happens when a batch fails (a job the cluster rejects, or a
batch too large for one command): each job is then sent alone, concurrently, and each caller
gets exactly the answer, or the error, that an enqueue of its own would have got.

Runs in the client's event loop, which alone touches it. The waiting list holds at most one
job per blocked caller thread, and a command at most ``limits.JOBS_PER_ENQUEUE_MAX`` jobs.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import attrs

from raftq import limits
from raftq.client.client import Client, new_key
from raftq.errors import RaftqError
from raftq.jobs.commands import JobSpec


class _Waiting:
    """One caller's job: its outcome, and the event that wakes the caller."""

    __slots__ = ("done", "error", "job_id", "spec", "wake")

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.wake = anyio.Event()
        self.done = False
        self.job_id = ""
        self.error: BaseException | None = None

    def finish(self, job_id: str = "", error: BaseException | None = None) -> None:
        assert not self.done, "a job is answered once"
        self.done, self.job_id, self.error = True, job_id, error
        self.wake.set()


class EnqueueCoalescer:
    def __init__(self, client: Client) -> None:
        self._client = client
        self._waiting: list[_Waiting] = []
        self._sending = False
        self.commands = 0
        """Enqueue commands sent (for tests and benchmarks: jobs / commands is the batching)."""

    async def enqueue(self, spec: JobSpec) -> str:
        """Enqueue one job; its id once committed (the errors of ``Client.enqueue_specs``)."""
        mine = _Waiting(spec if spec.key else attrs.evolve(spec, key=new_key()))
        self._waiting.append(mine)
        while not mine.done:
            if self._sending:  # a command is in flight: wait for it, then maybe send ours
                await mine.wake.wait()
                mine.wake = anyio.Event()
                continue
            self._sending = True
            batch = self._waiting[: limits.JOBS_PER_ENQUEUE_MAX]
            del self._waiting[: len(batch)]
            try:
                await self._send(batch)
            finally:
                self._sending = False
                if self._waiting:  # the first of the next batch sends it
                    self._waiting[0].wake.set()
        if mine.error is not None:
            raise mine.error
        return mine.job_id

    async def _send(self, batch: Sequence[_Waiting]) -> None:
        try:
            self.commands += 1
            ids = await self._client.enqueue_specs([each.spec for each in batch])
        except RaftqError as error:
            if len(batch) == 1:
                batch[0].finish(error=error)
                return
            async with anyio.create_task_group() as tasks:  # each alone, keys unchanged
                for each in batch:
                    tasks.start_soon(self._send, [each])
            return
        except BaseException as error:  # cancelled: no caller of the batch waits forever
            for each in batch:
                if not each.done:
                    each.finish(error=error)
            raise
        assert len(ids) == len(batch), "enqueue_specs answers every job"
        for each, job_id in zip(batch, ids, strict=True):
            each.finish(job_id)


__all__ = ["EnqueueCoalescer"]

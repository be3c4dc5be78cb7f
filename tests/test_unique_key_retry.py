"""An enqueue answered by a unique key's holder, retried with the same idempotency key (issue
18 item 4: found by the simulator's sweep with handler-level faults, seed 2006).

``JobStateMachine._enqueue_one`` answers a job whose ``unique_while_active`` key is held with
the holder (``Enqueued(holder, created=False)``) without recording the job's idempotency key
for it. When the client's answer is lost (a leader crash, a lost reply) and the client
retries the same command, with the same key, after the holder finished, the retry creates a
new job: one idempotency key then names two jobs ("Retrying with the same idempotency key K
returns the same job", DESIGN.md). The machine now records the key for the holder; this test
failed before (the retry answered ``created=True``).

Replay: ``python -m sim run --seed 2006 --nodes 3 --sim-seconds 20 --force handler_crash
--force lease_expiry --force lost_report --force run_failover --force clock_jump
--handler-faults`` ("idempotency keys dedupe: index 320: key auto-... gave job j320-0,
earlier j239-0").
"""

from __future__ import annotations

from raftq.jobs.commands import Enqueued
from tests.test_dependencies import finish
from tests.test_jobs_commands import Log, spec


def test_a_retried_enqueue_answered_by_a_unique_holder_names_that_holder_again() -> None:
    log = Log()
    log.enqueue(spec(id="holder", unique_while_active="report:42"))
    (first,) = log.enqueue_result(spec(key="K", unique_while_active="report:42"))
    assert first == Enqueued(job_id="holder", created=False)
    finish(log, "holder")  # the unique key is free again; the idempotency key K must not be
    (retried,) = log.enqueue_result(spec(key="K", unique_while_active="report:42"))
    assert retried == Enqueued(job_id="holder", created=False)

"""The fixed version of ``examples/orders_unsafe.py`` (docs/simulator.md, "Your own
handlers"): the charge carries the order as its idempotency key, so the payment provider
charges each order once however often the job runs, and the order's row is written with the
lease's fence, so a run that lost its lease cannot overwrite what a newer run wrote:

    PYTHONPATH=examples raftq sim sweep --seeds 3 --sim-seconds 5 --import orders_safe \
        --check orders_check:each_order_charged_once
"""

from __future__ import annotations

import random

import raftq
from sim import fakes

app = raftq.App()
payments = fakes.endpoint("payments")
orders = fakes.kv("orders")


@app.handler("charge")
async def charge(job: raftq.JobContext) -> object:
    order = job.payload["order"]
    answer = await payments.post(
        "/charges",
        {"order": order, "cents": job.payload["cents"]},
        job=job,
        idempotency_key=f"charge:{order}",  # a rerun gets the first charge's answer back
    )
    try:
        await orders.put(
            order, {"status": "charged", "charge": answer["id"]}, job=job, fence=job.fence
        )
    except fakes.StaleFence as error:  # a newer run holds the job: this one must stop
        raise raftq.LeaseLost(str(error)) from None
    return {"charge": answer["id"]}


def simulation_jobs(rng: random.Random) -> list[dict[str, object]]:
    """The same twenty orders as the unsafe version."""
    return [
        {
            "type": "charge",
            "key": f"order-{number}",
            "payload": {"order": f"order-{number}", "cents": rng.randint(100, 5000)},
            "timeout_ms": 1000,
            "max_attempts": 5,
        }
        for number in range(20)
    ]

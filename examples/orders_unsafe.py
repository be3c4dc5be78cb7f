"""A handler that is NOT safe to run twice, for the simulator's tutorial (docs/simulator.md,
"Your own handlers"): it charges an order at the payment provider every time it runs. A job
queue runs a job at least once, so a crash after the charge and before the report, a lease
that expires mid-run or a lost report charges the customer again. The simulator finds it:

    PYTHONPATH=examples raftq sim run --seed 1 --sim-seconds 5 --import orders_unsafe \
        --check orders_check:each_order_charged_once

``examples/orders_safe.py`` is the fixed version.
"""

from __future__ import annotations

import random

import raftq
from sim import fakes

app = raftq.App()
payments = fakes.endpoint("payments")
"""The payment provider (in production: its HTTP API)."""
orders = fakes.kv("orders")
"""The shop's database (in production: its orders table)."""


@app.handler("charge")
async def charge(job: raftq.JobContext) -> object:
    order = job.payload["order"]
    answer = await payments.post(
        "/charges", {"order": order, "cents": job.payload["cents"]}, job=job
    )
    await orders.put(order, {"status": "charged", "charge": answer["id"]}, job=job)
    return {"charge": answer["id"]}


def simulation_jobs(rng: random.Random) -> list[dict[str, object]]:
    """What the simulator enqueues in a run: twenty orders to charge."""
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

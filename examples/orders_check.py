"""The check of the simulator's tutorial (docs/simulator.md, "Your own handlers"), for
``--check orders_check:each_order_charged_once``: it runs once every job of the run
is final, and an assertion that fails fails the seed with its message."""

from __future__ import annotations

from collections import Counter

from sim.fakes import World


def each_order_charged_once(world: World) -> None:
    charges = Counter(
        effect.value["order"] for effect in world.effects_on("endpoint:payments") if effect.applied
    )
    for job in world.jobs:
        order = job.payload["order"]
        assert charges[order] <= 1, (
            f"{order} charged {charges[order]} times (job {job.id}, {job.attempts} attempts)"
        )
        if job.state == "succeeded":
            assert charges[order] == 1, f"{order} succeeded but was never charged"
    # Every write to an order's row carried a fence at least as new as the one before it: a
    # run that lost its lease never overwrote a newer run's write.
    newest: dict[str, int] = {}
    for effect in world.effects_on("kv:orders"):
        if effect.applied:
            assert effect.fence >= newest.get(effect.key, 0), (
                f"{effect.key} written by fence {effect.fence} after fence {newest[effect.key]}"
            )
            newest[effect.key] = effect.fence

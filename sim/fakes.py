"""The outside world for users' handlers under the simulator (docs/simulator.md, "Your own
handlers"): a key-value store and an HTTP-like endpoint that record every effect with the job
id, attempt and fence of the run that made it, so that a check function can assert on them
("each order charged once", "every write carried the newest fence").

Handlers reach them by name, at import time or at call time alike::

    from sim import fakes

    payments = fakes.endpoint("payments")
    orders = fakes.kv("orders")

    @app.handler("charge")
    async def charge(job):
        await payments.post("/charges", {"order": job.payload["order"]}, job=job)

A handle looks up the current run's world at each call (``begin_world``, which the simulator
calls before each run), so nothing leaks from one seed to the next. Each call is a simulated
I/O: it is an ``await``, and it is where the handler-level faults strike (a stall past the
lease just before the effect lands; ``sim.handlers``). Everything is deterministic: effects
are numbered in the order the run makes them, with the virtual time.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import attrs
import trio

from raftq.client.jobfile import decode_json, encode_json


class RunLike(Protocol):
    """What a fake needs from the handler's ``job`` (a ``raftq.JobContext``)."""

    id: str
    attempt: int
    fence: int


@attrs.frozen(kw_only=True)
class Effect:
    """One call that reached the outside world (or was refused there)."""

    number: int
    """1, 2, ... in the order the run made them (all fakes together)."""
    at_ms: int
    """Virtual time of the effect, in ms since the run started."""
    target: str
    """``kv:NAME`` or ``endpoint:NAME``."""
    operation: str
    """``put``, ``put_if_absent``, ``delete`` or ``post``."""
    key: str
    """The key written, or the path posted to."""
    value: Any
    job_id: str
    attempt: int
    fence: int
    applied: bool
    """False when the store refused it (a stale fence, a key already present) or an
    idempotency key replayed an earlier answer."""
    why: str = ""
    """Why it was not applied."""


class StaleFence(Exception):
    """A fenced write carried an older fence than one already written to its key: the run
    that made it lost its lease to a newer one. The handler should stop (like ``LeaseLost``)."""


@attrs.define(eq=False)
class _Stored:
    value: Any
    fence: int


@attrs.define(eq=False)
class World:
    """One run's outside world: every store's data and every effect, in order."""

    effects: list[Effect] = attrs.field(factory=list)
    stores: dict[str, dict[str, _Stored]] = attrs.field(factory=dict)
    answers: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    """Endpoint name -> idempotency key -> the answer its first post got."""
    on_effect: Callable[[Effect], None] = lambda effect: None
    """The simulator's hook (its trace records each effect)."""
    jobs: list[Any] = attrs.field(factory=list)
    """For the check function: the user's jobs once the run is over, each final, as
    ``sim.handlers.UserJob`` (key, id, type, state, attempts, payload)."""

    def data(self, name: str) -> dict[str, Any]:
        """The key-value store ``name`` now: key -> value."""
        return {key: stored.value for key, stored in sorted(self.stores.get(name, {}).items())}

    def effects_on(self, target: str) -> list[Effect]:
        """The effects on ``kv:NAME`` or ``endpoint:NAME``, in order."""
        return [effect for effect in self.effects if effect.target == target]

    def record(self, **fields: Any) -> Effect:
        effect = Effect(
            number=len(self.effects) + 1, at_ms=int(trio.current_time() * 1000), **fields
        )
        self.effects.append(effect)
        self.on_effect(effect)
        return effect


EFFECTS_MAX = 100_000
"""A run's effects are kept in memory for the check function: a handler that writes in a loop
without end fails the run with a clear message instead of exhausting memory."""

_world = World()

Stall = Callable[[], Awaitable[None]]
before_effect: contextvars.ContextVar[Stall | None] = contextvars.ContextVar(
    "sim_fakes_before_effect", default=None
)
"""Set by the simulator around each handler run (``sim.handlers``): awaited before the run's
effects land (a fault may stall there past the lease)."""
effect_made: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "sim_fakes_effect_made", default=None
)
"""Set by the simulator around each handler run: told that the run made an effect."""


def begin_world(on_effect: Callable[[Effect], None] = lambda effect: None) -> World:
    """A fresh world for a new run (the simulator calls it); returns it."""
    global _world
    _world = World(on_effect=on_effect)
    return _world


def world() -> World:
    """The current run's world (what a check function receives, too)."""
    return _world


def kv(name: str) -> KeyValueStore:
    return KeyValueStore(name)


def endpoint(name: str) -> Endpoint:
    return Endpoint(name)


async def _arrive(job: RunLike) -> None:
    """The call travels to the outside world: a checkpoint, and the fault hook's stall."""
    if not isinstance(getattr(job, "id", None), str) or not isinstance(
        getattr(job, "fence", None), int
    ):
        raise TypeError(f"job= must be the handler's job (a raftq.JobContext), not {job!r}")
    await trio.lowlevel.checkpoint()
    stall = before_effect.get()
    if stall is not None:
        await stall()  # on its way: what follows lands even if the caller is cancelled now


def _made(world: World) -> None:
    if len(world.effects) >= EFFECTS_MAX:
        raise RuntimeError(f"more than {EFFECTS_MAX} effects in one run: a handler in a loop?")
    told = effect_made.get()
    if told is not None:
        told()


EFFECT_VALUE_BYTES_MAX = 64 * 1024
"""A value written to a fake, encoded as JSON: what a row or a request body holds."""


def _plain(value: Any) -> Any:
    """A JSON copy of ``value`` (``ValueError`` if it is not JSON or too large): a fake keeps
    no reference to the handler's objects, which it might change afterwards."""
    return decode_json(encode_json(value, EFFECT_VALUE_BYTES_MAX))


@attrs.frozen
class KeyValueStore:
    """A simulated key-value store (a table with a primary key). ``fence=`` on a write makes
    it conditional, as a fencing-token column does: refused (``StaleFence``) if the key was
    written with a higher fence before."""

    name: str

    @property
    def _target(self) -> str:
        return f"kv:{self.name}"

    def _table(self) -> dict[str, _Stored]:
        return _world.stores.setdefault(self.name, {})

    async def get(self, key: str, *, job: RunLike) -> Any:
        """The value under ``key``, or None. A read is no effect; it is not recorded."""
        await _arrive(job)
        stored = self._table().get(key)
        return None if stored is None else stored.value

    async def put(self, key: str, value: Any, *, job: RunLike, fence: int | None = None) -> None:
        """Write ``value`` under ``key``. With ``fence`` (pass ``job.fence``): refused with
        ``StaleFence`` if ``key`` already holds a write with a higher fence."""
        await _arrive(job)
        world, table, value = _world, self._table(), _plain(value)
        _made(world)
        stored = table.get(key)
        if fence is not None and stored is not None and stored.fence > fence:
            why = f"fence {fence} is older than {stored.fence}, already written to {key!r}"
            self._record(world, "put", key, value, job, applied=False, why=why)
            raise StaleFence(f"{self._target}: {why}")
        table[key] = _Stored(value, max(fence or 0, stored.fence if stored else 0))
        self._record(world, "put", key, value, job, applied=True)

    async def put_if_absent(self, key: str, value: Any, *, job: RunLike) -> bool:
        """Write ``value`` under ``key`` unless the key exists (a unique constraint, an
        ``INSERT ... ON CONFLICT DO NOTHING``); whether it was written."""
        await _arrive(job)
        world, table, value = _world, self._table(), _plain(value)
        _made(world)
        if key in table:
            self._record(world, "put_if_absent", key, value, job, applied=False, why="exists")
            return False
        table[key] = _Stored(value, job.fence)
        self._record(world, "put_if_absent", key, value, job, applied=True)
        return True

    async def delete(self, key: str, *, job: RunLike) -> bool:
        """Delete ``key``; whether it existed."""
        await _arrive(job)
        world, table = _world, self._table()
        _made(world)
        existed = table.pop(key, None) is not None
        why = "" if existed else "absent"
        self._record(world, "delete", key, None, job, applied=existed, why=why)
        return existed

    def _record(
        self, world: World, operation: str, key: str, value: Any, job: RunLike, **more: Any
    ) -> None:
        world.record(
            target=self._target,
            operation=operation,
            key=key,
            value=value,
            job_id=job.id,
            attempt=job.attempt,
            fence=job.fence,
            **more,
        )


@attrs.frozen
class Endpoint:
    """A simulated HTTP API that does something each time it is called (a payment provider, a
    mailer). ``idempotency_key=`` works as such APIs' Idempotency-Key header does: a second
    post with a key already seen does nothing and gets the first post's answer."""

    name: str

    async def post(
        self, path: str, body: Any, *, job: RunLike, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """``{"id": N, "replayed": bool}``: N numbers the effects this endpoint made."""
        await _arrive(job)
        world, body = _world, _plain(body)
        _made(world)
        target = f"endpoint:{self.name}"
        answers = world.answers.setdefault(self.name, {})
        if idempotency_key is not None and idempotency_key in answers:
            why = f"idempotency key {idempotency_key!r} replayed"
            world.record(
                target=target,
                operation="post",
                key=path,
                value=body,
                job_id=job.id,
                attempt=job.attempt,
                fence=job.fence,
                applied=False,
                why=why,
            )
            return {**answers[idempotency_key], "replayed": True}
        made = sum(1 for effect in world.effects_on(target) if effect.applied)
        answer = {"id": made + 1, "replayed": False}
        if idempotency_key is not None:
            answers[idempotency_key] = answer
        world.record(
            target=target,
            operation="post",
            key=path,
            value=body,
            job_id=job.id,
            attempt=job.attempt,
            fence=job.fence,
            applied=True,
        )
        return dict(answer)

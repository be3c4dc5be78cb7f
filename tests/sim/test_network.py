"""The simulated network (``sim.network``): what a cut does to data in flight."""

from __future__ import annotations

import random

import trio
import trio.testing

from sim.network import NetworkProfile, SimNetwork, SimStream
from sim.trace import Trace

ADDRESS = "127.0.0.1:7001"


async def _serve_one(
    network: SimNetwork, nursery: trio.Nursery, received: list[bytes], ended: trio.Event
) -> None:
    """A server at ``ADDRESS`` on endpoint "server" that reads one connection to its end."""

    async def handler(stream: SimStream) -> None:
        while data := await stream.receive_some():
            received.append(data)
        ended.set()

    await nursery.start(network.endpoint("server").serve, ADDRESS, handler)


def _network() -> SimNetwork:
    return SimNetwork(random.Random(1), NetworkProfile(), Trace(keep_all=False))


async def test_what_a_closed_connection_sent_behind_a_cut_arrives_once_the_cut_heals(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """TCP delivers what was sent before a close (the FIN follows it) once the route is back.
    The simulator forgot a closed connection, so the end of the cut never woke its reader:
    the data never arrived (a worker's Release sent from behind a cut, then the worker
    stopped, was lost instead of arriving late)."""
    network = _network()
    received: list[bytes] = []
    ended = trio.Event()
    async with trio.open_nursery() as nursery:
        await _serve_one(network, nursery, received, ended)
        stream = await network.endpoint("client").connect(ADDRESS)
        network.set_cuts([("client", "server")])
        await stream.send_all(b"release")
        await stream.aclose()
        await trio.sleep(5.0)
        assert received == []  # held behind the cut
        network.heal()
        with trio.fail_after(1.0):
            await ended.wait()
        assert received == [b"release"]
        nursery.cancel_scope.cancel()


async def test_a_silenced_endpoint_stays_unheard_through_partitions_until_heard_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``silence`` is a schedule's cut: the random partitions replacing each other (and
    healing) do not end it; only ``silence(name, False)`` does."""
    network = _network()
    received: list[bytes] = []
    ended = trio.Event()
    async with trio.open_nursery() as nursery:
        await _serve_one(network, nursery, received, ended)
        stream = await network.endpoint("client").connect(ADDRESS)
        network.silence("client", True)
        await stream.send_all(b"late")
        network.set_cuts([("server", "client")])
        await trio.sleep(1.0)
        network.heal()
        await trio.sleep(1.0)
        assert received == []
        network.silence("client", False)
        await trio.sleep(1.0)
        assert received == [b"late"]
        await stream.aclose()
        with trio.fail_after(1.0):
            await ended.wait()
        nursery.cancel_scope.cancel()

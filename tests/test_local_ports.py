"""Ports for local clusters (raftq.local_cluster.free_ports): below the kernel's ephemeral range,
where outgoing connections take their local ports, so a busy machine does not take a node's port
between the probe and the node's bind (seen as "Address already in use" in the docs test)."""

from __future__ import annotations

import socket

from raftq.local_cluster import LISTEN_PORTS_LOWEST, _ephemeral_lowest, _is_free, free_ports


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    ports = free_ports(9)
    assert len(set(ports)) == 9
    assert all(LISTEN_PORTS_LOWEST <= port < _ephemeral_lowest() for port in ports)
    for port in ports:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))


def test_a_port_in_use_is_not_free() -> None:
    taken = free_ports(1)[0]
    assert _is_free(taken)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        assert not _is_free(taken)

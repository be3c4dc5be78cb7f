"""A full disk or a failed fsync under a running node (docs/storage.md, "When the disk fails").

The node stops acknowledging writes, says why in its log, its metrics and ``status``, never
acknowledges what it did not persist (a crash afterwards keeps every acknowledged job), and
resumes by itself once the disk accepts writes again.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from raftq.client.client import connect
from raftq.errors import NoQuorum
from raftq.ids import NodeId
from raftq.node.config import NodeConfig
from raftq.node.node import Node, open_node
from tests.node_helpers import member_map, wait_until
from tests.storage_helpers import FullDisk


def single_node(tmp_path: Path) -> NodeConfig:
    return NodeConfig(node_id=NodeId("n1"), members=member_map(1), data_dir=str(tmp_path / "n1"))


def metric(node: Node, name: str) -> float:
    for line in generate_latest(node.metrics.registry).decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


async def test_a_full_disk_stops_acknowledgements_until_space_returns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    disk = FullDisk()
    config = single_node(tmp_path)
    acknowledged: list[str] = []
    async with open_node(config, disk=disk) as node:
        await wait_until(lambda: node.steward.extend_alls > 0)
        async with connect(config.address, timeout=2) as client:
            acknowledged.append(await client.enqueue("noop", {}, key="before"))
            disk.full = True
            with pytest.raises(NoQuorum):
                await client.enqueue("noop", {}, key="while-full")
            problem = node.log_writer.storage_problem
            assert problem is not None
            assert "No space left on device" in problem
            assert "not acknowledging writes" in caplog.text
            status = await client.status()
            assert "No space left" in status["cluster"]["nodes"][0]["storage_error"]
            assert metric(node, "raftq_storage_writable") == 0
            assert metric(node, "raftq_storage_errors_total") >= 1
            with pytest.raises(NoQuorum, match="storage_error"):  # refused at once now
                await client.enqueue("noop", {}, key="refused")

            disk.full = False
            await wait_until(lambda: node.log_writer.storage_problem is None, seconds=5)
            assert metric(node, "raftq_storage_writable") == 1
            acknowledged.append(await client.enqueue("noop", {}, key="after"))
            assert (await client.status())["cluster"]["nodes"][0]["storage_error"] is None
    disk.crash()  # power loss: only what was synced survives
    async with open_node(config, disk=disk) as node, connect(config.address, timeout=10) as client:
        for job_id in acknowledged:
            assert (await client.get(job_id)).state == "pending"


async def test_a_failed_fsync_is_written_again_before_it_is_acknowledged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The fsync fails the way Linux fails it (the pages are marked clean and their bytes
    never reach the disk): the node cuts them off and writes them again, so the enqueue it
    acknowledges after recovering survives a crash."""
    caplog.set_level(logging.INFO)
    disk = FullDisk()
    config = single_node(tmp_path)
    async with open_node(config, disk=disk) as node:
        await wait_until(lambda: node.steward.extend_alls > 0)
        async with connect(config.address, timeout=10) as client:
            disk.inject_lost_sync()
            job_id = await client.enqueue("noop", {"survives": True})
        assert node.log_writer.statistics.storage_errors == 1
        assert "wal recovered" in caplog.text
    disk.crash()
    async with open_node(config, disk=disk) as node, connect(config.address, timeout=10) as client:
        assert (await client.get(job_id)).payload == {"survives": True}

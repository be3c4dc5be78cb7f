"""A real ``LocalCluster`` (``python -m raftq.node`` processes on 127.0.0.1, free ports) for
synchronous tests: the SyncClient's and the framework examples'. The nodes are started and
stopped from a Trio loop in an AnyIO portal thread; they are stopped however the block ends."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from anyio.from_thread import start_blocking_portal

from raftq.local_cluster import LocalCluster


@contextmanager
def process_cluster(
    root: Path, size: int = 3, *, workers: int = 2, extra_flags: Sequence[str] = ()
) -> Iterator[LocalCluster]:
    """``size`` nodes with ``workers`` in-process workers each; fsync on, as in production."""
    with start_blocking_portal("trio") as portal:
        cluster = LocalCluster(root, size, workers=workers, extra_flags=extra_flags)
        try:
            portal.call(cluster.start_all)
            yield cluster
        finally:
            portal.call(cluster.stop)

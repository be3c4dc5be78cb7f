"""``python -m raftq`` is the ``raftq`` command."""

from raftq.cli import run

run()

"""Tools for working on raftq (run from the repository root with ``python -m scripts.NAME``)."""

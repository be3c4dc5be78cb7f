"""The deterministic simulator: runs real raftq nodes under simulated time, network and disk.

``sim`` imports ``raftq``; ``raftq`` never imports ``sim`` (tests/test_layering.py checks it).
"""

"""The sans-IO Raft core: no trio, sockets, files, clocks or global random."""

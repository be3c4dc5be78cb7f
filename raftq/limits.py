"""Every bound in raftq, each with the reason for its value.

TigerBeetle's rule: put a limit on everything. Crossing one of these is a defined error (``Busy``,
``ConfigError``, ``RemoteProtocolError``, ...), never silent growth. Tests may pass smaller values
where a component takes the limit as a parameter; production code reads them from here.
"""

from __future__ import annotations

# --- identifiers --------------------------------------------------------------------------------

NODE_ID_CHARS_MAX = 64
"""Node ids appear in every Raft message and log line; 64 characters fits any naming scheme."""

# --- write-ahead log ----------------------------------------------------------------------------

WAL_RECORD_BYTES_MAX = 16 * 1024 * 1024
"""One record holds one Raft entry, whose size the Raft layer bounds well below this (proposal
batches are cut long before). Start-up also uses it to tell a corrupted length field (larger
than any record we could have written) from a torn write."""

WAL_SEGMENT_BYTES = 64 * 1024 * 1024
"""Segments roll over past this size. Compaction deletes whole segments, so smaller segments free
disk sooner after a snapshot; larger ones mean fewer files and directory fsyncs. 64 MiB is
etcd's choice, and at ~100 bytes per job it is over half a million jobs per segment."""

LOG_CACHE_ENTRIES = 8192
"""Recently appended entries kept decoded in memory: followers in the replicate state read only
these, so the hot path never touches the disk. Older entries are read back by position."""

# --- snapshots ----------------------------------------------------------------------------------

SNAPSHOT_BYTES_MAX = 1024 * 1024 * 1024
"""A snapshot is the whole job table; above 1 GiB the cluster holds too many jobs for one process
and admission control (``Busy``) should have stopped enqueues long before."""

SNAPSHOTS_KEPT = 2
"""The newest snapshot plus one: if the newest turns out unreadable the older one still is."""

SNAPSHOT_WRITE_CHUNK_BYTES = 1024 * 1024
"""Snapshots are written and checksummed in chunks so memory for one write stays bounded."""

# --- hard state ---------------------------------------------------------------------------------

HARD_STATE_BYTES_MAX = 4096
"""Term, vote and commit encode to well under 100 bytes; anything larger is not ours."""

# --- real disk ----------------------------------------------------------------------------------

INLINE_WRITE_BYTES_MAX = 256 * 1024
"""Writes up to this size are done on the event loop: a copy into the page cache costs tens of
microseconds, less than a hop to a worker thread (about 150 us here, see docs/storage.md).
Larger writes (snapshot chunks) go to a thread. Syncs never run on the loop."""

# --- raft ---------------------------------------------------------------------------------------

RAFT_APPEND_BYTES_MAX = 1024 * 1024
"""Entries per AppendEntries, by bytes: big enough to carry a whole proposal batch in one
message, small enough that one message never monopolises a connection for long."""

RAFT_INFLIGHT_MAX = 256
"""AppendEntries in flight to one follower (pipelining window). With 1 MiB messages that is at
most 256 MiB buffered per follower; in practice messages are far smaller. Enough to cover the
round trip at full speed on any LAN."""

RAFT_UNCOMMITTED_BYTES_MAX = 64 * 1024 * 1024
"""Proposed-but-uncommitted bytes on a leader. Past this, proposals get ``Busy`` instead of
growing memory while a quorum is unreachable."""

RAFT_APPLY_BYTES_MAX = 16 * 1024 * 1024
"""Committed entries handed to the application per Ready, so one Ready never holds the whole
log after a long partition heals."""

SNAPSHOT_CHUNK_BYTES = 1024 * 1024
"""One InstallSnapshot chunk: bounded memory per message on both sides; a transfer resumes at
chunk granularity."""

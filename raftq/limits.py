"""Every bound in raftq, each with the reason for its value.

TigerBeetle's rule: put a limit on everything. Crossing one of these is a defined error (``Busy``,
``ConfigError``, ``RemoteProtocolError``, ...), never silent growth. Tests may pass smaller values
where a component takes the limit as a parameter; production code reads them from here.
"""

from __future__ import annotations

# --- identifiers --------------------------------------------------------------------------------

NODE_ID_CHARS_MAX = 64
"""Node ids appear in every Raft message and log line; 64 characters fits any naming scheme."""

# --- nesting ------------------------------------------------------------------------------------

NESTING_DEPTH_MAX = 64
"""Arrays and objects inside one another, in any document from outside: a job file, a payload
or result, an HTTP body, a frame on the wire. Real documents stay under 20 levels; a deeper one
is a mistake or an attack. Python's json and our decoders recurse once per level, and a
document nested past Python's recursion limit (1000 frames, shared with the caller's own
stack: trio tasks, handlers) raised a bare ``RecursionError``; 64 keeps every parse far below
it, and below cbor2's own default (400). Checked by ``raftq.client.jobfile.parse_json`` /
``check_nesting`` (JSON) and ``raftq.codec`` (CBOR), so every door refuses it the same way."""

# --- write-ahead log ----------------------------------------------------------------------------

WAL_RECORD_BYTES_MAX = 16 * 1024 * 1024
"""One record holds one Raft entry, whose size the Raft layer bounds well below this (proposal
batches are cut long before). Start-up also uses it to tell a corrupted length field (larger
than any record we could have written) from a torn write."""

WAL_SEGMENT_BYTES = 64 * 1024 * 1024
"""Segments roll over past this size. Compaction deletes whole segments, so smaller segments free
disk sooner after a snapshot; larger ones mean fewer files and directory fsyncs. 64 MiB is
etcd's choice, and at ~100 bytes per job it is over half a million jobs per segment."""

WAL_SEGMENT_BYTES_MIN = 4096
"""The smallest segment size a node accepts (``NodeConfig.wal_segment_bytes``): room for a few
dozen small records, so a segment never rolls after every write (one file and directory fsync
per batch). The simulator sets small segments (``sim.cluster.wal_segment_bytes``, 11 KiB and
up) so its short runs roll and compact them."""

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

RAFT_READS_PENDING_MAX = 16_384
"""ReadIndex requests waiting for a heartbeat round on a leader (or for the leader's answer on
a follower). A round confirms them all every tick, so only a leader cut off from its quorum
gathers many: past this, local reads get ``Busy`` and forwarded ones are dropped (their
clients time out and retry elsewhere). As large as the Raft inbox, which bounds one tick's."""

SNAPSHOT_CHUNK_BYTES = 1024 * 1024
"""One InstallSnapshot chunk: bounded memory per message on both sides; a transfer resumes at
chunk granularity."""

# --- jobs ---------------------------------------------------------------------------------------

JOB_HISTORY_MAX = 32
"""Events kept per job for ``raftq job ID``, its enqueue included: enough for every attempt of
a job with the default retries; past it the oldest events after the enqueue are dropped."""

JOB_ID_CHARS_MAX = 128
JOB_KEY_CHARS_MAX = 256
NAME_CHARS_MAX = 128
"""Queue and type names."""

NAMES_MAX = 10_000
"""Distinct queue and job-type names in one cluster. Names are interned (one copy each), so
this bounds that table; a cluster with more distinct names is misusing them as ids."""

JOB_PAYLOAD_BYTES_MAX = 1024 * 1024
JOB_RESULT_BYTES_MAX = 1024 * 1024
JOB_ERROR_CHARS_MAX = 8 * 1024

JOB_STORY_EVENTS_MAX = 2_000
"""Events in one job's provenance (``raftq job ID --history``), the newest kept: a job that
was claimed, snoozed or reported on thousands of times since the newest snapshot still
answers in one reply: an event is about 150 bytes plus its error, cut to
``JOB_HISTORY_ERROR_CHARS_MAX``, so 2.4 MB at the very most, inside ``FRAME_BYTES_MAX``."""

STORY_READ_ATTEMPTS = 3
"""Tries to read a consistent snapshot and log for a job's provenance: a snapshot saved while
they are read (one every ``snapshot_entries`` applied) makes it start again."""

STORIES_AT_ONCE = 1
"""Provenance replays one node runs at once: each restores the newest snapshot into a scratch
machine (seconds and the state's size again in memory at a million jobs), off the event
loop; more wait their turn (up to the request's timeout)."""

JOB_HISTORY_ERROR_CHARS_MAX = 1024
"""Of each failed attempt's error, the end its history event keeps (the job's ``error`` keeps
the last attempt's whole): a traceback's end, its last frames and the exception. Counted in
``JOBS_HELD_BYTES_MAX`` like results and errors, and at most ``JOB_HISTORY_MAX`` per job, so
the errors of every attempt cost at most 32 KiB a job and never grow past the cluster's bound."""

JOBS_PER_ENQUEUE_MAX = 10_000
"""Jobs in one Enqueue command: one Raft entry, bounded like any entry."""

PARENTS_MAX = 10_000
"""Jobs one job may depend on (``depends_on``): a whole Enqueue batch
(``JOBS_PER_ENQUEUE_MAX``), so one callback job can wait for a batch of any size that one
command can carry. It costs a counter and one id reference per parent, not a scan."""

CHILDREN_PER_PARENT_MAX = 10_000
"""Waiting jobs one job may have: when it finishes, its entry visits each of them (about a
microsecond each), so an entry's apply stays within tens of milliseconds."""

DEPENDENCY_EDGES_MAX = 2_000_000
"""Parent references held over all jobs (about 100 bytes each with the index of children):
like ``DEDUPE_KEYS_MAX``, a bound on memory a producer could otherwise grow without limit;
past it an enqueue with ``depends_on`` is refused as full until finished jobs are purged."""

CLAIM_JOBS_MAX = 1_000
"""Jobs handed out by one Claim, and leases renewed by one Extend."""

CLAIM_HOLD_MS_MAX = 60_000
"""The longest a Claim may let its claimer keep a job before starting it (``Claim.hold_ms``):
every lease runs that much longer than the job's timeout, so a dead worker's prefetched jobs
wait at most this much more before they run elsewhere. Workers ask for ``WORKER_HOLD_MS``."""

CLAIM_PAYLOAD_BYTES_MAX = 4 * 1024 * 1024
"""Payload bytes one Claim hands out (always at least one job): a claim of a thousand jobs with
1 MiB payloads would be a reply far past ``FRAME_BYTES_MAX`` and a gigabyte in the worker's
buffer; 4 MiB is thousands of ordinary jobs and one reply frame of modest size."""

WORKER_PREFETCH_JOBS_MAX = 256
"""Jobs a worker holds beyond its free slots (claimed, not started yet), at most. A worker
claims ahead only as many as it started in the last quarter of ``WORKER_HOLD_MS`` (so its
buffer drains in about that time at its current pace); this caps it. 256 noop jobs are about
a tenth of a second of a node's work: enough that one Claim entry serves hundreds of jobs and
the next claim is in flight while the buffer drains, few enough that a worker that dies
strands little (their leases expire after hold + timeout, as a running job's do)."""

WORKER_HOLD_MS = 1_000
"""How long a worker may keep a prefetched job before it starts it (``Claim.hold_ms``); what
it has not started by then it releases, so a job never waits behind a long one for more than
this while other workers are idle. A second is many times a claim's round trip (milliseconds)
and adds only that much to the retry of a dead worker's jobs."""

CLAIM_NAMES_MAX = 1_000
"""Queue or type names one Claim may filter on: a worker handles a few types from a few queues;
a thousand leaves room for any app while bounding the (queue, type) pairs a claim examines."""

COMMAND_BYTES_MAX = 8 * 1024 * 1024
"""The variable-size parts of one command together (an Enqueue's payloads, ids, keys and
names; a Report's results and errors): a command is one Raft entry and one WAL record
(``WAL_RECORD_BYTES_MAX``, with room for the envelope), and a frame must carry it
(``FRAME_BYTES_MAX``). A larger one is refused at the edge, never turned into an entry the log
cannot hold."""

JOBS_MAX = 2_000_000
"""Jobs the cluster holds (pending to finished, until purged). About 500 bytes of memory each
plus payload: 1 GB per node at the bound. Past it an enqueue is ``Busy`` (the job state machine
answers ``Rejected("full")``), never an out-of-memory crash."""

JOBS_HELD_BYTES_MAX = 512 * 1024 * 1024
"""Payload, result and error bytes the cluster holds: with the jobs' own rows this keeps a
snapshot well under ``SNAPSHOT_BYTES_MAX``. Past it enqueues are refused, and a result or
error that would cross it is dropped (the job's outcome still counts)."""

REPORT_OUTCOMES_MAX = CLAIM_JOBS_MAX
"""Outcomes in one Report: a worker reports at most what it can hold at once."""

REPORT_BYTES_MAX = 4 * 1024 * 1024
"""A worker starts a new Report past this many bytes of results and errors, so one entry stays
far below ``FRAME_BYTES_MAX`` (any one outcome, at most ``JOB_RESULT_BYTES_MAX`` plus its
error, always fits)."""

RESTORE_SLICE_JOBS = 16_384
"""Jobs one step of a snapshot restore rebuilds (``raftq.jobs.snapshot.Restore``), and jobs
per chunk of a snapshot: at about a microsecond each, a step takes tens of milliseconds, well
under a heartbeat interval, so a node restoring a million jobs in steps can still answer its
peers; large enough that the steps' own overhead is lost in the noise."""

DEDUPE_WINDOW_MS = 24 * 60 * 60 * 1000
"""An idempotency key is remembered this long: a client retrying a lost acknowledgement does so
within seconds, a day covers any sane retry policy (Sidekiq and BullMQ use similar windows)."""

DEDUPE_KEYS_MAX = 2_000_000
"""And at most this many keys (about 150 bytes each): past it the oldest are forgotten first."""

RETRY_BASE_MS = 1_000
RETRY_CAP_MS = 60 * 60 * 1000
"""Retry backoff: base * 2^(attempt-1), capped at an hour, plus up to 25% deterministic jitter
so that jobs failing together do not all retry in the same instant."""

RETRY_POLICY_MS_MAX = 7 * 24 * 60 * 60 * 1000
"""A job's own backoff base and cap (``RetryPolicy``) are at most a week: a longer wait between
attempts is a unit mistake or a schedule, not a retry."""

SNOOZE_MS_MAX = 7 * 24 * 60 * 60 * 1000
"""``raise raftq.Retry(delay_s=...)`` may put a job off for at most a week, for the same
reason; a handler that wants later should enqueue a delayed job."""

JOB_SNOOZES_MAX = 100
"""Snoozes per job: a snooze gives its attempt back, so without a bound a handler that always
snoozes would hold its job forever, unnoticed. The snooze past this many ends the job dead
with an error that says so (an operator's retry starts the count again)."""

JOB_PROGRESS_BYTES_MAX = 4 * 1024
"""A job's progress (``await job.progress(value)``): a small JSON value, a counter or a short
status, not a result. Counted in ``JOBS_HELD_BYTES_MAX`` like results."""

PROGRESS_INTERVAL_MS = 1_000
"""A worker sends its handlers' progress at most once per this, all its jobs' latest values in
one ``Progress`` entry: a handler calling ``progress`` in a tight loop costs the log one small
entry a second per worker, and a user watching a page sees it move every second."""

PROGRESS_JOBS_MAX = CLAIM_JOBS_MAX
"""Jobs in one ``Progress`` command: at most what one worker may hold. At most 1,000 values of
``JOB_PROGRESS_BYTES_MAX``, about 4 MiB with their ids: one entry under ``COMMAND_BYTES_MAX``."""

# --- transport ----------------------------------------------------------------------------------

FRAME_BYTES_MAX = 32 * 1024 * 1024
"""One frame on the wire. Above the largest message we build (an AppendEntries of
``RAFT_APPEND_BYTES_MAX`` or a snapshot chunk, plus envelope; an enqueue of
``JOBS_PER_ENQUEUE_MAX`` small jobs), far below what would hurt a node's memory. A peer that
announces more is cut off before it sends the bytes."""

HANDSHAKE_TIMEOUT_MS = 5_000
"""A connection that has not completed its handshake by then is half-open or hostile: closed."""

HANDSHAKE_FRAME_BYTES_MAX = 4 * 1024
"""Frames before the handshake completes (Hello, Challenge, Proof, Welcome, ErrorFrame are a
few hundred bytes): a stranger cannot make the node buffer a 32 MiB frame unauthenticated."""

HANDSHAKES_IN_FLIGHT_MAX = 256
"""Connections in their handshake at once. Past it a new connection is refused at once (reason
``busy``): a flood of half-open connections costs a bounded amount of memory and tasks, and
authenticated links, which are already past the handshake, keep working."""

HANDSHAKE_NONCES_REMEMBERED = 65_536
"""Callers' nonces kept (2 MiB) to name a replayed handshake as such; older replays still fail,
on the node's fresh nonce."""

PEER_QUEUE_MESSAGES_MAX = 4096
"""Messages queued for one peer while its connection is down or slow. Raft tolerates loss, so
past this the newest are dropped instead of blocking the Raft actor or growing memory."""

RECONNECT_BACKOFF_MIN_MS = 50
RECONNECT_BACKOFF_MAX_MS = 2_000
"""Reconnects back off exponentially between these, with jitter, so a dead peer costs little and
a restarted one is found within two seconds."""

# --- node ---------------------------------------------------------------------------------------

RAFT_INBOX_MAX = 16_384
"""Inputs (peer messages, proposals, reads, ticks) waiting for the Raft actor. Full: peer
messages and ticks are dropped (Raft copes), proposals get ``Busy``."""

RAFT_INPUTS_PER_ROUND_MAX = 4_096
"""Inputs stepped into the core before it is asked for a Ready: the batch that one fsync
covers. Bounded so a flood cannot delay the Ready (and every acknowledgement) for long."""

APPLY_QUEUE_BATCHES_MAX = 64
"""Committed batches handed to the applier and not yet applied: past it the Raft actor waits
(backpressure) instead of buffering the log in memory."""

CLIENT_REQUESTS_IN_FLIGHT_MAX = 1_024
"""Requests one client connection may have outstanding; more wait for a slot."""

CLIENT_REQUEST_TIMEOUT_MS = 10_000
"""A proposal not applied by then answers ``no_quorum`` (the client retries elsewhere with the
same idempotency key)."""

REPORT_RIDE_MS = 10
"""A worker's report waits on the leader up to this long for the next proposal (an enqueue, a
claim) to share its Raft round, instead of taking a round (an fsync and a replication) of its
own that the next enqueue would queue behind: with one enqueue at a time while workers run
each job, 2 ms (less than a round and a client's turn-around here) left rounds per job where
they were, 10-20 ms cut them by a quarter (leader persists per enqueue 4.2 -> 3.0-3.4,
in-process, loaded machine). The cost: a lone job's success is applied up to this much later;
under load something else is proposed at once and the report goes with it."""

CLAIM_LONG_POLL_MS = 1_000
"""A claim that would find nothing waits this long on the leader for a job to arrive before it
answers empty: idle workers cost no log entries, and a new job is picked up at once. Well
below the client's per-attempt timeout."""

# --- web (dashboard and HTTP JSON API) ------------------------------------------------------------

WEB_BODY_BYTES_MAX = COMMAND_BYTES_MAX
"""One HTTP request body: a POST of jobs becomes one Enqueue command, which may hold this much;
a larger body is refused (413) before it is read, never buffered."""

WEB_REQUESTS_IN_FLIGHT_MAX = 64
"""HTTP requests one web app serves at once; past it a request is answered 503 ``busy`` at once.
Each may hold a body of up to ``WEB_BODY_BYTES_MAX`` (512 MiB at the bound); a dashboard and
a few services enqueueing in batches need far fewer, and the cluster is the bottleneck anyway."""

HTTP_HEADER_BYTES_MAX = 16 * 1024
"""Request line and headers of one request: browsers send a few kB with cookies; past this a
request is refused by h11 before it reaches the app."""

HTTP_KEEP_ALIVE_S = 30
"""An idle keep-alive connection is closed after this: a dashboard polling every few seconds
keeps its connection, abandoned ones do not pile up."""

HTTP_READ_TIMEOUT_S = 30
"""A connection that sends nothing for this long is closed (Hypercorn waits forever by
default): a client trickling a request cannot hold a connection open indefinitely."""

HTTP_SHUTDOWN_GRACE_S = 3
"""Requests in flight get this long to finish when the server stops."""

JOBS_PAGE_MAX = 1_000
"""Jobs in one page (``PageJobs``, ``GET /api/v1/jobs``): a page a browser renders at once, and
a reply that stays under ``FRAME_BYTES_MAX`` unless payloads are huge; more come by cursor."""

LIST_BLOCK_JOBS = 1_024
"""Jobs per block of the listing index (``raftq.jobs.listing``): each block counts its jobs
per state and per (queue, type), so a filtered page skips whole blocks without a match. Small
enough that scanning one block is quick (tens of microseconds), large enough that even
``JOBS_MAX`` jobs make only about two thousand blocks to step over."""

JOBS_PAGE_BYTES_MAX = 4 * 1024 * 1024
"""Payload, result and error bytes in one page (with the errors its jobs' histories keep): a
page of a thousand jobs with 1 MiB payloads would be a reply far past ``FRAME_BYTES_MAX``. A
page ends after the job that crosses this (so it always holds at least one), and its cursor
goes on from there."""

LIST_SCAN_JOBS_MAX = 10_000
"""Jobs one page of a listing examines at most, so that no request costs a full scan (a few
milliseconds at most); a page that stops there is short, and its cursor goes on from there."""

RETRY_DEAD_JOBS_MAX = 1_000
"""Dead jobs one bulk retry (``RetryDead``) moves back to pending: one entry of bounded size
and apply time; an operator retries more by repeating it."""

WEB_PAGE_JOBS = 50
"""Jobs in one page of the dashboard's jobs and dead lists: a laptop screen or two, about 28 kB
of HTML (measured); more come by cursor, and the page refreshes itself every two seconds."""

WEB_LIST_ROWS_MAX = 200
"""Rows the Schedules and Limits pages show (by name; the cluster may hold ``SCHEDULES_MAX``
schedules and ``LIMITS_MAX`` limits): a page that refreshes itself every two seconds stays
about 120 kB of HTML (500 rows measured 290 kB); the page says how many more there are, and
the CLI and the API list them all."""

WEB_PARENTS_SHOWN = 20
"""Parents whose state a job's page shows, each read from the cluster as the page is made (a
job may have ``PARENTS_MAX``): twenty reads keep the page within a few milliseconds of the
others, and a fan-in wider than that is listed as "and N more" (each one's page links it)."""

WEB_TOKEN_TTL_DEFAULT_S = 30 * 86400
"""How long a web token lives when ``raftq web --print-token`` is given no ``--ttl``: a month,
long enough for a person's browser or a service's config not to need a new one every day,
short enough that a token copied into a chat or a ticket stops working on its own."""

WEB_TOKEN_TTL_MIN_S = 60
WEB_TOKEN_TTL_MAX_S = 365 * 86400
"""A token lives at least a minute (less expires before anyone can use it) and at most a year:
every token has a bounded lifetime, so a forgotten one stops working without a secret change
(which is still the way to revoke tokens early)."""

WEB_NOTICE_CHARS_MAX = 512
"""The message an action leaves for the page it returns to travels in the URL; it is a
sentence, so a longer one (a hand-made URL) is cut rather than rendered whole."""

LIMITS_MAX = 100_000
"""Concurrency and rate limits (``raftq limit set``) the cluster holds, queues and groups
together: ten times the 10,000 groups limited to one each that issue #17 measures, and a
small table (a few hundred bytes each) in every snapshot; more is refused (``too_many_limits``).
``raftq limit list`` answers with all of them in one reply: about 100 bytes each (220 with
names of ``NAME_CHARS_MAX``), 22 MB at the very most, inside ``FRAME_BYTES_MAX``."""

LIMIT_CONCURRENCY_MAX = 1_000_000
"""The largest concurrency limit: beyond ``JOBS_MAX`` it could never bind anyway."""

LIMIT_RATE_COUNT_MAX = 10_000
"""The most jobs one rate limit lets start per window: the machine keeps the start time of
the last N starts of each rate-limited queue or group (a sliding window, exact), so N is
memory held in every replica and written in every snapshot."""

LIMIT_RATE_STARTS_MAX = 1_000_000
"""The sum of the rate counts of all rate limits: the start times every replica holds at
most (about 40 MB at the worst), so many limits cannot each keep 10,000; a limit that would
cross it is refused (``too_many_limits``)."""

LIMIT_RATE_WINDOW_MS_MAX = 86_400_000
"""The longest rate window, a day: longer ones are better said as a smaller rate."""

LIMIT_RECHECK_MS = 50
"""While a rate limit exists, a claim waiting on the leader for work looks again this often
even if nothing is applied: a rate window opens as time passes, with no entry to wake it.
So a rate-limited job starts within 50 ms of its window opening, for one cheap index look-up
per 50 ms on the leader (one claim waits at a time)."""
SCHEDULES_MAX = 10_000
"""Schedules the cluster holds (``raftq schedule add``): each is a row in every snapshot and a
slot the leader's scheduler keeps computed; 10,000 is ten times the 1,000 whose idle cost is
measured (benchmarks/schedules_idle.py), and well past what a crontab holds."""

SCHEDULE_PAYLOAD_BYTES_MAX = 64 * 1024
"""A schedule's payload, copied into every job it fires: a schedule describes work, it does
not carry data, and 10,000 of them at this size still fit a snapshot easily."""

SCHEDULE_CRON_CHARS_MAX = 256
"""A cron expression: the longest sane one (every field a list) is well under a hundred."""

SCHEDULE_EVERY_MS_MIN = 1_000
"""The shortest interval (``--every 1``): a firing is a log entry and a job, so a schedule
faster than a second is a worker loop, not a schedule (cron's own resolution is a minute)."""

SCHEDULE_EVERY_MS_MAX = 366 * 24 * 60 * 60 * 1000
"""The longest interval, a year: longer is a cron expression's job."""

SCHEDULE_SLOTS_PER_FIRING_MAX = 100
"""Slots one firing entry enqueues at most (``--catch-up all`` after a long outage): one entry
stays small and quick to apply; the leader fires the next hundred in the next entry."""

SCHEDULE_RETRY_MS = 1_000
"""How soon a leader's scheduler tries a firing again after it was not committed (a busy node,
a full cluster): soon enough to keep a one-second schedule's slot, rare enough not to spin."""

SCHEDULES_PAGE_BYTES_MAX = 1024 * 1024
"""Payload bytes of the schedules in one page of ``schedule list``: 10,000 schedules of 64 KiB
payloads would be a 640 MB answer; a page ends after the schedule that crosses this (so it
holds at least one) and the client asks for the next."""

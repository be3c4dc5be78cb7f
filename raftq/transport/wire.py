"""What travels in frames: the handshake, errors, Raft messages between peers, and client
requests and responses.

The first frame on every connection is a ``Hello`` (protocol version, cluster id, who is
calling); the node answers ``Welcome`` or an ``ErrorFrame`` and closes. In a cluster with a
secret, the node first answers ``Challenge`` and the caller ``Proof`` (``transport/auth.py``).
Every frame body is one ``WireMessage``, tagged by class name (``raftq.codec``).
"""

from __future__ import annotations

import attrs

from raftq import codec, limits
from raftq.errors import DecodeError, RemoteProtocolError
from raftq.jobs.commands import Command, Result
from raftq.jobs.job import JobState, JobView
from raftq.jobs.provenance import Story
from raftq.jobs.schedules import ScheduleView
from raftq.raft.messages import Message

PROTOCOL_VERSION = 1

_NONCE_BYTES_MAX = 64
"""Nonces and proofs are 32 bytes (``transport/auth.py``); room for a longer hash one day."""


@codec.register
@attrs.frozen(kw_only=True)
class Hello:
    """``node_id`` is the calling peer's id, or "" for a client."""

    protocol_version: int
    cluster_id: str = attrs.field(validator=attrs.validators.max_len(limits.NAME_CHARS_MAX))
    node_id: str = attrs.field(validator=attrs.validators.max_len(limits.NODE_ID_CHARS_MAX))
    nonce: bytes = attrs.field(default=b"", validator=attrs.validators.max_len(_NONCE_BYTES_MAX))
    """The caller's challenge to the node (empty without a cluster secret)."""


@codec.register
@attrs.frozen(kw_only=True)
class Challenge:
    """The node's proof of the secret over the caller's nonce, and its own nonce for the
    caller to prove it in turn (``Proof``)."""

    node_id: str = attrs.field(validator=attrs.validators.max_len(limits.NODE_ID_CHARS_MAX))
    nonce: bytes = attrs.field(validator=attrs.validators.max_len(_NONCE_BYTES_MAX))
    proof: bytes = attrs.field(validator=attrs.validators.max_len(_NONCE_BYTES_MAX))


@codec.register
@attrs.frozen(kw_only=True)
class Proof:
    proof: bytes = attrs.field(validator=attrs.validators.max_len(_NONCE_BYTES_MAX))


@codec.register
@attrs.frozen(kw_only=True)
class Welcome:
    node_id: str = attrs.field(validator=attrs.validators.max_len(limits.NODE_ID_CHARS_MAX))
    leader_id: str = attrs.field(
        default="", validator=attrs.validators.max_len(limits.NODE_ID_CHARS_MAX)
    )


@codec.register
@attrs.frozen(kw_only=True)
class ErrorFrame:
    """Sent before closing a connection: ``code`` is one of bad_frame, bad_version,
    wrong_cluster, unknown_peer, handshake_timeout, unexpected, busy (too many handshakes),
    auth_required (no secret given), bad_auth (wrong secret), replayed, tls_plaintext."""

    code: str = attrs.field(validator=attrs.validators.max_len(limits.NAME_CHARS_MAX))
    message: str = attrs.field(validator=attrs.validators.max_len(limits.JOB_ERROR_CHARS_MAX))


# --- clients ------------------------------------------------------------------------------------
# A client sends ClientRequests and gets one ClientResponse per request, with the same
# request_id, in any order (requests are served concurrently).


@codec.register
@attrs.frozen(kw_only=True)
class SubmitCommand:
    """Propose a job command. The leader stamps ``now_ms`` (send 0); a follower forwards it
    to the leader (or, if it cannot or is asked not to, answers ``Redirect``). The reply is
    ``CommandReply`` once the command is committed and applied."""

    command: Command
    follow_redirects: bool = False
    """The sender follows ``Redirect`` itself: a follower answers one instead of forwarding.
    The client library sets it (it then talks to the leader directly, saving two hops per
    command), and so does a forwarding follower (never forwarded twice: no loops while a
    leader change is in flight)."""


@codec.register
@attrs.frozen(kw_only=True)
class GetJob:
    job_id: str = attrs.field(validator=attrs.validators.max_len(limits.JOB_ID_CHARS_MAX))


@codec.register
@attrs.frozen(kw_only=True)
class ListJobs:
    """``state`` and ``queue``: "" for any."""

    state: str = attrs.field(default="", validator=attrs.validators.max_len(limits.NAME_CHARS_MAX))
    queue: str = attrs.field(default="", validator=attrs.validators.max_len(limits.NAME_CHARS_MAX))
    limit: int = attrs.field(
        default=100, validator=[attrs.validators.ge(1), attrs.validators.le(10_000)]
    )


JOB_STATE_FILTERS = ("", *(state.value for state in JobState))


@codec.register
@attrs.frozen(kw_only=True)
class PageJobs:
    """One page of jobs after ``cursor`` (the enqueue order of the last job seen; 0: from the
    start), matching ``state``, ``queue`` and ``type`` ("" for any), oldest first or newest
    first. Answered with ``JobsPage`` (``raftq.jobs.listing``)."""

    state: str = attrs.field(default="", validator=attrs.validators.in_(JOB_STATE_FILTERS))
    queue: str = attrs.field(default="", validator=attrs.validators.max_len(limits.NAME_CHARS_MAX))
    type: str = attrs.field(default="", validator=attrs.validators.max_len(limits.NAME_CHARS_MAX))
    cursor: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    limit: int = attrs.field(
        default=100, validator=[attrs.validators.ge(1), attrs.validators.le(limits.JOBS_PAGE_MAX)]
    )
    newest_first: bool = False


@codec.register
@attrs.frozen(kw_only=True)
class GetStatus:
    pass


MEMBERSHIP_ACTIONS = ("add_learner", "promote", "remove")


@codec.register
@attrs.frozen(kw_only=True)
class ChangeMembership:
    """One single-server membership change, answered (``MembershipReply``) once applied:
    ``add_learner`` (with ``address``), ``promote`` (a caught-up learner to voter), ``remove``.
    Each is a no-op if already so, so a retried change is harmless. Only the leader takes it
    (a follower answers ``Redirect``). A change that cannot go through yet (another change in
    progress, a learner still catching up) fails with code ``not_ready``: retry."""

    action: str = attrs.field(validator=attrs.validators.in_(MEMBERSHIP_ACTIONS))
    node_id: str = attrs.field(validator=attrs.validators.max_len(limits.NODE_ID_CHARS_MAX))
    address: str = attrs.field(default="", validator=attrs.validators.max_len(256))


@codec.register
@attrs.frozen(kw_only=True)
class TransferLeader:
    """Hand leadership to the voter ``node_id``; answered (``MembershipReply``) once another
    node leads, or ``Failure`` if that did not happen within an election timeout."""

    node_id: str = attrs.field(validator=attrs.validators.max_len(limits.NODE_ID_CHARS_MAX))


@codec.register
@attrs.frozen(kw_only=True)
class Drain:
    """Drain the node that receives it (never forwarded): it stops claiming, hands leadership
    over if it leads, lets running jobs finish within the grace period, then exits, as on
    SIGTERM. Answered at once with the node's ``StatusReply``; a node that cannot be drained
    remotely (one embedded in an application) answers ``Failure`` rejected."""


@codec.register
@attrs.frozen(kw_only=True)
class ListLimits:
    """Every concurrency and rate limit, with what runs under each now (``LimitsReply``)."""


@codec.register
@attrs.frozen(kw_only=True)
class ListSchedules:
    """The schedules after the name ``after`` ("" from the first), by name, each with its
    next slot: a page of at most ``limits.SCHEDULES_PAGE_BYTES_MAX`` bytes of payloads
    (``SchedulesPage``), read like a job (linearizable, on any node)."""

    after: str = attrs.field(default="", validator=attrs.validators.max_len(limits.NAME_CHARS_MAX))


@codec.register
@attrs.frozen(kw_only=True)
class GetJobStory:
    """A job's provenance (``raftq job ID --history``): the node that answers replays its
    newest snapshot and its log after it (``raftq.jobs.provenance``), once it has applied
    what was committed when the request arrived (``JobStoryReply``)."""

    job_id: str = attrs.field(validator=attrs.validators.max_len(limits.JOB_ID_CHARS_MAX))


ClientCall = (
    SubmitCommand
    | GetJob
    | ListJobs
    | PageJobs
    | GetStatus
    | ChangeMembership
    | TransferLeader
    | Drain
    | ListLimits
    | ListSchedules
    | GetJobStory
)
codec.register_union(ClientCall)


@codec.register
@attrs.frozen(kw_only=True)
class ClientRequest:
    request_id: int
    call: ClientCall


@codec.register
@attrs.frozen(kw_only=True)
class CommandReply:
    result: Result


@codec.register
@attrs.frozen(kw_only=True)
class JobReply:
    job: JobView | None


@codec.register
@attrs.frozen(kw_only=True)
class JobsReply:
    jobs: tuple[JobView, ...]


@codec.register
@attrs.frozen(kw_only=True)
class JobsPage:
    """``cursor``: where the next page starts; 0 when there is none."""

    jobs: tuple[JobView, ...]
    cursor: int


@codec.register
@attrs.frozen(kw_only=True)
class QueueStatus:
    paused: bool
    counts: dict[str, int]
    """Jobs per state (every state present)."""


@codec.register
@attrs.frozen(kw_only=True)
class StatusReply:
    """One node's own view (a cluster view asks every node)."""

    node_id: str
    address: str
    role: str
    """leader, follower, candidate (pre-candidates too) or learner."""
    term: int
    leader_id: str
    commit_index: int
    applied_index: int
    jobs: dict[str, int]
    queues: dict[str, QueueStatus]
    fsync: bool
    voters: tuple[str, ...] = ()
    learners: tuple[str, ...] = ()
    addresses: dict[str, str] = attrs.field(factory=dict)
    """Every member's address, as this node knows it (configured or replicated)."""
    match: dict[str, int] = attrs.field(factory=dict)
    """On the leader: each other member's highest log index known replicated to it (how far
    a learner has caught up). Empty elsewhere."""
    storage_error: str = ""
    """Why this node's disk refuses writes (a full disk, a failed fsync); "" while it works."""
    enqueued_total: int = 0
    """Jobs ever enqueued in the state this node has applied (the state machine's sequence
    counter: replicated, so every node says the same at the same applied index; purging old
    finished jobs does not lower it). With ``jobs`` it gives the jobs ever finished."""


@codec.register
@attrs.frozen(kw_only=True)
class MembershipReply:
    """The membership after a change (or a leadership transfer), and who leads."""

    voters: tuple[str, ...]
    learners: tuple[str, ...]
    leader_id: str


@codec.register
@attrs.frozen(kw_only=True)
class Redirect:
    """Ask the leader instead; ``leader_id`` and ``leader_address`` are "" if none is known."""

    leader_id: str
    leader_address: str


@codec.register
@attrs.frozen(kw_only=True)
class Failure:
    """The request was not carried out. ``code``: busy (retry later), no_quorum (timed out
    waiting for a majority), dropped (a leader change lost the proposal before it committed:
    retry, with the same idempotency key), shutting_down, bad_request, not_ready (a membership
    change that can go through later: retry), rejected (one that never can), storage_error
    (this node's disk refuses writes: ask another)."""

    code: str
    message: str


@codec.register
@attrs.frozen(kw_only=True)
class LimitRow:
    """One limit (``JobStateMachine.limit_rows``): 0 for a concurrency or rate it does not
    set; ``running`` handed out and not finished (prefetched jobs count), ``pending`` waiting
    (for a slot, a window or their run_at), ``started_in_window`` hand-outs in the current
    rate window."""

    scope: str
    name: str
    concurrency: int
    rate: int
    window_ms: int
    running: int
    pending: int
    started_in_window: int


@codec.register
@attrs.frozen(kw_only=True)
class LimitsReply:
    limits: tuple[LimitRow, ...]


@codec.register
@attrs.frozen(kw_only=True)
class SchedulesPage:
    """``after``: the name the next page starts after; "" when this is the last page."""

    schedules: tuple[ScheduleView, ...]
    after: str


@codec.register
@attrs.frozen(kw_only=True)
class JobStoryReply:
    story: Story
    job: JobView | None
    """The job now (None if it is not, or no longer, in the cluster)."""


ClientReply = (
    CommandReply
    | JobReply
    | JobsReply
    | JobsPage
    | StatusReply
    | MembershipReply
    | Redirect
    | Failure
    | LimitsReply
    | SchedulesPage
    | JobStoryReply
)
codec.register_union(ClientReply)


@codec.register
@attrs.frozen(kw_only=True)
class ClientResponse:
    request_id: int
    reply: ClientReply


WireMessage = (
    Hello | Challenge | Proof | Welcome | ErrorFrame | ClientRequest | ClientResponse | Message
)
codec.register_union(WireMessage)


def encode_wire(message: WireMessage) -> bytes:
    return codec.encode(message, WireMessage)


def decode_wire(body: bytes) -> WireMessage:
    """Decode a frame body; anything else than a valid message is ``RemoteProtocolError``."""
    try:
        message: WireMessage = codec.decode(body, WireMessage)
    except DecodeError as error:
        raise RemoteProtocolError(f"bad frame: {error}") from None
    return message

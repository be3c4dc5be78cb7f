"""Every type the codec carries survives encode -> decode unchanged; bad bytes raise DecodeError."""

from __future__ import annotations

import contextlib
import typing

import attrs
import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import raftq.storage.durable_log  # noqa: F401  (registers every storage type)
from raftq import codec
from raftq.errors import DecodeError
from raftq.ids import NodeId
from raftq.jobs import commands, job, provenance, schedules
from raftq.jobs.backoff import RetryPolicy
from raftq.raft import messages
from raftq.raft.types import Entry, EntryKind, HardState, Membership, SnapshotMeta
from raftq.storage.snapshots import SnapshotFooter
from raftq.transport import wire

node_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=16).map(
    NodeId
)
u64 = st.integers(min_value=0, max_value=2**64 - 1)
memberships = st.builds(
    lambda voters, learners, address: Membership(
        voters=tuple(sorted(voters)),
        learners=tuple(sorted(learners - voters)),
        addresses=tuple((node, address) for node in sorted(voters | learners)),
    ),
    st.frozensets(node_ids, max_size=5),
    st.frozensets(node_ids, max_size=3),
    st.sampled_from(("", "127.0.0.1:7100", "[::1]:7101")),
)


# A tagged union, registered here because the storage types carry none yet: this is the
# mechanism every message channel will use.
@codec.register
@attrs.frozen(kw_only=True)
class Ping:
    sender: NodeId
    sequence: int


@codec.register
@attrs.frozen(kw_only=True)
class Pong:
    sender: NodeId
    sequence: int
    payload: bytes = b""


Probe = Ping | Pong
codec.register_union(Probe)

pings = st.builds(Ping, sender=node_ids, sequence=u64)
pongs = st.builds(Pong, sender=node_ids, sequence=u64, payload=st.binary(max_size=32))

# One strategy per carried type; test_every_carried_type_has_a_strategy keeps this complete.
STRATEGIES: dict[typing.Any, st.SearchStrategy[typing.Any]] = {
    Entry: st.builds(
        Entry,
        index=st.integers(min_value=1, max_value=2**63),
        term=u64,
        kind=st.sampled_from(EntryKind),
        data=st.binary(max_size=256),
    ),
    HardState: st.builds(HardState, term=u64, vote=st.none() | node_ids, commit=u64),
    Membership: memberships,
    SnapshotMeta: st.builds(SnapshotMeta, index=u64, term=u64, membership=memberships),
    SnapshotFooter: st.builds(
        SnapshotFooter,
        meta=st.builds(SnapshotMeta, index=u64, term=u64, membership=memberships),
        data_bytes=u64,
        data_crc32c=st.integers(min_value=0, max_value=2**32 - 1),
    ),
    Ping: pings,
    Pong: pongs,
    Probe: pings | pongs,
}

# The Raft messages: every field drawn from its annotation, with the shared value strategies.
entries = st.tuples() | st.lists(STRATEGIES[Entry], max_size=3).map(tuple)
snapshot_metas = STRATEGIES[SnapshotMeta]
MESSAGE_FIELDS: dict[str, st.SearchStrategy[typing.Any]] = {
    "term": u64,
    "sender": node_ids,
    "recipient": node_ids,
    "entries": entries,
    "meta": snapshot_metas,
    "context": st.binary(max_size=16),
    "data": st.binary(max_size=64),
}
for message_type in typing.get_args(messages.Message):
    fields = {
        field.name: MESSAGE_FIELDS[field.name]
        if field.name in MESSAGE_FIELDS
        else (st.booleans() if field.type in (bool, "bool") else u64)
        for field in attrs.fields(message_type)
    }
    STRATEGIES[message_type] = st.builds(message_type, **fields)
STRATEGIES[messages.Message] = st.one_of(
    *(STRATEGIES[message_type] for message_type in typing.get_args(messages.Message))
)

# The job commands: valid values for every validated field.
names = st.text(alphabet="abcxyz-_.", min_size=1, max_size=12)
COMMAND_FIELDS: dict[str, st.SearchStrategy[typing.Any]] = {
    "now_ms": u64,
    "id": st.just("") | names,
    "key": st.just("") | names,
    "type": names,
    "queue": names,
    "claimer": names,
    "payload": st.binary(max_size=64),
    "result": st.binary(max_size=64),
    "priority": st.integers(-1000, 1000),
    "delay_ms": st.integers(0, 10**9),
    "max_attempts": st.integers(1, 1000),
    "max_jobs": st.integers(1, 1000),
    "timeout_ms": st.integers(1, 10**9),
    "job_id": names,
    "fence": u64,
    "error": st.text(max_size=32),
    "retryable": st.booleans(),
    "types": st.lists(names, max_size=3).map(tuple),
    "queues": st.lists(names, max_size=3).map(tuple),
    "until_ms": u64,
    "by_ms": u64,
    "before_ms": u64,
    "hold_ms": st.integers(0, 60_000),
    "group": st.just("") | names,
    "scope": st.sampled_from(("queue", "group")),
    "name": names,
    "depends_on": st.lists(names, max_size=3, unique=True).map(tuple),
    "on_parent_failure": st.sampled_from(("cancel", "run")),
    "unique_while_active": st.just("") | names,
    "retry_policy": st.none()
    | st.builds(
        RetryPolicy,
        base_ms=st.integers(0, 1000),
        max_ms=st.integers(1000, 10**6),
        jitter_percent=st.integers(0, 100),
    ),
    "traceparent": st.just("")
    | st.tuples(st.binary(min_size=16, max_size=16), st.binary(min_size=8, max_size=8)).map(
        lambda ids: f"00-{ids[0].hex()}-{ids[1].hex()}-01"
    ),
}
STRATEGIES[RetryPolicy] = COMMAND_FIELDS["retry_policy"].filter(lambda policy: policy is not None)
STRATEGIES[commands.JobSpec] = st.builds(
    commands.JobSpec,
    **{field.name: COMMAND_FIELDS[field.name] for field in attrs.fields(commands.JobSpec)},
)
COMMAND_FIELDS["jobs"] = st.lists(STRATEGIES[commands.JobSpec], max_size=3).map(tuple)
STRATEGIES[commands.Outcome] = st.builds(
    commands.Outcome,
    job_id=names,
    fence=u64,
    succeeded=st.booleans(),
    result=st.binary(max_size=16),
    error=st.text(max_size=32),
    retryable=st.booleans(),
    snooze_ms=st.integers(-1, 10**6),
    progress=st.binary(max_size=16),
)
COMMAND_FIELDS["outcomes"] = st.lists(STRATEGIES[commands.Outcome], max_size=3).map(tuple)
# Schedules (#17, docs/schedules.md).
STRATEGIES[commands.ScheduleSpec] = st.builds(
    commands.ScheduleSpec,
    name=names,
    type=names,
    payload=st.binary(max_size=64),
    queue=names,
    every_ms=st.integers(1_000, 10**9),
    catch_up=st.sampled_from(commands.CATCH_UP_MODES),
) | st.builds(
    commands.ScheduleSpec, name=names, type=names, cron=st.just("0 3 * * *"), tz=st.just("UTC")
)
COMMAND_FIELDS["schedule"] = STRATEGIES[commands.ScheduleSpec]
COMMAND_FIELDS["name"] = names
COMMAND_FIELDS["revision"] = u64
COMMAND_FIELDS["slots"] = st.lists(u64, min_size=1, max_size=3, unique=True).map(
    lambda slots: tuple(sorted(slots))
)
for command_type in typing.get_args(commands.Command):
    if command_type is commands.SetLimit:  # a concurrency, a rate, or both
        STRATEGIES[command_type] = st.builds(
            commands.SetLimit,
            now_ms=u64,
            scope=COMMAND_FIELDS["scope"],
            name=names,
            concurrency=st.integers(1, 1000),
        ) | st.builds(
            commands.SetLimit,
            now_ms=u64,
            scope=COMMAND_FIELDS["scope"],
            name=names,
            concurrency=st.integers(0, 1000),
            rate=st.integers(1, 1000),
            window_ms=st.integers(1, 86_400_000),
        )
        continue
    if command_type is commands.Release:
        STRATEGIES[command_type] = st.integers(0, 3).flatmap(
            lambda size: st.builds(
                commands.Release,
                now_ms=u64,
                job_ids=st.lists(names, min_size=size, max_size=size).map(tuple),
                fences=st.lists(u64, min_size=size, max_size=size).map(tuple),
            )
        )
        continue
    if command_type is commands.Progress:
        STRATEGIES[command_type] = st.integers(0, 3).flatmap(
            lambda size: st.builds(
                commands.Progress,
                now_ms=u64,
                job_ids=st.lists(names, min_size=size, max_size=size).map(tuple),
                fences=st.lists(u64, min_size=size, max_size=size).map(tuple),
                values=st.lists(
                    st.binary(min_size=1, max_size=16), min_size=size, max_size=size
                ).map(tuple),
            )
        )
        continue
    if command_type is commands.Extend:
        STRATEGIES[command_type] = st.integers(0, 3).flatmap(
            lambda size: st.builds(
                commands.Extend,
                now_ms=u64,
                job_ids=st.lists(names, min_size=size, max_size=size).map(tuple),
                fences=st.lists(u64, min_size=size, max_size=size).map(tuple),
                until_ms=u64,
            )
        )
        continue
    STRATEGIES[command_type] = st.builds(
        command_type,
        **{field.name: COMMAND_FIELDS[field.name] for field in attrs.fields(command_type)},
    )
nonces = st.just(b"") | st.binary(min_size=32, max_size=32)
STRATEGIES[wire.Hello] = st.builds(
    wire.Hello,
    protocol_version=u64,
    cluster_id=names,
    node_id=st.just("") | node_ids,
    nonce=nonces,
)
STRATEGIES[wire.Challenge] = st.builds(
    wire.Challenge, node_id=node_ids, nonce=nonces, proof=st.binary(max_size=64)
)
STRATEGIES[wire.Proof] = st.builds(wire.Proof, proof=st.binary(max_size=64))
STRATEGIES[wire.Welcome] = st.builds(wire.Welcome, node_id=node_ids, leader_id=names)
STRATEGIES[wire.ErrorFrame] = st.builds(wire.ErrorFrame, code=names, message=st.text(max_size=40))
# Job results, views and the client protocol.
rejected = st.builds(commands.Rejected, code=names, message=st.text(max_size=20))
done = st.builds(commands.Done, job_id=names, state=names)
STRATEGIES[commands.Rejected] = rejected
STRATEGIES[commands.Done] = done
STRATEGIES[commands.Enqueued] = st.builds(commands.Enqueued, job_id=names, created=st.booleans())
STRATEGIES[commands.EnqueueResult] = st.builds(
    commands.EnqueueResult,
    jobs=st.lists(STRATEGIES[commands.Enqueued] | rejected, max_size=3).map(tuple),
)
STRATEGIES[commands.Lease] = st.builds(
    commands.Lease,
    job_id=names,
    type=names,
    queue=names,
    payload=st.binary(max_size=16),
    attempt=u64,
    fence=u64,
    expires_ms=u64,
    timeout_ms=u64,
    traceparent=COMMAND_FIELDS["traceparent"],
    enqueued_ms=u64,
)
STRATEGIES[commands.ClaimResult] = st.builds(
    commands.ClaimResult, leases=st.lists(STRATEGIES[commands.Lease], max_size=3).map(tuple)
)
STRATEGIES[commands.ExtendResult] = st.builds(
    commands.ExtendResult, outcomes=st.lists(done | rejected, max_size=3).map(tuple)
)
STRATEGIES[commands.ReportResult] = st.builds(
    commands.ReportResult, outcomes=st.lists(done | rejected, max_size=3).map(tuple)
)
STRATEGIES[commands.ReleaseResult] = st.builds(
    commands.ReleaseResult, outcomes=st.lists(done | rejected, max_size=3).map(tuple)
)
STRATEGIES[commands.Count] = st.builds(commands.Count, count=u64)
STRATEGIES[commands.ProgressResult] = st.builds(
    commands.ProgressResult, outcomes=st.lists(done | rejected, max_size=3).map(tuple)
)
STRATEGIES[commands.Result] = st.one_of(
    *(STRATEGIES[result_type] for result_type in typing.get_args(commands.Result))
)
history_events = st.builds(
    job.HistoryEvent,
    at_ms=u64,
    event=names,
    attempt=u64,
    node=st.just("") | names,
    fence=u64,
    error=st.just("") | names,
)
STRATEGIES[job.HistoryEvent] = history_events
job_views = st.builds(
    job.JobView,
    **{
        field.name: {
            "payload": st.binary(max_size=16),
            "result": st.binary(max_size=16),
            "error": st.text(max_size=16),
            "priority": st.integers(-1000, 1000),
            "history": st.lists(history_events, max_size=3).map(tuple),
            "depends_on": st.lists(names, max_size=3).map(tuple),
            "progress": st.binary(max_size=16),
            "retry_policy": COMMAND_FIELDS["retry_policy"],
        }.get(field.name, names if field.type in (str, "str") else u64)
        for field in attrs.fields(job.JobView)
    },
)
STRATEGIES[job.JobView] = job_views
state_counts = st.dictionaries(names, u64, max_size=3)
STRATEGIES[wire.SubmitCommand] = st.builds(
    wire.SubmitCommand, command=st.deferred(lambda: STRATEGIES[commands.Command])
)
STRATEGIES[wire.GetJob] = st.builds(wire.GetJob, job_id=names)
STRATEGIES[wire.ListJobs] = st.builds(
    wire.ListJobs,
    state=st.just("") | names,
    queue=st.just("") | names,
    limit=st.integers(1, 10_000),
)
STRATEGIES[wire.PageJobs] = st.builds(
    wire.PageJobs,
    state=st.sampled_from(wire.JOB_STATE_FILTERS),
    queue=st.just("") | names,
    type=st.just("") | names,
    cursor=u64,
    limit=st.integers(1, 1000),
    newest_first=st.booleans(),
)
STRATEGIES[wire.GetStatus] = st.builds(wire.GetStatus)
STRATEGIES[wire.ChangeMembership] = st.builds(
    wire.ChangeMembership,
    action=st.sampled_from(wire.MEMBERSHIP_ACTIONS),
    node_id=node_ids,
    address=st.just("") | names,
)
STRATEGIES[wire.TransferLeader] = st.builds(wire.TransferLeader, node_id=node_ids)
STRATEGIES[wire.Drain] = st.builds(wire.Drain)
STRATEGIES[wire.ListLimits] = st.builds(wire.ListLimits)
limit_rows = st.builds(
    wire.LimitRow,
    **{
        field.name: st.sampled_from(("queue", "group")) if field.name == "scope" else u64
        for field in attrs.fields(wire.LimitRow)
        if field.name != "name"
    },
    name=names,
)
STRATEGIES[wire.ListSchedules] = st.builds(wire.ListSchedules, after=st.just("") | names)
schedule_views = st.builds(
    schedules.ScheduleView,
    **{
        field.name: names if field.type in (str, "str") else u64
        for field in attrs.fields(schedules.ScheduleView)
        if field.name != "payload"
    },
    payload=st.binary(max_size=16),
)
STRATEGIES[schedules.ScheduleView] = schedule_views
STRATEGIES[wire.SchedulesPage] = st.builds(
    wire.SchedulesPage,
    schedules=st.lists(schedule_views, max_size=2).map(tuple),
    after=st.just("") | names,
)
STRATEGIES[wire.GetJobStory] = st.builds(wire.GetJobStory, job_id=names)
story_events = st.builds(
    provenance.StoryEvent,
    **{
        field.name: names if field.type in (str, "str") else u64
        for field in attrs.fields(provenance.StoryEvent)
        if field.name != "source"
    },
    source=st.sampled_from((provenance.LOG, provenance.SNAPSHOT)),
)
STRATEGIES[provenance.StoryEvent] = story_events
stories = st.builds(
    provenance.Story,
    job_id=names,
    events=st.lists(story_events, max_size=2).map(tuple),
    complete_from=u64,
    through=u64,
    dropped=u64,
)
STRATEGIES[provenance.Story] = stories
STRATEGIES[wire.ClientCall] = st.one_of(
    *(STRATEGIES[call_type] for call_type in typing.get_args(wire.ClientCall))
)
STRATEGIES[wire.ClientRequest] = st.builds(
    wire.ClientRequest, request_id=u64, call=STRATEGIES[wire.ClientCall]
)
STRATEGIES[wire.CommandReply] = st.builds(wire.CommandReply, result=STRATEGIES[commands.Result])
STRATEGIES[wire.JobReply] = st.builds(wire.JobReply, job=st.none() | job_views)
STRATEGIES[wire.JobStoryReply] = st.builds(
    wire.JobStoryReply, story=stories, job=st.none() | job_views
)
STRATEGIES[wire.LimitRow] = limit_rows
STRATEGIES[wire.LimitsReply] = st.builds(
    wire.LimitsReply, limits=st.lists(limit_rows, max_size=2).map(tuple)
)
STRATEGIES[wire.JobsReply] = st.builds(
    wire.JobsReply, jobs=st.lists(job_views, max_size=2).map(tuple)
)
STRATEGIES[wire.JobsPage] = st.builds(
    wire.JobsPage, jobs=st.lists(job_views, max_size=2).map(tuple), cursor=u64
)
STRATEGIES[wire.QueueStatus] = st.builds(
    wire.QueueStatus, paused=st.booleans(), counts=state_counts
)
STRATEGIES[wire.StatusReply] = st.builds(
    wire.StatusReply,
    node_id=names,
    address=names,
    role=names,
    term=u64,
    leader_id=st.just("") | names,
    commit_index=u64,
    applied_index=u64,
    jobs=state_counts,
    queues=st.dictionaries(names, STRATEGIES[wire.QueueStatus], max_size=2),
    fsync=st.booleans(),
    voters=st.lists(node_ids, max_size=3).map(tuple),
    learners=st.lists(node_ids, max_size=2).map(tuple),
    addresses=st.dictionaries(node_ids, names, max_size=3),
    match=st.dictionaries(node_ids, u64, max_size=3),
)
STRATEGIES[wire.MembershipReply] = st.builds(
    wire.MembershipReply,
    voters=st.lists(node_ids, max_size=3).map(tuple),
    learners=st.lists(node_ids, max_size=2).map(tuple),
    leader_id=st.just("") | node_ids,
)
STRATEGIES[wire.Redirect] = st.builds(
    wire.Redirect, leader_id=st.just("") | names, leader_address=st.just("") | names
)
STRATEGIES[wire.Failure] = st.builds(wire.Failure, code=names, message=st.text(max_size=20))
STRATEGIES[wire.ClientReply] = st.one_of(
    *(STRATEGIES[reply_type] for reply_type in typing.get_args(wire.ClientReply))
)
STRATEGIES[wire.ClientResponse] = st.builds(
    wire.ClientResponse, request_id=u64, reply=STRATEGIES[wire.ClientReply]
)
STRATEGIES[wire.WireMessage] = st.one_of(
    STRATEGIES[wire.Hello],
    STRATEGIES[wire.Challenge],
    STRATEGIES[wire.Proof],
    STRATEGIES[wire.Welcome],
    STRATEGIES[wire.ErrorFrame],
    STRATEGIES[wire.ClientRequest],
    STRATEGIES[wire.ClientResponse],
    STRATEGIES[messages.Message],
)
STRATEGIES[commands.Command] = st.one_of(
    *(STRATEGIES[command_type] for command_type in typing.get_args(commands.Command))
)


def test_every_carried_type_has_a_strategy() -> None:
    assert set(codec.carried_types()) <= set(STRATEGIES), "add a strategy for the new type"


@pytest.mark.parametrize(
    "cls", list(STRATEGIES), ids=lambda cls: getattr(cls, "__name__", str(cls))
)
def test_round_trip(cls: typing.Any) -> None:
    @settings(max_examples=40)
    @given(STRATEGIES[cls])
    def check(value: typing.Any) -> None:
        encoded = codec.encode(value, cls)
        assert encoded == cbor2.dumps(codec.unstructure(value, cls))  # fast path == converter
        decoded = codec.decode(encoded, cls)
        assert decoded == value
        fields = attrs.fields(type(decoded))
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            setattr(decoded, fields[0].name if fields else "anything", None)

    check()


def test_union_members_carry_their_tag() -> None:
    raw = cbor2.loads(codec.encode(Pong(sender=NodeId("a"), sequence=1), Probe))
    assert raw == {codec.TAG: "Pong", "sender": "a", "sequence": 1, "payload": b""}
    with pytest.raises(DecodeError):
        codec.decode(cbor2.dumps({codec.TAG: "Nope", "sender": "a", "sequence": 1}), Probe)
    with pytest.raises(DecodeError):
        codec.decode(cbor2.dumps({"sender": "a", "sequence": 1}), Probe)


def test_entry_is_carried_as_an_array() -> None:
    entry = Entry(index=7, term=3, kind=EntryKind.NOOP, data=b"")
    assert cbor2.loads(codec.encode(entry, Entry)) == [7, 3, 1, b""]


@given(st.binary(max_size=64))
def test_arbitrary_bytes_only_ever_raise_decode_error(data: bytes) -> None:
    for cls in STRATEGIES:
        with contextlib.suppress(DecodeError):
            codec.decode(data, cls)


@pytest.mark.parametrize(
    ("raw", "cls"),
    [
        ([1, 2, 0], Entry),  # wrong arity
        ([0, 1, 0, b""], Entry),  # index must be positive
        ([1, 1, 9, b""], Entry),  # unknown kind
        ({"term": -1, "vote": None, "commit": 0}, HardState),
        ({"voters": ["b", "a"], "learners": []}, Membership),  # not sorted
        ({"voters": ["a"], "learners": ["a"]}, Membership),  # both
        ({"voters": ["a", "b"], "addresses": [["b", "h:1"], ["a", "h:2"]]}, Membership),
        ({"voters": "ab", "learners": []}, Membership),  # a string is not a list of ids
        (["", "t", b"", "default", 0, 0, 1, 1000, "", "", "abc"], commands.JobSpec),  # parents
    ],
)
def test_invalid_values_are_decode_errors(raw: object, cls: type) -> None:
    with pytest.raises(DecodeError):
        codec.decode(cbor2.dumps(raw), cls)


@attrs.frozen(kw_only=True)
class _Grown:
    """A positional class that gained fields with defaults at its end."""

    name: str
    size: int = 0  # a default of the first release: always carried
    tags: tuple[str, ...] = codec.added(())
    group: str = codec.added("", validator=attrs.validators.max_len(10))
    hold: bool = codec.added(False)


@pytest.fixture
def grown() -> typing.Iterator[type[_Grown]]:
    carried = list(codec._carried)
    codec.register_positional(_Grown)
    yield _Grown
    codec._carried[:] = carried


def test_a_positional_value_leaves_off_its_fields_at_their_defaults(grown: type[_Grown]) -> None:
    assert cbor2.loads(codec.encode(grown(name="a", size=1))) == ["a", 1]
    assert cbor2.loads(codec.encode(grown(name="a", size=1, group="g"))) == ["a", 1, [], "g"]
    every = grown(name="a", size=1, tags=("x",), group="g", hold=True)
    assert cbor2.loads(codec.encode(every)) == ["a", 1, ["x"], "g", True]
    for value in (grown(name="a", size=1), grown(name="a", size=1, group="g"), every):
        assert codec.decode(codec.encode(value), grown) == value


def test_a_positional_array_from_before_new_fields_decodes_with_their_defaults(
    grown: type[_Grown],
) -> None:
    """An entry written by an older raftq, before the class gained its last fields."""
    assert codec.decode(cbor2.dumps(["a", 1, ["x"]]), grown) == grown(name="a", size=1, tags=("x",))
    for short_or_long in (["a"], ["a", 1, [], "", False, "extra"]):
        with pytest.raises(DecodeError, match="needs an array of 2 to 5 items"):
            codec.decode(cbor2.dumps(short_or_long), grown)
    with pytest.raises(DecodeError):  # an added field's validator still holds
        codec.decode(cbor2.dumps(["a", 1, [], "x" * 11]), grown)

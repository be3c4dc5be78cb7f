"""The fast decode of ``JobSpec`` and ``Outcome`` (``codec.accept_valid``) gives exactly what
cattrs and the attrs validators give: the same value, field for field and type for type, or
the same refusal. Every job of every ``Enqueue`` and every outcome of every ``Report`` is
decoded that way, by the leader from its clients and by each follower from the log, so a value
the validators refuse must never get through it."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftq import codec, limits
from raftq.errors import DecodeError
from raftq.jobs import commands
from raftq.jobs.backoff import RetryPolicy
from raftq.jobs.commands import NOT_SNOOZED, JobSpec, Outcome

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _decoded(raw: Any, cls: type) -> tuple[str, Any]:
    try:
        value: Any = codec.structure(raw, cls)
    except DecodeError as error:
        return "refused", str(error)
    return "built", value


def _slow(raw: Any, cls: type) -> tuple[str, Any]:
    """The decode without the fast check: cattrs' hooks and the class's validators."""
    fast = codec._accepts.pop(cls)
    try:
        return _decoded(raw, cls)
    finally:
        codec._accepts[cls] = fast


def _assert_same(raw: Any, cls: type) -> None:
    fast, slow = _decoded(raw, cls), _slow(raw, cls)
    assert fast[0] == slow[0], (raw, fast, slow)
    if fast[0] == "built":
        assert fast[1] == slow[1]
        for field in attrs.fields(cls):  # True == 1 and () == [] would hide a wrong type
            fast_value, slow_value = getattr(fast[1], field.name), getattr(slow[1], field.name)
            assert type(fast_value) is type(slow_value), (field.name, fast_value, slow_value)
        assert hash(fast[1]) == hash(slow[1])


def _text_around(limit: int) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.text(max_size=3),
        st.sampled_from(["", "x" * limit, "x" * (limit + 1)]),
        st.integers(-2, 2),
        st.binary(max_size=2),
        st.none(),
        st.booleans(),
        st.lists(st.text(max_size=2), max_size=2),
    )


def _integer_around(*edges: int) -> st.SearchStrategy[Any]:
    near = sorted({edge + step for edge in edges for step in (-1, 0, 1)})
    return st.one_of(
        st.sampled_from(near),
        st.sampled_from([codec.INT_MIN - 1, codec.INT_MIN, codec.INT_MAX, codec.INT_MAX + 1]),
        st.integers(-5, 5),
        st.booleans(),
        st.text(max_size=2),
        st.none(),
    )


def _bytes_around(limit: int) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.binary(max_size=3),
        st.sampled_from([b"", b"x" * limit, b"x" * (limit + 1)]),
        st.text(max_size=2),
        st.integers(0, 2),
        st.none(),
    )


_parents = st.one_of(
    st.lists(st.text(max_size=3), max_size=3),
    st.lists(st.sampled_from(["a", "b", "x" * limits.JOB_ID_CHARS_MAX]), max_size=3),
    st.lists(st.one_of(st.integers(0, 2), st.none(), st.binary(max_size=1)), max_size=2),
    st.sampled_from([[], [""], ["x" * (limits.JOB_ID_CHARS_MAX + 1)], (), "ab", 0, None, b""]),
)

_retry_policy = st.one_of(
    st.none(),
    st.just(codec.unstructure(RetryPolicy(base_ms=10, max_ms=20, jitter_percent=5))),
    st.sampled_from([[], "x", 0, [1, 2]]),
)

_job_spec_fields = (
    _text_around(limits.JOB_ID_CHARS_MAX),  # id
    _text_around(limits.NAME_CHARS_MAX),  # type
    _bytes_around(limits.JOB_PAYLOAD_BYTES_MAX),  # payload
    _text_around(limits.NAME_CHARS_MAX),  # queue
    _integer_around(-commands.PRIORITY_LIMIT, commands.PRIORITY_LIMIT),  # priority
    _integer_around(0),  # delay_ms
    _integer_around(0, commands.MAX_ATTEMPTS_LIMIT),  # max_attempts
    _integer_around(0),  # timeout_ms
    _text_around(limits.JOB_KEY_CHARS_MAX),  # key
    _text_around(limits.NAME_CHARS_MAX),  # group
    _parents,  # depends_on
    st.one_of(st.sampled_from(["cancel", "run", "", "Cancel"]), _text_around(3)),
    _text_around(limits.JOB_KEY_CHARS_MAX),  # unique_while_active
    _retry_policy,
    st.one_of(
        st.sampled_from(["", TRACEPARENT, TRACEPARENT[:-1], TRACEPARENT.upper()]), _text_around(3)
    ),
)

_good_job_spec = ["", "noop", b"{}", "default", 0, 0, 3, 30_000, "k-1"]
_good_job_spec_added = ["g", ["a"], "run", "u", None, TRACEPARENT]


def _near_good(
    draw: st.DrawFn, good: list[Any], fields: tuple[st.SearchStrategy[Any], ...], required: int
) -> list[Any]:
    """A good raw array, ``required`` to all items long (or one shorter or longer), with up to
    three items replaced by values drawn near their bounds and types: one bad value among good
    ones is where a check that is too loose shows."""
    length = draw(st.integers(required - 1, len(fields) + 1))
    raw = [good[position % len(good)] for position in range(length)]
    for position in draw(st.lists(st.integers(0, length - 1), max_size=3)):
        raw[position] = draw(fields[min(position, len(fields) - 1)])
    return raw


@st.composite
def _job_spec_raw(draw: st.DrawFn) -> list[Any]:
    return _near_good(draw, _good_job_spec + _good_job_spec_added, _job_spec_fields, 9)


@settings(max_examples=1500, deadline=None)
@given(raw=_job_spec_raw())
def test_a_job_spec_decodes_as_its_validators_decide(
    raw: list[Any],
) -> None:
    _assert_same(raw, JobSpec)


_outcome_fields = (
    _text_around(limits.JOB_ID_CHARS_MAX),  # job_id
    _integer_around(0),  # fence
    st.one_of(st.booleans(), st.integers(0, 1), st.none()),  # succeeded
    _bytes_around(limits.JOB_RESULT_BYTES_MAX),  # result
    _text_around(limits.JOB_ERROR_CHARS_MAX),  # error
    st.one_of(st.booleans(), st.integers(0, 1), st.none()),  # retryable
    _integer_around(NOT_SNOOZED, limits.SNOOZE_MS_MAX),  # snooze_ms
    _bytes_around(limits.JOB_PROGRESS_BYTES_MAX),  # progress
)

_good_outcome = ["j-1", 7, True, b"null", "", True, 5, b"1"]


@st.composite
def _outcome_raw(draw: st.DrawFn) -> list[Any]:
    return _near_good(draw, _good_outcome, _outcome_fields, 6)


@settings(max_examples=1000, deadline=None)
@given(raw=_outcome_raw())
def test_an_outcome_decodes_as_its_validators_decide(
    raw: list[Any],
) -> None:
    _assert_same(raw, Outcome)


def _took_fast_way(value: Any) -> bool:
    """Whether decoding ``value``'s bytes went through its class's fast check and passed."""
    cls = type(value)
    accept, build = fast = codec._accepts[cls]
    vouched: list[bool] = []

    def spy(values: list[Any]) -> tuple[Any, ...] | None:
        accepted = accept(values)
        vouched.append(accepted is not None)
        return accepted

    codec._accepts[cls] = (spy, build)
    try:
        assert codec.decode(codec.encode(value), cls) == value
    finally:
        codec._accepts[cls] = fast
    return vouched == [True]


def test_the_jobs_a_client_sends_take_the_fast_way() -> None:
    """What the fast check is for: plain jobs, with every added field in use, and outcomes."""
    plain = codec.structure(_good_job_spec, JobSpec)
    full = attrs.evolve(
        plain,
        group="g",
        depends_on=("a", "b"),
        on_parent_failure="run",
        unique_while_active="u",
        traceparent=TRACEPARENT,
    )
    assert _took_fast_way(plain)
    assert _took_fast_way(full)
    assert _took_fast_way(Outcome(job_id="j", fence=3, succeeded=False, error="e", snooze_ms=5))
    assert _took_fast_way(Outcome(job_id="j", fence=3, succeeded=True, progress=b"1"))
    with_policy = attrs.evolve(
        plain, retry_policy=RetryPolicy(base_ms=1, max_ms=2, jitter_percent=0)
    )
    assert not _took_fast_way(with_policy)  # the usual way, as documented


def test_a_refused_job_spec_still_says_which_field() -> None:
    raw = ["", "noop", b"{}", "default", 0, 0, 0, 30_000, ""]  # max_attempts 0
    with pytest.raises(DecodeError, match="max_attempts"):
        codec.structure(raw, JobSpec)

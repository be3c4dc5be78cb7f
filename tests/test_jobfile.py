"""CONTRACT.md "Job file": defaults, the seed format, and every kind of bad file refused whole
with the index and field of its first problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raftq import limits
from raftq.client.jobfile import (
    JOB_FILE_BYTES_MAX,
    decode_json,
    encode_json,
    load_job_file,
    parse_job_file,
    seconds_to_ms,
)
from raftq.errors import ConfigError
from raftq.jobs.commands import JobSpec


def parse(jobs: object) -> list[JobSpec]:
    return parse_job_file(json.dumps(jobs))


def test_only_payload_is_required_and_the_rest_defaults() -> None:
    (spec,) = parse([{"payload": {"a": [1, 2]}}])
    assert spec == JobSpec(
        id="",
        type="noop",
        payload=b'{"a":[1,2]}',
        queue="default",
        priority=0,
        delay_ms=0,
        max_attempts=3,
        timeout_ms=30_000,
        key="",
    )


def test_the_seed_format_is_accepted_and_key_defaults_to_id() -> None:
    (spec,) = parse([{"id": "job-001", "payload": {"n": 1}, "timeout_ms": 5000}])
    assert (spec.id, spec.key, spec.timeout_ms) == ("job-001", "job-001", 5000)


def test_every_field_is_carried() -> None:
    (spec,) = parse(
        [
            {
                "id": "x",
                "type": "resize",
                "payload": "text",
                "queue": "images",
                "priority": -5,
                "delay_ms": 250,
                "max_attempts": 10,
                "timeout_ms": 1,
                "key": "resize:x:v1",
            }
        ]
    )
    assert spec == JobSpec(
        id="x",
        type="resize",
        payload=b'"text"',
        queue="images",
        priority=-5,
        delay_ms=250,
        max_attempts=10,
        timeout_ms=1,
        key="resize:x:v1",
    )


def test_payloads_keep_unicode_and_null() -> None:
    first, second = parse([{"payload": "héllo ✓"}, {"payload": None}])
    assert decode_json(first.payload) == "héllo ✓"
    assert decode_json(second.payload) is None


def test_an_empty_array_is_no_jobs() -> None:
    assert parse([]) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not JSON"),
        ("[{]", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        ('{"payload": 1}', "must be a JSON array of job objects, not an object"),
        ('"jobs"', "not a string"),
        ("[1]", "index 0: a job must be a JSON object, not an integer"),
        ("[{}]", "index 0, field 'payload': missing"),
    ],
    ids=["empty", "broken", "not-utf8", "object", "string", "item-not-object", "no-payload"],
)
def test_a_file_that_is_not_a_list_of_jobs_is_refused(text: str | bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse_job_file(text)


GOOD = {"payload": 1}


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("priorty", 1, "unknown field"),
        ("id", 7, "must be a string, not an integer"),
        ("id", "x" * (limits.JOB_ID_CHARS_MAX + 1), "characters; at most"),
        ("type", "", "must not be empty"),
        ("type", None, "must be a string, not null"),
        ("type", "t" * (limits.NAME_CHARS_MAX + 1), "characters; at most"),
        ("queue", ["q"], "must be a string, not an array"),
        ("priority", "high", "must be an integer, not a string"),
        ("priority", True, "must be an integer, not a boolean"),
        ("priority", 1.5, "must be an integer, not a number"),
        ("priority", 10**7, "out of range"),
        ("delay_ms", -1, "out of range"),
        ("max_attempts", 0, "out of range"),
        ("max_attempts", 1001, "out of range"),
        ("timeout_ms", 0, "out of range"),
        ("timeout_ms", 5000.0, "must be an integer"),
        ("key", {}, "must be a string, not an object"),
        ("key", "k" * (limits.JOB_KEY_CHARS_MAX + 1), "characters; at most"),
        ("payload", "p" * limits.JOB_PAYLOAD_BYTES_MAX, "bytes as JSON; at most"),
    ],
)
def test_a_bad_field_names_its_index_and_field(field: str, value: object, problem: str) -> None:
    jobs = [GOOD, GOOD, {**GOOD, field: value}, {**GOOD, "priority": "also bad"}]
    with pytest.raises(ConfigError) as refused:
        parse(jobs)
    message = str(refused.value)
    assert message.startswith(f"index 2, field {field!r}: "), message
    assert problem in message


@pytest.mark.parametrize("field", ["id", "key"])
def test_a_repeated_id_or_key_is_refused(field: str) -> None:
    jobs = [{"payload": 1, field: "a"}, {"payload": 2, field: "b"}, {"payload": 3, field: "a"}]
    with pytest.raises(ConfigError, match=f"index 2, field '{field}': 'a' repeats index 0"):
        parse(jobs)


def test_load_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "jobs.json"
    path.write_text('[{"payload": 1}, {"payload": 2, "queue": 3}]')
    with pytest.raises(ConfigError, match=rf"^{path}: index 1, field 'queue'"):
        load_job_file(str(path))
    with pytest.raises(ConfigError, match="cannot read the job file"):
        load_job_file(str(tmp_path / "missing.json"))
    path.write_text('[{"payload": 1}]')
    assert len(load_job_file(str(path))) == 1


def test_an_oversized_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as file:
        file.truncate(JOB_FILE_BYTES_MAX + 1)  # sparse: costs no disk
    with pytest.raises(ConfigError, match="a job file may hold"):
        load_job_file(str(path))


def test_seconds_are_checked_and_rounded_to_milliseconds() -> None:
    assert seconds_to_ms("delay", 1.2345, lowest_ms=0, highest_ms=10_000) == 1234
    assert seconds_to_ms("delay", 2, lowest_ms=0, highest_ms=10_000) == 2000
    for bad in (-0.1, float("nan"), float("inf"), 11, "1", True):
        with pytest.raises(ConfigError):
            seconds_to_ms("delay", bad, lowest_ms=0, highest_ms=10_000)  # type: ignore[arg-type]


def test_bytes_that_are_not_json_decode_as_text() -> None:
    assert decode_json(b"") is None
    assert decode_json(b"\xffnot json") == "\ufffdnot json"


@pytest.mark.parametrize("value", [None, {}, [1, "é"], "text", 0])
def test_a_result_encodes_as_compact_json_whatever_its_value(value: object) -> None:
    """``encode_json`` answers a handler's ``None`` without the JSON encoder: the same bytes."""
    expected = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    assert encode_json(value, limits.JOB_RESULT_BYTES_MAX) == expected
    with pytest.raises(ValueError, match="at most"):
        encode_json(value, len(expected) - 1)

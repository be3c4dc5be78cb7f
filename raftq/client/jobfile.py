"""Jobs described as JSON (CONTRACT.md "Job file"), checked whole before anything is sent.

A job file is a JSON array of objects; only ``payload`` is required. Every field is checked for
its type and for the bounds of ``raftq.limits`` here, on the client, so that a bad file is
refused with the index and field of its first problem and nothing from it is enqueued (the
state machine would otherwise accept the good jobs of a batch and reject the bad ones).

``enqueue_many`` takes the same dicts, so the Python API and the file share one set of rules.
JSON from outside enters through ``parse_json`` and Python values through ``check_nesting``
(which ``encode_json`` calls): every door (the CLI, the client, the HTTP API) bounds nesting
depth (``limits.NESTING_DEPTH_MAX``) with the same error, never a ``RecursionError``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

from raftq import codec, limits
from raftq.errors import ConfigError
from raftq.jobs.backoff import JITTER_PERCENT_DEFAULT, RetryPolicy
from raftq.jobs.commands import JobSpec

JOB_FILE_BYTES_MAX = 256 * 1024 * 1024
"""A job file is read whole into memory and checked before anything is sent; 256 MiB holds
hundreds of thousands of jobs with generous payloads, and is still a sane amount to parse."""

PRIORITY_MIN = -1_000_000
PRIORITY_MAX = 1_000_000
MAX_ATTEMPTS_MAX = 1000
"""The state machine's own bounds on a ``JobSpec`` (``raftq.jobs.commands``), checked early."""

DELAY_MS_MAX = 10 * 365 * 24 * 60 * 60 * 1000
TIMEOUT_MS_MAX = 7 * 24 * 60 * 60 * 1000
"""A delay beyond ten years or an attempt longer than a week is a unit mistake (seconds given as
milliseconds twice over), not a plan; refusing it early beats a job that never comes due."""

DEFAULTS: dict[str, Any] = {
    "type": "noop",
    "queue": "default",
    "priority": 0,
    "delay_ms": 0,
    "max_attempts": 3,
    "timeout_ms": 30_000,
}
FIELDS = (
    "id",
    "type",
    "payload",
    "queue",
    "priority",
    "delay_ms",
    "max_attempts",
    "timeout_ms",
    "key",
    "group",
    "depends_on",
    "on_parent_failure",
    "unique_while_active",
    "backoff_ms",
    "backoff_max_ms",
    "jitter_percent",
)
ON_PARENT_FAILURE = ("cancel", "run")


def load_job_file(path: str) -> list[JobSpec]:
    """Read and check the job file at ``path``; ``ConfigError`` names the first problem."""
    try:
        size = os.path.getsize(path)
        if size > JOB_FILE_BYTES_MAX:
            raise ConfigError(f"{path}: {size} bytes; a job file may hold {JOB_FILE_BYTES_MAX}")
        with open(path, "rb") as file:
            data = file.read(JOB_FILE_BYTES_MAX + 1)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the job file: {error.strerror}") from None
    try:
        return parse_job_file(data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


JOB_FILE_WRAPPING_DEPTH = 2
"""A job file wraps each payload in two levels (the array, the job's object), so a payload
may nest as deep in a file as anywhere else."""


def parse_job_file(data: bytes | str) -> list[JobSpec]:
    """The jobs of a job file's text, in order, or ``ConfigError`` for the first problem."""
    depth_max = limits.NESTING_DEPTH_MAX + JOB_FILE_WRAPPING_DEPTH
    try:
        document = parse_json(data, depth_max=depth_max)
    except NestedTooDeep:
        raise NestedTooDeep(
            f"nested deeper than {depth_max} levels of arrays and objects (a job file is an "
            f"array of objects; a payload may nest {limits.NESTING_DEPTH_MAX} levels)"
        ) from None
    if not isinstance(document, list):
        raise ConfigError(f"must be a JSON array of job objects, not {_json_kind(document)}")
    return specs_from_objects(document)


def specs_from_objects(items: Sequence[object]) -> list[JobSpec]:
    """Check a list of job objects (job-file format) and build their ``JobSpec``s. Two jobs
    with the same id or idempotency key would silently become one, so that is an error too."""
    specs: list[JobSpec] = []
    seen: dict[tuple[str, str], int] = {}
    for index, item in enumerate(items):
        spec = spec_from_object(item, index)
        for field, value in (("id", spec.id), ("key", spec.key)):
            if not value:
                continue
            earlier = seen.setdefault((field, value), index)
            if earlier != index:
                raise ConfigError(
                    f"index {index}, field {field!r}: {value!r} repeats index {earlier}"
                )
        specs.append(spec)
    return specs


def spec_from_object(item: object, index: int) -> JobSpec:
    """One job object (job-file format) as a ``JobSpec``; ``key`` defaults to ``id``, and stays
    "" if neither is given (the client then makes one up, so that its retries dedupe)."""
    if not isinstance(item, dict):
        raise ConfigError(f"index {index}: a job must be a JSON object, not {_json_kind(item)}")
    for field in item:
        if field not in FIELDS:
            raise ConfigError(
                f"index {index}, field {field!r}: unknown field (known: {', '.join(FIELDS)})"
            )
    if "payload" not in item:
        raise ConfigError(f"index {index}, field 'payload': missing; every job needs one")
    values = {**DEFAULTS, **item}
    try:
        job_id = _field("id", check_text, values.get("id", ""), limits.JOB_ID_CHARS_MAX, empty=True)
        values.setdefault("key", job_id)
        return make_spec(**values)
    except FieldProblem as problem:
        raise ConfigError(f"index {index}, field {problem.field!r}: {problem}") from None


def make_spec(
    *,
    type: object,
    payload: object,
    queue: object = "default",
    priority: object = 0,
    delay_ms: object = 0,
    max_attempts: object = 3,
    timeout_ms: object = 30_000,
    key: object = "",
    id: object = "",
    group: object = "",
    depends_on: object = (),
    on_parent_failure: object = "cancel",
    unique_while_active: object = "",
    backoff_ms: object = None,
    backoff_max_ms: object = None,
    jitter_percent: object = None,
) -> JobSpec:
    """Check every field of one job; raises ``FieldProblem`` (a ``ConfigError``) naming it."""
    field = "id"  # the field being checked, for the message
    try:
        job_id = check_text(id, limits.JOB_ID_CHARS_MAX, empty=True)
        field = "type"
        job_type = check_text(type, limits.NAME_CHARS_MAX)
        field = "payload"
        encoded = encode_json(payload, limits.JOB_PAYLOAD_BYTES_MAX)
        field = "queue"
        queue_name = check_text(queue, limits.NAME_CHARS_MAX)
        field = "priority"
        priority_value = check_integer(priority, PRIORITY_MIN, PRIORITY_MAX)
        field = "delay_ms"
        delay = check_integer(delay_ms, 0, DELAY_MS_MAX)
        field = "max_attempts"
        attempts = check_integer(max_attempts, 1, MAX_ATTEMPTS_MAX)
        field = "timeout_ms"
        timeout = check_integer(timeout_ms, 1, TIMEOUT_MS_MAX)
        field = "key"
        key_text = check_text(key, limits.JOB_KEY_CHARS_MAX, empty=True)
        field = "group"
        group_name = check_text(group, limits.NAME_CHARS_MAX, empty=True)
        field = "depends_on"
        parents = check_parents(depends_on)
        field = "on_parent_failure"
        on_failure = check_choice(on_parent_failure)
        field = "unique_while_active"
        unique = check_text(unique_while_active, limits.JOB_KEY_CHARS_MAX, empty=True)
    except ValueError as error:
        raise FieldProblem(field, str(error)) from None
    policy = retry_policy(backoff_ms, backoff_max_ms, jitter_percent)
    plain = [job_id, job_type, encoded, queue_name, priority_value, delay, attempts, timeout]
    plain += [key_text, group_name, list(parents), on_failure, unique, None, ""]
    if policy is None:
        # Every field is checked above: JobSpec's validators need not run again, and its
        # fast check (``codec.accept_valid``) builds it at a fifth of their cost.
        spec = codec.structure(plain, JobSpec)
        assert isinstance(spec, JobSpec)
        return spec
    return JobSpec(
        id=job_id,
        type=job_type,
        payload=encoded,
        queue=queue_name,
        priority=priority_value,
        delay_ms=delay,
        max_attempts=attempts,
        timeout_ms=timeout,
        key=key_text,
        group=group_name,
        depends_on=parents,
        on_parent_failure=on_failure,
        unique_while_active=unique,
        retry_policy=policy,
    )


def retry_policy(base_ms: object, max_ms: object, jitter_percent: object) -> RetryPolicy | None:
    """The job's own backoff from its three fields, or None (the default) if none is given;
    one left out takes the default's value (a cap below the base given rises to it)."""
    if base_ms is None and max_ms is None and jitter_percent is None:
        return None
    highest = limits.RETRY_POLICY_MS_MAX
    base = _field("backoff_ms", check_integer, _or(base_ms, limits.RETRY_BASE_MS), 0, highest)
    cap = max(limits.RETRY_CAP_MS, base) if max_ms is None else max_ms
    cap = _field("backoff_max_ms", check_integer, cap, base, highest)
    jitter = _field(
        "jitter_percent", check_integer, _or(jitter_percent, JITTER_PERCENT_DEFAULT), 0, 100
    )
    return RetryPolicy(base_ms=base, max_ms=cap, jitter_percent=jitter)


def _or(value: object, default: int) -> object:
    return default if value is None else value


class FieldProblem(ConfigError):
    """One field of one job is wrong; ``field`` names it, the message says how."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field


def _field(name: str, check: Any, value: object, *bounds: Any, **options: Any) -> Any:
    try:
        return check(value, *bounds, **options)
    except ValueError as error:
        raise FieldProblem(name, str(error)) from None


def check_text(value: object, chars_max: int, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {_json_kind(value)}")
    if not empty and not value:
        raise ValueError("must not be empty")
    if len(value) > chars_max:
        raise ValueError(f"{len(value)} characters; at most {chars_max} are allowed")
    return value


def check_parents(value: object) -> tuple[str, ...]:
    """A list of distinct job ids (a tuple from Python too), at most ``PARENTS_MAX``."""
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ValueError(f"must be an array of job ids, not {_json_kind(value)}")
    if len(value) > limits.PARENTS_MAX:
        raise ValueError(f"{len(value)} job ids; a job may depend on at most {limits.PARENTS_MAX}")
    for position, parent in enumerate(value):
        try:
            check_text(parent, limits.JOB_ID_CHARS_MAX)
        except ValueError as error:
            raise ValueError(f"item {position}: {error}") from None
    if len(set(value)) != len(value):
        raise ValueError("names a job twice")
    return tuple(value)


def check_choice(value: object) -> str:
    if value not in ON_PARENT_FAILURE:
        raise ValueError(f"must be one of {', '.join(map(repr, ON_PARENT_FAILURE))}, not {value!r}")
    assert isinstance(value, str)
    return value


def check_integer(value: object, lowest: int, highest: int) -> int:
    # bool is an int in Python, but `true` for a priority is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be an integer, not {_json_kind(value)}")
    if not lowest <= value <= highest:
        raise ValueError(f"{value} is out of range; it must be from {lowest} to {highest}")
    return value


class NestedTooDeep(ConfigError):
    """A document or value nests arrays and objects deeper than allowed."""


def parse_json(data: bytes | str, depth_max: int = limits.NESTING_DEPTH_MAX) -> Any:
    """JSON text from outside (a job file, ``--payload``, an HTTP body) as a value, or
    ``ConfigError``: not JSON, or nested deeper than ``depth_max`` (``NestedTooDeep``).

    Python's parser recurses once per level: text nested past its recursion limit stops it
    with ``RecursionError`` (cleanly: the parser counts its depth), which is the same verdict
    as a parsed value that is too deep, reached sooner."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise NestedTooDeep(_too_deep(depth_max)) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"not JSON: {error}") from None
    check_nesting(value, depth_max)
    return value


def check_nesting(value: object, depth_max: int = limits.NESTING_DEPTH_MAX) -> None:
    """``NestedTooDeep`` (a ``ConfigError``) if ``value`` nests dicts, lists or tuples more
    than ``depth_max`` levels deep; a scalar is level 0, ``[1]`` level 1. Walks without
    recursion, so any depth (even a value that contains itself) gets this one answer."""
    if depth_max < 0:
        raise ValueError(f"depth_max must not be negative, not {depth_max}")
    if not isinstance(value, _CONTAINERS):
        return
    containers: list[tuple[Any, int]] = [(value, 1)]
    while containers:
        item, depth = containers.pop()
        if depth > depth_max:
            raise NestedTooDeep(_too_deep(depth_max))
        children = item.values() if isinstance(item, dict) else item
        deeper = [child for child in children if isinstance(child, _CONTAINERS)]
        if deeper:  # a comprehension: scalars (most of a payload) cost one isinstance each
            containers.extend([(child, depth + 1) for child in deeper])


_CONTAINERS = (dict, list, tuple)


def _too_deep(depth_max: int) -> str:
    return f"nested deeper than {depth_max} levels of arrays and objects"


NULL_JSON = b"null"


def encode_json(value: object, bytes_max: int) -> bytes:
    """A JSON value as the compact UTF-8 bytes that travel in payloads and results; a value
    nested deeper than ``limits.NESTING_DEPTH_MAX`` is a ``ValueError``, as is one that is not
    JSON or too large."""
    if value is None and len(NULL_JSON) <= bytes_max:  # what most handlers return: no work
        return NULL_JSON
    try:
        check_nesting(value)
    except NestedTooDeep as error:
        raise ValueError(str(error)) from None
    try:
        encoded = json.dumps(
            value, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode()
    except (TypeError, ValueError) as error:
        raise ValueError(f"not a JSON value: {error}") from None
    if len(encoded) > bytes_max:
        raise ValueError(f"{len(encoded)} bytes as JSON; at most {bytes_max} are allowed")
    return encoded


def decode_json(data: bytes) -> Any:
    """Bytes from a payload or result as a JSON value: None for none. A job enqueued by other
    means may hold bytes that are not JSON; those are returned as text rather than hidden."""
    if not data:
        return None
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return data.decode(errors="replace")


def seconds_to_ms(name: str, seconds: float, *, lowest_ms: int, highest_ms: int) -> int:
    """A duration in seconds (the API's unit) as integer milliseconds (the state machine's)."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or math.isnan(seconds):
        raise ConfigError(f"{name} must be a number of seconds, not {seconds!r}")
    milliseconds = round(seconds * 1000) if math.isfinite(seconds) else highest_ms + 1
    if not lowest_ms <= milliseconds <= highest_ms:
        raise ConfigError(
            f"{name} of {seconds} s is out of range: from {lowest_ms / 1000} "
            f"to {highest_ms / 1000} s"
        )
    return milliseconds


def _json_kind(value: object) -> str:
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    kinds |= {int: "an integer", float: "a number", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)

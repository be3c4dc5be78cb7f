"""Nesting depth is bounded at every door (issue 13, item 9): ``limits.NESTING_DEPTH_MAX``.

A document nested deeper than Python's recursion limit used to escape as a bare
``RecursionError`` (a traceback and exit 1 from ``raftq enqueue --file``; a non-raftq error
from ``client.enqueue``). Now every door refuses it with one clear error naming the limit:
job files and ``--payload`` on the command line (exit 2), ``enqueue``/``enqueue_many`` in the
client (``ConfigError`` before anything is sent), and the wire decoder (the connection that
sent the frame is closed with an error frame; the node serves on). ``parse_json`` and
``check_nesting`` are the functions any other door (the HTTP API) calls."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cbor2
import pytest
import trio

from raftq import limits
from raftq.client.client import connect
from raftq.client.jobfile import check_nesting, decode_json, parse_job_file, parse_json
from raftq.errors import ConfigError, RemoteProtocolError
from raftq.ids import NodeId
from raftq.node.config import NodeConfig
from raftq.node.node import open_node
from raftq.transport.framing import frame
from raftq.transport.network import FramedConnection
from raftq.transport.wire import PROTOCOL_VERSION, ErrorFrame, Hello, Welcome, decode_wire
from tests.node_helpers import member_map, wait_until

ROOT = Path(__file__).resolve().parent.parent
DEEPEST = limits.NESTING_DEPTH_MAX


def nested_list(depth: int) -> object:
    """``[[...[0]...]]`` with ``depth`` arrays, built without recursion."""
    value: object = 0
    for _ in range(depth):
        value = [value]
    return value


def nested_object(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


def nested_text(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("build", [nested_list, nested_object])
def test_check_nesting_takes_the_limit_and_refuses_one_more(build: object) -> None:
    check_nesting(build(DEEPEST))  # type: ignore[operator]
    with pytest.raises(ConfigError, match=f"nested deeper than {DEEPEST} levels"):
        check_nesting(build(DEEPEST + 1))  # type: ignore[operator]
    with pytest.raises(ConfigError, match="nested deeper"):
        check_nesting(build(100_000))  # type: ignore[operator]


def test_check_nesting_counts_depth_not_size() -> None:
    wide = [[[i] for i in range(1000)] for _ in range(100)]
    check_nesting(wide)
    check_nesting({"a": [1, {"b": [2, {"c": "deep enough"}]}]}, depth_max=5)
    with pytest.raises(ConfigError):
        check_nesting({"a": [1, {"b": [2, {"c": [3]}]}]}, depth_max=5)


@pytest.mark.parametrize("depth", [DEEPEST + 1, 5_000, 100_000])
def test_parse_json_refuses_deep_text_with_one_clear_error(depth: int) -> None:
    with pytest.raises(ConfigError, match=f"nested deeper than {DEEPEST} levels"):
        parse_json(nested_text(depth))
    value = parse_json(nested_text(DEEPEST))
    for _ in range(DEEPEST - 1):
        assert isinstance(value, list)
        (value,) = value
    assert value == []


def test_parse_json_keeps_its_other_errors() -> None:
    assert parse_json('{"a": [1, 2]}') == {"a": [1, 2]}
    with pytest.raises(ConfigError, match="not JSON"):
        parse_json("[1,")


@pytest.mark.parametrize("depth", [DEEPEST + 3, 100_000])
def test_a_job_file_nested_too_deep_is_refused_whole(depth: int) -> None:
    """The file's array and each job's object are two levels around a payload."""
    with pytest.raises(ConfigError, match=f"nested deeper than {DEEPEST + 2} levels"):
        parse_job_file(nested_text(depth))


@pytest.mark.parametrize("depth", [DEEPEST + 1, 100_000])
def test_a_job_file_with_one_payload_nested_too_deep_is_refused_whole(depth: int) -> None:
    text = '[{"payload": 1}, {"payload": ' + nested_text(depth) + "}]"
    with pytest.raises(ConfigError, match="nested deeper than"):
        parse_job_file(text)


def test_a_payload_at_the_limit_is_taken_from_a_file_as_from_the_client() -> None:
    (spec,) = parse_job_file('[{"payload": ' + nested_text(DEEPEST) + "}]")
    assert spec.payload == nested_text(DEEPEST).encode()
    with pytest.raises(ConfigError, match=f"a payload may nest {DEEPEST} levels"):
        parse_job_file('[{"payload": ' + nested_text(DEEPEST + 1) + "}]")


def test_stored_bytes_nested_too_deep_read_back_as_text() -> None:
    """A payload that reached the cluster by another road (an older client) is shown, not
    raised: decoding it must not be a RecursionError either."""
    text = nested_text(100_000)
    assert decode_json(text.encode()) == text


def run_cli(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raftq", "--cluster", "127.0.0.1:9", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


def test_raftq_enqueue_file_nested_100000_deep_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text(nested_text(100_000))
    done = run_cli("enqueue", "--file", str(path), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert f"nested deeper than {DEEPEST + 2} levels" in done.stderr
    assert str(path) in done.stderr
    assert done.stdout == ""  # nothing enqueued


def test_raftq_enqueue_payload_nested_too_deep_exits_2(tmp_path: Path) -> None:
    # 30,000 deep: far past the recursion limit, within one argument's 128 KiB (Linux).
    done = run_cli("enqueue", "noop", "--payload", nested_text(30_000), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "--payload" in done.stderr
    assert "nested deeper" in done.stderr


async def test_client_enqueue_refuses_a_deep_payload_before_sending() -> None:
    """The address is never dialled (port 9, discard, is closed here): the check comes first."""
    async with connect("127.0.0.1:9", timeout=1) as client:
        with pytest.raises(ConfigError, match=f"payload: nested deeper than {DEEPEST}"):
            await client.enqueue("noop", nested_list(5_000))
        with pytest.raises(ConfigError, match="index 1, field 'payload': nested deeper"):
            await client.enqueue_many([{"payload": 1}, {"payload": nested_object(5_000)}])
        with pytest.raises(ConfigError, match="nested deeper"):
            await client.enqueue("noop", nested_list(DEEPEST + 1))


def deep_request(depth: int) -> bytes:
    """A client request whose command is an array nested ``depth`` deep, encoded by hand
    (cbor2's own encoder recurses, and crashes, on such a value)."""
    prefix = cbor2.dumps(
        {
            "_t": "ClientRequest",
            "request_id": 1,
            "call": {"_t": "SubmitCommand", "command": 0},
        }
    )
    assert prefix.endswith(b"\x00")  # the command, the last item of the last map
    return prefix[:-1] + b"\x81" * depth + b"\x00"


@pytest.mark.parametrize("depth", [DEEPEST + 1, 100_000])
def test_the_wire_decoder_refuses_deep_frames_with_a_protocol_error(depth: int) -> None:
    with pytest.raises(RemoteProtocolError, match=rf"nesting depth \({DEEPEST}\) exceeded"):
        decode_wire(deep_request(depth))


def test_deep_frames_from_a_stranger_never_reach_python_s_recursion_limit() -> None:
    """The decoder stops at the limit, however deep the bytes go."""
    body = b"\x81" * 1_000_000 + b"\x00"  # one million nested one-item arrays
    with pytest.raises(RemoteProtocolError, match=rf"nesting depth \({DEEPEST}\) exceeded"):
        decode_wire(body)


async def test_a_node_closes_a_connection_that_sends_a_deep_frame_and_serves_on(
    tmp_path: Path,
) -> None:
    config = NodeConfig(node_id=NodeId("n1"), members=member_map(1), data_dir=str(tmp_path))
    async with open_node(config) as node:
        await wait_until(lambda: node.steward.extend_alls > 0)
        host, port = config.address.split(":")
        for depth in (DEEPEST + 1, 100_000):
            async with await trio.open_tcp_stream(host, int(port)) as stream:
                connection = FramedConnection(stream)
                hello = Hello(protocol_version=PROTOCOL_VERSION, cluster_id="raftq", node_id="")
                await connection.send(hello)
                assert isinstance(await connection.receive(), Welcome)
                await stream.send_all(frame(deep_request(depth)))
                with trio.fail_after(10):
                    answer = await connection.receive()
                assert isinstance(answer, ErrorFrame)
                assert answer.code == "bad_frame"
                assert f"nesting depth ({DEEPEST}) exceeded" in answer.message
                with trio.fail_after(10):
                    assert await connection.receive() is None  # closed
        async with connect(config.address, timeout=10) as client:
            job_id = await client.enqueue("noop", nested_list(DEEPEST - 1))
            assert (await client.get(job_id)).payload == nested_list(DEEPEST - 1)

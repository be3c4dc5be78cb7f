"""Authentication and TLS (docs/security.md), on real sockets on 127.0.0.1.

Every refusal case of issue 8: a wrong secret, no secret, a replayed handshake, plaintext to a
TLS port, an expired certificate (the caller's and the node's). Each is refused with a clear
error and counted in ``raftq_connections_refused_total{reason}``, and the node keeps serving
well-behaved clients in between.
"""

from __future__ import annotations

import datetime
import os
import random
import socket
import struct
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import trio
import trustme
from prometheus_client import generate_latest

from raftq.client.client import connect
from raftq.client.connection import ClientConnection
from raftq.errors import ConfigError
from raftq.ids import NodeId
from raftq.jobs.commands import Enqueue, EnqueueResult
from raftq.node.__main__ import build_parser, config_from
from raftq.node.__main__ import main as node_main
from raftq.node.config import NodeConfig
from raftq.node.node import Node, open_node
from raftq.raft.messages import Heartbeat
from raftq.transport import auth
from raftq.transport.connections import (
    HandshakeGuard,
    Identity,
    PeerLink,
    TransportStatistics,
    accept,
)
from raftq.transport.framing import frame
from raftq.transport.network import FramedConnection, TcpNetwork
from raftq.transport.tls import TlsConfig
from raftq.transport.wire import (
    PROTOCOL_VERSION,
    Challenge,
    CommandReply,
    ErrorFrame,
    Hello,
    Proof,
    SubmitCommand,
    Welcome,
    encode_wire,
)
from tests.node_helpers import member_map, running_cluster, spec, wait_for_leader, wait_until
from tests.test_cluster_processes import process_cluster
from tests.test_metrics import lint_like_promtool

SECRET = b"correct horse battery staple 42"


@attrs.frozen
class Pki:
    ca: str
    node_cert: str
    node_key: str
    expired_cert: str
    expired_key: str
    foreign_ca: str

    def node_tls(self) -> TlsConfig:
        return TlsConfig(cert_file=self.node_cert, key_file=self.node_key, ca_file=self.ca)

    def client_tls(self) -> TlsConfig:
        return TlsConfig(ca_file=self.ca)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    now = datetime.datetime.now(datetime.UTC)
    node = ca.issue_cert("127.0.0.1", "localhost")
    expired = ca.issue_cert(
        "127.0.0.1",
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1),
    )
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    trustme.CA().cert_pem.write_to_path(str(directory / "foreign-ca.pem"))
    for name, leaf in (("node", node), ("expired", expired)):
        leaf.cert_chain_pems[0].write_to_path(str(directory / f"{name}.pem"))
        leaf.private_key_pem.write_to_path(str(directory / f"{name}.key"))
    return Pki(
        ca=str(directory / "ca.pem"),
        node_cert=str(directory / "node.pem"),
        node_key=str(directory / "node.key"),
        expired_cert=str(directory / "expired.pem"),
        expired_key=str(directory / "expired.key"),
        foreign_ca=str(directory / "foreign-ca.pem"),
    )


def secret_file(directory: Path, secret: bytes = SECRET) -> str:
    path = directory / "secret"
    path.write_bytes(secret + b"\n")
    path.chmod(0o600)
    return str(path)


def refused_metric(node: Node, reason: str) -> float:
    text = generate_latest(node.metrics.registry).decode()
    prefix = f'raftq_connections_refused_total{{reason="{reason}"}} '
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(lines[0][len(prefix) :]) if lines else 0.0


async def enqueue_one(address: str, **options: object) -> str:
    async with connect(address, timeout=5, **options) as client:  # type: ignore[arg-type]
        return await client.enqueue("noop", {"n": 1})


async def test_three_nodes_with_tls_and_a_secret_replicate_forward_and_run_jobs(
    tmp_path: Path, pki: Pki
) -> None:
    """Peer links, the forwarder and in-process workers all speak TLS and prove the secret."""
    options = {"secret_file": secret_file(tmp_path), "tls": pki.node_tls(), "workers": 1}
    async with running_cluster(tmp_path, **options) as nodes:
        leader = await wait_for_leader(nodes)
        async with connect(
            [node.config.address for node in nodes.values()],
            secret=SECRET,
            tls=pki.client_tls(),
            timeout=10,
        ) as client:
            job_id = await client.enqueue("echo", {"over": "tls"})
            job = await client.wait(job_id, timeout=10)
            assert job.state == "succeeded"
            assert job.result == {"over": "tls"}
        # A follower forwards a command to the leader over its own authenticated TLS link.
        follower = next(node for node in nodes.values() if node is not leader)
        async with trio.open_nursery() as nursery:
            connection = await ClientConnection.open(
                TcpNetwork(pki.client_tls()),
                follower.config.address,
                cluster_id="raftq",
                nursery=nursery,
                timeout=5,
                secret=SECRET,
            )
            reply = await connection.call(
                SubmitCommand(command=Enqueue(now_ms=0, jobs=(spec(),))), timeout=10
            )
            connection.close()
        assert isinstance(reply, CommandReply), reply
        assert isinstance(reply.result, EnqueueResult)
        assert follower.client_service._forwarder is not None
        assert follower.client_service._forwarder.forwarded == 1
        assert all(not node.transport.refused for node in nodes.values())


async def test_every_bad_caller_is_refused_counted_and_the_node_serves_the_rest(
    tmp_path: Path, pki: Pki
) -> None:
    members = member_map(1)
    config = NodeConfig(
        node_id=NodeId("n1"),
        members=members,
        data_dir=str(tmp_path / "n1"),
        secret_file=secret_file(tmp_path),
        tls=pki.node_tls(),
    )
    address = config.address
    good = {"secret": SECRET, "tls": pki.client_tls()}
    async with open_node(config) as node:
        await wait_until(lambda: node.steward.extend_alls > 0)
        await enqueue_one(address, **good)

        with pytest.raises(ConfigError, match="wrong secret"):
            await enqueue_one(address, secret=b"not the secret, but long enough", tls=good["tls"])
        await wait_until(lambda: node.transport.refused == {"bad_auth": 1})

        with pytest.raises(ConfigError, match="auth_required"):
            await enqueue_one(address, tls=good["tls"])
        await wait_until(lambda: node.transport.refused.get("auth_required") == 1)

        with pytest.raises(ConfigError, match="tls_plaintext"):
            await enqueue_one(address, secret=SECRET)  # no TLS
        await wait_until(lambda: node.transport.refused.get("tls_plaintext") == 1)

        expired = TlsConfig(cert_file=pki.expired_cert, key_file=pki.expired_key, ca_file=pki.ca)
        with pytest.raises(ConfigError, match=r"(?i)certificate"):
            await enqueue_one(address, secret=SECRET, tls=expired)
        await wait_until(lambda: node.transport.refused.get("tls_certificate") == 1)

        with pytest.raises(ConfigError, match="TLS: self-signed certificate"):
            await enqueue_one(address, secret=SECRET, tls=TlsConfig(ca_file=pki.foreign_ca))

        await replay_a_handshake(address, good["tls"])
        await wait_until(lambda: node.transport.refused.get("replayed") == 1)
        await wait_until(lambda: node.transport.refused.get("bad_auth") == 2)

        await enqueue_one(address, **good)  # still serving
        for reason in ("bad_auth", "auth_required", "tls_plaintext", "replayed"):
            assert refused_metric(node, reason) == node.transport.refused[reason]
        assert refused_metric(node, "tls_certificate") >= 1
        assert lint_like_promtool(generate_latest(node.metrics.registry).decode()) == []


async def replay_a_handshake(address: str, tls: TlsConfig) -> None:
    """Record a good client's handshake, then replay it: its Hello as is (refused as a
    replay), and its Proof after a fresh Hello (refused: the node's nonce is new)."""
    network = TcpNetwork(tls)
    nonce = auth.new_nonce()
    hello = frame(
        encode_wire(
            Hello(protocol_version=PROTOCOL_VERSION, cluster_id="raftq", node_id="", nonce=nonce)
        )
    )
    async with await network.connect(address) as stream:
        connection = FramedConnection(stream)
        await stream.send_all(hello)
        challenge = await connection.receive()
        assert isinstance(challenge, Challenge)
        transcript = auth.Transcript(
            cluster_id="raftq",
            caller_id="",
            node_id=challenge.node_id,
            caller_nonce=nonce,
            node_nonce=challenge.nonce,
        )
        proof = frame(encode_wire(Proof(proof=transcript.proof(SECRET, auth.ROLE_CALLER))))
        await stream.send_all(proof)
        assert isinstance(await connection.receive(), Welcome)

    async with await network.connect(address) as stream:
        await stream.send_all(hello)
        answer = await FramedConnection(stream).receive()
        assert isinstance(answer, ErrorFrame)
        assert answer.code == "replayed"

    async with await network.connect(address) as stream:
        connection = FramedConnection(stream)
        fresh = Hello(
            protocol_version=PROTOCOL_VERSION,
            cluster_id="raftq",
            node_id="",
            nonce=auth.new_nonce(),
        )
        await connection.send(fresh)
        assert isinstance(await connection.receive(), Challenge)
        await stream.send_all(proof)
        answer = await connection.receive()
        assert isinstance(answer, ErrorFrame)
        assert answer.code == "bad_auth"


async def test_a_node_with_an_expired_certificate_is_refused_by_its_callers(
    nursery: trio.Nursery, pki: Pki
) -> None:
    identity = Identity(cluster_id="raftq", node_id=NodeId("n1"), peers={NodeId("n1")})
    statistics = TransportStatistics()

    async def serve(*, task_status: trio.TaskStatus[int]) -> None:
        async def handler(stream: trio.abc.Stream) -> None:
            await accept(
                stream,
                identity,
                statistics,
                guard=HandshakeGuard(),
                on_peer=no_calls,
                on_client=no_calls,
            )

        expired = TlsConfig(cert_file=pki.expired_cert, key_file=pki.expired_key, ca_file=pki.ca)
        await TcpNetwork(expired).serve("127.0.0.1:0", handler, task_status=task_status)

    port = await nursery.start(serve)
    with pytest.raises(ConfigError, match="certificate has expired"):
        await ClientConnection.open(
            TcpNetwork(pki.client_tls()),
            f"127.0.0.1:{port}",
            cluster_id="raftq",
            nursery=nursery,
            timeout=5,
        )
    await wait_until(lambda: statistics.refused == {"tls_certificate": 1})


async def no_calls(*_: object) -> None:
    raise AssertionError("no handshake should succeed here")


def test_without_a_secret_a_node_serves_loopback_only_unless_insecure(tmp_path: Path) -> None:
    members = {NodeId("n1"): "10.1.2.3:7100"}
    with pytest.raises(ConfigError, match="loopback only"):
        NodeConfig(node_id=NodeId("n1"), members=members, data_dir=str(tmp_path))
    for options in ({"insecure": True}, {"secret_file": secret_file(tmp_path)}):
        NodeConfig(node_id=NodeId("n1"), members=members, data_dir=str(tmp_path), **options)  # type: ignore[arg-type]
    for loopback in ("127.0.0.1:7100", "[::1]:7100", "localhost:7100"):
        NodeConfig(node_id=NodeId("n1"), members={NodeId("n1"): loopback}, data_dir="d")
    arguments = ["--id", "n1", "--cluster", "n1=0.0.0.0:7100", "--data-dir", str(tmp_path)]
    assert node_main(arguments) == 2


def test_secrets_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 16"):
        auth.load_secret(secret_file(tmp_path, b"short"))
    with pytest.raises(ConfigError, match="secret file"):
        auth.load_secret(str(tmp_path / "missing"))
    assert auth.load_secret(secret_file(tmp_path)) == SECRET
    assert "secret" not in repr(
        Identity(cluster_id="c", node_id=NodeId("n1"), peers=set(), secret=SECRET)
    )


def test_proofs_bind_role_parties_and_nonces() -> None:
    base = auth.Transcript(
        cluster_id="c", caller_id="", node_id="n1", caller_nonce=b"a" * 32, node_nonce=b"b" * 32
    )
    proof = base.proof(SECRET, auth.ROLE_CALLER)
    assert proof != base.proof(SECRET, auth.ROLE_NODE)  # no reflection
    assert proof != base.proof(b"another secret of some length", auth.ROLE_CALLER)
    for change in (
        {"cluster_id": "d"},
        {"caller_id": "n2"},
        {"node_id": "n2"},
        {"caller_nonce": b"c" * 32},
        {"node_nonce": b"c" * 32},
    ):
        assert attrs.evolve(base, **change).proof(SECRET, auth.ROLE_CALLER) != proof
    recent = auth.RecentNonces(capacity=2)
    assert recent.first_time(b"1")
    assert recent.first_time(b"2")
    assert not recent.first_time(b"1")
    assert recent.first_time(b"3")
    assert recent.first_time(b"1")


async def test_a_process_cluster_with_tls_and_a_secret_serves_the_cli(
    tmp_path: Path, pki: Pki
) -> None:
    """The flags and environment variables of docs/security.md, on real processes."""
    secret = secret_file(tmp_path)
    (tmp_path / "other").mkdir()
    flags = ("--secret-file", secret, "--tls-cert", pki.node_cert, "--tls-key", pki.node_key)
    async with process_cluster(
        tmp_path, 3, *flags, "--tls-ca", pki.ca, "--workers", "1"
    ) as cluster:
        addresses = ",".join(cluster.addresses.values())

        async def cli(*arguments: str, **environment: str) -> subprocess.CompletedProcess[bytes]:
            with trio.fail_after(60):
                return await trio.run_process(
                    [sys.executable, "-m", "raftq", "--cluster", addresses, *arguments],
                    env={**os.environ, **environment},
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )

        done = await cli(
            "enqueue", "echo", "--payload", '{"x": 1}', "--wait",
            RAFTQ_SECRET_FILE=secret, RAFTQ_TLS_CA=pki.ca,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert b'"result": {"x": 1}' in done.stdout
        refused = await cli("--tls-ca", pki.ca, "status")
        assert refused.returncode == 2
        assert b"requires its secret" in refused.stderr
        wrong = await cli(
            "--tls-ca",
            pki.ca,
            "--secret-file",
            secret_file(tmp_path / "other", b"x" * 32),
            "status",
        )
        assert wrong.returncode == 2
        assert b"wrong secret" in wrong.stderr
        status = await cli("--tls-ca", pki.ca, "--secret-file", secret, "status", "--json")
        assert status.returncode == 0, status.stderr


async def test_a_client_with_a_secret_refuses_a_node_that_cannot_prove_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Both sides challenge: a server without the secret (a rogue, or a misconfigured node)
    gets no requests from a client that has one. (And that node says at start what it is.)"""
    config = NodeConfig(node_id=NodeId("n1"), members=member_map(1), data_dir=str(tmp_path))
    async with open_node(config):
        assert "no cluster secret; listening on loopback only" in caplog.text
        with pytest.raises(ConfigError, match="did not prove the cluster secret"):
            await enqueue_one(config.address, secret=SECRET)


def test_security_options_come_from_flags_the_environment_or_the_config_file(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = secret_file(tmp_path)
    toml = tmp_path / "node.toml"
    toml.write_text(
        f'id = "n1"\ncluster = "n1=10.1.2.3:7100"\ndata_dir = "{tmp_path}"\n'
        f'secret_file = "{secret}"\ntls_cert = "{pki.node_cert}"\n'
        f'tls_key = "{pki.node_key}"\ntls_ca = "{pki.ca}"\n'
    )
    config, _ = config_from(build_parser().parse_args(["--config", str(toml)]))
    assert config.secret_file == secret
    assert config.tls == pki.node_tls()
    flags = ["--id", "n1", "--cluster", "n1=10.1.2.3:7100", "--data-dir", str(tmp_path)]
    monkeypatch.setenv("RAFTQ_SECRET_FILE", secret)
    config, _ = config_from(build_parser().parse_args(flags))
    assert config.secret_file == secret
    monkeypatch.delenv("RAFTQ_SECRET_FILE")
    config, _ = config_from(build_parser().parse_args([*flags, "--insecure"]))
    assert config.insecure
    assert not config.secret_file


async def test_a_client_that_resets_or_garbles_its_connection_does_not_stop_the_node(
    tmp_path: Path,
) -> None:
    """A TCP reset breaks the connection inside the client service's nursery, whose exception
    group once took the whole node down with it."""
    config = NodeConfig(node_id=NodeId("n1"), members=member_map(1), data_dir=str(tmp_path))
    async with open_node(config) as node:
        await wait_until(lambda: node.steward.extend_alls > 0)
        host, port = config.address.split(":")
        for _ in range(3):
            stream = await trio.open_tcp_stream(host, int(port))
            hello = Hello(protocol_version=PROTOCOL_VERSION, cluster_id="raftq", node_id="")
            await stream.send_all(frame(encode_wire(hello)))
            await stream.receive_some(4096)  # Welcome
            await stream.send_all(struct.pack("<I", 100) + b"half a request")
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await stream.aclose()  # with linger 0: a reset, not a clean close
        # And garbage after the handshake: refused with a reason, the node serves on.
        async with await trio.open_tcp_stream(host, int(port)) as stream:
            connection = FramedConnection(stream)
            await connection.send(
                Hello(protocol_version=PROTOCOL_VERSION, cluster_id="raftq", node_id="")
            )
            assert isinstance(await connection.receive(), Welcome)
            await stream.send_all(frame(b"\xff not a request"))
            answer = await connection.receive()
            assert isinstance(answer, ErrorFrame)
            assert answer.code == "bad_frame"
        await enqueue_one(config.address)  # still serving
        assert node.transport.refused == {"bad_frame": 1}


async def test_a_peer_with_the_wrong_secret_is_refused_and_never_delivers(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    members = {NodeId("n1"), NodeId("n2")}
    listening = Identity(cluster_id="raftq", node_id=NodeId("n2"), peers=members, secret=SECRET)
    statistics = TransportStatistics()
    delivered: list[object] = []

    async def on_peer(peer: NodeId, connection: FramedConnection) -> None:
        delivered.append(await connection.receive())

    async def serve(*, task_status: trio.TaskStatus[int]) -> None:
        async def handler(stream: trio.abc.Stream) -> None:
            await accept(
                stream,
                listening,
                statistics,
                guard=HandshakeGuard(),
                on_peer=on_peer,
                on_client=no_calls,
            )

        await TcpNetwork().serve("127.0.0.1:0", handler, task_status=task_status)

    port = await nursery.start(serve)
    for secret, expected in ((b"a different secret, long enough", 0), (SECRET, 1)):
        calling = Identity(cluster_id="raftq", node_id=NodeId("n1"), peers=members, secret=secret)
        link = PeerLink(TcpNetwork(), calling, NodeId("n2"), f"127.0.0.1:{port}", random.Random(1))
        link.send_nowait(Heartbeat(term=1, sender=NodeId("n1"), recipient=NodeId("n2"), commit=0))
        with trio.move_on_after(0.5):
            await link.run()
        assert len(delivered) == expected
    assert statistics.refused.get("bad_auth", 0) >= 1  # the link retried while it ran
    assert "failed to prove the cluster secret" in caplog.text

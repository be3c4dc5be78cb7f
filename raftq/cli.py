"""The ``raftq`` command line. Exit codes (CONTRACT.md): 0 ok, 1 operation failed, 2 bad
arguments, 3 data directory unusable or corrupt, 4 cluster unreachable."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

import trio

from raftq.client.commands import (
    CLIENT_COMMANDS,
    add_client_commands,
    add_global_options,
    run_client_command,
)
from raftq.errors import ConfigError, DataDirError
from raftq.interrupts import honour_sigint, interrupted
from raftq.storage.disk import RealDisk
from raftq.storage.durable_log import DurableLog

EXIT_OK = 0
EXIT_BAD_ARGUMENTS = 2
EXIT_DATA_DIR = 3
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raftq", description="A Raft-replicated job queue.")
    parser.add_argument("--version", action="version", version=f"raftq {version('raftq')}")
    add_global_options(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_client_commands(commands)
    inspect = commands.add_parser(
        "inspect",
        help="recover a data directory as a node would at start-up, and report on it",
        description=(
            "Open a (stopped) node's data directory exactly as the node does at start-up: "
            "replay the WAL, cut a torn tail, verify snapshots and hard state. Prints what it "
            "holds; exits 3 naming the file and byte offset if the directory cannot be used."
        ),
    )
    inspect.add_argument("--data-dir", required=True, help="the node's data directory")
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    # Listed for --help; their own parsers take over in main().
    commands.add_parser("run", help="run a single-node cluster with workers (the embedded default)")
    commands.add_parser("node", help="run one node of a cluster (as python -m raftq.node)")
    commands.add_parser(
        "demo", help="a local 3-node cluster loses its leader; a report shows no job lost"
    )
    commands.add_parser("bench", help="the benchmark suite: a table of figures (--json)")
    commands.add_parser("web", help="serve the dashboard and the HTTP JSON API (docs/web.md)")
    commands.add_parser(
        "sim",
        help="the deterministic simulator: run|sweep, with your handlers (--import MODULE)",
    )
    return parser


def build_run_parser() -> argparse.ArgumentParser:
    from raftq.node.__main__ import add_security_arguments

    parser = argparse.ArgumentParser(
        prog="raftq run",
        description=(
            "Run raftq as a single-node cluster with in-process workers: the simplest way to "
            "use it on one machine. Data stays in --data-dir across restarts."
        ),
    )
    parser.add_argument("--data-dir", default="./raftq-data", help="(./raftq-data)")
    parser.add_argument("--listen", default="127.0.0.1:7100", help="HOST:PORT (127.0.0.1:7100)")
    parser.add_argument("--workers", type=int, default=8, help="in-process workers (8)")
    parser.add_argument("--metrics-addr", default=None, help="serve Prometheus metrics here")
    parser.add_argument(
        "--http-addr", default=None, help="serve the dashboard, /api/v1 and /metrics here"
    )
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        help="import MODULE to register job handlers (repeatable)",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    parser.add_argument("--fsync", default="always", choices=["always", "off"])
    add_security_arguments(parser)
    return parser


def run_single_node(argv: Sequence[str]) -> int:
    from raftq.node.__main__ import main as node_main

    arguments = build_run_parser().parse_args(argv)
    node_argv = [
        "--id", "n1",
        "--cluster", f"n1={arguments.listen}",
        "--data-dir", arguments.data_dir,
        "--workers", str(arguments.workers),
        "--log-level", arguments.log_level,
        "--fsync", arguments.fsync,
    ]  # fmt: skip
    if arguments.metrics_addr:
        node_argv += ["--metrics-addr", arguments.metrics_addr]
    if arguments.http_addr:
        node_argv += ["--http-addr", arguments.http_addr]
    for module in arguments.imports:
        node_argv += ["--import", module]
    for option in ("secret_file", "tls_cert", "tls_key", "tls_ca"):
        if getattr(arguments, option):
            node_argv += ["--" + option.replace("_", "-"), getattr(arguments, option)]
    if arguments.insecure:
        node_argv.append("--insecure")
    return node_main(node_argv, prog="raftq run")


async def inspect_data_dir(data_dir: str) -> dict[str, Any]:
    log = await DurableLog.open(RealDisk(data_dir))
    try:
        state = log.initial_state()
        wal = log.wal_statistics()
        return {
            "data_dir": data_dir,
            "hard_state": {
                "term": state.hard_state.term,
                "vote": state.hard_state.vote,
                "commit": state.hard_state.commit,
            },
            "snapshot": {
                "index": state.snapshot.index,
                "term": state.snapshot.term,
                "voters": list(state.snapshot.membership.voters),
                "learners": list(state.snapshot.membership.learners),
            },
            "log": {"first_index": log.first_index(), "last_index": log.last_index()},
            "wal": {
                "segments": wal.segments,
                "first_index": wal.first_index,
                "last_index": wal.last_index,
            },
        }
    finally:
        await log.close()


def _looks_like_data_dir(path: str) -> bool:
    """Inspecting must not turn an arbitrary directory into a data directory."""
    return any(os.path.exists(os.path.join(path, name)) for name in ("wal", "hardstate"))


def run_simulator(arguments: Sequence[str]) -> int:
    """``raftq sim ...`` is ``python -m sim ...`` (docs/simulator.md) in a child process of
    the same interpreter. A child rather than an import: ``sim`` imports raftq and never the
    reverse (tests/test_layering.py), and a run takes over the process's trio scheduling, its
    garbage collector and its logging, none of which a ``raftq`` process should lend out;
    a sweep starts one process per seed anyway, and the replay commands it prints run the
    same way. The child runs in the caller's directory, so ``--import MODULE`` finds the
    user's module there as ``python -m`` would."""
    if importlib.util.find_spec("sim") is None:
        print("raftq sim: the simulator (package sim) is not installed", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    command = [sys.executable, "-m", "sim", *arguments]
    try:
        return subprocess.run(command, check=False).returncode
    except KeyboardInterrupt:  # the child got the same Ctrl-C and stops its own seeds
        return EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    honour_sigint()
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "node":
        from raftq.node.__main__ import main as node_main

        return node_main(args[1:], prog="raftq node")
    if args and args[0] == "run":
        return run_single_node(args[1:])
    if args and args[0] == "demo":
        from raftq.demo import main as demo_main

        return demo_main(args[1:])
    if args and args[0] == "web":
        from raftq.node.config import check_web_installed

        try:
            check_web_installed("raftq web")
        except ConfigError as error:
            print(f"raftq web: error: {error}", file=sys.stderr)
            return EXIT_BAD_ARGUMENTS
        from raftq.web.serve import main as web_main

        return web_main(args[1:])
    if args and args[0] == "sim":
        return run_simulator(args[1:])
    if args and args[0] == "bench":
        from raftq.bench import main as bench_main

        return bench_main(args[1:])
    arguments = build_parser().parse_args(args)
    if arguments.command in CLIENT_COMMANDS:
        return run_client_command(arguments)
    if arguments.command == "inspect":
        if not _looks_like_data_dir(arguments.data_dir):
            print(f"raftq: no raftq data directory at {arguments.data_dir}", file=sys.stderr)
            return EXIT_BAD_ARGUMENTS
        try:
            report = trio.run(inspect_data_dir, os.path.abspath(arguments.data_dir))
        except DataDirError as error:
            print(f"raftq: {error}", file=sys.stderr)
            return EXIT_DATA_DIR
        if arguments.json:
            print(json.dumps(report))
        else:
            for section, values in report.items():
                print(f"{section}: {values}")
    return EXIT_OK


def run() -> None:
    """The console script's entry point. Ctrl-C that no command turned into its own clean
    stop (a client command waiting on the cluster, a worker still importing) ends the
    program with one line and the shell's exit code for it, not a traceback."""
    try:
        code = main()
    except BaseException as error:
        if not interrupted(error):
            raise
        print("raftq: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    sys.exit(code)


if __name__ == "__main__":
    run()

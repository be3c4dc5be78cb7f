"""The client commands of the ``raftq`` CLI (CONTRACT.md "Client commands").

``raftq.cli`` owns the parser and ``main``; this module adds the client subcommands to it and
runs them. Each command connects, does one thing, prints, and maps the outcome to an exit code:
0 ok, 1 the operation failed (no such job, rejected), 2 bad arguments or input file, 4 the
cluster did not answer (or stayed busy) within ``--timeout``.

Job durations: ``enqueue --timeout`` is the job's timeout, as CONTRACT.md writes it, so for
``enqueue`` the cluster timeout goes before the command (``raftq --timeout 5 enqueue ...``) or
as ``--cluster-timeout``. Every other command takes ``--timeout`` after its name too.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import trio

from raftq import codec, limits
from raftq.app import load_app
from raftq.client.client import LIST_LIMIT_MAX, Client, Job, connect
from raftq.client.cursor import decode_cursor, encode_cursor
from raftq.client.job import utc_text
from raftq.client.jobfile import load_job_file, parse_json
from raftq.client.limit_commands import add_limit_parser, run_limit
from raftq.client.schedule_commands import add_schedule_commands, run_schedule
from raftq.client.worker import Worker
from raftq.errors import Busy, ConfigError, NoQuorum, RaftqError
from raftq.jobs.commands import JobSpec
from raftq.jobs.job import JobState
from raftq.jobs.provenance import SNAPSHOT, Story
from raftq.transport.auth import load_secret
from raftq.transport.tls import tls_config_from

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_ARGUMENTS = 2
EXIT_UNREACHABLE = 4

DEFAULT_CLUSTER = "127.0.0.1:7100"
DEFAULT_TIMEOUT_S = 10.0

ENQUEUE_BATCH_BYTES_MAX = 4 * 1024 * 1024
"""A job file is sent in batches of at most ``JOBS_PER_ENQUEUE_MAX`` jobs and about this many
payload bytes: each batch is one Raft entry, and entries far larger than an AppendEntries
message (``RAFT_APPEND_BYTES_MAX``) slow replication for everyone."""

CLIENT_COMMANDS = frozenset(
    {
        "enqueue",
        "status",
        "jobs",
        "job",
        "cancel",
        "retry",
        "pause",
        "resume",
        "worker",
        "cluster",
        "drain",
        "limit",
        "schedule",
    }
)

logger = logging.getLogger("raftq.cli")


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """``raftq --cluster ... --timeout ... COMMAND``: before the command, for every command."""
    parser.add_argument(
        "--cluster", help=f"HOST:PORT,... (default $RAFTQ_CLUSTER or {DEFAULT_CLUSTER})"
    )
    parser.add_argument(
        "--timeout",
        dest="client_timeout",
        type=float,
        metavar="SECONDS",
        help=f"seconds to keep retrying the cluster (default {DEFAULT_TIMEOUT_S:g})",
    )
    parser.add_argument("--cluster-id", help="the cluster's id (default raftq)")
    _add_security_options(parser, default=None)


def _add_security_options(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--secret-file", default=default, help="the cluster secret (default $RAFTQ_SECRET_FILE)"
    )
    parser.add_argument(
        "--tls-ca", default=default, help="connect with TLS, trusting this CA (or $RAFTQ_TLS_CA)"
    )
    parser.add_argument("--tls-cert", default=default, help="a client certificate to present")
    parser.add_argument("--tls-key", default=default, help="its private key")


def add_client_commands(commands: Any) -> None:
    """Add the client subcommands to ``commands`` (an argparse subparsers action)."""
    with_timeout = _connection_options(client_timeout_flag="--timeout")
    without_timeout = _connection_options(client_timeout_flag="--cluster-timeout")

    enqueue = commands.add_parser(
        "enqueue", parents=[without_timeout], help="enqueue one job, or a job file"
    )
    enqueue.add_argument("type", nargs="?", metavar="TYPE", help="the job type")
    enqueue.add_argument("--file", help="a JSON job file (CONTRACT.md); prints one id per line")
    enqueue.add_argument("--payload", default="null", metavar="JSON", help="the payload")
    enqueue.add_argument("--queue", default="default")
    enqueue.add_argument("--priority", type=int, default=0, help="higher runs first")
    enqueue.add_argument(
        "--delay", type=float, default=0.0, metavar="SECONDS", help="seconds before it may run"
    )
    enqueue.add_argument("--max-attempts", type=int, default=3)
    enqueue.add_argument(
        "--timeout",
        dest="job_timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="the job's timeout: seconds an attempt may run without a heartbeat",
    )
    enqueue.add_argument("--key", help="idempotency key (a retry with it enqueues nothing)")
    enqueue.add_argument(
        "--backoff", type=float, metavar="SECONDS", help="its retry backoff's base (default 1)"
    )
    enqueue.add_argument(
        "--backoff-max", type=float, metavar="SECONDS", help="its retry backoff's cap (3600)"
    )
    enqueue.add_argument(
        "--jitter", type=int, metavar="PERCENT", help="up to this much added to each wait (25)"
    )
    enqueue.add_argument("--id", dest="job_id", help="the job's id (default: assigned)")
    enqueue.add_argument("--group", help="the concurrency and rate group (raftq limit set)")
    enqueue.add_argument(
        "--depends-on",
        action="append",
        default=[],
        metavar="ID",
        help="wait until job ID has succeeded (repeat for several; docs/jobs.md Dependencies)",
    )
    enqueue.add_argument(
        "--on-parent-failure",
        choices=("cancel", "run"),
        default="cancel",
        help="when a parent ends dead or cancelled: cancel this job (default), or run it anyway",
    )
    enqueue.add_argument(
        "--unique-while-active",
        metavar="KEY",
        help="enqueue nothing while another job with KEY is pending, waiting or running "
        "(prints that job's id)",
    )
    enqueue.add_argument("--wait", action="store_true", help="wait for the job to finish")
    enqueue.add_argument(
        "--wait-timeout",
        type=float,
        help="seconds to wait with --wait (default: enough for every attempt to time out)",
    )

    status = commands.add_parser("status", parents=[with_timeout], help="the cluster's state")
    status.add_argument("--json", action="store_true")

    jobs = commands.add_parser(
        "jobs",
        parents=[with_timeout],
        help="list jobs",
        description="Jobs in enqueue order, filtered, at most --limit. When more are left, "
        "the cursor that goes on after them is printed on stderr (`next cursor: C`); pass it "
        "as --cursor C for the next jobs (an HTTP API cursor works too). With --cursor, "
        '--json prints {"jobs": [...], "next_cursor": C or null} instead of the list.',
    )
    jobs.add_argument("--state", choices=[state.value for state in JobState])
    jobs.add_argument("--queue", metavar="Q")
    jobs.add_argument("--type", dest="job_type", metavar="T", help="jobs of this type only")
    jobs.add_argument(
        "--limit",
        type=int,
        default=100,
        metavar="N",
        help=f"at most N jobs, 1 to {LIST_LIMIT_MAX:,} (default 100)",
    )
    jobs.add_argument(
        "--cursor",
        metavar="C",
        help="go on after the jobs a previous listing printed ('start': from the first)",
    )
    jobs.add_argument("--json", action="store_true")

    job = commands.add_parser("job", parents=[with_timeout], help="one job with its history")
    job.add_argument("job_id", metavar="ID")
    job.add_argument("--json", action="store_true")
    job.add_argument(
        "--history",
        action="store_true",
        help="its whole story from the log: every entry that touched it, with index, term, "
        "leader, worker, attempt and fence, refused reports included (docs/jobs.md)",
    )

    for name, what in (("cancel", "cancel a job"), ("retry", "run a dead or failed job again")):
        command = commands.add_parser(name, parents=[with_timeout], help=what)
        command.add_argument("job_id", metavar="ID")
    for name, what in (("pause", "stop handing out a queue's jobs"), ("resume", "undo pause")):
        command = commands.add_parser(name, parents=[with_timeout], help=what)
        command.add_argument("queue", metavar="QUEUE")

    cluster = commands.add_parser(
        "cluster",
        help="change the cluster's members",
        description="Membership changes, one server at a time. A new node is started first "
        "with --cluster listing the members and itself; `cluster add` then admits it as a "
        "learner (it receives the log or a snapshot), waits until it has caught up, and "
        "promotes it to voter. Use a --timeout long enough for the catch-up.",
    )
    membership = cluster.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)
    add = membership.add_parser(
        "add", parents=[with_timeout], help="admit a running node: learner, then voter"
    )
    add.add_argument("member", metavar="ID=HOST:PORT")
    remove = membership.add_parser(
        "remove", parents=[with_timeout], help="remove a member (its jobs are retried)"
    )
    remove.add_argument("node_id", metavar="ID")
    transfer = membership.add_parser(
        "transfer-leader", parents=[with_timeout], help="hand leadership to a voter"
    )
    transfer.add_argument("node_id", metavar="ID")
    for action in (add, remove, transfer):
        action.add_argument("--json", action="store_true")

    drain = commands.add_parser(
        "drain",
        parents=[with_timeout],
        help="stop one node gracefully",
        description="Drain the node at the first --cluster address (that node, not the "
        "leader): it stops claiming, hands leadership over if it leads, lets its running "
        "jobs finish within the grace period, and exits 0, as on SIGTERM. To take it out of "
        "the cluster for good, `raftq cluster remove` it too.",
    )
    drain.add_argument("--json", action="store_true")
    add_limit_parser(commands, with_timeout)

    worker = commands.add_parser("worker", parents=[with_timeout], help="a remote worker")
    worker.add_argument(
        "--import",
        dest="modules",
        action="append",
        required=True,
        metavar="MODULE",
        help="a module with a raftq.App named app, or that registers handlers (repeatable)",
    )
    worker.add_argument("--concurrency", type=int, default=8, metavar="N")
    worker.add_argument(
        "--loop",
        choices=["trio", "asyncio"],
        default="trio",
        help="the event loop the async handlers run on (default trio); asyncio for handlers "
        "that use asyncio libraries (asyncpg, aiohttp, ...)",
    )
    worker.add_argument("--queue", dest="queues", action="append", default=[], metavar="Q")
    worker.add_argument("--log-level", choices=["debug", "info", "warning"], default="info")
    add_schedule_commands(commands, with_timeout)


def _connection_options(*, client_timeout_flag: str) -> argparse.ArgumentParser:
    # SUPPRESS: a flag given before the command is not overwritten by the command's default.
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--cluster", default=argparse.SUPPRESS, help="HOST:PORT,...")
    options.add_argument(
        client_timeout_flag,
        dest="client_timeout",
        type=float,
        metavar="SECONDS",
        default=argparse.SUPPRESS,
        help=f"seconds to keep retrying the cluster (default {DEFAULT_TIMEOUT_S:g})",
    )
    options.add_argument("--cluster-id", default=argparse.SUPPRESS)
    _add_security_options(options, default=argparse.SUPPRESS)
    return options


def run_client_command(arguments: argparse.Namespace) -> int:
    """Run a parsed client command; its exit code. Errors are printed, never raised."""
    command = _COMMANDS[arguments.command]
    loop = getattr(arguments, "loop", "trio")  # `raftq worker --loop`; the rest run on Trio
    try:
        if loop == "trio":
            return trio.run(_connected, command, arguments)
        code: int = anyio.run(_connected, command, arguments, backend=loop)
        return code
    except ConfigError as error:
        return _complain(error, EXIT_BAD_ARGUMENTS)
    except (NoQuorum, Busy) as error:
        return _complain(error, EXIT_UNREACHABLE)
    except RaftqError as error:
        return _complain(error, EXIT_FAILED)
    except TimeoutError:
        return _complain("the job did not finish within --wait-timeout", EXIT_FAILED)


def _complain(error: object, code: int) -> int:
    print(f"raftq: {error}", file=sys.stderr)
    return code


Command = Callable[[Client, argparse.Namespace], Awaitable[int]]


async def _connected(command: Command, arguments: argparse.Namespace) -> int:
    cluster = arguments.cluster or os.environ.get("RAFTQ_CLUSTER") or DEFAULT_CLUSTER
    timeout = (
        arguments.client_timeout if arguments.client_timeout is not None else DEFAULT_TIMEOUT_S
    )
    secret_file = arguments.secret_file or os.environ.get("RAFTQ_SECRET_FILE", "")
    async with connect(
        cluster,
        cluster_id=arguments.cluster_id or "raftq",
        timeout=timeout,
        secret=load_secret(secret_file) if secret_file else None,
        tls=tls_config_from(
            arguments.tls_cert or "",
            arguments.tls_key or "",
            arguments.tls_ca or os.environ.get("RAFTQ_TLS_CA", ""),
        ),
    ) as client:
        return await command(client, arguments)


async def _enqueue(client: Client, arguments: argparse.Namespace) -> int:
    if (arguments.file is None) == (arguments.type is None):
        raise ConfigError("enqueue needs a TYPE or --file FILE (one of them)")
    if arguments.file is not None:
        for batch in batches(load_job_file(arguments.file)):
            for job_id in await client.enqueue_specs(batch):
                print(job_id, flush=True)
        return EXIT_OK
    try:
        payload = parse_json(arguments.payload)
    except ConfigError as error:
        raise ConfigError(f"--payload is {error}") from None
    job_id = await client.enqueue(
        arguments.type,
        payload,
        queue=arguments.queue,
        priority=arguments.priority,
        delay=arguments.delay,
        max_attempts=arguments.max_attempts,
        timeout=arguments.job_timeout,
        key=arguments.key,
        id=arguments.job_id,
        group=arguments.group,
        depends_on=arguments.depends_on,
        on_parent_failure=arguments.on_parent_failure,
        unique_while_active=arguments.unique_while_active,
        backoff=arguments.backoff,
        backoff_max=arguments.backoff_max,
        jitter_percent=arguments.jitter,
    )
    print(job_id, flush=True)
    if not arguments.wait:
        return EXIT_OK
    wait_s = arguments.wait_timeout
    if wait_s is None:  # every attempt timing out, plus the delay and some retry backoff
        wait_s = arguments.delay + arguments.max_attempts * (arguments.job_timeout + 10)
    job = await client.wait(job_id, timeout=wait_s)
    print(json.dumps(job.to_json()))
    return EXIT_OK if job.state == "succeeded" else EXIT_FAILED


def batches(specs: list[JobSpec]) -> list[list[JobSpec]]:
    """Cut checked jobs into enqueue commands bounded in count and payload bytes."""
    result: list[list[JobSpec]] = []
    batch: list[JobSpec] = []
    batch_bytes = 0
    for spec in specs:
        full = len(batch) >= limits.JOBS_PER_ENQUEUE_MAX
        if batch and (full or batch_bytes + len(spec.payload) > ENQUEUE_BATCH_BYTES_MAX):
            result.append(batch)
            batch, batch_bytes = [], 0
        batch.append(spec)
        batch_bytes += len(spec.payload)
    if batch:
        result.append(batch)
    return result


async def _status(client: Client, arguments: argparse.Namespace) -> int:
    report = await client.status()
    if arguments.json:
        print(json.dumps(report))
        return EXIT_OK
    cluster = report["cluster"]
    print(
        f"leader {cluster['leader'] or '(none)'}  term {cluster['term']}  "
        f"commit {cluster['commit_index']}"
    )
    for node in cluster["nodes"]:
        line = f"  {node['id'] or '?':<12} {node['addr']:<22} {node['role']:<12}"
        if node["role"] != "unreachable":
            line += f" term {node['term']}  commit {node['commit_index']}  "
            line += f"applied {node['applied_index']}"
            if "match_index" in node:
                line += f"  replicated {node['match_index']}"
            if node.get("fsync") is False:
                line += "  FSYNC OFF (unsafe)"
            if node.get("storage_error"):
                line += f"  NOT WRITING: {node['storage_error']}"
        print(line)
    print("jobs: " + ", ".join(f"{state} {count}" for state, count in report["jobs"].items()))
    for name, queue in report["queues"].items():
        paused = " (paused)" if queue["paused"] else ""
        print(f"queue {name}{paused}: pending {queue['pending']}, running {queue['running']}")
    return EXIT_OK


async def _jobs(client: Client, arguments: argparse.Namespace) -> int:
    limit = arguments.limit
    if not 0 < limit <= LIST_LIMIT_MAX:
        raise ConfigError(f"--limit must be from 1 to {LIST_LIMIT_MAX}, not {limit}")
    cursor = arguments.cursor
    position = None if cursor in (None, "start") else _cursor_position(cursor)
    jobs: list[Job] = []
    while len(jobs) < limit:  # each page moves on; at most a page per LIST_SCAN_JOBS_MAX jobs
        page = await client.page(
            arguments.state,
            arguments.queue,
            arguments.job_type,
            cursor=position,
            limit=min(limits.JOBS_PAGE_MAX, limit - len(jobs)),
        )
        jobs += page.jobs
        position = page.cursor
        if position is None:
            break
    next_cursor = None if position is None else encode_cursor(position, "oldest")
    if arguments.json:
        listed = [job.to_json() for job in jobs]
        page_object = {"jobs": listed, "next_cursor": next_cursor}
        print(json.dumps(listed if cursor is None else page_object))
    else:
        for job in jobs:
            print(
                f"{job.id}  {job.state:<9}  {job.type}  queue={job.queue}  "
                f"attempts={job.attempts}/{job.max_attempts}"
            )
    if next_cursor is not None:
        print(f"next cursor: {next_cursor}", file=sys.stderr)
    return EXIT_OK


def _cursor_position(cursor: str) -> int:
    try:
        return decode_cursor(cursor, "oldest")
    except ConfigError as error:
        raise ConfigError(
            f"--cursor: {error}; pass the one a listing printed ('next cursor: ...'), or 'start'"
        ) from None


async def _job(client: Client, arguments: argparse.Namespace) -> int:
    if arguments.history:
        story = await client.history(arguments.job_id)
        if arguments.json:
            print(json.dumps(codec.unstructure(story)))
        else:
            print(describe_story(story))
        return EXIT_OK
    job = await client.get(arguments.job_id)
    if arguments.json:
        print(json.dumps(job.to_json()))
    else:
        print(describe(job))
    return EXIT_OK


def describe(job: Job) -> str:
    lines = [
        f"{name:<13} {value}"
        for name, value in (
            ("id", job.id),
            ("type", job.type),
            ("queue", job.queue),
            *((("group", job.group),) if job.group else ()),
            ("state", job.state),
            ("priority", job.priority),
            ("attempts", f"{job.attempts}/{job.max_attempts}"),
            ("payload", json.dumps(job.payload)),
            ("result", json.dumps(job.result)),
            ("enqueued_ms", job.enqueued_ms),
        )
    ]
    if job.depends_on:
        waiting = f", {job.parents_left} still to finish" if job.state == "waiting" else ""
        lines.append(f"{'depends_on':<13} {' '.join(job.depends_on)}{waiting}")
        lines.append(f"{'if a parent fails':<13} {job.on_parent_failure}")
    if job.unique_while_active:
        lines.append(f"{'unique while active':<13} {job.unique_while_active}")
    lines += policy_lines(job)
    if job.error:
        lines.append("error:")
        lines.extend("  " + line for line in job.error.splitlines())
    lines.append("history:")
    for entry in job.history:
        where = f"  node={entry.node}" if entry.node else ""
        fence = f"  fence={entry.fence}" if entry.fence else ""
        lines.append(f"  {entry.at_ms}  {entry.event}  attempt={entry.attempt}{where}{fence}")
        error_lines = entry.error.strip().splitlines()
        if error_lines:  # the attempt's own error: its last line names the exception
            lines.append(f"    error: {error_lines[-1]}")
    return "\n".join(lines)


STORY_COLUMNS = ("index", "term", "leader", "at (UTC)", "event", "attempt", "fence", "worker")


def describe_story(story: Story) -> str:
    """``raftq job ID --history``: a table, oldest first, and where it is whole from."""
    kept = [event for event in story.events if event.source == SNAPSHOT]
    lines = [
        f"job {story.job_id}: every entry that touched it from index {story.complete_from} "
        f"through {story.through}"
        + (f"; before, the {len(kept)} events the snapshot kept (marked *)" if kept else "")
        + (f"; {story.dropped} older events left out" if story.dropped else "")
    ]
    rows = [STORY_COLUMNS]
    for event in story.events:
        index = f"{event.index}*" if event.source == SNAPSHOT else str(event.index)
        rows.append(
            (
                index if event.index else "*",
                str(event.term or ""),
                event.leader,
                utc_text(event.at_ms),
                event.event,
                str(event.attempt),
                str(event.fence or ""),
                event.worker,
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(STORY_COLUMNS))]
    details = ["", *(event.detail for event in story.events)]
    for row, detail_text in zip(rows, details, strict=True):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        detail = detail_text.strip().splitlines()
        if detail:  # an attempt's error (its last line names the exception) or why refused
            lines.append(f"    {detail[-1]}")
    return "\n".join(line.rstrip() for line in lines)


def policy_lines(job: Job) -> list[str]:
    """``raftq job``'s lines for a job's progress, snoozes and retry policy, where set."""
    lines = []
    if job.progress is not None:
        lines.append(f"{'progress':<13} {json.dumps(job.progress)}")
    if job.snoozes:
        lines.append(f"{'snoozes':<13} {job.snoozes}")
    if job.retry_policy is not None:
        base_s, max_s = (
            job.retry_policy["backoff_ms"] / 1000,
            job.retry_policy["backoff_max_ms"] / 1000,
        )
        jitter = job.retry_policy["jitter_percent"]
        lines.append(f"{'retry policy':<13} backoff {base_s:g} s to {max_s:g} s, jitter {jitter}%")
    return lines


async def _cancel(client: Client, arguments: argparse.Namespace) -> int:
    print(f"{arguments.job_id} {await client.cancel(arguments.job_id)}")
    return EXIT_OK


async def _retry(client: Client, arguments: argparse.Namespace) -> int:
    print(f"{arguments.job_id} {await client.retry(arguments.job_id)}")
    return EXIT_OK


async def _pause(client: Client, arguments: argparse.Namespace) -> int:
    await client.pause(arguments.queue)
    print(f"{arguments.queue} paused")
    return EXIT_OK


async def _resume(client: Client, arguments: argparse.Namespace) -> int:
    await client.resume(arguments.queue)
    print(f"{arguments.queue} resumed")
    return EXIT_OK


async def _worker(client: Client, arguments: argparse.Namespace) -> int:
    """Run until SIGINT or SIGTERM, then stop claiming and let running jobs finish."""
    logging.basicConfig(
        level=arguments.log_level.upper(), format="%(asctime)s %(name)s %(message)s"
    )
    sys.path.insert(0, os.getcwd())  # `--import jobs` finds ./jobs.py, as `python -m` would
    app = load_app(arguments.modules)
    worker = Worker(client, app, concurrency=arguments.concurrency, queues=tuple(arguments.queues))
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tasks:

            async def stop_on_signal() -> None:
                async for signal_number in signals:
                    logger.info("signal %s: stopping", signal.Signals(signal_number).name)
                    worker.stop()
                    return

            tasks.start_soon(stop_on_signal)
            await worker.run()
            tasks.cancel_scope.cancel()
    return EXIT_OK


async def _cluster(client: Client, arguments: argparse.Namespace) -> int:
    action = arguments.cluster_command
    if action == "add":
        node_id, separator, address = arguments.member.partition("=")
        if not separator or not node_id or not address:
            raise ConfigError(f"cluster add takes ID=HOST:PORT, not {arguments.member!r}")
        membership = await client.add_node(node_id, address)
    elif action == "remove":
        membership = await client.remove_node(arguments.node_id)
    else:
        membership = await client.transfer_leader(arguments.node_id)
    if arguments.json:
        print(json.dumps(membership))
    else:
        print(
            f"voters {','.join(membership['voters']) or '-'}  "
            f"learners {','.join(membership['learners']) or '-'}  "
            f"leader {membership['leader'] or '(none)'}"
        )
    return EXIT_OK


async def _drain(client: Client, arguments: argparse.Namespace) -> int:
    node = await client.drain(client.addresses[0])
    if arguments.json:
        print(json.dumps(node))
    else:
        print(f"{node['id']} at {node['addr']} is draining (it was {node['role']})")
    return EXIT_OK


_COMMANDS: dict[str, Command] = {
    "cluster": _cluster,
    "drain": _drain,
    "enqueue": _enqueue,
    "status": _status,
    "jobs": _jobs,
    "job": _job,
    "cancel": _cancel,
    "retry": _retry,
    "pause": _pause,
    "resume": _resume,
    "worker": _worker,
    "limit": run_limit,
    "schedule": run_schedule,
}

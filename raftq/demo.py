"""``raftq demo``: a three-node cluster on this machine loses its leader and loses no job.

Starts three ``python -m raftq.node`` processes (free 127.0.0.1 ports, a temporary directory,
in-process workers running the built-in handlers), enqueues a job file at a steady rate, kills
the leader with SIGKILL once part of the file is acknowledged, watches the election, restarts
the dead node, waits for every job to finish, and then checks the outcome for real: every
acknowledged id is read back from the cluster (none lost), no id is held twice, no job holds
an id that was never acknowledged, and no job's history shows two successes (no duplicates).
Exit code 0 only if nothing was lost or duplicated and every job finished; every process the
demo started is stopped however it ends: on Ctrl-C (exit 130, even when started with SIGINT
ignored) the demo stops them in order; if the demo itself is killed (SIGKILL), its nodes see
their lifeline close (``raftq.lifeline``) and stop by themselves.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import attrs
import trio

from raftq.client.client import Client, Job, connect
from raftq.client.jobfile import load_job_file
from raftq.errors import ConfigError, RaftqError
from raftq.jobs.commands import JobSpec
from raftq.local_cluster import LocalCluster, NodeExited, open_local_cluster

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_ARGUMENTS = 2
EXIT_INTERRUPTED = 130

DEMO_JOBS_MAX = 10_000
"""The final check reads every job back with one ``list`` call, whose limit is 10,000."""


def _example_jobs() -> Path:
    """``examples/jobs.json``: the copy an installed wheel carries, else the clone's."""
    here = Path(__file__).resolve().parent
    packaged = here / "examples" / "jobs.json"
    return packaged if packaged.exists() else here.parent / "examples" / "jobs.json"


EXAMPLE_JOBS = _example_jobs()
KILL_AT_FRACTION = 0.4
"""The leader dies once this share of the file is acknowledged: mid-run, with jobs still to
enqueue (so the producer must fail over) and jobs running on the doomed node's workers."""
RESTART_AFTER_S = 1.5
"""The dead node stays down this long after the new leader is known: the cluster works on
without it, so it has entries to catch up on when it comes back."""
POLL_S = 0.05


@attrs.define
class DemoOptions:
    jobs_file: Path = EXAMPLE_JOBS
    jobs: int | None = None
    rate: float = 200.0
    batch: int = 20
    workers: int = 4
    timeout_s: float = 60.0
    keep: bool = False
    live: bool | None = None  # None: a refreshing line on a terminal, plain lines otherwise


@attrs.define
class Report:
    """What the demo saw, checked against what the cluster holds at the end."""

    submitted: int = 0
    acknowledged: int = 0
    succeeded: int = 0
    dead: int = 0
    cancelled: int = 0
    unfinished: int = 0
    lost: int = 0
    duplicates: int = 0
    rerun: int = 0
    unexpected_dead: int = 0
    killed: str = ""
    old_term: int = 0
    new_leader: str = ""
    new_term: int = 0
    election_s: float = 0.0
    failover_s: float = 0.0
    recovery_s: float = 0.0
    seconds: float = 0.0
    data_dir: str = ""

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.duplicates == 0
            and self.unfinished == 0
            and self.acknowledged == self.submitted
        )


class Display:
    """Events as lines; progress as one refreshing line on a terminal, else a line a second."""

    def __init__(self, out: TextIO, live: bool) -> None:
        self.out = out
        self.live = live
        self._last_plain = 0.0
        self._showing = False

    def event(self, text: str) -> None:
        self._clear()
        print(text, file=self.out, flush=True)

    def progress(self, text: str) -> None:
        if self.live:  # one line, cut to the terminal's width: a wrapped line cannot be redrawn
            width = shutil.get_terminal_size().columns - 1
            self.out.write("\r\x1b[2K" + text[:width])
            self.out.flush()
            self._showing = True
            return
        now = time.monotonic()
        if now - self._last_plain >= 1.0:
            self._last_plain = now
            print(text, file=self.out, flush=True)

    def _clear(self) -> None:
        if self._showing:
            self.out.write("\r\x1b[2K")
            self._showing = False


@attrs.define
class Producer:
    """Enqueues the jobs in batches at a steady rate; records what was acknowledged, when."""

    specs: list[JobSpec]
    batch: int
    rate: float
    kill_at: int
    """Once this many jobs are acknowledged, ``kill_due`` is set."""
    kill_due: trio.Event = attrs.field(factory=trio.Event)
    acknowledged: list[str] = attrs.field(factory=list)
    kill_time: float | None = None
    first_ack_after_kill: float | None = None
    done: trio.Event = attrs.field(factory=trio.Event)

    async def run(self, client: Client) -> None:
        interval_s = self.batch / self.rate
        next_at = trio.current_time()
        for start in range(0, len(self.specs), self.batch):
            await trio.sleep_until(next_at)
            next_at += interval_s
            began = time.monotonic()
            ids = await client.enqueue_specs(self.specs[start : start + self.batch])
            acked = time.monotonic()
            self.acknowledged.extend(ids)
            if len(self.acknowledged) >= self.kill_at:
                self.kill_due.set()
            killed = self.kill_time
            if killed is not None and began > killed and self.first_ack_after_kill is None:
                # Started after the kill: its ack is a write the new leader committed.
                self.first_ack_after_kill = acked
        self.kill_due.set()
        self.done.set()


def cluster_line(status: dict[str, Any], total: int, acked: int) -> str:
    cluster, jobs = status["cluster"], status["jobs"]
    nodes = " ".join(
        f"{node['id']}:{'down' if node['role'] == 'unreachable' else node['role']}"
        for node in cluster["nodes"]
    )
    return (
        f"acked {acked}/{total}  pending {jobs['pending']}  running {jobs['running']}  "
        f"failed {jobs['failed']}  succeeded {jobs['succeeded']}  dead {jobs['dead']}  |  "
        f"leader {cluster['leader'] or '-'} term {cluster['term']}  |  {nodes}"
    )


async def status_or_none(client: Client) -> dict[str, Any] | None:
    try:
        return await client.status()
    except RaftqError:
        return None


async def wait_for_leader(client: Client, deadline: float, other_than: str = "") -> dict[str, Any]:
    """The cluster's status once a leader other than ``other_than`` is known to all who answer."""
    while time.monotonic() < deadline:
        status = await status_or_none(client)
        if status is not None:
            leader = status["cluster"]["leader"]
            if leader and leader != other_than:
                return status
        await trio.sleep(POLL_S)
    raise trio.TooSlowError(f"no leader (other than {other_than or 'none'}) in time")


async def show_progress(client: Client, display: Display, producer: Producer) -> None:
    total = len(producer.specs)
    while True:
        status = await status_or_none(client)
        if status is not None:
            display.progress(cluster_line(status, total, len(producer.acknowledged)))
        await trio.sleep(0.25)


async def crash_and_recover(
    cluster: LocalCluster, client: Client, display: Display, producer: Producer, report: Report
) -> None:
    """SIGKILL the leader mid-run, see the election, restart the dead node, see it catch up."""
    await producer.kill_due.wait()
    deadline = time.monotonic() + 30
    status = await kill_the_leader(cluster, client, display, producer, report, deadline)
    await trio.sleep(RESTART_AFTER_S)  # the cluster works on without the dead node
    leader_status = await wait_for_leader(client, deadline)
    behind = max(status["cluster"]["commit_index"], leader_status["cluster"]["commit_index"])
    restarted = time.monotonic()
    await cluster.start(report.killed)
    display.event(f"** restarted {report.killed}; it must catch up to commit index {behind}")
    while time.monotonic() < deadline:
        now = await status_or_none(client)
        node = _node(now, report.killed) if now else None
        if node and node["role"] != "unreachable" and node["applied_index"] >= behind:
            report.recovery_s = time.monotonic() - restarted
            display.event(
                f"** {report.killed} is back as {node['role']}, applied index "
                f"{node['applied_index']}, {report.recovery_s:.2f} s after its restart"
            )
            return
        await trio.sleep(POLL_S)
    raise trio.TooSlowError(f"{report.killed} did not catch up in time")


async def kill_the_leader(
    cluster: LocalCluster,
    client: Client,
    display: Display,
    producer: Producer,
    report: Report,
    deadline: float,
) -> dict[str, Any]:
    """SIGKILL whoever leads; the cluster's status once another node leads."""
    status = await wait_for_leader(client, deadline)
    report.killed = status["cluster"]["leader"]
    report.old_term = status["cluster"]["term"]
    pid = cluster.pid(report.killed)
    producer.kill_time = time.monotonic()
    await cluster.kill(report.killed)
    display.event(
        f"!! SIGKILL leader {report.killed} (pid {pid}, term {report.old_term}) "
        f"with {len(producer.acknowledged)} jobs acknowledged"
    )
    status = await wait_for_leader(client, deadline, other_than=report.killed)
    report.election_s = time.monotonic() - producer.kill_time
    report.new_leader = status["cluster"]["leader"]
    report.new_term = status["cluster"]["term"]
    display.event(
        f"** {report.new_leader} elected leader for term {report.new_term}, "
        f"{report.election_s:.2f} s after the kill"
    )
    return status


def _node(status: dict[str, Any], node_id: str) -> dict[str, Any] | None:
    for node in status["cluster"]["nodes"]:
        if node["id"] == node_id:
            return dict(node)
    return None


async def wait_all_finished(client: Client, producer: Producer, deadline: float) -> None:
    """Until every acknowledged job is succeeded, dead or cancelled (bounded by ``deadline``)."""
    await producer.done.wait()
    total = len(producer.acknowledged)
    while time.monotonic() < deadline:
        status = await status_or_none(client)
        if status is not None:
            jobs = status["jobs"]
            finished = jobs["succeeded"] + jobs["dead"] + jobs["cancelled"]
            if finished >= total and jobs["pending"] + jobs["running"] + jobs["failed"] == 0:
                return
        await trio.sleep(0.1)


def check(report: Report, acknowledged: Sequence[str], jobs: Sequence[Job]) -> None:
    """Fill in the verdict from what the cluster holds: lost, duplicated, finished how."""
    held = [job.id for job in jobs]
    held_set = set(held)
    acked = set(acknowledged)
    report.acknowledged = len(acknowledged)
    report.lost = len(acked - held_set)
    twice_held = len(held) - len(held_set)
    never_acknowledged = len(held_set - acked)  # an enqueue retried into a second job
    twice_succeeded = sum(
        1 for job in jobs if sum(entry.event == "succeeded" for entry in job.history) > 1
    )
    report.duplicates = twice_held + never_acknowledged + twice_succeeded
    mine = [job for job in jobs if job.id in acked]
    report.succeeded = sum(job.state == "succeeded" for job in mine)
    report.dead = sum(job.state == "dead" for job in mine)
    report.cancelled = sum(job.state == "cancelled" for job in mine)
    report.unfinished = sum(not job.finished for job in mine)
    report.unexpected_dead = sum(job.state == "dead" and job.type != "fail" for job in mine)
    report.rerun = sum(
        1
        for job in mine
        if job.state == "succeeded" and sum(entry.event == "claimed" for entry in job.history) > 1
    )


async def run_demo(options: DemoOptions, out: TextIO) -> Report:
    """The demo, stopped by SIGINT as by an exception raised in a task of its own."""
    async with trio.open_nursery() as nursery:
        await nursery.start(_interrupt_on_sigint)
        report = await _run_demo(options, out)
        nursery.cancel_scope.cancel()
    return report


async def _interrupt_on_sigint(
    *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Ctrl-C (SIGINT) raises ``KeyboardInterrupt`` here, in this task, which cancels the demo
    and stops its nodes. Left to Python's handler, the exception is raised wherever the signal
    lands, and one that lands in a finalizer (``__del__``, a weakref callback) is printed and
    dropped: the demo then ran on to its end (seen once in a full test run, exit 0 not 130)."""
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        task_status.started()
        async for _ in signals:
            raise KeyboardInterrupt


async def _run_demo(options: DemoOptions, out: TextIO) -> Report:
    specs = load_job_file(str(options.jobs_file))[: options.jobs]
    if not 0 < len(specs) <= DEMO_JOBS_MAX:
        raise ConfigError(f"the demo runs 1 to {DEMO_JOBS_MAX} jobs, not {len(specs)}")
    live = out.isatty() if options.live is None else options.live
    display = Display(out, live)
    report = Report(submitted=len(specs))
    began = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="raftq-demo-"))
    report.data_dir = str(root)
    try:
        async with open_local_cluster(root, 3, workers=options.workers) as cluster:
            display.event(
                f"== 3 nodes ({cluster.cluster_flag}), {options.workers} workers each, "
                f"data in {root}"
            )
            await _drive(cluster, specs, options, display, report)
    finally:
        report.seconds = time.monotonic() - began
        if options.keep or not report.ok:
            display.event(f"== node logs and data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return report


async def _drive(
    cluster: LocalCluster,
    specs: list[JobSpec],
    options: DemoOptions,
    display: Display,
    report: Report,
) -> None:
    deadline = time.monotonic() + options.timeout_s
    async with connect(cluster.client_addresses, timeout=30) as client:
        status = await wait_for_leader(client, deadline)
        display.event(f"== leader {status['cluster']['leader']}, term {status['cluster']['term']}")
        kill_at = max(1, int(len(specs) * KILL_AT_FRACTION))
        # At least ten commands, so that some are sent after the kill: the failover figure is
        # the first acknowledgement of one of those.
        batch = max(1, min(options.batch, len(specs) // 10))
        display.event(
            f"== enqueueing {len(specs)} jobs from {options.jobs_file.name}, {batch} per "
            f"command, {options.rate:g} jobs/s"
        )
        producer = Producer(specs, batch, options.rate, kill_at)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(producer.run, client)
            nursery.start_soon(show_progress, client, display, producer)
            await crash_and_recover(cluster, client, display, producer, report)
            await wait_all_finished(client, producer, deadline)
            nursery.cancel_scope.cancel()
        status = await client.status()
        display.event(cluster_line(status, len(specs), len(producer.acknowledged)))
        if producer.first_ack_after_kill is not None and producer.kill_time is not None:
            report.failover_s = producer.first_ack_after_kill - producer.kill_time
        jobs = await client.list(limit=DEMO_JOBS_MAX)
        check(report, producer.acknowledged, jobs)


def _exit_code_for(error: BaseException) -> int:
    """The exit code of a demo that ended with ``error`` (maybe inside exception groups from
    the nurseries it ran); an unexpected error is raised again, with its traceback."""
    leaves = _leaves(error)
    if any(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
        print("\nraftq demo: interrupted; every node it started is stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    if all(isinstance(leaf, ConfigError) for leaf in leaves):
        print(f"raftq demo: {leaves[0]}", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    if all(isinstance(leaf, RaftqError | trio.TooSlowError | NodeExited) for leaf in leaves):
        print(f"raftq demo: FAIL: {leaves[0]}", file=sys.stderr)
        return EXIT_FAILED
    raise error


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def format_report(report: Report) -> str:
    verdict = "PASS: nothing lost, nothing duplicated" if report.ok else "FAIL"
    lines = [
        "",
        "raftq demo report",
        f"  jobs submitted         {report.submitted}",
        f"  acknowledged           {report.acknowledged}",
        f"  succeeded              {report.succeeded}",
        f"  dead                   {report.dead}  (the file's 'fail' jobs: 2 attempts each)"
        + (f", {report.unexpected_dead} of another type!" if report.unexpected_dead else ""),
        f"  unfinished             {report.unfinished}",
        f"  lost                   {report.lost}",
        f"  duplicates             {report.duplicates}",
        f"  run again after crash  {report.rerun}  (at-least-once: lease expired on the dead node)",
        f"  killed leader          {report.killed} (term {report.old_term}), new leader "
        f"{report.new_leader} (term {report.new_term})",
        f"  election               {report.election_s:.2f} s  (kill -9 to a new leader known)",
        f"  failover               {report.failover_s:.2f} s  (kill -9 to the next "
        "acknowledged enqueue)",
        f"  recovery               {report.recovery_s:.2f} s  (restart to caught up)",
        f"  wall time              {report.seconds:.1f} s",
        f"  {verdict}",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raftq demo",
        description="A 3-node local cluster, a leader killed with SIGKILL, a report.",
    )
    parser.add_argument("--file", type=Path, default=EXAMPLE_JOBS, help="job file to enqueue")
    parser.add_argument("--jobs", type=int, help="enqueue only the first N jobs of the file")
    parser.add_argument("--rate", type=float, default=200.0, help="jobs/s to enqueue (200)")
    parser.add_argument("--workers", type=int, default=4, help="workers per node (4)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to give up (60)")
    parser.add_argument("--keep", action="store_true", help="keep the data and logs")
    parser.add_argument("--json", action="store_true", help="end with the report as JSON")
    parser.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    return parser


def main(argv: Sequence[str]) -> int:
    arguments = build_parser().parse_args(argv)
    if arguments.rate <= 0 or arguments.workers < 1 or (arguments.jobs or 1) < 1:
        print("raftq demo: --rate, --workers and --jobs must be positive", file=sys.stderr)
        return EXIT_BAD_ARGUMENTS
    options = DemoOptions(
        jobs_file=arguments.file,
        jobs=arguments.jobs,
        rate=arguments.rate,
        workers=arguments.workers,
        timeout_s=arguments.timeout,
        keep=arguments.keep,
        live=False if arguments.plain else None,
    )
    try:
        report = trio.run(run_demo, options, sys.stdout)
    except BaseException as error:  # mapped to an exit code, or raised again
        return _exit_code_for(error)
    print(format_report(report))
    if arguments.json:
        print(json.dumps(attrs.asdict(report) | {"ok": report.ok}))
    return EXIT_OK if report.ok else EXIT_FAILED

"""``raftq demo`` (issue 7): a real three-node cluster loses its leader to SIGKILL and loses
no acknowledged job; the verdict is computed from what the cluster holds, and the demo stops
every process it started, on success and on Ctrl-C."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raftq.client.job import HistoryEntry, Job
from raftq.demo import EXAMPLE_JOBS, Display, Report, check, format_report
from raftq.local_cluster import process_alive

ROOT = Path(__file__).resolve().parent.parent


def job(job_id: str, state: str = "succeeded", events: tuple[str, ...] = ()) -> Job:
    history = tuple(
        HistoryEntry(at_ms=n, event=event, attempt=1, node="", fence=n)
        for n, event in enumerate(("enqueued", *events))
    )
    return Job(
        id=job_id,
        type="noop",
        queue="default",
        state=state,
        priority=0,
        attempts=1,
        max_attempts=3,
        payload=None,
        result=None,
        error="",
        enqueued_ms=0,
        run_at_ms=0,
        timeout_ms=30_000,
        finished_ms=0,
        history=history,
    )


def test_check_counts_a_clean_run_as_clean() -> None:
    report = Report(submitted=2)
    check(report, ["a", "b"], [job("a", events=("claimed", "succeeded")), job("b", "dead")])
    assert (report.acknowledged, report.succeeded, report.dead) == (2, 1, 1)
    assert (report.lost, report.duplicates, report.unfinished) == (0, 0, 0)
    assert report.ok


def test_check_sees_a_lost_job() -> None:
    report = Report(submitted=2)
    check(report, ["a", "b"], [job("a")])
    assert report.lost == 1
    assert not report.ok


@pytest.mark.parametrize(
    "held",
    [
        [job("a"), job("a")],  # one id held twice
        [job("a"), job("x")],  # a job nobody was told about: an enqueue retried into two
        [job("a", events=("claimed", "succeeded", "claimed", "succeeded"))],  # ran to success twice
    ],
)
def test_check_sees_duplicates(held: list[Job]) -> None:
    report = Report(submitted=1)
    check(report, ["a"], held)
    assert report.duplicates == 1
    assert not report.ok


def test_check_counts_a_rerun_without_calling_it_a_duplicate() -> None:
    """At-least-once: a lease that expired on a dead node means a second claim, one success."""
    report = Report(submitted=1)
    check(report, ["a"], [job("a", events=("claimed", "lease expired", "claimed", "succeeded"))])
    assert (report.rerun, report.duplicates) == (1, 0)


def test_check_sees_an_unfinished_job() -> None:
    report = Report(submitted=1)
    check(report, ["a"], [job("a", "pending")])
    assert report.unfinished == 1
    assert not report.ok


def test_progress_refreshes_one_line_on_a_terminal_and_prints_lines_when_piped() -> None:
    live = io.StringIO()
    display = Display(live, live=True)
    display.progress("one")
    display.progress("two")
    display.event("event")
    assert live.getvalue() == "\r\x1b[2Kone\r\x1b[2Ktwo\r\x1b[2Kevent\n"
    piped = io.StringIO()
    display = Display(piped, live=False)
    display.progress("one")
    display.progress("two")  # within a second of the last: skipped
    display.event("event")
    assert piped.getvalue() == "one\nevent\n"


def test_the_report_names_every_figure() -> None:
    text = format_report(Report(submitted=3, acknowledged=3, succeeded=3))
    for label in ("acknowledged", "succeeded", "dead", "lost", "duplicates", "failover"):
        assert label in text
    assert "recovery" in text
    assert "PASS" in text


def test_the_example_job_file_has_seed_format_failing_and_delayed_jobs() -> None:
    jobs = json.loads(EXAMPLE_JOBS.read_text())
    assert {"id", "payload", "timeout_ms"} == set(jobs[0])  # the seed format, as is
    assert sum(entry.get("type") == "fail" for entry in jobs) >= 5
    assert sum("delay_ms" in entry for entry in jobs) >= 5


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (the demo's temporary directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command_line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in command_line and process_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def demo_command(*flags: str) -> list[str]:
    return [sys.executable, "-m", "raftq", "demo", "--plain", *flags]


@pytest.mark.slow
def test_demo_kills_the_leader_and_loses_nothing() -> None:
    began = time.monotonic()
    completed = subprocess.run(
        demo_command("--jobs", "150", "--json"),
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert time.monotonic() - began < 60
    output = completed.stdout
    assert "SIGKILL leader" in output
    assert "elected leader" in output
    assert "restarted" in output
    report = json.loads(output.strip().splitlines()[-1])
    assert report["ok"] is True
    assert report["acknowledged"] == report["submitted"] == 150
    assert report["lost"] == 0
    assert report["duplicates"] == 0
    assert report["succeeded"] + report["dead"] == 150
    assert report["dead"] == 3  # the three "fail" jobs among the first 150, after 2 attempts each
    assert report["new_leader"] != report["killed"]
    assert report["new_term"] > report["old_term"]
    assert 0 < report["failover_s"] < 10
    assert 0 < report["recovery_s"] < 20
    assert "lost                   0" in output
    assert processes_mentioning(report["data_dir"]) == []
    assert not Path(report["data_dir"]).exists()


@pytest.mark.slow
def test_ctrl_c_stops_every_node_the_demo_started() -> None:
    with subprocess.Popen(
        demo_command("--rate", "20"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    ) as process:
        try:
            assert process.stdout is not None
            first = process.stdout.readline()  # "== 3 nodes (...), ... data in DIR"
            data_dir = first.rsplit(" ", 1)[-1].strip()
            assert data_dir.startswith("/"), first
            for _ in range(100):  # the "== leader" line: the nodes are up
                if process.stdout.readline().startswith("== leader"):
                    break
            assert len(processes_mentioning(data_dir)) == 3
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=30) == 130
            assert processes_mentioning(data_dir) == []
            shutil.rmtree(data_dir)  # kept on purpose after an interrupted run: the logs
        finally:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()

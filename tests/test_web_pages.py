"""The dashboard's pages without a browser (these run where Chromium is missing too): bad
input is a 4xx page, never a 500; whatever a job carries is escaped; actions go back only to
this site; the live refresh gets the changing part only; read-only shows and takes no action.
Against a real node process with workers, through Starlette's TestClient."""

from __future__ import annotations

import html
import logging
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from starlette.testclient import TestClient

from raftq import SyncClient, limits
from raftq.local_cluster import LocalCluster
from raftq.web import asgi_app
from raftq.web.pages import LIVE_HEADER, progress_fraction, slot_due
from tests.process_cluster import process_cluster

WAIT_S = 20.0
POLLS_MAX = 400


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    flags = ["--import", "tests.handlers.progress"]
    root = tmp_path_factory.mktemp("cluster")
    with process_cluster(root, 1, workers=2, extra_flags=flags) as running:
        yield running


@pytest.fixture(scope="module")
def http(cluster: LocalCluster) -> Iterator[TestClient]:
    with TestClient(asgi_app(cluster.client_addresses, timeout=WAIT_S)) as client:
        yield client


@pytest.fixture(scope="module")
def read_only(cluster: LocalCluster) -> Iterator[TestClient]:
    app = asgi_app(cluster.client_addresses, read_only=True, timeout=WAIT_S)
    with TestClient(app) as client:
        yield client


def finished(http: TestClient, job_id: str) -> dict[str, object]:
    """The job once it has finished, polled every 10 ms for up to ``WAIT_S``: bounded by time,
    not by a count of polls, which a fast node answers before a snoozed job's next claim."""
    deadline = time.monotonic() + WAIT_S
    for _ in range(int(WAIT_S / 0.01)):  # bounded: WAIT_S of 10 ms sleeps at most
        job: dict[str, object] = http.get(f"/api/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "dead", "cancelled") or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert job["state"] in ("succeeded", "dead", "cancelled"), f"job {job_id} never finished"
    return job


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/jobs?state=sleeping", 400, "sleeping&#39; is none of pending"),
        ("/jobs?after=abc", 400, "after: the cursor of a page"),
        ("/jobs?after=" + "9" * 40, 400, "after: the cursor of a page"),
        ("/dead?queue=" + "q" * (limits.NAME_CHARS_MAX + 1), 400, "queue: at most"),
        ("/jobs?type=" + "t" * (limits.NAME_CHARS_MAX + 1), 400, "type: at most"),
        ("/jobs/no-such-job", 404, "no job no-such-job"),
    ],
)
def test_bad_input_is_a_clear_4xx_page(
    http: TestClient, path: str, status: int, words: str
) -> None:
    response = http.get(path)
    assert response.status_code == status, response.text
    assert words in response.text
    assert response.headers["content-type"].startswith("text/html")


def test_whatever_a_job_carries_is_escaped(http: TestClient) -> None:
    hostile = '<img src=x onerror="alert(1)">'
    response = http.post(
        "/api/v1/jobs", json={"type": "fail", "payload": {"message": hostile}, "max_attempts": 1}
    )
    (job_id,) = response.json()["ids"]
    assert finished(http, job_id)["state"] == "dead"
    for path in (f"/jobs/{job_id}", "/dead", f"/jobs?notice={hostile}"):
        page = http.get(path).text
        assert hostile not in page, path
        assert "&lt;img src=x onerror=" in page, path


def test_a_jobs_page_shows_the_error_of_each_attempt(
    http: TestClient, cluster: LocalCluster
) -> None:
    job = {"type": "fail", "payload": {}, "max_attempts": 2}
    (job_id,) = http.post("/api/v1/jobs", json=job).json()["ids"]
    with SyncClient(cluster.client_addresses) as client:
        assert client.wait(job_id, timeout=WAIT_S).state == "dead"
    page = http.get(f"/jobs/{job_id}").text
    shown = re.findall(r'<pre class="error attempt-error" data-attempt="(\d+)">([^<]*)</pre>', page)
    assert shown == [
        ("1", "the fail handler always fails (attempt 1)"),
        ("2", "the fail handler always fails (attempt 2)"),
    ]
    assert '<pre class="error" id="job-error">the fail handler always fails (attempt 2)' in page
    live = http.get(f"/jobs/{job_id}", headers={LIVE_HEADER: "1"}).text
    assert live.count("attempt-error") == 2  # the refreshed part keeps them


def test_pause_and_resume_take_one_path_from_a_page_and_from_the_api(
    http: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The dashboard's buttons and the API's routes run the same action (raftq.web.actions):
    the same effect through the log, the same line in the action log."""
    caplog.set_level(logging.INFO, logger="raftq.web")
    queue = "one-path"
    paused = http.post(f"/queues/{queue}/pause", data={"next": "/queues"}, follow_redirects=False)
    assert paused.headers["location"].startswith("/queues?notice=queue+one-path+paused")
    assert http.get("/api/v1/status").json()["queues"][queue]["paused"] is True
    assert http.post(f"/api/v1/queues/{queue}/resume").json() == {"queue": queue, "paused": False}
    assert http.get("/api/v1/status").json()["queues"].get(queue, {}).get("paused") is not True
    assert http.post(f"/api/v1/queues/{queue}/pause").json() == {"queue": queue, "paused": True}
    http.post(f"/queues/{queue}/resume", data={"next": "/queues"})
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("web action=")]
    user = "anonymous@testclient"
    assert lines == [
        f"web action={action} user={user} queue={queue}"
        for action in ("pause", "resume", "pause", "resume")
    ]


def test_retrying_every_dead_job_asks_first_saying_how_many_then_says_how_many_it_did(
    http: TestClient, read_only: TestClient
) -> None:
    queue = "bulk-confirm"
    jobs = [{"type": "fail", "payload": {}, "max_attempts": 1, "queue": queue}] * 3
    ids = http.post("/api/v1/jobs", json=jobs).json()["ids"]
    for job_id in ids:
        assert finished(http, job_id)["state"] == "dead"
    http.post(f"/api/v1/queues/{queue}/pause")  # retried jobs stay pending
    dead_page = http.get("/dead", params={"queue": queue}).text
    ask = '<form method="get" action="/dead/retry" class="bulk" id="retry-all">'
    assert ask in dead_page, dead_page  # a GET: the button only asks

    confirm = http.get("/dead/retry", params={"queue": queue})
    assert confirm.status_code == 200
    assert 'data-count="3"' in confirm.text
    assert f"3 dead jobs of queue {queue} will run again" in confirm.text
    assert '<input type="hidden" name="limit" value="3">' in confirm.text
    assert 'data-refresh-ms="0"' in confirm.text  # the number confirmed stays on screen
    assert [job["state"] for job in map(finished, [http] * 3, ids)] == ["dead"] * 3

    none = http.get("/dead/retry", params={"queue": queue, "type": "no-such-type"}).text
    assert 'data-count="0"' in none
    assert "nothing to retry" in none
    assert 'id="confirm-retry"' not in none
    looked = read_only.get("/dead/retry", params={"queue": queue}).text
    assert 'data-count="3"' in looked
    assert 'method="post"' not in looked

    form = {"queue": queue, "type": "", "limit": "2", "next": f"/dead?queue={queue}"}
    done = http.post("/dead/retry", data=form, follow_redirects=False)
    assert "notice=2+dead+jobs+retried" in done.headers["location"], done.headers["location"]
    assert 'data-count="1"' in http.get("/dead/retry", params={"queue": queue}).text
    done = http.post("/dead/retry", data={**form, "limit": "3"}, follow_redirects=False)
    notice = parse_qs(urlsplit(done.headers["location"]).query)["notice"][0]
    assert notice.startswith("1 dead job retried (of the 3 counted")
    states = [http.get(f"/api/v1/jobs/{job_id}").json()["state"] for job_id in ids]
    assert states == ["pending"] * 3
    for bad in ("0", "1001", "abc", "²", "007"):
        refused = http.post("/dead/retry", data={**form, "limit": bad}, follow_redirects=False)
        assert "problem=limit" in refused.headers["location"], bad
    http.post(f"/api/v1/queues/{queue}/resume")


def test_a_notice_in_the_url_is_cut_to_its_bound(http: TestClient) -> None:
    page = http.get("/queues", params={"notice": "n" * 10_000}).text
    assert "n" * limits.WEB_NOTICE_CHARS_MAX in page
    assert "n" * (limits.WEB_NOTICE_CHARS_MAX + 1) not in page


def test_a_form_goes_back_only_to_a_page_of_this_site(http: TestClient) -> None:
    job_id = http.post("/api/v1/jobs", json={"type": "noop", "payload": 1}).json()["ids"][0]
    finished(http, job_id)
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example", "jobs"):
        response = http.post(
            f"/jobs/{job_id}/cancel", data={"next": target}, follow_redirects=False
        )
        assert response.status_code == 303
        location = response.headers["location"]
        assert location.startswith("/jobs?problem="), (target, location)  # it had finished
    response = http.post(
        f"/jobs/{job_id}/retry", data={"next": "/queues?x=1"}, follow_redirects=False
    )
    assert response.headers["location"].startswith("/queues?x=1&problem=")


def test_a_job_id_with_slashes_and_url_characters_has_a_page_and_actions(
    http: TestClient,
) -> None:
    job_id = "img/a b.png?v=2#top"
    assert http.post("/api/v1/queues/slash/pause").status_code == 200  # it stays pending
    job = {"id": job_id, "type": "noop", "payload": 1, "queue": "slash"}
    assert http.post("/api/v1/jobs", json=job).status_code == 201
    listed = http.get("/jobs?queue=slash").text
    link = re.search(r'<a href="(/jobs/[^"]+)">img/a b.png', listed)
    assert link is not None, listed
    page = http.get(link.group(1))
    assert page.status_code == 200
    assert f"Job {job_id}" in html.unescape(page.text)
    cancel = re.search(r'action="([^"]+/cancel)"', page.text)
    assert cancel is not None
    done = http.post(html.unescape(cancel.group(1)), data={"next": "/jobs"}, follow_redirects=False)
    assert "problem" not in done.headers["location"], done.headers["location"]
    assert 'id="job-state">cancelled<' in http.get(link.group(1)).text


def test_a_cross_site_form_is_refused(http: TestClient) -> None:
    response = http.post(
        "/queues/default/pause", data={}, headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 403
    assert http.get("/api/v1/status").json()["queues"].get("default", {}).get("paused") is not True


def test_the_live_refresh_gets_only_the_changing_part(http: TestClient) -> None:
    whole = http.get("/")
    part = http.get("/", headers={LIVE_HEADER: "1"})
    assert whole.status_code == part.status_code == 200
    assert whole.text.startswith("<!doctype html>")
    assert "<html" not in part.text
    assert 'id="nodes"' in part.text
    assert 'id="rates"' in part.text
    assert len(part.text) < len(whole.text)
    assert part.headers["cache-control"] == "no-store"


def test_read_only_pages_offer_no_action_and_refuse_one(
    http: TestClient, read_only: TestClient
) -> None:
    job = {"type": "fail", "payload": {}, "max_attempts": 1}
    job_id = http.post("/api/v1/jobs", json=job).json()["ids"][0]
    assert finished(http, job_id)["state"] == "dead"
    for path in ("/", "/queues", "/jobs", "/dead", f"/jobs/{job_id}", "/schedules", "/limits"):
        page = read_only.get(path)
        assert page.status_code == 200, path
        assert 'method="post"' not in page.text, path
        assert "read-only" in page.text, path
    refused = read_only.post(f"/jobs/{job_id}/retry", data={"next": "/dead"})
    assert refused.status_code == 403
    assert http.get(f"/api/v1/jobs/{job_id}").json()["state"] == "dead"
    assert 'method="post"' in http.get("/dead").text  # the same page, not read-only, has them


def test_a_waiting_jobs_page_and_json_show_its_parents(http: TestClient) -> None:
    """deps17: the API gives a job's parents and how many are left; its page links them."""
    jobs = [
        {"id": "web-parent", "type": "noop", "payload": {}, "delay_ms": 3_600_000},
        {"id": "web-child", "payload": {}, "depends_on": ["web-parent"]},
    ]
    assert http.post("/api/v1/jobs", json=jobs).json()["ids"] == ["web-parent", "web-child"]
    job = http.get("/api/v1/jobs/web-child").json()
    assert (job["state"], job["depends_on"], job["parents_left"]) == (
        "waiting",
        ["web-parent"],
        1,
    )
    page = http.get("/jobs/web-child").text
    assert 'id="job-parent-count">1, 1 still to finish<' in page
    parent = '<a href="/jobs/web-parent">web-parent</a> <span class="state state-pending">pending'
    assert parent in page
    assert "if one ends dead or cancelled: cancel this job" in page
    assert http.post("/api/v1/jobs/web-parent/cancel").status_code == 200
    job = http.get("/api/v1/jobs/web-child").json()
    assert (job["state"], job["error"]) == ("cancelled", "parent web-parent ended cancelled")


def test_a_job_page_shows_its_parents_states_group_policy_and_key(http: TestClient) -> None:
    """#17's fields on a job's page, where set: each parent linked with its state (up to
    WEB_PARENTS_SHOWN, then how many more), the group (linked to the limits), the retry
    policy and the unique key; a job without them shows none of them."""
    queue = "parents-shown"
    http.post(f"/api/v1/queues/{queue}/pause")  # the parents stay as they are
    parents = [f"fan-in-{n}" for n in range(limits.WEB_PARENTS_SHOWN + 3)]
    jobs: list[dict[str, object]] = [{"id": p, "payload": 0, "queue": queue} for p in parents]
    jobs.append(
        {"id": "fan-in-child", "payload": 0, "queue": queue, "depends_on": parents,
         "on_parent_failure": "run", "group": "tenant/7", "unique_while_active": "nightly-sum",
         "backoff_ms": 2_000, "backoff_max_ms": 120_000, "jitter_percent": 5}
    )  # fmt: skip
    assert http.post("/api/v1/jobs", json=jobs).status_code == 201
    http.post("/api/v1/jobs/fan-in-0/cancel")
    page = http.get("/jobs/fan-in-child").text
    shown = re.findall(r'<li data-parent="([^"]+)">.*?class="state state-(\w+)"', page)
    assert shown == [
        (parent, "cancelled" if parent == "fan-in-0" else "pending")
        for parent in parents[: limits.WEB_PARENTS_SHOWN]
    ]
    assert "and 3 more" in page
    assert f'id="job-parent-count">{len(parents)}, {len(parents) - 1} still to finish<' in page
    assert "if one ends dead or cancelled: run anyway" in page
    assert '<dd id="job-group"><a href="/limits"' in page
    assert ">tenant/7</a>" in page
    assert 'id="job-retry-policy">2.0 s to 2.0 min, jitter 5%<' in page
    assert "<dt>unique while active</dt><dd>nightly-sum</dd>" in page
    plain = http.get("/jobs/fan-in-1").text
    for absent in ("job-parent", "job-group", "job-retry-policy", "unique while active"):
        assert absent not in plain, absent
    http.post(f"/api/v1/queues/{queue}/resume")


def rows(page: str, attribute: str) -> list[str]:
    return [html.unescape(found) for found in re.findall(rf'<tr {attribute}="([^"]*)"', page)]


def cell(page: str, attribute: str, value: str, name: str) -> str:
    """The text of the cell of class ``name`` in the row whose ``attribute`` is ``value``."""
    row = re.search(rf'<tr {attribute}="{re.escape(html.escape(value))}">(.*?)</tr>', page, re.S)
    assert row is not None, (value, page)
    found = re.search(rf'<td class="[^"]*\b{name}\b[^"]*"[^>]*>(.*?)</td>', row.group(1), re.S)
    assert found is not None, (name, row.group(1))
    return html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).strip()


def wait_until(check: Callable[[], bool]) -> None:
    """Until ``check()`` holds: at most POLLS_MAX times, 50 ms apart (a schedule's slots come
    with real time)."""
    for _ in range(POLLS_MAX):  # bounded: 20 s at most
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("the page never showed it")


def test_the_schedules_page_shows_each_schedule_and_removes_one_after_asking(
    http: TestClient, read_only: TestClient
) -> None:
    empty = http.get("/schedules").text  # the module's tests remove the schedules they add
    assert 'id="no-schedules"' in empty
    assert "raftq schedule add NAME --every 60 --type TYPE" in empty
    assert '<a href="/schedules" aria-current="page">Schedules</a>' in empty
    name = "reports/daily 1"
    quoted = quote(name, safe="")
    beat = {"every_s": 1, "type": "echo", "queue": "beats", "payload": {"beat": True}}
    assert http.put(f"/api/v1/schedules/{quoted}", json=beat).status_code == 201
    cron = {"cron": "0 3 * * *", "tz": "Europe/Berlin", "type": "noop", "catch_up": "all",
            "group": "nightly-runs"}  # fmt: skip
    assert http.put("/api/v1/schedules/nightly", json=cron).status_code == 201

    page = http.get("/schedules").text
    assert rows(page, "data-schedule") == ["nightly", name]
    assert cell(page, "data-schedule", name, "when") == "every 1 s"
    assert cell(page, "data-schedule", "nightly", "when") == "cron 0 3 * * * (Europe/Berlin)"
    assert cell(page, "data-schedule", "nightly", "catch-up") == "all"
    assert cell(page, "data-schedule", "nightly", "last-fired") == "not yet"
    assert cell(page, "data-schedule", "nightly", "next").startswith("in ")
    assert cell(page, "data-schedule", name, "fires") == "echo on beats"
    assert (
        cell(page, "data-schedule", "nightly", "fires") == "noop on default in group nightly-runs"
    )
    assert 'href="/jobs?queue=beats&amp;type=echo"' in page
    wait_until(
        lambda: cell(http.get("/schedules").text, "data-schedule", name, "last-fired").endswith(
            " ago"
        )
    )
    live = http.get("/schedules", headers={LIVE_HEADER: "1"}).text
    assert "<html" not in live
    assert rows(live, "data-schedule") == ["nightly", name]

    ask = f'<form method="get" action="/schedules/{quoted}/remove"'
    assert ask in page  # a GET: the button only asks
    confirm = http.get(f"/schedules/{quoted}/remove")
    assert confirm.status_code == 200
    assert 'id="confirm-remove"' in confirm.text
    assert 'data-refresh-ms="0"' in confirm.text
    assert "The jobs it fired stay as they are." in confirm.text
    assert name in [s["name"] for s in http.get("/api/v1/schedules").json()["schedules"]]
    assert http.get("/schedules/no-such/remove").status_code == 404
    looked = read_only.get("/schedules").text
    assert rows(looked, "data-schedule") == ["nightly", name]
    assert "/remove" not in looked
    assert 'method="post"' not in read_only.get(f"/schedules/{quoted}/remove").text
    assert (
        read_only.post(f"/schedules/{quoted}/remove", data={"next": "/schedules"}).status_code
        == 403
    )

    done = http.post(
        f"/schedules/{quoted}/remove", data={"next": "/schedules"}, follow_redirects=False
    )
    notice = parse_qs(urlsplit(done.headers["location"]).query)["notice"][0]
    assert notice == f"schedule {name} removed"
    again = http.post(
        f"/schedules/{quoted}/remove", data={"next": "/schedules"}, follow_redirects=False
    )
    problem = parse_qs(urlsplit(again.headers["location"]).query)["problem"][0]
    assert problem == f"no schedule {name}"
    assert rows(http.get("/schedules").text, "data-schedule") == ["nightly"]
    assert http.delete("/api/v1/schedules/nightly").status_code == 200


def test_the_limits_page_shows_what_runs_and_waits_and_lifts_one_after_asking(
    http: TestClient, read_only: TestClient
) -> None:
    empty = http.get("/limits").text  # the module's tests remove the limits they set
    assert 'id="no-limits"' in empty
    assert "raftq limit set --group G --concurrency 1" in empty
    queue, group = "limited q", "tenant/9"
    http.post(f"/api/v1/queues/{quote(queue, safe='')}/pause")  # its jobs wait
    group_path = f"/api/v1/limits/group/{quote(group, safe='')}"
    assert (
        http.put(group_path, json={"concurrency": 1, "rate": 10, "window_s": 60}).status_code == 200
    )
    queue_path = f"/api/v1/limits/queue/{quote(queue, safe='')}"
    assert http.put(queue_path, json={"rate": 100, "window_s": 0.5}).status_code == 200
    jobs = [{"payload": n, "queue": queue, "group": group} for n in range(3)]
    assert http.post("/api/v1/jobs", json=jobs).status_code == 201

    page = http.get("/limits").text
    assert rows(page, "data-limit") == [f"group/{group}", f"queue/{queue}"]
    key = f"group/{group}"
    assert cell(page, "data-limit", key, "concurrency") == "at most 1 running"
    assert cell(page, "data-limit", key, "rate") == "10 per 60 s (0 started in the window)"
    assert (cell(page, "data-limit", key, "running"), cell(page, "data-limit", key, "waiting")) == (
        "0",
        "3",
    )
    assert cell(page, "data-limit", f"queue/{queue}", "concurrency") == "—"
    assert cell(page, "data-limit", f"queue/{queue}", "rate").startswith("100 per 0.5 s")
    assert '<a href="/jobs?queue=limited%20q">limited q</a>' in page

    remove = f"/limits/group/{quote(group, safe='')}/remove"
    assert f'<form method="get" action="{remove}"' in page
    confirm = http.get(remove).text
    assert 'data-waiting="3"' in confirm
    assert "lets its 3 waiting jobs start" in confirm
    assert http.get("/limits/tenant/x/remove").status_code == 400
    assert http.get("/limits/group/no-such/remove").status_code == 404
    assert "/remove" not in read_only.get("/limits").text
    assert read_only.post(remove, data={"next": "/limits"}).status_code == 403

    done = http.post(remove, data={"next": "/limits"}, follow_redirects=False)
    notice = parse_qs(urlsplit(done.headers["location"]).query)["notice"][0]
    assert notice == f"group {group}: limit removed"
    again = http.post(remove, data={"next": "/limits"}, follow_redirects=False)
    assert "problem" in parse_qs(urlsplit(again.headers["location"]).query)
    assert rows(http.get("/limits").text, "data-limit") == [f"queue/{queue}"]
    assert http.delete(queue_path).status_code == 200
    http.post(f"/api/v1/queues/{quote(queue, safe='')}/resume")


@pytest.mark.parametrize(
    ("progress", "fraction"),
    [
        ({"done": 640, "total": 1000}, 0.64),
        ({"done": 3, "total": 7, "stage": "copy"}, 3 / 7),
        ({"done": 12, "total": 10}, 1.0),
        ({"done": -1, "total": 10}, 0.0),
        ({"done": 1, "total": 0}, None),
        ({"done": True, "total": 2}, None),
        ({"done": "1", "total": 2}, None),
        ({"percent": 50}, None),
        ("copying", None),
        (None, None),
    ],
)
def test_a_progress_bar_only_for_done_of_total(progress: object, fraction: float | None) -> None:
    assert progress_fraction(progress) == fraction


@pytest.mark.parametrize(
    ("at_ms", "shown"),
    [
        (None, ""),
        (12_500, "in 2.5 s"),
        (10_000, "due now"),  # the very instant of the slot: not "0.0 s ago"
        (9_000, "due now"),  # the scheduler fires it within a moment
        (7_500, "overdue by 2.5 s"),
        (10_000 - 150_000, "overdue by 2.5 min"),
    ],
)
def test_a_schedule_s_next_slot_reads_as_ahead_due_or_overdue(
    at_ms: int | None, shown: str
) -> None:
    assert slot_due(at_ms, now_ms=10_000) == shown


def test_the_schedules_and_limits_pages_show_a_bounded_number_of_rows(
    http: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster may hold 10,000 schedules and 100,000 limits: a page that refreshes itself
    shows the first WEB_LIST_ROWS_MAX by name and says how to list them all."""
    monkeypatch.setattr(limits, "WEB_LIST_ROWS_MAX", 2)
    names = ["bounded-a", "bounded-b", "bounded-c"]
    for name in names:
        assert (
            http.put(
                f"/api/v1/schedules/{name}", json={"every_s": 3600, "type": "noop"}
            ).status_code
            == 201
        )
        assert http.put(f"/api/v1/limits/group/{name}", json={"concurrency": 1}).status_code == 200
    try:
        schedules = http.get("/schedules").text
        assert rows(schedules, "data-schedule") == names[:2]
        assert "The first 2 of 3, by name: <code>raftq schedule list --json</code>" in schedules
        shown = http.get("/limits").text
        assert rows(shown, "data-limit") == [f"group/{name}" for name in names[:2]]
        assert "The first 2 of 3, by name" in shown
        monkeypatch.setattr(limits, "WEB_LIST_ROWS_MAX", 3)
        assert 'id="rows-hidden"' not in http.get("/schedules").text
        assert 'id="rows-hidden"' not in http.get("/limits").text
    finally:
        for name in names:
            http.delete(f"/api/v1/schedules/{name}")
            http.delete(f"/api/v1/limits/group/{name}")


def test_a_job_page_shows_its_progress_with_a_bar_and_its_snoozes(
    http: TestClient, tmp_path: Path
) -> None:
    flag = tmp_path / "snooze"
    flag.touch()
    payload = {"snooze_once": str(flag), "progress": {"done": 3, "total": 4}}
    (job_id,) = http.post("/api/v1/jobs", json={"type": "progress", "payload": payload}).json()[
        "ids"
    ]
    assert finished(http, job_id)["state"] == "succeeded"
    page = http.get(f"/jobs/{job_id}").text
    assert 'id="job-progress">{"done": 3, "total": 4}</dd>' in page
    assert '<meter min="0" max="1" value="0.75">75%</meter>' in page
    assert 'id="job-snoozes">1<' in page


def test_a_job_s_story_page_tells_every_entry_with_its_leader_and_links_back(
    http: TestClient,
) -> None:
    """The job page links to the whole story from the log; its table has a row per entry
    that touched the job, with the term's leader and the lease's worker."""
    (job_id,) = http.post("/api/v1/jobs", json={"type": "echo", "payload": 5}).json()["ids"]
    finished(http, job_id)
    job_page = http.get(f"/jobs/{job_id}").text
    assert f'href="/jobs/{job_id}/story" id="job-story"' in job_page
    page = http.get(f"/jobs/{job_id}/story")
    assert page.status_code == 200
    rows = re.findall(
        r'<tr class="event-([\w-]+)" data-index="(\d+)">.*?<td class="leader">(\w*)</td>'
        r'.*?<td class="worker">([^<]*)</td>',
        page.text,
        re.S,
    )
    # the node's renewal of every lease as it began to lead may fall while the job runs
    rows = [row for row in rows if row[0] != "extended-by-a-new-leader"]
    assert [event for event, *_ in rows] == ["enqueued", "claimed", "succeeded"]
    assert {leader for _, _, leader, _ in rows} == {"n1"}
    assert rows[1][3] == rows[2][3] != ""  # the worker that held the lease and reported
    assert f'<a href="/jobs/{job_id}">{job_id}</a>' in page.text
    assert http.get("/jobs/no-such-job/story").status_code == 404

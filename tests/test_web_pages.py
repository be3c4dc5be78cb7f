"""The dashboard's pages without a browser (these run where Chromium is missing too): bad
input is a 4xx page, never a 500; whatever a job carries is escaped; actions go back only to
this site; the live refresh gets the changing part only; read-only shows and takes no action.
Against a real node process with workers, through Starlette's TestClient."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from raftq import SyncClient, limits
from raftq.local_cluster import LocalCluster
from raftq.web import asgi_app
from raftq.web.pages import LIVE_HEADER
from tests.process_cluster import process_cluster

WAIT_S = 20.0
POLLS_MAX = 400


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with process_cluster(tmp_path_factory.mktemp("cluster"), 1, workers=2) as running:
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
    for _ in range(POLLS_MAX):  # bounded: each poll is a request to the node
        job: dict[str, object] = http.get(f"/api/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "dead", "cancelled"):
            return job
    raise AssertionError(f"job {job_id} never finished")


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
    for path in ("/", "/queues", "/jobs", "/dead", f"/jobs/{job_id}"):
        page = read_only.get(path)
        assert page.status_code == 200, path
        assert 'method="post"' not in page.text, path
        assert "read-only" in page.text, path
    refused = read_only.post(f"/jobs/{job_id}/retry", data={"next": "/dead"})
    assert refused.status_code == 403
    assert http.get(f"/api/v1/jobs/{job_id}").json()["state"] == "dead"
    assert 'method="post"' in http.get("/dead").text  # the same page, not read-only, has them

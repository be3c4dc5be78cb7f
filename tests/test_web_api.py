"""The HTTP JSON API (CONTRACT.md "HTTP") against a real 3-node cluster: every route does what
the client library does, answers the contract's JSON, and maps the cluster's refusals to the
contract's statuses. Requests go through Starlette's TestClient (asyncio in a portal thread)
into the app, and from it through the AnyIO client to the nodes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from raftq import SyncClient
from raftq.local_cluster import LocalCluster
from raftq.web import asgi_app
from tests.process_cluster import process_cluster

WAIT_S = 20.0
POLLS_MAX = 400


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with process_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture(scope="module")
def http(cluster: LocalCluster) -> Iterator[TestClient]:
    with TestClient(asgi_app(cluster.client_addresses, timeout=WAIT_S)) as client:
        yield client


def unique(prefix: str) -> str:
    """Names of our own: the cluster is shared by the module's tests."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def wait_for_state(http: TestClient, job_id: str, states: set[str]) -> dict[str, object]:
    for _ in range(POLLS_MAX):  # bounded: each poll is a request to the leader
        job: dict[str, object] = http.get(f"/api/v1/jobs/{job_id}").json()
        if job["state"] in states:
            return job
    raise AssertionError(f"job {job_id} never reached {states}")


def test_enqueue_one_object_get_it_and_see_it_run(http: TestClient) -> None:
    response = http.post("/api/v1/jobs", json={"type": "echo", "payload": {"n": 1}})
    assert response.status_code == 201
    (job_id,) = response.json()["ids"]
    job = wait_for_state(http, job_id, {"succeeded"})
    assert job["result"] == {"n": 1}
    assert set(job) >= {
        "id", "type", "queue", "state", "priority", "attempts", "max_attempts", "payload",
        "result", "error", "enqueued_ms", "history",
    }  # fmt: skip
    assert job["history"][0]["event"] == "enqueued"  # type: ignore[index]


def test_enqueue_a_list_in_order_and_idempotently(http: TestClient) -> None:
    queue = unique("list")
    jobs = [{"id": unique("job"), "payload": n, "queue": queue} for n in range(3)]
    first = http.post("/api/v1/jobs", json=jobs)
    assert first.status_code == 201
    assert first.json()["ids"] == [job["id"] for job in jobs]
    again = http.post("/api/v1/jobs", json=jobs)  # the ids are the keys: nothing new
    assert again.json()["ids"] == first.json()["ids"]
    listed = http.get("/api/v1/jobs", params={"queue": queue}).json()
    assert [job["id"] for job in listed["jobs"]] == [job["id"] for job in jobs]


def test_a_bad_job_is_refused_whole_with_index_and_field(http: TestClient) -> None:
    queue = unique("bad")
    body = [{"payload": 1, "queue": queue}, {"payload": 2, "queue": queue, "priority": "high"}]
    response = http.post("/api/v1/jobs", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "bad_request"
    assert "index 1, field 'priority': must be an integer" in error["message"]
    assert http.get("/api/v1/jobs", params={"queue": queue}).json()["jobs"] == []


def test_cancel_retry_and_their_conflicts(http: TestClient) -> None:
    queue = unique("paused")
    assert http.post(f"/api/v1/queues/{queue}/pause").json() == {"queue": queue, "paused": True}
    (job_id,) = http.post("/api/v1/jobs", json={"payload": 1, "queue": queue}).json()["ids"]
    cancelled = http.post(f"/api/v1/jobs/{job_id}/cancel")
    assert cancelled.json() == {"id": job_id, "state": "cancelled"}
    again = http.post(f"/api/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409
    assert set(again.json()["error"]) == {"code", "message"}
    (failing,) = http.post(
        "/api/v1/jobs", json={"type": "fail", "payload": {}, "max_attempts": 1}
    ).json()["ids"]
    wait_for_state(http, failing, {"dead"})
    assert http.post(f"/api/v1/jobs/{failing}/retry").json()["state"] == "pending"
    resumed = http.post(f"/api/v1/queues/{queue}/resume")
    assert resumed.json() == {"queue": queue, "paused": False}


def test_a_job_shows_the_error_of_each_attempt(http: TestClient, cluster: LocalCluster) -> None:
    """Each attempt's error is in the history event that ended it (the fail handler names the
    attempt in its message); ``error`` stays the last attempt's."""
    (job_id,) = http.post(
        "/api/v1/jobs", json={"type": "fail", "payload": {}, "max_attempts": 2}
    ).json()["ids"]
    with SyncClient(cluster.client_addresses) as client:
        assert client.wait(job_id, timeout=WAIT_S).state == "dead"
    job = http.get(f"/api/v1/jobs/{job_id}").json()
    ended = [
        (event["event"], event["attempt"], event["error"])
        for event in job["history"]
        if event["error"]
    ]
    assert ended == [
        ("failed", 1, "the fail handler always fails (attempt 1)"),
        ("dead", 2, "the fail handler always fails (attempt 2)"),
    ]
    assert job["error"] == "the fail handler always fails (attempt 2)"
    assert {event["error"] for event in job["history"] if event["event"] == "claimed"} == {""}


def test_ids_and_queue_names_with_slashes_and_spaces_work(http: TestClient) -> None:
    queue = unique("team/a b")
    job_id = unique("reports/2026/q4 #1?")
    quoted_queue, quoted_id = quote(queue, safe=""), quote(job_id, safe="")
    assert http.post(f"/api/v1/queues/{quoted_queue}/pause").json()["queue"] == queue
    created = http.post("/api/v1/jobs", json={"id": job_id, "payload": 1, "queue": queue})
    assert created.json()["ids"] == [job_id]
    assert http.get(f"/api/v1/jobs/{quoted_id}").json()["id"] == job_id
    cancelled = http.post(f"/api/v1/jobs/{quoted_id}/cancel").json()
    assert cancelled == {"id": job_id, "state": "cancelled"}
    assert http.post(f"/api/v1/jobs/{quoted_id}/retry").status_code == 409


def test_unknown_job_is_404(http: TestClient) -> None:
    for response in (
        http.get("/api/v1/jobs/no-such-job"),
        http.post("/api/v1/jobs/no-such-job/cancel"),
        http.post("/api/v1/jobs/no-such-job/retry"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_status_is_the_status_json_object(http: TestClient) -> None:
    status = http.get("/api/v1/status").json()
    assert status["cluster"]["leader"] in {"n1", "n2", "n3"}
    assert sorted(node["id"] for node in status["cluster"]["nodes"]) == ["n1", "n2", "n3"]
    assert set(status["jobs"]) >= {"pending", "running", "succeeded", "failed", "dead", "cancelled"}


def test_no_quorum_is_503(tmp_path_factory: pytest.TempPathFactory) -> None:
    from raftq.local_cluster import free_ports

    (port,) = free_ports(1)  # nothing listens there
    with TestClient(asgi_app(f"127.0.0.1:{port}", timeout=0.5)) as client:
        response = client.get("/api/v1/jobs/x")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "no_quorum"


def walk(http: TestClient, params: dict[str, str]) -> list[str]:
    """Every page's job ids, following next_cursor."""
    ids: list[str] = []
    cursor = None
    for _ in range(100):  # bounded: every page moves the cursor on
        page = http.get("/api/v1/jobs", params={**params, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        ids += [job["id"] for job in page.json()["jobs"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return ids
    raise AssertionError("paging did not end")


def test_cursor_pages_filter_by_type_both_ways_and_stay_stable(http: TestClient) -> None:
    queue = unique("pages")
    http.post(f"/api/v1/queues/{queue}/pause")  # nothing runs: the states stay as they are
    jobs = [
        {"id": unique("p"), "type": "a" if n % 3 else "b", "payload": n, "queue": queue}
        for n in range(9)
    ]
    http.post("/api/v1/jobs", json=jobs)
    of_type_a = [job["id"] for job in jobs if job["type"] == "a"]
    assert walk(http, {"queue": queue, "type": "a", "limit": "2"}) == of_type_a
    assert (
        walk(http, {"queue": queue, "type": "a", "limit": "2", "order": "newest"})
        == (of_type_a[::-1])
    )
    first = http.get("/api/v1/jobs", params={"queue": queue, "limit": "3"}).json()
    later = [{"id": unique("p"), "payload": 0, "queue": queue}]
    http.post("/api/v1/jobs", json=later)  # enqueued while paging: comes at the end
    http.post(f"/api/v1/jobs/{jobs[1]['id']}/cancel")  # seen already: changes nothing
    rest = walk(http, {"queue": queue, "limit": "3", "cursor": first["next_cursor"]})
    assert [job["id"] for job in first["jobs"]] + rest == [job["id"] for job in jobs + later]


def test_bad_cursors_and_parameters_are_400(http: TestClient) -> None:
    cursor = http.get("/api/v1/jobs", params={"limit": "1"}).json()["next_cursor"]
    assert cursor is not None
    for params, code in (
        ({"cursor": "not-a-cursor"}, "bad_cursor"),
        ({"cursor": "djE6b2xkZXN0OjA"}, "bad_cursor"),  # v1:oldest:0
        ({"cursor": cursor, "order": "newest"}, "bad_cursor"),
        ({"cursor": "x" * 10_000}, "bad_cursor"),
        ({"limit": "0"}, "bad_request"),
        ({"limit": "1001"}, "bad_request"),
        ({"limit": "-1"}, "bad_request"),
        ({"state": "sleeping"}, "bad_request"),
        ({"order": "random"}, "bad_request"),
        ({"colour": "red"}, "bad_request"),
        ({"queue": "q" * 200}, "bad_request"),
    ):
        response = http.get("/api/v1/jobs", params=params)
        assert (response.status_code, response.json()["error"]["code"]) == (400, code), params


def test_retry_dead_retries_every_dead_job_matching_in_one_command(http: TestClient) -> None:
    queue = unique("dead")
    jobs = [{"type": "fail", "payload": {}, "max_attempts": 1, "queue": queue} for _ in range(3)]
    ids = http.post("/api/v1/jobs", json=jobs).json()["ids"]
    for job_id in ids:
        wait_for_state(http, job_id, {"dead"})
    http.post(f"/api/v1/queues/{queue}/pause")  # so that they stay pending once retried
    response = http.post("/api/v1/jobs/retry-dead", json={"queue": queue, "limit": 2})
    assert response.json() == {"retried": 2}
    assert http.post("/api/v1/jobs/retry-dead", json={"queue": queue}).json() == {"retried": 1}
    states = {http.get(f"/api/v1/jobs/{job_id}").json()["state"] for job_id in ids}
    assert states == {"pending"}
    for body in ({"queue": 5}, {"limit": 0}, {"limit": True}, {"colour": "red"}, [1]):
        refused = http.post("/api/v1/jobs/retry-dead", json=body)
        assert refused.status_code == 400, body

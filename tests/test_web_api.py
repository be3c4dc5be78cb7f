"""The HTTP JSON API (CONTRACT.md "HTTP") against a real 3-node cluster: every route does what
the client library does, answers the contract's JSON, and maps the cluster's refusals to the
contract's statuses. Requests go through Starlette's TestClient (asyncio in a portal thread)
into the app, and from it through the AnyIO client to the nodes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

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

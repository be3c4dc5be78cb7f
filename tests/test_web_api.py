"""The HTTP JSON API (CONTRACT.md "HTTP") against a real 3-node cluster: every route does what
the client library does, answers the contract's JSON, and maps the cluster's refusals to the
contract's statuses. Requests go through Starlette's TestClient (asyncio in a portal thread)
into the app, and from it through the AnyIO client to the nodes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from raftq import SyncClient
from raftq.local_cluster import LocalCluster
from raftq.web import asgi_app
from raftq.web.openapi import SCHEDULE_LISTED
from tests.process_cluster import process_cluster

WAIT_S = 20.0
POLLS_MAX = 400


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    flags = ["--import", "tests.handlers.progress"]
    with process_cluster(tmp_path_factory.mktemp("cluster"), extra_flags=flags) as running:
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


def test_a_job_s_history_from_the_log_names_each_entry_its_leader_and_worker(
    http: TestClient,
) -> None:
    response = http.post("/api/v1/jobs", json={"type": "echo", "payload": {"n": 2}})
    (job_id,) = response.json()["ids"]
    wait_for_state(http, job_id, {"succeeded"})
    story = http.get(f"/api/v1/jobs/{job_id}/history").json()
    assert story["job_id"] == job_id
    events = [(event["event"], event["source"]) for event in story["events"]]
    assert events[0] == ("enqueued", "log")
    assert events[-1] == ("succeeded", "log")
    claimed = next(event for event in story["events"] if event["event"] == "claimed")
    assert claimed["worker"]
    assert claimed["leader"]
    assert claimed["fence"] == claimed["index"]
    missing = http.get("/api/v1/jobs/no-such-job/history")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


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


# --- #17: schedules, limits, and the job fields ---------------------------------------------------


def poll(http: TestClient, path: str, reached: Callable[[Any], bool]) -> Any:
    """GET ``path`` until ``reached`` holds of its JSON: at most POLLS_MAX times, 50 ms
    apart (a schedule's slot comes with real time, which these processes keep)."""
    for _ in range(POLLS_MAX):  # bounded: POLLS_MAX * 50 ms = 20 s at most
        found = http.get(path).json()
        if reached(found):
            return found
        time.sleep(0.05)
    raise AssertionError(f"{path} never reached the state wanted")


def listed(items: list[dict[str, Any]], **wanted: str) -> dict[str, Any] | None:
    return next(
        (item for item in items if all(item[key] == value for key, value in wanted.items())),
        None,
    )


def test_a_schedule_put_fires_lists_like_the_cli_and_is_deleted(
    http: TestClient, cluster: LocalCluster
) -> None:
    name, queue = unique("beat/1"), unique("beats")
    path = f"/api/v1/schedules/{quote(name, safe='')}"
    spec = {"every_s": 1, "type": "noop", "queue": queue, "payload": {"n": 1}}
    added = http.put(path, json=spec)
    assert (added.status_code, added.json()) == (201, {"name": name, "state": "added"})
    again = http.put(path, json={**spec, "name": name})  # the list's own name may come along
    assert (again.status_code, again.json()["state"]) == (200, "unchanged")
    fired = poll(
        http,
        "/api/v1/schedules",
        lambda body: (listed(body["schedules"], name=name) or {}).get("last_fired_ms") is not None,
    )
    shown = listed(fired["schedules"], name=name)
    with SyncClient(cluster.client_addresses) as client:
        by_cli = listed(client.schedules(), name=name)  # what schedule list --json prints
    assert shown is not None
    assert by_cli is not None
    assert set(shown) == set(by_cli)
    assert (shown["every_s"], shown["tz"], shown["payload"]) == (1, None, {"n": 1})
    assert shown["catch_up"] == "latest"
    assert shown["next_ms"] > shown["last_fired_ms"]
    computed = ("next_ms", "last_fired_ms", "changed_ms")
    listed_back = {key: value for key, value in shown.items() if key not in computed}
    assert http.put(path, json=listed_back).json()["state"] == "unchanged"  # round trip
    refused = http.put(path, json=shown).json()["error"]["message"]
    assert refused == "field 'next_ms': the cluster computes it; leave it out"
    jobs = http.get("/api/v1/jobs", params={"queue": queue}).json()["jobs"]
    assert jobs
    assert {job["type"] for job in jobs} == {"noop"}
    assert set(SCHEDULE_LISTED) <= set(shown)  # what the OpenAPI document promises
    cron = {"cron": "0 3 * * *", "tz": "Europe/Berlin", "type": "noop", "queue": queue,
            "priority": 5, "max_attempts": 1, "timeout_s": 120, "group": "reports"}  # fmt: skip
    assert http.put(path, json=cron).json()["state"] == "updated"
    replaced = listed(http.get("/api/v1/schedules").json()["schedules"], name=name)
    assert replaced is not None
    assert "every_s" not in replaced
    assert {key: replaced[key] for key in cron} == cron
    assert http.delete(path).json() == {"name": name, "state": "removed"}
    gone = http.delete(path)
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "not_found")
    assert listed(http.get("/api/v1/schedules").json()["schedules"], name=name) is None


def test_a_bad_cron_expression_is_a_400_in_the_clis_words(http: TestClient) -> None:
    response = http.put("/api/v1/schedules/x", json={"type": "t", "cron": "* * * * *", "tz": "X/Y"})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "unknown time zone 'X/Y': give an IANA name such as Europe/Berlin, or UTC"
    )


def test_a_limit_put_lists_what_runs_and_waits_under_it_and_is_deleted(
    http: TestClient, cluster: LocalCluster
) -> None:
    queue, group = unique("limited/q"), unique("tenant")
    group_path = f"/api/v1/limits/group/{group}"
    queue_path = f"/api/v1/limits/queue/{quote(queue, safe='')}"
    set_group = http.put(group_path, json={"concurrency": 1, "rate": 5, "window_s": 60})
    assert set_group.json() == {
        "scope": "group",
        "name": group,
        "concurrency": 1,
        "rate": 5,
        "window_s": 60,
    }
    assert http.put(queue_path, json={"concurrency": 3, "rate": 0, "window_s": 0}).json() == {
        "scope": "queue",
        "name": queue,
        "concurrency": 3,
        "rate": 0,
        "window_s": 0,
    }
    http.post(f"/api/v1/queues/{quote(queue, safe='')}/pause")  # its jobs stay pending
    jobs = [{"payload": n, "queue": queue, "group": group} for n in range(2)]
    assert http.post("/api/v1/jobs", json=jobs).status_code == 201
    shown = listed(http.get("/api/v1/limits").json()["limits"], scope="group", name=group)
    with SyncClient(cluster.client_addresses) as client:
        by_cli = listed(client.limits(), scope="group", name=group)
    assert shown == by_cli
    assert shown is not None
    assert (shown["concurrency"], shown["rate"], shown["window_s"]) == (1, 5, 60)
    assert (shown["running"], shown["pending"]) == (0, 2)
    counts = ("running", "pending", "started_in_window")
    listed_back = {key: value for key, value in shown.items() if key not in counts}
    assert http.put(group_path, json=listed_back).json() == listed_back  # round trip
    assert http.put(group_path, json={"concurrency": 2}).json()["rate"] == 0  # replaced whole
    for path in (group_path, queue_path):
        assert http.delete(path).json()["state"] == "removed"
        gone = http.delete(path)
        assert (gone.status_code, gone.json()["error"]["code"]) == (404, "not_found")
    assert listed(http.get("/api/v1/limits").json()["limits"], name=group) is None


def test_enqueue_takes_every_issue_17_field_and_get_shows_them(http: TestClient) -> None:
    queue = unique("fields")
    http.post(f"/api/v1/queues/{queue}/pause")  # nothing runs: the parent stays pending
    parent, child = unique("parent"), unique("child")
    key = unique("only-one")
    jobs = [
        {"id": parent, "payload": 1, "queue": queue},
        {
            "id": child,
            "payload": 2,
            "queue": queue,
            "group": "tenant-17",
            "depends_on": [parent],
            "on_parent_failure": "run",
            "unique_while_active": key,
            "backoff_ms": 1_500,
            "backoff_max_ms": 60_000,
            "jitter_percent": 10,
        },
    ]
    assert http.post("/api/v1/jobs", json=jobs).json()["ids"] == [parent, child]
    duplicate = {"payload": 3, "queue": queue, "unique_while_active": key}
    assert http.post("/api/v1/jobs", json=duplicate).json()["ids"] == [child]  # the holder
    shown = http.get(f"/api/v1/jobs/{child}").json()
    assert {field: shown[field] for field in (
        "state", "group", "depends_on", "on_parent_failure", "parents_left",
        "unique_while_active", "retry_policy", "progress", "snoozes",
    )} == {
        "state": "waiting", "group": "tenant-17", "depends_on": [parent],
        "on_parent_failure": "run", "parents_left": 1, "unique_while_active": key,
        "retry_policy": {"backoff_ms": 1_500, "backoff_max_ms": 60_000, "jitter_percent": 10},
        "progress": None, "snoozes": 0,
    }  # fmt: skip
    plain = http.get(f"/api/v1/jobs/{parent}").json()
    assert (plain["group"], plain["depends_on"], plain["retry_policy"]) == (None, [], None)
    http.post(f"/api/v1/jobs/{parent}/cancel")  # it runs anyway ("run"): pending, not cancelled
    assert http.get(f"/api/v1/jobs/{child}").json()["state"] == "pending"
    for bad in (
        {"payload": 1, "depends_on": "x"},
        {"payload": 1, "depends_on": [parent, parent]},
        {"payload": 1, "on_parent_failure": "ignore"},
        {"payload": 1, "jitter_percent": 101},
        {"payload": 1, "backoff_ms": 5_000, "backoff_max_ms": 1_000},
        {"payload": 1, "group": "g" * 200},
    ):
        refused = http.post("/api/v1/jobs", json=bad)
        assert refused.status_code == 400, (bad, refused.text)
    # A parent the cluster does not hold: the cluster refuses it, with its own code.
    unknown = http.post("/api/v1/jobs", json={"payload": 1, "depends_on": ["no-such-job"]})
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (409, "unknown_parent")


def test_a_job_shows_the_progress_and_snoozes_its_handler_reported(
    http: TestClient, tmp_path: Path
) -> None:
    flag = tmp_path / "snooze"
    flag.touch()
    value = {"done": 7, "total": 10}
    job = {"type": "progress", "payload": {"snooze_once": str(flag), "progress": value}}
    (job_id,) = http.post("/api/v1/jobs", json=job).json()["ids"]
    done = wait_for_state(http, job_id, {"succeeded", "dead"})
    assert (done["state"], done["attempts"], done["snoozes"]) == ("succeeded", 1, 1)
    assert done["progress"] == value
    assert done["result"] == {"attempt": 1}

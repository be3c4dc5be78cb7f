"""The dashboard in a real headless Chromium (issue #15 item 5), against a real 3-node cluster
(``python -m raftq.node`` processes with in-process workers) and ``raftq web`` processes, all
on free 127.0.0.1 ports and stopped however the module ends. Every wait is a bounded poll
(WebDriverWait); nothing sleeps a fixed time. Skipped, with the reason, where no Chromium is
installed (``tests/browser.py``)."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from raftq.limits import WEB_PAGE_JOBS as JOBS_PAGE_SIZE
from raftq.local_cluster import LocalCluster
from raftq.web.pages import REFRESH_MS
from tests.browser import PHONE, WebProcess, chromium, phone_view, require_browser, web_process
from tests.process_cluster import process_cluster

pytestmark = pytest.mark.slow

WAIT_S = 30.0
"""Bounds every wait for the cluster or the page: jobs run in well under a second, a page
refreshes every REFRESH_MS; this only ends a test that would otherwise hang."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    require_browser()  # skip before starting anything when there is no browser
    flags = ["--import", "tests.handlers.flaky"]
    with process_cluster(tmp_path_factory.mktemp("cluster"), 3, extra_flags=flags) as running:
        yield running


@pytest.fixture(scope="module")
def web(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebProcess]:
    log = tmp_path_factory.mktemp("web") / "web.log"
    with web_process(cluster.client_addresses, log, "--timeout", "20") as running:
        yield running


@pytest.fixture(scope="module")
def read_only_web(
    cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebProcess]:
    log = tmp_path_factory.mktemp("web") / "read-only.log"
    with web_process(cluster.client_addresses, log, "--read-only") as running:
        yield running


@pytest.fixture(scope="module")
def browser(cluster: LocalCluster) -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


@pytest.fixture(autouse=True)
def laptop_view(browser: WebDriver) -> None:
    phone_view(browser, on=False)


def api(web: WebProcess, method: str, path: str, body: object = None) -> tuple[int, Any]:
    """One JSON API call: (status, decoded body)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{web.url}/api/v1{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=WAIT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:  # it holds the connection
            return error.code, json.loads(error.read())


def wait(browser: WebDriver) -> WebDriverWait[WebDriver]:
    return WebDriverWait(browser, WAIT_S, poll_frequency=0.1)


def wait_api_state(web: WebProcess, job_id: str, state: str) -> dict[str, Any]:
    """Poll the API (each poll a request to the cluster, at most WAIT_S / 0.1 of them)."""
    found: dict[str, Any] = {}

    def reached(_: object) -> bool:
        nonlocal found
        found = api(web, "GET", f"/jobs/{job_id}")[1]
        return bool(found.get("state") == state)

    WebDriverWait(None, WAIT_S, poll_frequency=0.1).until(reached)
    return found


def unique(prefix: str) -> str:
    """Names of our own: the module's tests share one cluster."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# The page swaps its live region every REFRESH_MS, so element handles go stale: each read and
# click below is one script that finds and acts at once.


def texts(browser: WebDriver, selector: str) -> list[str]:
    found: list[str] = browser.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText.trim())",
        selector,
    )
    return found


def text(browser: WebDriver, selector: str) -> str:
    found = texts(browser, selector)
    return found[0] if found else ""


def count(browser: WebDriver, selector: str) -> int:
    return len(texts(browser, selector))


def attributes(browser: WebDriver, selector: str, name: str) -> list[str]:
    found: list[str] = browser.execute_script(
        "return [...document.querySelectorAll(arguments[0])]"
        ".map(e => e.getAttribute(arguments[1]))",
        selector,
        name,
    )
    return found


def click(browser: WebDriver, selector: str) -> None:
    assert browser.execute_script(
        "const e = document.querySelector(arguments[0]); if (e) e.click(); return !!e", selector
    ), selector


def test_the_overview_shows_three_nodes_and_the_leader(browser: WebDriver, web: WebProcess) -> None:
    browser.get(web.url + "/")
    wait(browser).until(lambda b: count(b, "#nodes tbody tr") == 3)
    wait(browser).until(lambda b: text(b, "#leader") in {"n1", "n2", "n3"})
    leader = text(browser, "#leader")
    nodes = attributes(browser, "#nodes tbody tr", "data-node")
    roles = dict(zip(nodes, texts(browser, "#nodes tbody tr .role"), strict=True))
    assert roles == {node: ("leader" if node == leader else "follower") for node in nodes}
    assert set(nodes) == {"n1", "n2", "n3"}
    assert api(web, "GET", "/status")[1]["cluster"]["leader"] == leader
    assert text(browser, f'#nodes tr[data-node="{leader}"] .leader') == "leader"


def test_the_overview_charts_jobs_enqueued_per_second_live(
    browser: WebDriver, web: WebProcess
) -> None:
    browser.get(web.url + "/")
    first = browser.execute_script("return window.raftqRefreshes")
    wait(browser).until(lambda b: b.execute_script("return window.raftqRefreshes") > first)
    status, body = api(
        web, "POST", "/jobs", [{"payload": n, "queue": unique("rate")} for n in range(40)]
    )
    assert status == 201, body

    def enqueue_rate(b: WebDriver) -> float:
        value = text(b, "#enqueued-rate")
        return float(value) if value.replace(".", "", 1).isdigit() else 0.0

    wait(browser).until(lambda b: enqueue_rate(b) > 0)
    (points,) = attributes(browser, "#rate-chart polyline.enqueued", "points")
    assert len(points.split()) >= 2


def test_a_job_enqueued_through_the_api_appears_and_its_page_shows_its_history(
    browser: WebDriver, web: WebProcess
) -> None:
    queue, job_id = unique("appear"), unique("job")
    browser.get(f"{web.url}/jobs?queue={queue}")
    wait(browser).until(lambda b: "No jobs here." in text(b, "#live"))
    payload = {"note": "<b>not bold</b>", "n": 1}
    status, body = api(
        web, "POST", "/jobs", {"id": job_id, "type": "echo", "payload": payload, "queue": queue}
    )
    assert (status, body) == (201, {"ids": [job_id]})
    row = f'tr[data-job-id="{job_id}"]'  # appears without a reload: the page refreshes itself
    wait(browser).until(lambda b: count(b, row) == 1)
    wait(browser).until(lambda b: text(b, f"{row} .state") == "succeeded")
    click(browser, f"{row} a")
    wait(browser).until(lambda b: text(b, "#job-state") == "succeeded")
    assert texts(browser, "#job-history .what") == ["enqueued", "claimed", "succeeded"]
    claimed = texts(browser, "#job-history li")[1]
    assert "attempt 1" in claimed
    assert "node n" in claimed
    assert "fence " in claimed
    fence = int(claimed.split("fence ")[1].split()[0])
    assert f"entry {fence}, term " in claimed  # the claim's entry is its fence
    assert json.loads(text(browser, "#job-payload")) == payload  # shown as text, not markup
    assert count(browser, "#job-payload b") == 0
    assert json.loads(text(browser, "#job-result")) == payload


def test_a_dead_job_is_retried_from_the_page_and_succeeds(
    browser: WebDriver, web: WebProcess, tmp_path: Path
) -> None:
    flag = tmp_path / "fail"
    flag.touch()
    queue, job_id = unique("dead"), unique("job")
    job = {"id": job_id, "type": "flaky", "payload": {"fail_while": str(flag)}, "queue": queue,
           "max_attempts": 1}  # fmt: skip
    assert api(web, "POST", "/jobs", job)[0] == 201
    wait_api_state(web, job_id, "dead")
    browser.get(f"{web.url}/dead?queue={queue}")
    row = f'tr[data-job-id="{job_id}"]'
    wait(browser).until(lambda b: text(b, f"{row} .state") == "dead")
    assert f"{flag} exists" in text(browser, f"{row} .error")
    flag.unlink()
    click(browser, f"{row} button")
    wait(browser).until(lambda b: f"job {job_id} retried" in text(b, ".notice"))
    done = wait_api_state(web, job_id, "succeeded")
    assert done["result"] == {"attempt": 1}
    browser.get(f"{web.url}/jobs/{job_id}")
    history = ["enqueued", "claimed", "dead", "retried", "claimed", "succeeded"]
    assert texts(browser, "#job-history .what") == history
    # The failed attempt's own error, on the event that ended it (the success has none).
    errors = texts(browser, "#job-history li.event-dead .attempt-error")
    assert errors == [f"{flag} exists (attempt 1)"]
    assert count(browser, "#job-history .attempt-error") == 1


def test_every_dead_job_of_a_queue_is_retried_at_once(
    browser: WebDriver, web: WebProcess, tmp_path: Path
) -> None:
    flag = tmp_path / "fail"
    flag.touch()
    queue = unique("bulk")
    jobs = [
        {"type": "flaky", "payload": {"fail_while": str(flag)}, "queue": queue, "max_attempts": 1}
        for _ in range(3)
    ]
    status, body = api(web, "POST", "/jobs", jobs)
    assert status == 201, body
    for job_id in body["ids"]:
        wait_api_state(web, job_id, "dead")
    browser.get(f"{web.url}/dead?queue={queue}")
    wait(browser).until(lambda b: count(b, "tr[data-job-id]") == 3)
    assert f"of queue {queue}" in text(browser, "#retry-all button")
    flag.unlink()
    click(browser, "#retry-all button")  # asks first, saying how many
    wait(browser).until(lambda b: count(b, "#confirm-retry") == 1)
    assert f"3 dead jobs of queue {queue} will run again" in text(browser, "#retry-count")
    assert text(browser, "#confirm-retry button") == "Retry 3 jobs"
    assert api(web, "GET", f"/jobs/{body['ids'][0]}")[1]["state"] == "dead"  # not yet
    click(browser, "#confirm-retry button")
    wait(browser).until(lambda b: "3 dead jobs retried" in text(b, ".notice"))
    for job_id in body["ids"]:
        wait_api_state(web, job_id, "succeeded")
    wait(browser).until(lambda b: "No jobs here." in text(b, "#live"))  # live: none left


def test_jobs_are_filtered_by_type_and_paged_by_cursor(browser: WebDriver, web: WebProcess) -> None:
    queue = unique("paged")
    wanted = JOBS_PAGE_SIZE + 2
    jobs = [{"type": "echo", "payload": n, "queue": queue} for n in range(wanted)]
    jobs += [{"type": "noop", "payload": n, "queue": queue} for n in range(3)]
    status, body = api(web, "POST", "/jobs", jobs)
    assert status == 201, body
    echo_ids = body["ids"][:wanted]
    browser.get(f"{web.url}/jobs?queue={queue}&type=echo")
    wait(browser).until(lambda b: count(b, "tr[data-job-id]") == JOBS_PAGE_SIZE)
    first = attributes(browser, "tr[data-job-id]", "data-job-id")
    assert first == echo_ids[::-1][:JOBS_PAGE_SIZE]  # newest first
    click(browser, "#next-page")
    wait(browser).until(lambda b: count(b, "#first-page") == 1)
    second = attributes(browser, "tr[data-job-id]", "data-job-id")
    assert second == echo_ids[::-1][JOBS_PAGE_SIZE:]
    assert count(browser, "#next-page") == 0
    assert set(texts(browser, "tr[data-job-id] td:nth-child(2)")) == {"echo"}


def test_pause_and_resume_from_the_page_take_effect(browser: WebDriver, web: WebProcess) -> None:
    queue = unique("pause")
    first = api(web, "POST", "/jobs", {"type": "noop", "payload": 1, "queue": queue})[1]["ids"][0]
    wait_api_state(web, first, "succeeded")  # the queue exists now, with a job done
    browser.get(f"{web.url}/queues")
    row = f'tr[data-queue="{queue}"]'
    wait(browser).until(lambda b: count(b, row) == 1)
    click(browser, f"{row} button")  # Pause
    wait(browser).until(lambda b: text(b, f"{row} .queue-state") == "paused")
    assert api(web, "GET", "/status")[1]["queues"][queue]["paused"] is True

    held = api(web, "POST", "/jobs", {"type": "noop", "payload": 2, "queue": queue})[1]["ids"][0]
    # The workers are busy elsewhere meanwhile: a job enqueued after it in another queue runs.
    other = api(web, "POST", "/jobs", {"type": "noop", "payload": 3, "queue": unique("free")})
    wait_api_state(web, other[1]["ids"][0], "succeeded")
    assert api(web, "GET", f"/jobs/{held}")[1]["state"] == "pending"
    wait(browser).until(lambda b: text(b, f"{row} td:nth-child(2)") == "1")  # pending, live

    click(browser, f"{row} button")  # Resume
    wait(browser).until(lambda b: text(b, f"{row} .queue-state") == "active")
    wait_api_state(web, held, "succeeded")


def test_read_only_shows_no_buttons_and_the_api_refuses_actions(
    browser: WebDriver, web: WebProcess, read_only_web: WebProcess, tmp_path: Path
) -> None:
    flag = tmp_path / "fail"
    flag.touch()
    queue, job_id = unique("ro"), unique("job")
    job = {"id": job_id, "type": "flaky", "payload": {"fail_while": str(flag)}, "queue": queue,
           "max_attempts": 1}  # fmt: skip
    assert api(web, "POST", "/jobs", job)[0] == 201
    wait_api_state(web, job_id, "dead")
    pages = ("/", "/queues", f"/jobs?queue={queue}", f"/dead?queue={queue}", f"/jobs/{job_id}",
             "/schedules", "/limits")  # fmt: skip
    for path in pages:
        browser.get(read_only_web.url + path)
        wait(browser).until(lambda b: count(b, "#read-only") == 1)
        assert count(browser, "form[method=post], button:not(form[method=get] button)") == 0
    browser.get(f"{read_only_web.url}/dead?queue={queue}")
    assert text(browser, f'tr[data-job-id="{job_id}"] .state') == "dead"  # seen, not touchable

    for method, path in (
        ("POST", f"/jobs/{job_id}/retry"),
        ("POST", f"/jobs/{job_id}/cancel"),
        ("POST", f"/queues/{queue}/pause"),
        ("POST", "/jobs"),
    ):
        status, body = api(read_only_web, method, path, {"payload": 1} if path == "/jobs" else None)
        assert (status, body["error"]["code"]) == (403, "read_only"), path
    # The page's own action routes are refused as well (a form posted by hand).
    request = urllib.request.Request(
        f"{read_only_web.url}/jobs/{job_id}/retry", data=b"next=/", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=WAIT_S)
    with refused.value:
        assert refused.value.code == 403
    assert api(web, "GET", f"/jobs/{job_id}")[1]["state"] == "dead"


@pytest.mark.parametrize("path", ["/", "/queues", "/jobs", "/dead", "/schedules", "/limits"])
def test_pages_fit_a_phone_and_a_laptop(browser: WebDriver, web: WebProcess, path: str) -> None:
    """No sideways scrolling of the page at either width; the phone drops the wide columns."""
    for phone in (False, True):
        phone_view(browser, on=phone)
        browser.get(web.url + path)
        wait(browser).until(lambda b: count(b, "#live table, #live .cards") > 0)
        if phone:
            assert browser.execute_script("return window.innerWidth") == PHONE[0]
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, (path, phone, overflow)
        wide_shown = browser.execute_script(
            "return [...document.querySelectorAll('th.wide')].map(e => e.offsetParent !== null)"
        )
        assert all(shown != phone for shown in wide_shown), (path, phone, wide_shown)


def test_a_schedule_fires_on_its_page_and_is_removed_after_asking(
    browser: WebDriver, web: WebProcess
) -> None:
    name, queue = unique("beat"), unique("beats")
    spec = {"every_s": 1, "type": "noop", "queue": queue}
    assert api(web, "PUT", f"/schedules/{name}", spec)[0] == 201
    browser.get(f"{web.url}/schedules")
    row = f'tr[data-schedule="{name}"]'
    wait(browser).until(lambda b: text(b, f"{row} .when") == "every 1 s")
    # The next slot: ahead, or due this very moment while the scheduler fires it (CI once
    # rendered the page in the instant between a slot's time and its firing).
    assert re.fullmatch(r"in \d+\.\d s|due now", text(browser, f"{row} .next"))
    # Live: the page refreshes itself until the slot fired shows, relative to now.
    wait(browser).until(lambda b: text(b, f"{row} .last-fired").endswith(" ago"))
    href = attributes(browser, f"{row} .fires a", "href")[0]
    assert href == f"/jobs?queue={queue}&type=noop"
    click(browser, f"{row} button")  # asks first
    wait(browser).until(lambda b: count(b, "#confirm-remove") == 1)
    assert f"Removing schedule {name} stops its slots" in text(browser, "#remove-what")
    assert name in [s["name"] for s in api(web, "GET", "/schedules")[1]["schedules"]]  # not yet
    click(browser, "#confirm-remove button")
    wait(browser).until(lambda b: f"schedule {name} removed" in text(b, ".notice"))
    assert count(browser, row) == 0
    assert name not in [s["name"] for s in api(web, "GET", "/schedules")[1]["schedules"]]
    browser.get(web.url + href)  # the jobs it fired, of its queue and type
    wait(browser).until(lambda b: count(b, "tr[data-job-id]") >= 1)
    assert set(texts(browser, "tr[data-job-id] td:nth-child(3)")) == {queue}


def test_a_limit_shows_what_runs_and_waits_and_is_lifted_after_asking(
    browser: WebDriver, web: WebProcess
) -> None:
    group = unique("tenant")
    assert api(web, "PUT", f"/limits/group/{group}", {"concurrency": 1})[0] == 200
    jobs = [{"type": "sleep", "payload": {"sleep_ms": 8_000}, "group": group} for _ in range(2)]
    status, body = api(web, "POST", "/jobs", jobs)
    assert status == 201, body
    browser.get(f"{web.url}/limits")
    row = f'tr[data-limit="group/{group}"]'
    wait(browser).until(
        lambda b: (text(b, f"{row} .running"), text(b, f"{row} .waiting")) == ("1", "1")
    )
    assert text(browser, f"{row} .concurrency") == "at most 1 running"
    click(browser, f"{row} button")  # asks first
    wait(browser).until(lambda b: count(b, "#confirm-remove") == 1)
    assert "lets its 1 waiting job start" in text(browser, "#remove-what")
    click(browser, "#confirm-remove button")
    wait(browser).until(lambda b: f"group {group}: limit removed" in text(b, ".notice"))
    assert count(browser, row) == 0
    for job_id in body["ids"]:  # the one that waited starts at once: both are running
        wait_api_state(web, job_id, "running")


def set_visibility(browser: WebDriver, state: str) -> None:
    """What the browser reports when the user switches tabs (headless Chromium is always
    "visible"), and the event it fires."""
    browser.execute_script(
        "Object.defineProperty(document, 'visibilityState', {value: arguments[0], "
        "configurable: true}); document.dispatchEvent(new Event('visibilitychange'));",
        state,
    )


def test_live_updates_stop_while_the_tab_is_hidden(browser: WebDriver, web: WebProcess) -> None:
    browser.get(web.url + "/")
    wait(browser).until(lambda b: b.execute_script("return window.raftqRefreshes") >= 1)
    set_visibility(browser, "hidden")
    hidden_at = browser.execute_script("return window.raftqRefreshes")
    assert text(browser, "#live-state") == "paused"
    # The one bounded window of the suite: three refresh periods must pass with no refresh.
    with pytest.raises(TimeoutException):
        WebDriverWait(browser, 3 * REFRESH_MS / 1000, poll_frequency=0.1).until(
            lambda b: b.execute_script("return window.raftqRefreshes") > hidden_at
        )
    set_visibility(browser, "visible")
    wait(browser).until(lambda b: b.execute_script("return window.raftqRefreshes") > hidden_at)
    assert text(browser, "#live-state") == "live"

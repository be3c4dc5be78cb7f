"""Screenshots of every dashboard page for docs/web.md, made against a real cluster.

Starts three ``python -m raftq.node`` processes (in-process workers, free 127.0.0.1 ports)
and ``raftq web``, puts jobs in every state (succeeded, running, pending in a paused queue,
failed and waiting for a retry, dead after three attempts that failed each its own way,
cancelled), schedules and limits, and a job that waits on parents, runs under a group's
limit with its own retry policy and reports progress; keeps enqueueing while the overview is
captured so its chart has something to draw, and saves PNGs of each page at laptop width
and of the overview at phone width into docs/screenshots/, with the confirmation page of
"Retry every dead job". Everything it starts is stopped when it ends, however it ends.

    .venv/bin/python -m scripts.web_screenshots [--out docs/screenshots]

Needs Chromium and chromedriver (``apt-get install -y chromium chromium-driver``).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

import raftq
from tests.browser import LAPTOP, PHONE, chromium, phone_view, web_process
from tests.process_cluster import process_cluster

WAIT_S = 30.0
HANDLERS = ["--import", "scripts.screenshot_handlers"]
HEIGHT_MAX = 2200
"""A long page is cut here: a screenshot shows what one or two screens show."""


def populate(client: raftq.SyncClient) -> dict[str, str]:
    """Jobs in every state; returns a few ids worth a page of their own."""
    ids: dict[str, str] = {}
    done = client.enqueue_many(
        [{"type": "echo", "payload": {"image": f"img-{n}.png", "width": 640},
          "queue": "images", "id": f"resize-{n:03d}"} for n in range(12)]
    )  # fmt: skip
    for job_id in done:
        client.wait(job_id, timeout=WAIT_S)
    ids["succeeded"] = done[3]
    client.enqueue_many(
        [{"type": "fail", "payload": {"message": "SMTP 554: mailbox unavailable"},
          "queue": "email", "max_attempts": 1, "id": f"welcome-mail-{n}"} for n in range(3)]
    )  # fmt: skip
    for n in range(3):
        client.wait(f"welcome-mail-{n}", timeout=WAIT_S)
    # Three attempts, each failing its own way: the job's page shows every attempt's error.
    client.enqueue_many(
        [{"type": "fail", "payload": {}, "queue": "inventory", "max_attempts": 3,
          "id": "sync-inventory-7"}]
    )  # fmt: skip
    client.wait("sync-inventory-7", timeout=WAIT_S)
    ids["dead"] = "sync-inventory-7"
    client.enqueue_many(
        [{"type": "fail", "payload": {"message": "upstream timed out"}, "queue": "email",
          "max_attempts": 5, "id": "digest-weekly"}]
    )  # fmt: skip
    client.pause("reports")
    client.enqueue_many(
        [{"type": "echo", "payload": {"report": f"q{n}"}, "queue": "reports",
          "id": f"report-q{n}"} for n in range(1, 5)]
    )  # fmt: skip
    client.cancel("report-q4")
    client.enqueue_many(
        [{"type": "sleep", "payload": {"sleep_ms": 600_000}, "queue": "default",
          "id": f"long-import-{n}", "timeout_ms": 900_000} for n in range(2)]
    )  # fmt: skip
    return ids


def schedule_and_limit(client: raftq.SyncClient) -> str:
    """Schedules of both kinds, limits on a queue and on groups with jobs running and waiting
    under them, and a job with parents, a group, a retry policy and progress; returns its id."""
    client.add_schedule("heartbeat", "noop", every=2)
    client.add_schedule("nightly-report", "echo", {"report": "daily"}, cron="0 3 * * *",
                        tz="Europe/Berlin", queue="reports")  # fmt: skip
    client.add_schedule("invoice-reminders", "echo", {"kind": "reminder"},
                        cron="*/15 8-18 * * 1-5", tz="America/New_York", queue="email",
                        catch_up="all", group="billing")  # fmt: skip
    client.add_schedule("cleanup-tmp", "noop", every=3600, queue="maintenance")
    client.set_limit(group="tenant-7", concurrency=1)
    client.set_limit(queue="email", concurrency=10, rate=100, per=60)
    client.set_limit(group="tenant-12", concurrency=2, rate=30, per=60)
    # The job is enqueued while its parents wait in a paused queue, so its history shows it
    # waiting, then released by the entry that finished its last parent.
    client.pause("catalog-fetch")
    parents = [f"fetch-catalog-shard-{n}" for n in range(3)]
    client.enqueue_many(
        [*({"type": "echo", "payload": {"shard": n}, "queue": "catalog-fetch", "id": parent}
           for n, parent in enumerate(parents)),
         {"type": "import-catalog", "payload": {"done": 640, "total": 1000}, "queue": "catalog",
          "id": "import-catalog-2026-12", "group": "tenant-7", "depends_on": parents,
          "unique_while_active": "import-catalog", "backoff_ms": 5_000,
          "backoff_max_ms": 600_000, "jitter_percent": 10, "timeout_ms": 900_000},
         *({"type": "sleep", "payload": {"sleep_ms": 600_000}, "queue": "exports",
            "group": "tenant-12", "id": f"export-{n}", "timeout_ms": 900_000}
           for n in range(3))]
    )  # fmt: skip
    client.resume("catalog-fetch")
    for _ in range(int(WAIT_S * 10)):  # bounded: until its first progress value is applied
        if client.get("import-catalog-2026-12").progress is not None:
            break
        time.sleep(0.1)
    else:
        raise RuntimeError(f"import-catalog-2026-12 showed no progress within {WAIT_S} s")
    # Behind it in its group, limited to one at a time: these wait while it runs.
    client.enqueue_many(
        [{"type": "noop", "payload": {"n": n}, "queue": "catalog", "group": "tenant-7",
          "id": f"reindex-{n}"} for n in range(2)]
    )  # fmt: skip
    return "import-catalog-2026-12"


def settle(driver: WebDriver, refreshes: int = 1) -> None:
    """Wait for the page's own live refreshes (bounded), so it shows the newest state."""
    start = driver.execute_script("return window.raftqRefreshes || 0")
    WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(
        lambda d: d.execute_script("return window.raftqRefreshes || 0") >= start + refreshes
    )


def capture(
    driver: WebDriver, url: str, path: Path, *, phone: bool = False, refreshes: int = 1
) -> None:
    phone_view(driver, on=False)
    driver.set_window_size(*LAPTOP)
    driver.get(url)
    if phone:
        phone_view(driver, on=True)
        driver.get(url)
    settle(driver, refreshes)
    height = min(HEIGHT_MAX, driver.execute_script("return document.documentElement.scrollHeight"))
    if phone:
        width, _ = PHONE
        metrics = {"width": width, "height": height, "deviceScaleFactor": 2, "mobile": True}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    else:
        chrome_height = driver.execute_script("return window.outerHeight - window.innerHeight")
        driver.set_window_size(LAPTOP[0], height + chrome_height)
    driver.save_screenshot(str(path))
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    out: Path = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="raftq-screenshots-") as scratch:
        root = Path(scratch)
        with (
            process_cluster(root / "cluster", 3, workers=2, extra_flags=HANDLERS) as cluster,
            web_process(cluster.client_addresses, root / "web.log") as web,
            raftq.SyncClient(cluster.client_addresses, timeout=WAIT_S) as client,
        ):
            ids = populate(client)
            waiting_on_parents = schedule_and_limit(client)
            with chromium(LAPTOP) as driver:
                capture(driver, web.url + "/schedules", out / "schedules.png")
                capture(driver, web.url + "/limits", out / "limits.png")
                capture(driver, web.url + f"/jobs/{waiting_on_parents}", out / "job-parents.png")
                capture(driver, web.url + "/jobs", out / "jobs.png")
                capture(driver, web.url + "/queues", out / "queues.png")
                capture(driver, web.url + f"/jobs/{ids['dead']}", out / "job.png")
                capture(driver, web.url + f"/jobs/{ids['dead']}/story", out / "story.png")
                capture(driver, web.url + "/dead", out / "dead.png")
                # "Retry every dead job" asks first; that page does not refresh itself.
                confirm = web.url + "/dead/retry?queue=email"
                capture(driver, confirm, out / "retry-dead.png", refreshes=0)
                with trickling(client):
                    capture(driver, web.url + "/", out / "overview.png", refreshes=10)
                    capture(
                        driver, web.url + "/", out / "overview-phone.png", phone=True, refreshes=10
                    )


@contextmanager
def trickling(client: raftq.SyncClient) -> Iterator[None]:
    """A steady, uneven flow of small jobs while the block runs, for the overview's chart."""
    stop = threading.Event()

    def trickle() -> None:
        n = 0
        while not stop.wait(0.25):
            client.enqueue_many(
                [{"type": "noop", "payload": n * 10 + k, "queue": "default"}
                 for k in range(5 + n % 7)]
            )  # fmt: skip
            n += 1

    flow = threading.Thread(target=trickle, name="screenshot-trickle")
    flow.start()
    try:
        yield
    finally:
        stop.set()
        flow.join()


if __name__ == "__main__":
    main()

"""A real headless Chromium for the dashboard's tests (and the screenshot script), driven by
Selenium through Debian's chromedriver; and a ``raftq web`` process to point it at.

Where no Chromium is installed the browser tests are skipped with a reason that says how to
install it (pytest -ra prints it). ``.ci/run`` installs it and sets ``RAFTQ_REQUIRE_BROWSER=1``,
which turns that skip into a failure: CI never passes without running them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver

from raftq.local_cluster import free_ports

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER_NAMES = ("chromedriver",)
LAPTOP = (1366, 900)
PHONE = (390, 844)
WEB_START_S = 30.0
"""``raftq web`` imports Starlette and binds a port: a second or two; this bounds a hang."""
WEB_STOP_S = 10.0


def browser_paths() -> tuple[str, str] | None:
    """(chromium, chromedriver), or None if either is missing."""
    chromium = next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    driver = next(filter(None, map(shutil.which, CHROMEDRIVER_NAMES)), None)
    return (chromium, driver) if chromium and driver else None


def require_browser() -> tuple[str, str]:
    paths = browser_paths()
    if paths is not None:
        return paths
    reason = (
        "browser tests skipped: no Chromium/chromedriver on PATH (install them with "
        "`apt-get install -y chromium chromium-driver`; .ci/run does)"
    )
    if os.environ.get("RAFTQ_REQUIRE_BROWSER") == "1":
        pytest.fail(reason.replace("skipped", "required (RAFTQ_REQUIRE_BROWSER=1)"))
    pytest.skip(reason)


@contextmanager
def chromium(size: tuple[int, int] = LAPTOP) -> Iterator[WebDriver]:
    """A headless Chromium; always quit on the way out."""
    binary, driver_path = require_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI and this machine run as root, where Chromium's sandbox cannot
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--hide-scrollbars",
        f"--window-size={size[0]},{size[1]}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        yield driver
    finally:
        driver.quit()


def phone_view(driver: WebDriver, on: bool) -> None:
    """Emulate a phone's screen (its width, pixel ratio and viewport rules), or stop."""
    if on:
        width, height = PHONE
        metrics = {"width": width, "height": height, "deviceScaleFactor": 2, "mobile": True}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    else:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


class WebProcess:
    def __init__(self, process: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.process = process
        self.url = url
        self.log = log


@contextmanager
def web_process(
    cluster: Sequence[str], log: Path, *flags: str, env: dict[str, str] | None = None
) -> Iterator[WebProcess]:
    """``raftq web`` on a free 127.0.0.1 port for ``cluster``; stopped however the block ends."""
    (port,) = free_ports(1)
    command = [
        sys.executable, "-m", "raftq", "web", "--cluster", ",".join(cluster),
        "--listen", f"127.0.0.1:{port}", *flags,
    ]  # fmt: skip
    with log.open("ab") as output:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_serving(process, url, log)
        yield WebProcess(process, url, log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(WEB_STOP_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_serving(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + WEB_START_S
    while time.monotonic() < deadline:  # bounded: WEB_START_S, one probe each 0.1 s
        if process.poll() is not None:
            raise RuntimeError(f"raftq web exited {process.returncode}: {log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/login", timeout=2):
                return
        except urllib.error.HTTPError:  # an answer all the same: it serves
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"raftq web did not serve within {WEB_START_S} s: {log.read_text()}")

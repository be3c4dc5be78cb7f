"""The framework recipes of examples/ (issue 13 item 5), each driven end to end against a real
3-node cluster whose nodes run ``examples/tasks.py``: a job enqueued through the app reaches
``succeeded``, and the app reports it. The frameworks are test-only dependencies."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

import raftq
from raftq.local_cluster import LocalCluster
from tests.process_cluster import process_cluster

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
WAIT_S = 30.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """The nodes import ``tasks`` from examples/, as the apps do; ``$RAFTQ_CLUSTER`` points
    the apps' clients at the nodes, as it would in a deployment."""
    with pytest.MonkeyPatch.context() as patch:
        path = os.pathsep.join(filter(None, [str(EXAMPLES), os.environ.get("PYTHONPATH")]))
        patch.setenv("PYTHONPATH", path)
        patch.syspath_prepend(str(EXAMPLES))
        root = tmp_path_factory.mktemp("cluster")
        with process_cluster(root, workers=2, extra_flags=["--import", "tasks"]) as running:
            patch.setenv("RAFTQ_CLUSTER", ",".join(running.client_addresses))
            yield running


@pytest.fixture(scope="module")
def checker(cluster: LocalCluster) -> Iterator[raftq.SyncClient]:
    """Waits for the jobs the apps enqueue, from outside the apps."""
    with raftq.SyncClient(cluster.client_addresses, timeout=WAIT_S) as client:
        yield client


@contextmanager
def imported_example(name: str) -> Iterator[ModuleType]:
    """The example module, imported as its server would; its shared client closed after."""
    module = importlib.import_module(name)
    try:
        yield module
    finally:
        module.client.close()
        sys.modules.pop(name, None)


def test_flask_enqueues_through_its_shared_sync_client(checker: raftq.SyncClient) -> None:
    with imported_example("flask_app") as module:
        http = module.app.test_client()
        created = http.post("/resize", json={"file": "flask.png"})
        assert created.status_code == 201, created.text
        job_id = created.json["id"]
        assert checker.wait(job_id, timeout=WAIT_S).state == "succeeded"
        shown = http.get(f"/jobs/{job_id}")
        assert shown.json == {
            "state": "succeeded",
            "result": {"file": "flask.png", "width": 800, "attempt": 1},
        }
        assert http.get("/jobs/no-such-job").status_code == 404


def test_django_enqueues_through_its_shared_sync_client(checker: raftq.SyncClient) -> None:
    with imported_example("django_app") as module:
        from django.test import Client as DjangoClient

        http = DjangoClient()
        created = http.post(
            "/resize", json.dumps({"file": "django.png"}), content_type="application/json"
        )
        assert created.status_code == 201, created.content
        job_id = created.json()["id"]
        assert module.application is not None
        assert checker.wait(job_id, timeout=WAIT_S).state == "succeeded"
        shown = http.get(f"/jobs/{job_id}")
        assert shown.json() == {
            "state": "succeeded",
            "result": {"file": "django.png", "width": 800, "attempt": 1},
        }
        assert http.get("/jobs/no-such-job").status_code == 404
        assert http.get("/resize").status_code == 405


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_fastapi_enqueues_through_the_client_its_lifespan_opens(
    checker: raftq.SyncClient, backend: str
) -> None:
    """Through Starlette's TestClient, which runs the app (lifespan included) on ``backend``:
    the same app code under asyncio, as uvicorn runs it, and under Trio (hypercorn's
    ``--worker-class trio``)."""
    module = importlib.import_module("fastapi_app")
    from fastapi.testclient import TestClient

    with TestClient(module.app, backend=backend) as http:
        created = http.post("/resize", json={"file": f"{backend}.png", "width": 32})
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        assert checker.wait(job_id, timeout=WAIT_S).state == "succeeded"
        assert http.get(f"/jobs/{job_id}").json() == {
            "state": "succeeded",
            "result": {"file": f"{backend}.png", "width": 32, "attempt": 1},
        }
        assert http.get("/jobs/no-such-job").status_code == 404
        assert http.post("/resize", json={"width": 3}).status_code == 422


def test_an_asyncio_worker_runs_handlers_on_asyncio_only_apis(
    cluster: LocalCluster, checker: raftq.SyncClient, tmp_path: Path
) -> None:
    """``raftq worker --loop asyncio`` runs ``examples/asyncio_worker.py``, whose handler needs
    asyncio's running loop (no node has it: only this worker claims its jobs)."""
    resolve = importlib.import_module("asyncio_worker").resolve
    raftq_command = Path(sys.executable).parent / "raftq"
    command = [
        str(raftq_command), "worker", "--cluster", ",".join(cluster.client_addresses),
        "--loop", "asyncio", "--import", "asyncio_worker", "--concurrency", "2",
    ]  # fmt: skip
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        job_id = resolve.enqueue_sync(checker, host="localhost")
        job = checker.wait(job_id, timeout=WAIT_S)
        assert (job.state, job.result["host"]) == ("succeeded", "localhost"), job.error
        assert "127.0.0.1" in job.result["addresses"]
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, (tmp_path / "worker.log").read_text()

"""raftq installs as users install things (issue 13, item 7): the sdist and the wheel build,
the wheel installs into a fresh virtual environment outside the repository (with pip's own
configuration: the package index or local mirror it already uses), and there ``raftq
--version``, ``python -m raftq.node --help`` and a one-node enqueue/wait work, from the
installed files alone. The wheel carries ``py.typed`` and the license."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

from raftq.lifeline import Lifeline
from raftq.local_cluster import free_ports, process_alive
from tests.test_lifeline import killed_at_exit

ROOT = Path(__file__).resolve().parent.parent
SMOKE = Path(__file__).resolve().parent / "installed_smoke.py"
STEP_TIMEOUT_S = 300
"""Building and installing from a local mirror take seconds; a loaded machine, a minute."""


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=STEP_TIMEOUT_S, check=False
    )
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done


def clean_environment() -> dict[str, str]:
    """This process's environment without what would lead the venv back to the repository."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in {"PYTHONPATH", "VIRTUAL_ENV", "RAFTQ_CLUSTER", "PYTHONHOME"}
    }
    environment["PATH"] = os.pathsep.join(
        part for part in environment["PATH"].split(os.pathsep) if not part.startswith(str(ROOT))
    )
    return environment


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_and_runs_a_one_node_cluster(
    tmp_path: Path,
) -> None:
    assert not tmp_path.is_relative_to(ROOT)
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], cwd=tmp_path)
    (wheel,) = dist.glob("raftq-*.whl")
    (sdist,) = dist.glob("raftq-*.tar.gz")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "raftq/py.typed" in names
    assert "raftq/examples/jobs.json" in names  # raftq demo's default job file
    assert "sim/__main__.py" in names  # the simulator: raftq sim run|sweep
    assert "sim/fakes.py" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names), names
    with tarfile.open(sdist) as archive:
        assert any(name.endswith("/LICENSE") for name in archive.getnames())

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    python, raftq_command = str(venv / "bin" / "python"), str(venv / "bin" / "raftq")
    run([python, "-m", "pip", "install", "--quiet", str(wheel)], cwd=tmp_path)

    environment = clean_environment()
    assert run([raftq_command, "--version"], cwd=tmp_path).stdout == f"raftq {version('raftq')}\n"
    assert "--data-dir" in run([python, "-m", "raftq.node", "--help"], cwd=tmp_path).stdout

    (port,) = free_ports(1)
    address = f"127.0.0.1:{port}"
    lifeline = Lifeline()
    with (tmp_path / "node.log").open("wb") as log:
        node = subprocess.Popen(
            [raftq_command, "run", "--listen", address, "--data-dir", str(tmp_path / "data")],
            cwd=tmp_path,
            env=environment | lifeline.environment(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=lifeline.pass_fds,
        )
    with killed_at_exit([node.pid]):
        try:
            smoke = subprocess.run(
                [python, str(SMOKE), address],
                cwd=tmp_path,
                env=environment,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        finally:
            lifeline.close()  # the node stops, exit 0
            node.wait(timeout=60)
        assert smoke.returncode == 0, smoke.stderr + (tmp_path / "node.log").read_text()
        outcome = json.loads(smoke.stdout.strip().splitlines()[-1])
        assert outcome["state"] == "succeeded"
        assert outcome["result"] == {"from": "the wheel"}
        assert Path(outcome["raftq"]).is_relative_to(venv)  # the installed copy, not ours
        assert node.returncode == 0
        assert not process_alive(node.pid)

    # raftq demo's default job file is the installed copy (a demo run costs 3 nodes; the
    # demo itself is tests/test_demo.py's).
    shown = run(
        [
            python,
            "-c",
            "from raftq.demo import EXAMPLE_JOBS as f, load_job_file as l; "
            "print(len(l(str(f))), f)",
        ],
        cwd=tmp_path,
    ).stdout.split()
    assert int(shown[0]) >= 100
    assert Path(shown[1]).is_relative_to(venv)

    # The simulator ships in the wheel (issue 18): `raftq sim run` runs a user's own handlers
    # (here the tutorial's fixed one, copied out of the repository as the user's module) and
    # check function, from the installed files alone.
    for name in ("orders_safe.py", "orders_check.py"):
        (tmp_path / name).write_text((ROOT / "examples" / name).read_text())
    check = "orders_check:each_order_charged_once"
    command = [raftq_command, "sim", "run", "--seed", "1", "--sim-seconds", "3", "--json"]
    simulated = subprocess.run(
        [*command, "--import", "orders_safe", "--check", check],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_S,
        check=False,
    )
    assert simulated.returncode == 0, simulated.stderr[-3000:]
    report = json.loads(simulated.stdout.splitlines()[-1])
    assert report["verdict"] == "pass"
    assert report["jobs_acked"] > 0
    located = run([python, "-c", "import sim; print(sim.__file__)"], cwd=tmp_path).stdout
    assert Path(located.strip()).is_relative_to(venv)  # the installed simulator, not ours

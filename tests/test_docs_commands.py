"""Every command the README and the user docs show is run here, so the docs cannot drift from
the code (issue 7).

The rules the docs follow, which these tests enforce:

- A ``sh`` block is run. All the ``sh`` blocks of one document form one bash script (``set -euo
  pipefail``), run in a fresh directory holding a link to ``examples/``, with this
  interpreter's ``bin`` directory first on PATH (as ``. .venv/bin/activate`` would). Every
  ``127.0.0.1:PORT`` in a document is replaced by a free port (the same one for the same
  number throughout the document), and the whole process group is killed at the end, so a
  node left running by a failing script is stopped too.
- A few lines cannot run inside a test; each must be listed in ``COVERED_ELSEWHERE`` with the
  test that covers it.
- A ``python`` block that starts with the docstring of a file in ``examples/`` must be that
  file, word for word (the ``sh`` blocks run the file). In the pages that teach the client
  (``EXCERPTED``) every other ``python`` block must be whole lines cut from one example file,
  word for word; and every example file is run, by a ``sh`` block or by
  ``tests/test_examples.py`` (``RUN_BY_TESTS``).
- No other fenced block may hold a shell command: a ``bash``/``shell``/``console`` block, or
  an untagged block whose first line starts like a command, fails the test.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raftq.bench import table_rows
from raftq.lifeline import Lifeline
from tests.node_helpers import free_ports
from tests.test_bench import SAMPLE as SAMPLE_RESULTS

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
"""Every page: those with no ``sh`` block are still checked for commands hiding elsewhere."""

COVERED_ELSEWHERE = {
    "make demo": "tests/test_demo.py runs `raftq demo`; test_make_targets_call_the_commands",
    "make test": "this very suite",
    "make lint": "run before every commit; the Makefile target is checked below",
    "make bench": "tests/test_bench.py runs `raftq bench --quick`; checked below",
    "make venv": "every make target runs it first",
    ". .venv/bin/activate": "the script runs with this interpreter's bin directory on PATH",
}

EXCERPTED = ("README.md", "client.md", "handlers.md")
"""Pages whose Python snippets must come from example files, so that a test runs them."""

RUN_BY_TESTS = {
    "flask_app.py": "tests/test_examples.py drives it through Flask's test client",
    "django_app.py": "tests/test_examples.py drives it through Django's test client",
    "fastapi_app.py": "tests/test_examples.py drives it through Starlette's TestClient",
}

FENCE = re.compile(r"^```(\S*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
ADDRESS = re.compile(r"127\.0\.0\.1:(\d{4,5})")
COMMAND_START = re.compile(r"^\s*(\$ |raftq |python |make |curl |kill |cp |openssl |export |\. )")


def hides_a_command(text: str) -> bool:
    """Whether any line of an untagged block reads like a shell command."""
    return any(COMMAND_START.match(line) for line in text.splitlines())


def blocks(document: Path) -> list[tuple[str, str]]:
    return [(match[1], match[2]) for match in FENCE.finditer(document.read_text())]


def command_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def runnable_script(document: Path) -> str:
    lines = []
    for language, text in blocks(document):
        if language != "sh":
            continue
        for line in command_lines(text):
            command = line.split("  #")[0].strip()
            if command in COVERED_ELSEWHERE:
                continue
            lines.append(line)
    script = "\n".join(lines)
    ports = sorted(set(ADDRESS.findall(script)))
    mapping = dict(zip(ports, (str(port) for port in free_ports(len(ports))), strict=True))
    return ADDRESS.sub(lambda match: f"127.0.0.1:{mapping[match[1]]}", script)


class ScriptRun:
    """One document's script, running in its own directory and process group."""

    def __init__(self, script: str, directory: Path) -> None:
        (directory / "examples").symlink_to(ROOT / "examples")
        environment = dict(os.environ)
        environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment['PATH']}"
        environment.pop("RAFTQ_CLUSTER", None)
        # Nodes the script starts in the background stop by themselves if pytest is killed
        # before finish() (raftq.lifeline: every node takes $RAFTQ_LIFELINE_FD).
        self.lifeline = Lifeline()
        environment.update(self.lifeline.environment())
        self.script = script
        # A file, not a pipe: background nodes would hold a pipe open after bash exits.
        self.log = directory / "output.log"
        with self.log.open("w") as output_file:
            self.process = subprocess.Popen(
                ["bash", "-c", "set -euo pipefail\n" + script],
                cwd=directory,
                env=environment,
                stdout=output_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=self.lifeline.pass_fds,
            )

    def finish(self, deadline: float) -> tuple[int | None, str]:
        """Wait until ``deadline`` (monotonic); kill whatever it left running; its exit code
        (None if it timed out) and output."""
        try:
            returncode: int | None = self.process.wait(
                timeout=max(0.0, deadline - time.monotonic())
            )
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.lifeline.close()
        return returncode, self.log.read_text()


SCRIPTS_AT_ONCE = 3
"""Documents' scripts running side by side: most of their time is process start-up and
waiting, not CPU, but each starts nodes; all of them at once (eight documents) overran their
deadline on a loaded 2-core machine."""

SCRIPT_SECONDS = 150
"""Each script's own deadline, from when it starts."""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_every_shell_block_runs(tmp_path: Path) -> None:
    """The documents' scripts, a few side by side (each on its own ports, in its own
    directory), each within its own deadline."""
    scripts = {document.name: runnable_script(document) for document in DOCUMENTS}
    waiting = [name for name, script in scripts.items() if script]
    assert {"README.md", "operations.md", "formats.md", "handlers.md"} <= set(waiting)
    running: dict[str, tuple[ScriptRun, float]] = {}
    failures = []
    try:
        for _ in range(len(waiting) * SCRIPT_SECONDS * 10):  # bounded: 0.1 s steps
            while waiting and len(running) < SCRIPTS_AT_ONCE:
                name = waiting.pop(0)
                directory = tmp_path / name
                directory.mkdir()
                running[name] = (
                    ScriptRun(scripts[name], directory),
                    time.monotonic() + SCRIPT_SECONDS,
                )
            for name, (run, deadline) in list(running.items()):
                if run.process.poll() is None and time.monotonic() < deadline:
                    continue
                del running[name]
                returncode, output = run.finish(deadline)
                if returncode != 0:
                    failures.append(
                        f"{name} exited {returncode}:\n{run.script}\n--- output:\n{output}"
                    )
            if not waiting and not running:
                break
            time.sleep(0.1)
    finally:  # every script started is finished (and what it left running killed), pass or fail
        for name, (run, deadline) in running.items():
            returncode, output = run.finish(deadline)
            failures.append(f"{name} exited {returncode}:\n{run.script}\n--- output:\n{output}")
    assert not waiting, f"never started: {waiting}"
    assert not failures, "\n\n".join(failures)


def example_files() -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted((ROOT / "examples").glob("*.py"))}


def excerpt_of(text: str) -> str | None:
    """The example file that holds ``text`` as whole lines, word for word, if one does."""
    for name, source in example_files().items():
        if "\n" + text in "\n" + source:
            return name
    return None


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_python_blocks_are_the_example_files(document: Path) -> None:
    docstrings = {source.split("\n", 1)[0]: name for name, source in example_files().items()}
    for language, text in blocks(document):
        if language != "python":
            continue
        example = docstrings.get(text.split("\n", 1)[0])
        if example is not None:
            assert text == example_files()[example], f"{document.name} shows an old {example}"
        elif document.name in EXCERPTED:
            assert excerpt_of(text), f"{document.name}: a snippet from no example file:\n{text}"


def test_the_excerpt_check_wants_whole_lines_word_for_word() -> None:
    assert excerpt_of('@app.handler("checksum")\n') == "handlers.py"
    assert excerpt_of('@app.handler("checksum", 2)\n') is None
    assert excerpt_of('.handler("checksum")\n') is None  # not a whole line


def test_every_example_file_is_run() -> None:
    scripts = "\n".join(
        text for document in DOCUMENTS for language, text in blocks(document) if language == "sh"
    )
    for name in example_files():
        module = name.removesuffix(".py")
        run = f"examples/{name}" in scripts or f"--import {module}" in scripts
        run = run or f"--check {module}:" in scripts  # a simulator's check (docs/simulator.md)
        assert run or name in RUN_BY_TESTS, f"examples/{name} is run by no sh block or test"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_no_command_hides_outside_a_sh_block(document: Path) -> None:
    for language, text in blocks(document):
        assert language not in ("bash", "shell", "console", "shell-session"), text
        if language == "":
            assert not hides_a_command(text), f"{document.name}: a command in an untagged block"


def test_the_covered_commands_are_real_make_targets() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo: .*\n\t\$\(BIN\)/raftq demo$", makefile, re.MULTILINE)
    assert re.search(r"^bench: .*\n\t\$\(BIN\)/raftq bench$", makefile, re.MULTILINE)
    for target in ("test", "lint", "venv"):
        assert re.search(rf"^{target}: ", makefile, re.MULTILINE), target


def test_the_readme_starts_with_the_two_commands() -> None:
    language, text = blocks(ROOT / "README.md")[0]
    assert language == "sh"
    assert [line.split("#")[0].strip() for line in command_lines(text)] == [
        "make demo",
        "make test",
    ]


def test_ports_are_rewritten_one_free_port_per_number(tmp_path: Path) -> None:
    document = tmp_path / "doc.md"
    document.write_text(
        "```sh\nraftq --cluster 127.0.0.1:7101 status\n"
        "raftq --cluster 127.0.0.1:7101,127.0.0.1:7102 jobs\nmake test\n```\n"
        "```text\nraftq not run\n```\n"
    )
    lines = runnable_script(document).splitlines()
    assert len(lines) == 2  # "make test" is covered elsewhere; the text block is not run
    first = ADDRESS.findall(lines[0])
    second = ADDRESS.findall(lines[1])
    assert first[0] == second[0] != second[1]
    assert not {"7101", "7102"} & {*first, *second}


def test_the_guard_sees_a_command_in_an_untagged_block() -> None:
    assert hides_a_command("raftq status")
    assert hides_a_command("# 1. A CA\nopenssl req -x509 -newkey ec\n")
    assert hides_a_command("for n in 1 2 3; do\n  python -m raftq.node --id n$n &\ndone")
    assert not hides_a_command('{"id": str, "payload": any JSON}\nLOCK   flock()ed')


def markdown_table(text: str, header: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(header)
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append(line)
    return table


def test_the_readme_shows_the_performance_table_of_docs_performance() -> None:
    """One table, two places: the README's must be the one docs/performance.md dates."""
    header = "| figure | result | workload |"
    readme = markdown_table((ROOT / "README.md").read_text(), header)
    performance = markdown_table((ROOT / "docs" / "performance.md").read_text(), header)
    assert readme == performance
    figures = [row.split(" | ")[0].lstrip("| ") for row in readme[2:]]
    assert figures == [row[0] for row in table_rows(SAMPLE_RESULTS)]

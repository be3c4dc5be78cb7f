"""A child process that ends when the program that started it dies, however it dies.

The parent makes a pipe and keeps its write end, which no other program ever inherits
(close-on-exec, PEP 446); each child gets the read end (``pass_fds``) and its number as
``--lifeline-fd FD`` or ``$RAFTQ_LIFELINE_FD``. Nothing is ever written. When the parent's
process ends, by returning, raising, SIGKILL or the OOM killer, the kernel closes its write
end, and every child's read of the pipe returns end-of-file: a node then stops at once (no
grace period for running jobs, no hand-over: its peers are going away too).

Why a pipe and not Linux's ``PR_SET_PDEATHSIG``: that signal fires when the *thread* that
forked the child exits, not the process. Trio starts processes from a worker thread
(``trio.lowlevel.open_process`` runs ``Popen`` in ``trio.to_thread``), and idle worker threads
exit after a few seconds: nodes would be killed while their parent is alive and well. It is
also Linux only, needs ``preexec_fn`` (unsafe with threads), and is lost across a
setuid exec. A pipe's end-of-file depends on nothing but the last write end closing, which
the kernel does for every process that ends; it works on every POSIX system. What it cannot
see: a parent that forks without exec'ing (its forked copy keeps the write end open until it
ends too).
"""

from __future__ import annotations

import os
import stat

import trio

from raftq.errors import ConfigError

LIFELINE_ENV = "RAFTQ_LIFELINE_FD"
"""The environment's way to pass ``--lifeline-fd``: for nodes a script starts (``raftq run``
from a shell script under test). A node removes it from its environment at start, so that
processes the node starts never take an unrelated descriptor for a lifeline."""

READ_BYTES = 4096


class Lifeline:
    """The parent's side: start children with ``flags()`` and ``pass_fds``; ``close()`` when
    they are gone (or let the process end, which is the point)."""

    def __init__(self) -> None:
        self.read_fd, self._write_fd = os.pipe()  # neither is inheritable (PEP 446)
        self._closed = False

    @property
    def pass_fds(self) -> tuple[int, ...]:
        """For ``subprocess.Popen`` / ``trio.lowlevel.open_process``: the read end only."""
        assert not self._closed, "the lifeline is closed"
        return (self.read_fd,)

    def flags(self) -> list[str]:
        """The node's command-line flags that name the lifeline."""
        return ["--lifeline-fd", str(self.read_fd)]

    def environment(self) -> dict[str, str]:
        """The same, for a child started through a shell (``$RAFTQ_LIFELINE_FD``)."""
        return {LIFELINE_ENV: str(self.read_fd)}

    def close(self) -> None:
        """Every child still watching sees end-of-file, as if this process had ended."""
        if not self._closed:
            self._closed = True
            os.close(self._write_fd)
            os.close(self.read_fd)


def lifeline_fd(flag: int | None) -> int | None:
    """The child's lifeline: ``--lifeline-fd`` if given, else ``$RAFTQ_LIFELINE_FD`` (taken
    out of the environment either way); ``ConfigError`` unless it is an open pipe."""
    from_environment = os.environ.pop(LIFELINE_ENV, "")
    if flag is None and not from_environment:
        return None
    if flag is not None:
        fd, source = flag, "--lifeline-fd"
    else:
        source = f"${LIFELINE_ENV}"
        try:
            fd = int(from_environment)
        except ValueError:
            raise ConfigError(f"{source} must be a file descriptor number") from None
    try:
        is_pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
    except (OSError, OverflowError):
        is_pipe = False
    if not is_pipe:
        raise ConfigError(f"{source} {fd} is not an open pipe from the program that started us")
    os.set_inheritable(fd, False)  # ours alone: processes we start must not hold it
    return fd


async def wait_for_parent_exit(fd: int) -> None:
    """Return once the lifeline pipe reaches end-of-file: every write end is closed, so the
    program that started this process has ended."""
    stream = trio.lowlevel.FdStream(os.dup(fd))
    async with stream:
        while await stream.receive_some(READ_BYTES):
            pass  # nothing is ever written; if something is, it means nothing

"""fdatasync in a helper process, so that a busy event loop never delays a sync.

Why not ``trio.to_thread``: a worker thread needs the GIL to start the call and again to hand
the result back, so while the event loop is busy (as it is under load, encoding and framing
the next batch) the sync waits for the loop to go idle, and the CPU and the disk take turns
instead of working in parallel. Measured with the node's one WAL appender on a busy loop
(``benchmarks/bench_storage.py``, three runs): 1.6-5 times the appends per second of a worker
thread one record at a time, and 8-10% less node CPU per job end to end (docs/storage.md,
"Figures"). A separate process has its own GIL; the loop only sends a byte and later reads
one, both through sockets it polls anyway.

One helper process serves the whole raftq process. Each file that wants helper syncs gets a
channel: a SEQPACKET socket pair, whose far end travels to the helper with a duplicate of the
file's descriptor (SCM_RIGHTS). The helper gives each channel a thread that answers every
byte received with ``fdatasync`` and a 4-byte errno (0 for success). Closing the channel
closes the helper's copy of the file. If raftq dies, the helper reads end-of-file on its
control socket and exits.
"""

from __future__ import annotations

import atexit
import errno
import os
import socket
import subprocess
import sys
import threading

import trio

_HELPER_SOURCE = r"""
import os, socket, sys, threading

def serve(file_fd, channel):
    try:
        while channel.recv(1):
            try:
                os.fdatasync(file_fd)
                code = 0
            except OSError as error:
                code = error.errno or 5
            channel.send(code.to_bytes(4, "little"))
    except OSError:
        pass
    finally:
        os.close(file_fd)
        channel.close()

control = socket.socket(fileno=int(sys.argv[1]))
while True:
    message, fds, _, _ = socket.recv_fds(control, 1, 2)
    if not message:
        break
    file_fd, channel_fd = fds
    threading.Thread(
        target=serve, args=(file_fd, socket.socket(fileno=channel_fd)), daemon=True
    ).start()
"""

_REPLY_BYTES = 4


class _Helper:
    """The process-wide helper: started on first use, stopped at interpreter exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._control: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def attach(self, fd: int) -> socket.socket:
        """A new channel syncing ``fd`` (blocking: the first call spawns the helper)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with self._lock:
                control = self._ensure_started()
                socket.send_fds(control, [b"F"], [fd, theirs.fileno()])
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return ours

    def _ensure_started(self) -> socket.socket:
        if self._control is not None and self._process is not None:
            if self._process.poll() is None:
                return self._control
            self._control.close()
        control, remote = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _HELPER_SOURCE, str(remote.fileno())],
                pass_fds=[remote.fileno()],
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            control.close()
            raise
        finally:
            remote.close()
        self._control = control
        return control

    def stop(self) -> None:
        with self._lock:
            if self._control is not None:
                self._control.close()
                self._control = None
            if self._process is not None:
                try:
                    self._process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
                self._process = None


_helper = _Helper()
atexit.register(_helper.stop)


class SyncChannel:
    """Syncs one file through the helper; one request at a time."""

    def __init__(self, channel: socket.socket) -> None:
        self._socket = trio.socket.from_stdlib_socket(channel)
        self._busy = False

    @classmethod
    async def open(cls, fd: int) -> SyncChannel:
        return cls(await trio.to_thread.run_sync(_helper.attach, fd))

    async def fdatasync(self) -> None:
        """``os.fdatasync`` of the file, run by the helper; raises its ``OSError``."""
        assert not self._busy, "one sync at a time per file"
        self._busy = True
        try:
            # Shielded like a thread call would be: an unanswered request would leave its
            # reply to be mistaken for the next one's.
            with trio.CancelScope(shield=True):
                await self._socket.send(b"S")
                reply = await self._socket.recv(_REPLY_BYTES)
        except (BrokenPipeError, ConnectionResetError):
            reply = b""
        finally:
            self._busy = False
        if len(reply) != _REPLY_BYTES:
            raise OSError(errno.EIO, "the fsync helper process is gone")
        code = int.from_bytes(reply, "little")
        if code:
            raise OSError(code, os.strerror(code))

    def close(self) -> None:
        self._socket.close()


def stop_helper() -> None:
    """Stop the helper process now (it restarts on next use); for tests and clean exits."""
    _helper.stop()

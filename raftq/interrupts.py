"""How raftq's programs stop on SIGINT (Ctrl-C), whatever their parent did to it."""

from __future__ import annotations

import signal


def honour_sigint() -> None:
    """Make SIGINT stop this program even if it was started with SIGINT ignored.

    POSIX shells start a background job (``command &``) with SIGINT ignored when job control
    is off, as in every script, and that is inherited through exec; Python and Trio then
    leave SIGINT ignored, so Ctrl-C and ``kill -INT`` were silently lost (``raftq demo`` ran
    on to its end). CONTRACT.md promises that SIGINT stops a node, and the demo that Ctrl-C
    stops it and every node it started: the programs take SIGINT back before anything else."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def interrupted(error: BaseException) -> bool:
    """Whether ``error`` is a ``KeyboardInterrupt``, or an exception group holding one (Trio
    wraps what leaves a nursery)."""
    if isinstance(error, BaseExceptionGroup):
        return any(interrupted(inner) for inner in error.exceptions)
    return isinstance(error, KeyboardInterrupt)

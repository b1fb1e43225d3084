"""Ctrl-C and SIGTERM during a batch run: the run stops with one line that says what the
output folder holds, and never in the middle of publishing.

A scheduler stops a job with SIGTERM (exit status 143, 128 + the signal's number), a person
with Ctrl-C (130). Before publishing, the run's staging folder is discarded and the previous
run's files stay as they were; a signal that arrives while the run publishes (a fraction of
a second) waits until the new files are in place, so the folder is never left for the next
run to recover unless the process is killed outright (SIGKILL; see pipeline/output_folder.py).
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(BaseException):
    """The run was stopped by `signum`; `published` when its files were published first.
    A BaseException, as KeyboardInterrupt is: no `except Exception` of a step swallows it."""

    def __init__(self, signum: int, published: bool = False):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum
        self.published = published

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


_received: list[int] = []  # the signals stopping_on_signals' handler has received


def _raise_stopped(signum: int, frame: Any) -> None:
    _received.append(signum)
    raise Stopped(signum)


def reraise_if_stopped(error: BaseException) -> None:
    """Stopped for an error that a signal caused: the runner wraps what a step raises (the
    in-process FnApiRunner runs steps in the main thread, where the handler raises)."""
    if _received and not isinstance(error, Stopped):
        raise Stopped(_received[0]) from error


@contextmanager
def stopping_on_signals() -> Iterator[None]:
    """Within the block, Ctrl-C and SIGTERM raise Stopped in the main thread (elsewhere
    signals cannot be handled, and the defaults stay); the previous handlers come back
    after it, so a caller in the same process (a test, a notebook) keeps its own."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    previous = {signum: signal.signal(signum, _raise_stopped) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block has finished; then the first of them stops
    the run (Stopped, with `published`)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    previous = {signum: signal.signal(signum, lambda s, f: arrived.append(s))
                for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if arrived:
        raise Stopped(arrived[0], published=True)

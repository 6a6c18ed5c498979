"""Ending an audit early: SIGTERM and Ctrl-C set an event the audit's workers watch, so
the audit returns promptly with what it has (a partial report); and its progress reports.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

__all__ = ["AuditProgress", "stop_on_signals"]


@dataclass(frozen=True)
class AuditProgress:
    """How far the audit is: `phase` (``callers`` or ``claims``), callers `done` of
    `total`, and the HTTP `requests` made so far.
    """

    phase: str
    done: int
    total: int
    requests: int


@contextmanager
def stop_on_signals(enabled: bool | None = None) -> Iterator[asyncio.Event]:
    """An event set by SIGTERM or SIGINT while the block runs (on the running loop); the
    previous handlers come back on exit. `enabled` None: only in the main thread, where
    signal handlers can be installed.
    """
    stop = asyncio.Event()
    if enabled is None:
        enabled = threading.current_thread() is threading.main_thread()
    loop = asyncio.get_running_loop()
    installed: dict[signal.Signals, Any] = {}
    if enabled:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with suppress(NotImplementedError, RuntimeError, ValueError):
                previous = signal.getsignal(sig)
                loop.add_signal_handler(sig, stop.set)
                installed[sig] = previous
    try:
        yield stop
    finally:
        for sig, previous in installed.items():
            loop.remove_signal_handler(sig)
            with suppress(TypeError, ValueError):
                signal.signal(sig, previous)

"""Waiting for background work in tests: on a condition, with a generous limit.

A test that waits for a thread, a task or a process polls the condition it needs. The limit
only turns a hang into a failure; it is not a speed requirement, so it is generous.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["HANG_S", "until"]

#: How long a wait may take before it counts as a hang.
HANG_S = 60.0
_POLL_S = 0.005


async def until(condition: Callable[[], object], what: str, *, limit_s: float = HANG_S) -> None:
    """Return once `condition()` is true, letting the event loop run meanwhile.

    Fails the test, naming `what` was awaited, if it is still false after `limit_s`.
    """
    deadline = time.monotonic() + limit_s
    # One bare turn of the loop first: a task just scheduled has then taken its first step.
    await asyncio.sleep(0)
    while not condition():
        assert time.monotonic() < deadline, f"still waiting after {limit_s:.0f} s for {what}"
        await asyncio.sleep(_POLL_S)

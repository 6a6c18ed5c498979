"""What every panel model shares: a status line, and coroutines run on the kernel's loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Final, Literal, TypeVar

from traitlets import Bool, Float, HasTraits, Instance, Unicode, validate

from ..bootstrap import UserSession
from ..errors import SessionEndedError
from ..staleness import DEFAULT_STALE_AFTER

__all__ = ["CANCELLED_TEXT", "LongWorkModel", "PanelModel", "Tone", "elapsed_words"]

__io__ = "ui"

#: How cancelled work ends, in every panel: reads only, or an all-or-nothing write undone.
CANCELLED_TEXT: Final = "cancelled; the cache is as it was"


def elapsed_words(seconds: float) -> str:
    """A running duration: ``"4 s"``, ``"1 min 05 s"``."""
    whole = int(seconds)
    return f"{whole} s" if whole < 60 else f"{whole // 60} min {whole % 60:02d} s"


_log = logging.getLogger("contactsync_kit.widgets")

T = TypeVar("T")

#: How a status line reads: neutral, working, fine, needs attention, failed.
Tone = Literal["info", "busy", "ok", "warn", "error"]
TONES: Final = ("info", "busy", "ok", "warn", "error")


class PanelModel(HasTraits):
    """State shared by every panel model: the session, a status line and pending work.

    Click handlers must return at once, so they `schedule` coroutines on the running event
    loop (the kernel's, in Jupyter) instead of awaiting them; the model keeps a reference to
    every task until it is done (a task nobody references can be garbage-collected mid-run).
    Code that prefers to await — notebooks, tests — calls the model's coroutines directly, or
    awaits `wait()` after a click.
    """

    session = Instance(UserSession, allow_none=True, help="The signed-in user's session.")
    status = Unicode("", help="One line for people: what happened last, or what to do.")
    tone = Unicode("info", help="How the status reads: info, busy, ok, warn or error.")
    busy = Bool(False, help="True while this panel waits on the server or the cache.")

    def __init__(self, **kwargs: Any) -> None:
        # Before the traits are set: an observer fired by a constructor argument may schedule.
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_task: asyncio.Task[Any] | None = None
        #: Called when an action finds the session ended (signed out in another window,
        #: another person's sign-in): the console turns it into its signed-out state.
        self.on_session_ended: Callable[[str], object] | None = None
        super().__init__(**kwargs)

    def session_ended(self, message: str) -> None:
        """The session no longer holds the cache (`message` says why, one sentence): say so,
        and let the console turn to its signed-out state.
        """
        self.busy = False
        self.say("warn", f"Signed out: {message.rstrip('.')}.")
        if self.on_session_ended is not None:
            self.on_session_ended(message)

    @contextlib.contextmanager
    def busy_saying(self, text: str) -> Iterator[None]:
        """Busy while the block runs, saying `text` (the block says how it ended)."""
        self.busy = True
        self.say("busy", text)
        try:
            yield
        finally:
            self.busy = False

    def say(self, tone: Tone, text: str) -> None:
        """Set the status line."""
        if tone not in TONES:
            raise ValueError(f"unknown tone {tone!r}")
        # Tone first: a view that re-renders on `status` then already sees the right colour.
        self.tone = tone
        self.status = text

    def schedule(self, work: Coroutine[Any, Any, T], *, what: str) -> asyncio.Task[T | None]:
        """Run `work` on the running loop without waiting for it; return the task.

        An unexpected exception ends up in the status line (``what`` names the action), never
        as a traceback in the notebook.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # A click handler called outside a coroutine (e.g. from a kernel's comm handler on
            # an older ipykernel): the kernel's loop is still the thread's current loop.
            loop = asyncio.get_event_loop()
        task = loop.create_task(self._guarded(work, what))
        self._tasks.add(task)
        self._last_task = task
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def pending(self) -> asyncio.Task[Any] | None:
        """The most recently scheduled task, while it is still running."""
        task = self._last_task
        return task if task is not None and not task.done() else None

    @property
    def has_pending(self) -> bool:
        """True while any task this model scheduled is unfinished."""
        return bool(self._tasks)

    async def wait(self) -> None:
        """Return when every task this model scheduled (and any they scheduled) is done."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _guarded(self, work: Coroutine[Any, Any, T], what: str) -> T | None:
        try:
            return await work
        except asyncio.CancelledError:
            raise
        except SessionEndedError as exc:
            self.session_ended(exc.message)
            return None
        except Exception as exc:
            _log.exception("%s failed", what)
            self.busy = False
            # People reading this have no kernel log: say what to do, and keep the raw
            # error for the developers, after the advice.
            self.say(
                "error",
                f"{what} did not work, for a reason the console did not "
                "expect. Try again; if it happens again, export the support bundle and "
                f"send it to the developers. (Technical: {type(exc).__name__}: {exc})",
            )
            return None


class ThresholdModel(PanelModel):
    """A panel model with a staleness threshold people type in, in hours."""

    threshold_hours = Float(
        DEFAULT_STALE_AFTER.total_seconds() / 3600,
        help="A cache older than this many hours is stale.",
    )

    @validate("threshold_hours")
    def _valid_threshold(self, proposal: dict[str, Any]) -> float:
        value = float(proposal["value"])
        if value > 0:
            return value
        # Kept, not raised: a typo in the threshold box must not become a traceback.
        self.say(
            "error", f"The threshold must be more than 0 hours; kept {self.threshold_hours:g} h."
        )
        return float(self.threshold_hours)


class LongWorkModel(PanelModel):
    """A panel model whose work can take long: elapsed time while it runs, and Cancel.

    Work runs inside ``async with self.working():``; `elapsed` ticks every second meanwhile,
    and `cancel()` cancels the task doing it (which then ends with `CANCELLED_TEXT`).
    """

    elapsed = Unicode("", help="How long the running work has taken so far, in words.")
    working = Bool(False, help="True while long work runs (Cancel is offered).")

    def __init__(self, **kwargs: Any) -> None:
        self._work: asyncio.Task[Any] | None = None
        super().__init__(**kwargs)

    @contextlib.asynccontextmanager
    async def working_on(self) -> AsyncIterator[None]:
        """Mark long work as running in the current task, with a ticking `elapsed`."""
        done = asyncio.Event()
        self._work = asyncio.current_task()
        self.elapsed = elapsed_words(0)
        self.working = True
        ticker = asyncio.ensure_future(self._tick(done))
        try:
            yield
        finally:
            done.set()
            await asyncio.wait([ticker])
            self.working = False
            self._work = None

    async def _tick(self, done: asyncio.Event) -> None:
        start = time.monotonic()
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=1.0)
            self.elapsed = elapsed_words(time.monotonic() - start)

    def cancel_work(self) -> bool:
        """Cancel the running work; True when there was some."""
        work = self._work
        if work is None or work.done():
            return False
        work.cancel()
        return True

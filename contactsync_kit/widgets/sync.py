"""Sync panel: one button, a progress bar, and a timing readout after each run."""

from __future__ import annotations

import asyncio
from typing import Any, Final

import ipywidgets as ipw
from traitlets import Bool, Float, Instance, Unicode, Union, observe

from ..advice import advise
from ..repository import SyncProgress
from ..results import SyncError, SyncErrorKind, SyncFailure, SyncResult, SyncSuccess
from . import _view
from ._base import CANCELLED_TEXT, LongWorkModel
from ._panel import Panel, button, cancel_controls, side_by_side
from .connection import ServerStatusModel, is_outage
from .sync_words import describe_result, result_details
from .table_words import NOUNS, PLURALS, ROOT

__all__ = ["SyncModel", "SyncPanel", "describe_result", "result_details"]

__io__ = "ui"

# The bar's split: fetching pages is most of a sync, writing the tables the rest.
_FETCH_SHARE: Final = 0.8


class SyncModel(LongWorkModel):
    """Runs a sync of the picked organisation and keeps its progress and last result.

    `run()` awaits a sync; `request()` (the button's path) starts one without waiting.
    Only one sync runs at a time: asking again while one runs sets `notice` to "already in
    progress" and starts nothing (the repository is also asked with ``on_concurrent="reject"``
    so a sync started elsewhere is not joined silently).
    """

    organisation_id = Unicode(None, allow_none=True)
    organisation_name = Unicode("")
    running = Bool(False, help="True while a sync started here runs.")
    progress = Float(0.0, help="0 to 1: pages received, then tables written.")
    progress_text = Unicode("")
    result = Union(
        [Instance(SyncSuccess), Instance(SyncFailure)],
        allow_none=True,
        help="The last finished sync's result.",
    )
    readout = Unicode("", help="The last result in words: counts and timings, or the failure.")
    notice = Unicode("", help="A passing remark, e.g. that a sync is already in progress.")

    def __init__(self, *, server: ServerStatusModel | None = None, **kwargs: Any) -> None:
        self.server = server
        super().__init__(**kwargs)
        self._explain()

    @observe("session", "organisation_id")
    def _explain(self, _change: object = None) -> None:
        if self.running:
            return
        if self.session is None:
            self.say("info", "Sign in and pick an organisation to sync.")
        elif not self.organisation_id:
            self.say("info", "Pick an organisation to sync.")
        else:
            self.say(
                "info",
                f"Ready. Sync makes the cached copy equal to every {NOUNS} you may see in "
                "this organisation: the first time it fetches everything, after that only "
                "what changed, and then it checks the copy against the server.",
            )

    @observe("session", "organisation_id")
    def _forget_on_change(self, _change: object) -> None:
        # Another person or organisation: the last result is not about what is shown now.
        if not self.running:
            self.forget()

    def forget(self) -> None:
        """Drop the last result, notice and progress (after a clear, sign-out or new pick)."""
        with self.hold_trait_notifications():
            self._reset("")
            self._explain()

    def _reset(self, progress_text: str) -> None:
        self.result = None
        self.readout = self.notice = ""
        self.progress = 0.0
        self.progress_text = progress_text

    def request(self) -> None:
        """Start a sync without waiting (the button's path); no-op with a notice if one runs."""
        if self.running:
            self._already_running()
            return
        if not self._startable():
            return
        self.running = True
        self.schedule(self._run(), what="Sync")

    async def run(self) -> SyncResult | None:
        """Sync the picked organisation and return the result (None when nothing to sync).

        While a sync started here runs, returns a `SyncFailure` of kind ``in_progress`` at
        once and sets `notice` instead of starting another.
        """
        if self.running:
            return self._already_running()
        if not self._startable():
            return None
        self.running = True
        return await self._run()

    def _startable(self) -> bool:
        if self.session is None:
            self.say("error", "Sign in first.")
            return False
        if not self.organisation_id:
            self.say("error", "Pick an organisation first.")
            return False
        return True

    def _already_running(self) -> SyncFailure:
        name = self.organisation_name or "this organisation"
        self.notice = (
            f"A sync of {name} is already in progress, so no second one was "
            "started. Wait for it to finish."
        )
        return SyncFailure(
            organisation_id=self.organisation_id or "",
            error=SyncError(
                SyncErrorKind.IN_PROGRESS, "a sync for this organisation is already running"
            ),
        )

    async def _run(self) -> SyncResult | None:
        # `running` is already set by the caller, synchronously, so a second click made before
        # this coroutine starts still sees it.
        session, org = self.session, self.organisation_id
        if session is None or not org:
            self.running = False
            return None
        with self.hold_trait_notifications():
            # A new attempt: the last one's result (say, an old 401) must not stay on screen.
            self._reset("Asking the server…")
            self.say("busy", f"Syncing {self.organisation_name or org}…")
        try:
            # Inside: a cache that ended meanwhile (signed out in another tab) raises here.
            before = await asyncio.to_thread(session.cache.last_synced_at, org)
            async with self.working_on():
                result = await session.repository.sync_contacts_for_organisation(
                    org, on_concurrent="reject", progress=self._on_progress
                )
        except BaseException:
            self.running = False
            raise
        if session is not self.session:
            # Signed out meanwhile (which cancels the sync): the panel was already reset.
            self.running = False
            return result
        cancelled = result.error is not None and result.error.kind is SyncErrorKind.CANCELLED
        committed = (
            cancelled and await asyncio.to_thread(session.cache.last_synced_at, org) != before
        )
        # Held: views re-render once per change, and must never show half an update.
        with self.hold_trait_notifications():
            self.running = False
            self._finished(result, committed=committed)
        return result

    def _finished(self, result: SyncResult, *, committed: bool) -> None:
        """Show a finished sync; `committed`: a cancelled one had written before Cancel."""
        name, error = self.organisation_name or self.organisation_id or "", result.error
        if error is not None and error.kind is SyncErrorKind.IN_PROGRESS:
            # Started elsewhere (another cell or panel): that run reports its own result.
            self._already_running()
            self.progress_text = ""
            self._explain()
            return
        if error is not None and error.kind is SyncErrorKind.SIGNED_OUT:
            self.progress_text = ""
            self.session_ended(error.message)
            return
        if error is not None and error.kind is SyncErrorKind.CANCELLED:
            self.progress, self.progress_text = 0.0, ""
            self.result = result
            self.readout = describe_result(result, self.organisation_name)
            if committed:
                self.say(
                    "ok",
                    f"Cancel came too late: the sync of {name} had already written the new copy.",
                )
            else:
                self.say("info", f"The sync of {name} was {CANCELLED_TEXT}.")
            return
        if self.server is not None:
            if is_outage(error):
                self.server.failed(error.message if error else "")
            else:
                self.server.answered()
        self.progress = 1.0 if error is None else 0.0
        self.progress_text = "Done" if result.ok else "Did not work"
        self.readout = describe_result(result, self.organisation_name)
        self.result = result
        self.notice = ""  # "already in progress" was about this run, which is over
        self._say_outcome(result, name)

    def _say_outcome(self, result: SyncResult, name: str) -> None:
        error, many = result.error, ROOT.plural
        if is_outage(error):
            self.progress_text = "No answer"
            self.say(
                "warn",
                f"The server does not answer, so {name} was not synced. This "
                "computer's copy is kept as it was.",
            )
        elif error is None:
            how = " (only changes)" if result.mode == "delta" else ""
            proof = ", verified ✓" if result.verified else ", not verified"
            if result.items_synced == 0:
                self.say("ok", f"Synced {name}: 0 {many} (the server shows you none){proof}.")
            else:
                self.say("ok", f"Synced {result.items_synced:,} {many} of {name}{how}{proof}.")
        else:
            advice = advise(error.kind, error.code, error.status).sentence
            self.say("error", f"The sync of {name} did not work. {advice}")

    def cancel(self) -> bool:
        """Cancel the sync started here; it ends "cancelled; the cache is as it was".

        True when a sync was running. The repository drops its all-or-nothing write, so the
        cache keeps its previous content.
        """
        session, org = self.session, self.organisation_id
        if not self.running or session is None or not org:
            return False
        self.progress_text = "Cancelling…"
        if session.repository.cancel_sync(org):
            return True
        return self.cancel_work()

    def _on_progress(self, report: SyncProgress) -> None:
        if report.stage == "fetch":
            expected = report.contacts_expected
            share = report.contacts_received / expected if expected else 1.0
            self.progress = _FETCH_SHARE * min(share, 1.0)
            of = f" of {expected:,}" if expected is not None else ""
            self.progress_text = (
                f"Fetching: page {report.pages}, {report.contacts_received:,}{of} {ROOT.plural}"
            )
        else:
            share = report.tables_written / report.tables_total if report.tables_total else 1.0
            self.progress = _FETCH_SHARE + (1 - _FETCH_SHARE) * min(share, 1.0)
            self.progress_text = (
                f"Writing the cache: {report.table} "
                f"({report.tables_written} of {report.tables_total} tables)"
            )


class SyncPanel(Panel[SyncModel]):
    """The view of a `SyncModel`: Sync button, progress bar, readout."""

    title = "Sync"
    help_text = (
        f"Copies the organisation's {PLURALS} into the local cache. All or nothing: a "
        "failed sync leaves the cache as it was."
    )
    watched = (
        "organisation_id",
        "running",
        "progress",
        "progress_text",
        "result",
        "notice",
        "elapsed",
        "working",
    )

    def build(self) -> list[Any]:
        """Sync now / Cancel, the progress bar, the notice and the readout."""
        model = self.model
        fetch = f"Fetch and cache this organisation's {PLURALS}"
        self.sync_button = button(
            "Sync now", "csk-sync", model.request, "refresh", fetch, "primary"
        )
        self.cancel_button, self.elapsed = cancel_controls(
            model.cancel, "csk-sync", "the sync; the cache stays as it was"
        )
        self.bar = ipw.FloatProgress(value=0.0, min=0.0, max=1.0, layout=ipw.Layout(width="22em"))
        self.bar_text = ipw.HTML()
        self.notice = ipw.HTML()
        self.readout = _view.tag(ipw.HTML(), "csk-readout")
        return [
            side_by_side(self.sync_button, self.cancel_button, self.bar, self.elapsed),
            self.bar_text,
            self.notice,
            self.status,
            self.readout,
        ]

    def render(self) -> None:
        """Show the button's state, the progress and the last result."""
        model = self.model
        self.sync_button.disabled = (
            model.running or model.session is None or not model.organisation_id
        )
        self.cancel_button.layout.display = "" if model.running else "none"
        self.elapsed.value = (
            f'<span class="csk-help">&nbsp;{_view.esc(model.elapsed)}</span>'
            if model.running
            else ""
        )
        self.sync_button.description = "Syncing…" if model.running else "Sync now"
        self.bar.value = model.progress
        result = model.result
        self.bar.bar_style = (
            "info" if model.running or result is None else "success" if result.ok else "danger"
        )
        self.bar_text.value = f'<span class="csk-help">{_view.esc(model.progress_text)}</span>'
        self.notice.value = _view.status_html("warn", model.notice)
        self.readout.value = _readout_html(result, model.organisation_name) if result else ""


def _readout_html(result: SyncResult, name: str) -> str:
    sentence = describe_result(result, name)
    error = result.error
    pill = (
        _view.pill("ok", "synced")
        if error is None
        else _view.pill("info", "cancelled")
        if error.kind is SyncErrorKind.CANCELLED
        else _view.pill("warn", "server silent")
        if is_outage(error)
        else _view.pill("error", "did not work")
    )
    details = [(label, _view.esc(value)) for label, value in result_details(result)]
    split = _split_bar(result)
    if split:
        details.append(("", split))
    return f"<div>{pill} {_view.esc(sentence)}</div>" + _view.details_html(details)


def _split_bar(result: SyncResult) -> str:
    t = result.timings
    total = t.fetch_ms + t.map_ms + t.write_ms
    if total <= 0:
        return ""
    segments = "".join(
        f'<div title="{label} {value} ms" style="width:{100 * value / total:.1f}%;'
        f'background:{colour};height:8px"></div>'
        for label, value, colour in (
            ("fetch", t.fetch_ms, "#1d4ed8"),
            ("map", t.map_ms, "#9a6700"),
            ("write", t.write_ms, "#1a7f37"),
        )
        if value > 0
    )
    return (
        f'<div style="display:flex;width:16em;margin-top:3px;border-radius:3px;'
        f'overflow:hidden">{segments}</div>'
    )

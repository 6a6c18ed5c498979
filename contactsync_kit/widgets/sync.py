"""Sync panel: one button, a progress bar, and a timing readout after each run."""

from __future__ import annotations

from typing import Any, Final

import ipywidgets as ipw
from traitlets import Bool, Float, Instance, Unicode, Union, observe

from ..advice import advise
from ..repository import SyncProgress
from ..results import SyncError, SyncErrorKind, SyncFailure, SyncResult, SyncSuccess
from . import _view
from ._base import PanelModel

__all__ = ["SyncModel", "SyncPanel", "describe_result"]

# The bar's split: fetching pages is most of a sync, writing the three tables the rest.
_FETCH_SHARE: Final = 0.8


def describe_result(result: SyncResult, organisation_name: str = "") -> str:
    """One plain-text paragraph about a sync result: counts, timings, or the failure."""
    t = result.timings
    timing = (f"Took {result.duration_ms:,} ms in total (fetch {t.fetch_ms:,} ms · "
              f"map {t.map_ms:,} ms · write {t.write_ms:,} ms).")
    org = f" '{organisation_name}'" if organisation_name else ""
    if result.error is None:
        pages = f"{result.pages} page{'' if result.pages == 1 else 's'}"
        return (f"Synced{org}: {result.items_synced:,} contacts, {result.notes_synced:,} notes, "
                f"{result.assignments_synced:,} assignments ({pages}). {timing}")
    error = result.error
    code = f" [{error.code}]" if error.code else ""
    return (f"Sync{org} failed — {error.kind.value}{code}: {error.message}. Nothing was "
            f"written; the cache keeps its previous content. {timing}")


class SyncModel(PanelModel):
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
    result = Union([Instance(SyncSuccess), Instance(SyncFailure)], allow_none=True,
                   help="The last finished sync's result.")
    readout = Unicode("", help="The last result in words: counts and timings, or the failure.")
    notice = Unicode("", help="A passing remark, e.g. that a sync is already in progress.")

    def __init__(self, **kwargs: Any) -> None:
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
            self.say("info", "Ready. Sync fetches every contact, note and assignment you may "
                     "see in this organisation and replaces the cached copy.")

    @observe("session")
    def _forget(self, change: dict[str, Any]) -> None:
        if change["new"] is None:
            self.result = None
            self.readout = ""
            self.notice = ""
            self.progress = 0.0
            self.progress_text = ""

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
        self.notice = (f"A sync of {name} is already in progress, so no second one was "
                       "started. Wait for it to finish.")
        return SyncFailure(organisation_id=self.organisation_id or "", error=SyncError(
            SyncErrorKind.IN_PROGRESS, "a sync for this organisation is already running"))

    async def _run(self) -> SyncResult | None:
        # `running` is already set by the caller, synchronously, so a second click made before
        # this coroutine starts still sees it.
        session, org = self.session, self.organisation_id
        if session is None or not org:
            self.running = False
            return None
        name = self.organisation_name or org
        self.notice = ""
        self.progress = 0.0
        self.progress_text = "Asking the server…"
        self.say("busy", f"Syncing {name}…")
        try:
            result = await session.repository.sync_contacts_for_organisation(
                org, on_concurrent="reject", progress=self._on_progress)
        except BaseException:
            self.running = False
            raise
        if session is not self.session:
            # Signed out meanwhile (which cancels the sync): the panel was already reset.
            self.running = False
            return result
        # Held: views re-render once per change, and must never show half an update.
        with self.hold_trait_notifications():
            self.running = False
            if result.error is not None and result.error.kind is SyncErrorKind.IN_PROGRESS:
                # Started elsewhere (another cell or panel): that run reports its own result.
                self._already_running()
                self.progress_text = ""
                self._explain()
                return result
            self.progress = 1.0
            self.progress_text = "Done" if result.ok else "Failed"
            self.readout = describe_result(result, self.organisation_name)
            self.result = result
            if result.error is None:
                self.say("ok", f"Synced {result.items_synced:,} contacts of {name}.")
            else:
                error = result.error
                self.say("error", f"Sync failed ({error.kind.value}). "
                         f"{advise(error.kind, error.code, error.status).sentence}")
        return result

    def _on_progress(self, report: SyncProgress) -> None:
        if report.stage == "fetch":
            expected = report.contacts_expected
            share = report.contacts_received / expected if expected else 1.0
            self.progress = _FETCH_SHARE * min(share, 1.0)
            of = f" of {expected:,}" if expected is not None else ""
            self.progress_text = (f"Fetching: page {report.pages}, "
                                  f"{report.contacts_received:,}{of} contacts")
        else:
            share = report.tables_written / report.tables_total if report.tables_total else 1.0
            self.progress = _FETCH_SHARE + (1 - _FETCH_SHARE) * min(share, 1.0)
            self.progress_text = (f"Writing the cache: {report.table} "
                                  f"({report.tables_written} of {report.tables_total} tables)")


class SyncPanel(ipw.VBox):  # type: ignore[misc]
    """The view of a `SyncModel`: Sync button, progress bar, readout."""

    def __init__(self, model: SyncModel, **kwargs: Any) -> None:
        self.model = model
        self.sync_button = ipw.Button(description="Sync now", button_style="primary",
                                      icon="refresh", tooltip="Fetch and cache this "
                                      "organisation's contacts, notes and assignments")
        self.sync_button.on_click(lambda _: model.request())
        _view.tag(self.sync_button, "csk-sync")
        self.bar = ipw.FloatProgress(value=0.0, min=0.0, max=1.0,
                                     layout=ipw.Layout(width="22em"))
        self.bar_text = ipw.HTML()
        self.notice = ipw.HTML()
        self.status = ipw.HTML()
        self.readout = _view.tag(ipw.HTML(), "csk-readout")
        super().__init__(children=[_view.card(
            "3 · Sync",
            "Copies the organisation's contacts, notes and assignments into the local cache. "
            "All or nothing: a failed sync leaves the cache as it was.",
            ipw.HBox([self.sync_button, self.bar, self.bar_text],
                     layout=ipw.Layout(align_items="center")),
            self.notice, self.status, self.readout)], **kwargs)
        model.observe(self._render, names=["session", "organisation_id", "running", "progress",
                                           "progress_text", "result", "notice", "status",
                                           "tone"])
        self._render()

    def _render(self, _change: object = None) -> None:
        model = self.model
        self.sync_button.disabled = (model.running or model.session is None
                                     or not model.organisation_id)
        self.sync_button.description = "Syncing…" if model.running else "Sync now"
        self.bar.value = model.progress
        result = model.result
        self.bar.bar_style = ("info" if model.running or result is None
                              else "success" if result.ok else "danger")
        self.bar_text.value = f'<span class="csk-help">{_view.esc(model.progress_text)}</span>'
        self.notice.value = _view.status_html("warn", model.notice)
        self.status.value = _view.status_html(model.tone, model.status)
        self.readout.value = _readout_html(result, model.organisation_name) if result else ""


def _readout_html(result: SyncResult, name: str) -> str:
    t = result.timings
    split = (f"fetch {_view.ms(t.fetch_ms)} · map {_view.ms(t.map_ms)} · "
             f"write {_view.ms(t.write_ms)}")
    rows: list[tuple[str, str]] = []
    if result.error is None:
        rows.append(("Result", _view.pill("ok", "success")
                     + (f" &nbsp;{_view.esc(name)}" if name else "")))
        rows.append(("Synced", f"<b>{result.items_synced:,} contacts</b> · "
                     f"{result.notes_synced:,} notes · {result.assignments_synced:,} "
                     f"assignments <span class='csk-help'>({result.pages} "
                     f"page{'' if result.pages == 1 else 's'})</span>"))
    else:
        error = result.error
        code = f" [{error.code}]" if error.code else ""
        rows.append(("Result", _view.pill("error", f"failed: {error.kind.value}")
                     + (f" &nbsp;{_view.esc(name)}" if name else "")))
        rows.append(("Why", _view.esc(f"{error.message}{code}")))
        advice = advise(error.kind, error.code, error.status)
        rows.append(("What to do", _view.esc(advice.sentence)))
        rows.append(("Cache", "unchanged — nothing was written"))
    rows.append(("Total time", f"<b>{result.duration_ms:,} ms</b>"))
    rows.append(("Split", f"{split}{_split_bar(result)}"))
    return _view.facts_html(rows)


def _split_bar(result: SyncResult) -> str:
    t = result.timings
    total = t.fetch_ms + t.map_ms + t.write_ms
    if total <= 0:
        return ""
    segments = "".join(
        f'<div title="{label} {value} ms" style="width:{100 * value / total:.1f}%;'
        f'background:{colour};height:8px"></div>'
        for label, value, colour in (("fetch", t.fetch_ms, "#1d4ed8"),
                                     ("map", t.map_ms, "#9a6700"),
                                     ("write", t.write_ms, "#1a7f37"))
        if value > 0)
    return (f'<div style="display:flex;width:16em;margin-top:3px;border-radius:3px;'
            f'overflow:hidden">{segments}</div>'
            '<span class="csk-help"><span style="color:#1d4ed8">■</span> fetch '
            '<span style="color:#9a6700">■</span> map '
            '<span style="color:#1a7f37">■</span> write</span>')

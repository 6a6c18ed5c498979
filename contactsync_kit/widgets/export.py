"""Export panel: the support bundle as a file the browser downloads.

The bundle is built by `contactsync_kit.diagnostics` (which refuses to write one holding
personal data), read back, and offered as a download link carrying the file itself (a
``data:`` URL), so it works in Voilà, JupyterLab and a notebook alike and nothing is left on
the server's disk.
"""

from __future__ import annotations

import asyncio
import base64
import json
import tempfile
from pathlib import Path
from typing import Any

import ipywidgets as ipw
from traitlets import Instance, Unicode, observe

from ..bootstrap import UserSession
from ..diagnostics import Diagnosis, write_support_bundle
from . import _view
from ._base import PanelModel
from ._panel import Panel, button, scheduled
from .diagnostics_model import DiagnosticsModel

__all__ = ["ExportModel", "ExportPanel", "bundle_text"]

__io__ = "ui, disk"


def bundle_text(diagnosis: Diagnosis, session: UserSession) -> tuple[str, str]:
    """(file name, JSON text) of the support bundle for `diagnosis` (blocking: use a thread).

    Written through `write_support_bundle`, so its personal-data check applies, into a
    temporary folder that is removed again.
    """
    with tempfile.TemporaryDirectory(prefix="contactsync-bundle-") as folder:
        written = write_support_bundle(diagnosis, session.cache, folder)
        return written.name, written.read_text(encoding="utf-8")


class ExportModel(PanelModel):
    """Prepares the support bundle for download; `href` is its ``data:`` URL once ready.

    Uses the diagnostics model's last diagnosis, diagnosing first when there is none.
    """

    diagnostics = Instance(DiagnosticsModel)
    file_name = Unicode("", help="The bundle's file name, once prepared.")
    href = Unicode("", help="The bundle as a data: URL, once prepared.")
    contents = Unicode("", help="What the prepared bundle holds, in words.")

    def __init__(self, *, diagnostics: DiagnosticsModel, **kwargs: Any) -> None:
        super().__init__(diagnostics=diagnostics, **kwargs)
        self.say("info", "Sign in first.")

    @observe("session")
    def _on_session(self, _change: object) -> None:
        self.forget()

    def forget(self) -> None:
        """Drop the prepared bundle (it described a state that is gone)."""
        with self.hold_trait_notifications():
            self.file_name = self.href = self.contents = ""
            if self.session is None:
                self.say("info", "Sign in first.")
            else:
                self.say(
                    "info",
                    "Press Prepare to build the support bundle: what was found, "
                    "the sync history, versions and settings, without personal data.",
                )

    async def prepare(self) -> Path | None:
        """Build the bundle and offer it; returns its file name as a path (None on failure)."""
        session = self.session
        if session is None:
            self.say("error", "Sign in first.")
            return None
        with self.busy_saying("Building the support bundle…"):
            diagnosis = self.diagnostics.diagnosis or await self.diagnostics.diagnose()
            if diagnosis is None or session is not self.session:
                self.forget()
                return None
            try:
                name, text = await asyncio.to_thread(bundle_text, diagnosis, session)
            except ValueError as exc:
                self.say(
                    "error",
                    f"The bundle was not made: {exc}. Send the developers a "
                    "description of the problem instead.",
                )
                return None
        bundle = json.loads(text)
        encoded = base64.b64encode(text.encode("utf-8")).decode("ascii")
        with self.hold_trait_notifications():
            self.file_name = name
            self.href = f"data:application/json;base64,{encoded}"
            self.contents = (
                f"{len(bundle.get('diagnosis', {}).get('organisations', []))} organisation(s) "
                f"diagnosed, {len(bundle.get('sync_log', []))} sync attempt(s), versions and "
                "settings. No names, phone numbers, emails, addresses or notes."
            )
            self.say(
                "ok",
                f"The support bundle is ready: {name}. Download it and attach it "
                "to the support ticket.",
            )
        return Path(name)


_PREPARE_TIP = "Diagnose if needed, then build the support bundle"


class ExportPanel(Panel[ExportModel]):
    """The view of an `ExportModel`: Prepare, then a download link."""

    title = "Export for support"
    help_text = (
        "A file for the support ticket: what the diagnosis found and the sync history, with "
        "no personal data. It downloads through your browser."
    )
    watched = ("href",)
    status_css = "csk-export-status"

    def build(self) -> list[Any]:
        """Prepare bundle, the status line and the download link."""
        model = self.model
        prepare = scheduled(model, model.prepare, "Building the bundle")
        self.prepare_button = button(
            "Prepare bundle", "csk-prepare", prepare, "file", _PREPARE_TIP, "primary"
        )
        self.link = _view.tag(ipw.HTML(), "csk-bundle-link")
        return [self.prepare_button, self.status, self.link]

    def render(self) -> None:
        """Enable Prepare; show the link once the bundle is ready."""
        model = self.model
        self.prepare_button.disabled = model.session is None or model.busy
        self.link.value = (
            f'<a class="csk-download" download="{_view.esc(model.file_name)}" '
            f'href="{model.href}"><i class="fa fa-download" aria-hidden="true"></i> '
            f"Download {_view.esc(model.file_name)}</a>"
            f'<div class="csk-help">{_view.esc(model.contents)}</div>'
            if model.href
            else ""
        )

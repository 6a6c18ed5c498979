"""The diagnostics step's model: runs `contactsync_kit.diagnostics` and holds its result.

Drive it without clicks: ``await model.diagnose()``, ``await model.export_bundle()``; the
view is `diagnostics_panel.DiagnosticsPanel`.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import polars as pl
from traitlets import List, Unicode, observe

from ..advice import ACCESS_REVOKED, ADVICE, TOKEN_EXPIRED, UNKNOWN_FAILURE
from ..bootstrap import UserSession
from ..clock import Clock
from ..diagnostics import (
    Diagnosis,
    ServerReader,
    diagnose,
    differing_rows,
    write_support_bundle,
)
from ..remote import RemoteFailure, RemoteReader
from ..schemas import DATA_TABLES, ROOT_TABLE
from ..staleness import format_age
from ._base import CANCELLED_TEXT, LongWorkModel, ThresholdModel, Tone
from .connection import Prober, ServerStatusModel, probe_server
from .table_words import ROOT, label_column, table_counts

__all__ = ["CAUSE_WORDS", "PLAIN_VERDICTS", "VERDICT_TONES", "DiagnosticsModel"]

__io__ = "ui, disk"

#: How each verdict reads in the panel.
VERDICT_TONES: Final = {
    "fresh": "ok",
    "stale": "warn",
    "drifted": "warn",
    "failing": "error",
    "never_synced": "info",
    "unreachable": "warn",
}

#: Each verdict in the words the panel shows (the verdict codes stay in the details).
PLAIN_VERDICTS: Final = {
    "fresh": "up to date",
    "stale": "out of date",
    "drifted": "drifted: the server changed since the last sync",
    "failing": "not syncing: the last attempt did not work",
    "never_synced": "never synced on this computer",
    "unreachable": "server silent: showing this computer's copy",
}

#: Every cause code a diagnosis gives, in words (the code itself stays in the details).
CAUSE_WORDS: Final = {
    **{advice.cause: advice.problem for advice in ADVICE.values()},
    TOKEN_EXPIRED.cause: TOKEN_EXPIRED.problem,
    ACCESS_REVOKED.cause: ACCESS_REVOKED.problem,
    UNKNOWN_FAILURE.cause: UNKNOWN_FAILURE.problem,
    "server_unreachable": "the server does not answer",
    "not_a_member": "the server does not show this user the organisation",
    "never_synced": "never synced on this computer",
    "server_changed": "the server changed since the last sync",
    "older_than_threshold": "the last sync is older than the threshold",
    "up_to_date": "synced within the threshold",
}

#: Rows of the differing-rows list shown at once; the rest are counted.
ROWS_SHOWN: Final = 30

#: Reads the organisations a session may see, as rows with ``id`` and ``name``.
Lister = Callable[[UserSession], Awaitable[list[dict[str, Any]]]]

#: Called with row ids to show in Cached data (the console opens that step).
RowShower = Callable[[list[str], str], object]


#: How a row can differ from the server (the diagnosis's count columns).
_DIFF_KINDS: Final = ("missing_locally", "gone_from_server", "newer_on_server")


def _table_facts(
    result: Diagnosis,
) -> tuple[dict[str, dict[str, tuple[int, int | None]]], dict[str, dict[str, dict[str, int]]]]:
    """Per organisation and table: (cached, on the server) rows, and the differences."""
    per_table: dict[str, dict[str, tuple[int, int | None]]] = {}
    diffs: dict[str, dict[str, dict[str, int]]] = {}
    for t in result.tables.iter_rows(named=True):
        org, name = t["organisation_id"], t["table"]
        per_table.setdefault(org, {})[name] = (t["local_rows"], t["server_rows"])
        diffs.setdefault(org, {})[name] = {k: int(t[k] or 0) for k in _DIFF_KINDS}
    return per_table, diffs


async def _list_organisations(session: UserSession) -> list[dict[str, Any]]:
    return await RemoteReader(session.client).rows("organisations", "id, name")


async def _server_names(session: UserSession, contact_ids: list[str]) -> dict[str, str]:
    """The names the server shows now for `contact_ids` (at most 100; empty on failure)."""
    if not contact_ids:
        return {}
    with contextlib.suppress(RemoteFailure):
        key, label = ROOT.key, label_column(ROOT) or ROOT.key
        rows = await RemoteReader(session.client).rows(
            ROOT_TABLE, f"{key}, {label}", [(key, "in", f"({','.join(contact_ids[:100])})")]
        )
        return {str(r[key]): str(r.get(label) or "") for r in rows}
    return {}


class DiagnosticsModel(LongWorkModel, ThresholdModel):
    """State and actions of the diagnostics panel.

    `organisation_id` None diagnoses every organisation (cached, logged or a membership);
    `rows` is one dict per organisation for the view (label, verdict, cause in words,
    summary, action, age, counts per table); `differing` one dict per row that differs
    (table, id, contact name, difference in words); `diagnosis` the last `Diagnosis`;
    `bundle_path` the last bundle written. `reader` replaces the server reader (tests).

    The server is first asked one cheap question with a short timeout (`prober`): when it
    does not answer, the diagnosis says so within seconds and is made from the cache alone
    (verdict ``unreachable``), never blamed on a sync. Diagnosing can be cancelled.
    """

    organisations: List[tuple[str, str]] = List(help="(name, id) pairs to pick from.")
    organisation_id = Unicode(None, allow_none=True, help="The organisation; None for all.")
    rows: List[dict[str, Any]] = List(help="One dict per diagnosed organisation.")
    differing: List[dict[str, Any]] = List(help="One dict per differing row, named.")
    headline = Unicode("", help="One line over all verdicts.")
    bundle_path = Unicode("", help="Where the last support bundle was written.")

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        bundle_dir: str | Path | None = None,
        reader: ServerReader | None = None,
        lister: Lister | None = None,
        load_on_sign_in: bool = True,
        server: ServerStatusModel | None = None,
        prober: Prober | None = None,
        **kwargs: Any,
    ) -> None:
        self.clock = clock
        self.bundle_dir = Path(bundle_dir) if bundle_dir is not None else None
        self.reader = reader
        self.server = server
        # A given reader is a stand-in server (tests): no probe of the real one then.
        self._prober: Prober | None = prober or (probe_server if reader is None else None)
        self._lister: Lister = lister or _list_organisations
        self.diagnosis: Diagnosis | None = None
        #: What "Show in Cached data" does (the console opens that step filtered).
        self.on_show_rows: RowShower | None = None
        # False inside the console, whose organisation panel already feeds `organisations`.
        self._load_on_sign_in = load_on_sign_in
        super().__init__(**kwargs)
        self.say("info", "Sign in, then press Diagnose.")

    @property
    def names(self) -> dict[str, str]:
        """Organisation id → name."""
        return {str(oid): str(name) for name, oid in self.organisations}

    @observe("session")
    def _on_session(self, change: dict[str, Any]) -> None:
        self.forget()
        if change["new"] is None:
            if self._load_on_sign_in:
                self.organisations = []
            self.say("info", "Sign in, then press Diagnose.")
        elif self._load_on_sign_in:
            self.schedule(self.load_organisations(), what="Loading organisations")
        else:
            self.say("info", "Press Diagnose to compare this computer's copy with the server.")

    def forget(self) -> None:
        """Drop the last diagnosis (after a sync, a clear, or another organisation)."""
        if self.working:
            self.cancel_work()
        with self.hold_trait_notifications():
            self.diagnosis, self.rows, self.headline, self.bundle_path = None, [], "", ""
            self.differing = []
            if self.session is not None:
                self.say("info", "Press Diagnose to compare this computer's copy with the server.")

    async def load_organisations(self) -> list[tuple[str, str]]:
        """Fill the picker with the user's organisations (read through RLS)."""
        session = self.session
        if session is None:
            return []
        try:
            rows = await self._lister(session)
        except RemoteFailure as exc:
            self.say(
                "warn",
                f"Could not list your organisations ({exc.error.kind.value}); "
                "Diagnose still checks every cached organisation.",
            )
            return []
        self.organisations = sorted((str(r.get("name") or r["id"]), str(r["id"])) for r in rows)
        self.say("info", "Pick an organisation (or all), then press Diagnose.")
        return list(self.organisations)

    def request(self) -> None:
        """Start a diagnosis without waiting (the button's path); no-op while one runs."""
        if self.session is None or self.busy:
            return
        self.busy = True  # at once: a second click before the task starts sees it
        self.schedule(self._diagnose(), what="Diagnosing")

    async def diagnose(self) -> Diagnosis | None:
        """Diagnose the picked organisation (or all); returns the `Diagnosis`.

        None when signed out, already running, or cancelled ("cancelled; the cache is as it
        was": a diagnosis only reads).
        """
        if self.session is None:
            self.say(
                "warn",
                "Sign in first: the diagnosis compares the cache with what the server shows you.",
            )
            return None
        if self.busy:
            return self.diagnosis
        self.busy = True
        return await self._diagnose()

    def cancel(self) -> bool:
        """Cancel the running diagnosis; True when one ran."""
        return self.cancel_work()

    async def _diagnose(self) -> Diagnosis | None:
        session = self.session
        if session is None:
            self.busy = False
            return None
        try:
            async with self.working_on():
                problem = await self._probe(session)
                self.say(
                    "busy",
                    "Comparing the cache with the server…"
                    if problem is None
                    else "The server does not answer: reading this computer's copy…",
                )
                result = await diagnose(
                    session,
                    self.organisation_id,
                    clock=self.clock,
                    threshold=timedelta(hours=self.threshold_hours),
                    reader=self.reader,
                    unreachable=problem,
                )
                named = await self._named(session, result, asked=problem is None)
        except asyncio.CancelledError:
            self.busy = False
            self.say("info", f"Diagnosis {CANCELLED_TEXT}.")
            return None
        finally:
            self.busy = False
        if session is not self.session:
            return None
        self.diagnosis = result
        self._show(result, named)
        return result

    async def _probe(self, session: UserSession) -> str | None:
        """Whether the server answers (None: it does), told to the console's server state."""
        if self._prober is None:
            return None
        self.say("busy", "Asking whether the server answers…")
        problem = await self._prober(session)
        if self.server is not None:
            if problem is None:
                self.server.answered()
            else:
                self.server.failed(problem)
        return problem

    async def _named(self, session: UserSession, result: Diagnosis, *, asked: bool) -> pl.DataFrame:
        """The differing rows with names: the cache's, and the server's for root rows."""
        differing_roots = result.differences.filter(
            (pl.col("table") == ROOT_TABLE) & (pl.col("status") != "gone_from_server")
        )
        ids = [str(i) for i in differing_roots.get_column("id").to_list()]
        on_server = await _server_names(session, ids) if asked and self.reader is None else {}
        return await asyncio.to_thread(differing_rows, result, session.cache, on_server)

    def _show(self, result: Diagnosis, named: pl.DataFrame | None = None) -> None:
        per_table, diffs = _table_facts(result)
        rows = [
            self._row(row, per_table.get(row["organisation_id"], {}), diffs)
            for row in result.organisations.iter_rows(named=True)
        ]
        names = self.names
        differing = [
            {
                "organisation": names.get(d["organisation_id"], ""),
                **{key: d[key] for key in ("table", "row", "id", "contact_id", "status")},
                "contact": d["contact"] or "",
                "name_on_server": d["name_on_server"] or "",
                "difference": d["difference"],
            }
            for d in (() if named is None else named.iter_rows(named=True))
        ]
        with self.hold_trait_notifications():
            self.rows = rows
            self.differing = differing
            self._headline(rows, result)

    def _row(
        self,
        row: dict[str, Any],
        counted: dict[str, tuple[int, int | None]],
        diffs: dict[str, dict[str, dict[str, int]]],
    ) -> dict[str, Any]:
        """One diagnosed organisation, for the view."""
        org, age = row["organisation_id"], row["cache_age_hours"]
        known = row["server_checked"] and row["verdict"] != "unreachable"
        counts = {name: counted.get(name) or table_counts(row, name) for name in DATA_TABLES}
        differences = sum(int(row[k] or 0) for k in _DIFF_KINDS)
        return {
            "label": self.names.get(org, f"organisation {org[:8]}"),
            "organisation_id": org,
            "verdict": row["verdict"],
            "cause": row["cause"],
            "cause_words": CAUSE_WORDS.get(row["cause"], row["cause"]),
            "summary": row["summary"],
            "action": row["action"],
            "plain": PLAIN_VERDICTS.get(row["verdict"], row["verdict"]),
            "age": format_age(None if age is None else age * 3600),
            ROOT_TABLE: counts[ROOT_TABLE][0],
            "tables": counts,
            "table_diffs": diffs.get(org, {}),
            "differences": differences if known else None,
        }

    def _headline(self, rows: list[dict[str, Any]], result: Diagnosis) -> None:
        verdicts = [r["verdict"] for r in rows]
        if not rows:
            self.headline = "Nothing to diagnose: no organisation is cached or visible."
            self.say("info", self.headline)
            return
        if len(rows) == 1:
            only = rows[0]
            self.headline = (
                f"{only['label']}: {only['plain']}. What we found: "
                f"{only['summary']}. What to do: {only['action']}."
            )
        else:
            counts = ", ".join(
                f"{verdicts.count(v)} {PLAIN_VERDICTS[v].split(':')[0]}"
                for v in VERDICT_TONES
                if v in verdicts
            )
            self.headline = f"{len(rows)} organisations: {counts}."
        worst: Tone = (
            "error"
            if "failing" in verdicts
            else "warn"
            if {"stale", "drifted", "unreachable"} & set(verdicts)
            else "ok"
        )
        self.say(worst, f"{self.headline} (Checked at {result.generated_at:%H:%M} UTC.)")

    def show_rows(self, ids: list[str], label: str) -> None:
        """Open these rows in Cached data (the console's link from a finding to its rows)."""
        if self.on_show_rows is not None:
            self.on_show_rows(ids, label)

    async def export_bundle(self, path: str | Path | None = None) -> Path | None:
        """Write the support bundle for the last diagnosis (diagnosing first if needed).

        `path` may be a file or a directory; default: `bundle_dir` or the temp directory.
        """
        session = self.session
        if session is None:
            self.say("warn", "Sign in and diagnose first.")
            return None
        result = self.diagnosis or await self.diagnose()
        if result is None:
            return None
        target = (
            Path(path) if path is not None else (self.bundle_dir or Path(tempfile.gettempdir()))
        )
        written = await asyncio.to_thread(write_support_bundle, result, session.cache, target)
        self.bundle_path = str(written)
        self.say(
            "ok",
            f"Support bundle written to {written} (ids, timestamps, counts and "
            "error codes only; no names, phones, emails, addresses or notes).",
        )
        return written

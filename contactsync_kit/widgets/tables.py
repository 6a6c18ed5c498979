"""Tables for people: `present` makes a frame readable; `table` (notebooks) and `rows_html`
(the console's panels) show it.

`present` is a pure frame-to-frame function — organisation names next to their ids, times as
"3 h ago · 2026-11-26 12:52 UTC", hours as ages, headings in words — without cutting any id.
`table` shows the result as an `itables` grid in offline mode whose output starts with a plain
HTML table of the rows, so a notebook exported to HTML reads with no kernel and no network.
`rows_html` is the panels' plain table: the columns support scans, the rest behind each row's
"more", with `csv_link` for the whole frame.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

import polars as pl

from ..staleness import format_age
from . import _view
from .table_words import heading

__all__ = ["StaticTable", "csv_link", "present", "rows_html", "table"]

# `write_csv` here writes into a string (a download link's data: URL), never a file; the
# architecture test counts the call as disk I/O all the same.
__io__ = "disk"

_UTC_TS: Final = pl.Datetime("us", "UTC")
#: Rows a panel's table shows at once.
_STATIC_ROWS: Final = 20


def _human_time(moment: datetime | None, now: datetime) -> str | None:
    if moment is None:
        return None
    seconds = (now - moment).total_seconds()
    when = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if seconds < 0:
        return f"in {format_age(-seconds)} · {when}"
    return f"{format_age(seconds)} ago · {when}"


def present(
    frame: pl.DataFrame, *, names: Mapping[str, str] | None = None, now: datetime | None = None
) -> pl.DataFrame:
    """`frame` as people read it; every value a string, ids whole, column headings in words.

    * next to each ``…organisation_id`` column comes an ``organisation`` column of names
      (from `names`, id → name; an unknown id reads "unknown organisation");
    * datetimes (and ISO strings in ``…_at`` columns) read "3 h ago · 2026-11-26 12:52 UTC",
      relative to `now` (default: the current time);
    * ``…_hours`` floats read as ages ("2 h 5 min");
    * other values are shown as they are, nulls as empty cells.
    """
    now = now or datetime.now(UTC)
    known = dict(names or {})
    columns = [
        shown for name in frame.columns for shown in _readable(frame.get_column(name), known, now)
    ]
    return pl.DataFrame(columns) if columns else pl.DataFrame()


def _readable(series: pl.Series, names: dict[str, str], now: datetime) -> list[pl.Series]:
    """One column as people read it (an organisation id gives two: its name, then itself)."""
    name = series.name
    if name.endswith("_at") and series.dtype == pl.String:
        series = series.str.to_datetime(time_zone="UTC", strict=False)
    if name.endswith("organisation_id"):
        label = "organisation" if name == "organisation_id" else heading(name.removesuffix("_id"))
        named = [None if v is None else names.get(str(v), "unknown organisation") for v in series]
        return [
            pl.Series(label, named, dtype=pl.String),
            series.cast(pl.String).alias(heading(name)),
        ]
    if isinstance(series.dtype, pl.Datetime):
        values = (
            series.cast(_UTC_TS).to_list()
            if series.dtype.time_zone
            else series.dt.replace_time_zone("UTC").to_list()
        )
        return [pl.Series(heading(name), [_human_time(v, now) for v in values], dtype=pl.String)]
    if name.endswith("_hours") and series.dtype.is_numeric():
        ages = [None if v is None else format_age(float(v) * 3600) for v in series.to_list()]
        return [pl.Series(heading(name.removesuffix("_hours")), ages, dtype=pl.String)]
    if series.dtype == pl.Boolean:
        words = series.replace_strict(
            {True: "yes", False: "no"}, default=None, return_dtype=pl.String
        )
        return [words.alias(heading(name))]
    return [series.cast(pl.String).alias(heading(name))]


def _cell(value: object) -> str:
    return _view.esc("" if value is None else value)


def rows_html(
    shown: pl.DataFrame,
    *,
    visible: list[str] | None = None,
    limit: int = _STATIC_ROWS,
    css_class: str = "",
) -> str:
    """A plain HTML table of `shown` (strings, as `present` gives): the `visible` columns,
    and every other column behind each row's "more" disclosure. At most `limit` rows.

    Reads without a kernel or JavaScript (a panel's table, an exported notebook); fits a
    1,280 px screen when `visible` names the few columns people scan.
    """
    columns = [c for c in (visible or shown.columns) if c in shown.columns]
    rest = [c for c in shown.columns if c not in columns]
    rows = []
    for row in shown.head(limit).iter_rows(named=True):
        cells = [_cell(row[c]) for c in columns]
        if rest:
            cells.append(
                _view.details_html(
                    [(c, _cell(row[c])) for c in rest if row[c] not in (None, "")], "more"
                )
            )
        rows.append(cells)
    header = columns + ([""] if rest else [])
    more = (
        f'<div class="csk-help">the first {limit:,} of {shown.height:,} rows</div>'
        if shown.height > limit
        else ""
    )
    html = _view.table_html(header, rows, wrap=range(len(header)))
    if css_class:
        html = f'<div class="{_view.esc(css_class)}">{html}</div>'
    return html + more


def csv_link(frame: pl.DataFrame, file_name: str) -> str:
    """A "Download CSV" link carrying `frame` itself (a ``data:`` URL): no file on a server."""
    encoded = base64.b64encode(frame.write_csv().encode("utf-8")).decode("ascii")
    return (
        f'<a class="csk-csv" download="{_view.esc(file_name)}.csv" '
        f'href="data:text/csv;base64,{encoded}"><i class="fa fa-download" aria-hidden="true">'
        "</i> Download CSV</a>"
    )


class StaticTable:
    """A table for notebooks: plain HTML (no widget, no JavaScript), so a notebook exported
    to HTML reads the same with no kernel and no network. `frame` is what is shown.
    """

    def __init__(self, frame: pl.DataFrame, html: str) -> None:
        self.frame = frame
        self.html = html

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return f"<table: {self.frame.height:,} rows x {self.frame.width} columns>"


def table(
    frame: pl.DataFrame,
    *,
    names: Mapping[str, str] | None = None,
    now: datetime | None = None,
    caption: str = "",
    css_class: str = "",
    file_name: str = "table",
    limit: int = 50,
) -> StaticTable:
    """`present(frame)` as a plain HTML table (the first `limit` rows) with a CSV download
    of every row: readable in JupyterLab, on GitHub and in an exported HTML file alike.

    `file_name` names the CSV download; `css_class` tags the output.
    """
    shown = present(frame, names=names, now=now)
    title = f"<b>{_view.esc(caption)}</b> " if caption else ""
    classes = f"csk-grid {css_class}".strip()
    html = (
        f'{_view.CSS}<div class="{_view.esc(classes)}">{title}'
        f'<span class="csk-help">{shown.height:,} row{"" if shown.height == 1 else "s"} · '
        f"{csv_link(shown, file_name)}</span>{rows_html(shown, limit=limit)}</div>"
    )
    return StaticTable(shown, html)

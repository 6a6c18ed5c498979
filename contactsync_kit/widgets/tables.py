"""The one table display for the console and the notebooks: an interactive `itables` grid.

`present` is a pure frame-to-frame function that makes a frame readable — organisation names
next to their ids, times as "3 h ago · 2026-11-26 12:52 UTC", hours as ages, headings in words
— without cutting any id. `table` shows the result as an `itables` grid (sortable, a search
box and per-column filters, full copyable ids, a CSV download button; it works offline), and
falls back to a plain HTML table wherever widgets do not render (GitHub, nbconvert).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import polars as pl
from itables.widget import ITable

from ..staleness import format_age
from . import _view

__all__ = ["DataTable", "present", "table"]

_UTC_TS: Final = pl.Datetime("us", "UTC")
#: Rows per page before the grid pages (a few screens of a support case fit on one).
_PAGE: Final = 15
#: Rows a static fallback (GitHub, HTML export without widget state) shows.
_STATIC_ROWS: Final = 20


def _human_time(moment: datetime | None, now: datetime) -> str | None:
    if moment is None:
        return None
    seconds = (now - moment).total_seconds()
    when = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if seconds < 0:
        return f"in {format_age(-seconds)} · {when}"
    return f"{format_age(seconds)} ago · {when}"


def _heading(column: str) -> str:
    return column.replace("_", " ")


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
    columns: list[pl.Series] = []
    for name in frame.columns:
        series = frame.get_column(name)
        if name.endswith("_at") and series.dtype == pl.String:
            series = series.str.to_datetime(time_zone="UTC", strict=False)
        if name.endswith("organisation_id"):
            label = (
                "organisation" if name == "organisation_id" else _heading(name.removesuffix("_id"))
            )
            known = dict(names or {})
            columns.append(
                pl.Series(
                    label,
                    [
                        None if v is None else known.get(str(v), "unknown organisation")
                        for v in series.to_list()
                    ],
                    dtype=pl.String,
                )
            )
            columns.append(series.cast(pl.String).alias(_heading(name)))
        elif isinstance(series.dtype, pl.Datetime):
            values = (
                series.cast(_UTC_TS).to_list()
                if series.dtype.time_zone
                else series.dt.replace_time_zone("UTC").to_list()
            )
            columns.append(
                pl.Series(_heading(name), [_human_time(v, now) for v in values], dtype=pl.String)
            )
        elif name.endswith("_hours") and series.dtype.is_numeric():
            columns.append(
                pl.Series(
                    _heading(name.removesuffix("_hours")),
                    [None if v is None else format_age(float(v) * 3600) for v in series.to_list()],
                    dtype=pl.String,
                )
            )
        elif series.dtype == pl.Boolean:
            columns.append(
                series.replace_strict(
                    {True: "yes", False: "no"}, default=None, return_dtype=pl.String
                ).alias(_heading(name))
            )
        else:
            columns.append(series.cast(pl.String).alias(_heading(name)))
    return pl.DataFrame(columns) if columns else pl.DataFrame()


def _static_html(shown: pl.DataFrame, caption: str) -> str:
    rows = [
        [_view.esc("" if v is None else v) for v in row]
        for row in shown.head(_STATIC_ROWS).iter_rows()
    ]
    more = (
        f'<div class="csk-help">first {_STATIC_ROWS} of {shown.height:,} rows</div>'
        if shown.height > _STATIC_ROWS
        else ""
    )
    title = f"<b>{_view.esc(caption)}</b>" if caption else ""
    return title + _view.table_html(shown.columns, rows) + more


class DataTable(ITable):
    """An `itables` grid that also carries a static HTML copy of its rows."""

    static_html = ""

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        if isinstance(data, dict):
            # Where no widget renders (GitHub, HTML export without state) this shows.
            data["text/html"] = self.static_html
        return bundle


def table(
    frame: pl.DataFrame,
    *,
    names: Mapping[str, str] | None = None,
    now: datetime | None = None,
    caption: str = "",
    css_class: str = "",
    file_name: str = "table",
) -> Any:
    """An interactive grid of `present(frame)`: sort, search, filter, copy, download CSV.

    Display it in a notebook or put it in a panel (it is a widget). `file_name` names the
    CSV download; `css_class` tags the grid for browser tests and styling.
    """
    shown = present(frame, names=names, now=now)
    grid = DataTable(
        shown,
        caption=caption or None,
        buttons=[{"extend": "csvHtml5", "title": file_name, "text": "Download CSV"}],
        show_dtypes=False,
        classes="display compact cell-border",
        column_filters="footer" if shown.height > 1 else False,
        paging=shown.height > _PAGE,
        pageLength=_PAGE,
        layout={
            "topStart": "buttons",
            "topEnd": "search" if shown.height > 1 else None,
            "bottomStart": "info" if shown.height > _PAGE else None,
            "bottomEnd": "paging" if shown.height > _PAGE else None,
        },
    )
    grid.static_html = _static_html(shown, caption)
    grid.add_class("csk-grid")
    if css_class:
        grid.add_class(css_class)
    return grid

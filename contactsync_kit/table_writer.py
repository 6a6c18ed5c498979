"""`TableWriter`: the boundary between a sync's frames and the SQLite statements that store them.

The sync (`staging`, `delta_store`) decides WHAT is written, in which transaction and in what
order; a `TableWriter` decides only HOW one frame's rows are bound into one ``INSERT`` on the
connection it is given. So the write path can change (another binding, another driver) without
touching the sync, as long as a writer keeps what the cache guarantees:

* it writes through the connection it is handed, inside the transaction already open on it
  (the sync's other writes and its rollback include these rows);
* so the file's locking is the one every other connection to it takes part in, and the
  connection's ``secure_delete`` and SQLCipher key apply (a writer that opened the file
  through another SQLite library would keep none of those).
"""

from __future__ import annotations

from typing import Any, Final, Protocol

import polars as pl
from sqlalchemy.engine import Connection

__all__ = ["ColumnsWriter", "TableWriter"]

__io__ = "disk"


class TableWriter(Protocol):
    """Writes a frame's rows with one ``INSERT`` statement on a given connection."""

    def write(self, conn: Connection, sql: str, frame: pl.DataFrame) -> int:
        """Run `sql` (one ``?`` per column of `frame`, in order) for every row; the rows.

        Runs on `conn`'s own DBAPI connection, inside whatever transaction is open on it.
        """
        ...


# Rows are handed to the driver in slices of this many: the Python values of one slice are
# alive at a time, not the frame's.
_SLICE_ROWS: Final = 4096


class ColumnsWriter:
    """The default writer: the DBAPI cursor's ``executemany`` fed column by column.

    SQLAlchemy's own executemany adds 20-40% here, so the DBAPI cursor of the same connection
    (so the same transaction) is used. Each slice's columns are turned into Python lists by
    polars (in Rust) and zipped into row tuples: cheaper than a row iterator that builds each
    tuple itself, and no list of every row is built.
    """

    def write(self, conn: Connection, sql: str, frame: pl.DataFrame) -> int:
        """Run `sql` for every row of `frame` on `conn`'s DBAPI cursor."""
        if frame.height == 0:
            return 0
        cursor = conn.connection.cursor()
        try:
            for start in range(0, frame.height, _SLICE_ROWS):
                part = frame.slice(start, _SLICE_ROWS)
                rows: Any = zip(*(column.to_list() for column in part.get_columns()), strict=True)
                cursor.executemany(sql, rows)
        finally:
            cursor.close()
        return frame.height

"""Keyset paging plans: how a large organisation is split into id ranges fetched side by side.

Pure arithmetic over UUIDs (no I/O). Row ids are random (version 4) UUIDs, so equal slices of
the id space hold about equal numbers of rows; an unlucky slice just takes a second page, and
an id scheme that is not random costs speed, never completeness (each range is keyset-paged
to its end, and the sync checks the server's count). `last_row_key` reads the next keyset
cursor off the end of a raw page.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from typing import Final

__all__ = [
    "PARALLEL_PAGES",
    "SEQUENTIAL_PAGES",
    "WRITE_QUEUE",
    "IdRange",
    "id_ranges",
    "last_row_key",
    "pages_needed",
]

__io__ = "none"

#: Pages requested from the server at the same time (the parallel fetch of a large sync).
PARALLEL_PAGES: Final = 4
#: Up to this many pages after the first are fetched one after another (keyset on the last
#: id); more are split into id ranges fetched side by side.
SEQUENTIAL_PAGES: Final = 3
#: Mapped pages waiting for the writer: with the pages in flight, this bounds memory (one is
#: enough to keep the writer busy: pages are mapped faster than they are written).
WRITE_QUEUE: Final = 1

#: ``(after, upto)``: the ids ``after < id <= upto``; ``upto`` None means no upper bound.
IdRange = tuple[str, str | None]

_TOP: Final = (1 << 128) - 1
# Each range is sized for this share of a page, so that a second page is rarely needed.
_FILL: Final = 0.9


def pages_needed(rows: int, page_size: int) -> int:
    """Pages of `page_size` that `rows` rows take."""
    return math.ceil(rows / page_size) if rows > 0 else 0


def id_ranges(after: str, rows: int, page_size: int) -> list[IdRange]:
    """Split the ids above `after` into ranges of about `page_size` × 0.9 of `rows` rows each.

    The ranges are in id order, touch without overlapping, and the last is open-ended, so
    together they cover every id above `after`.
    """
    low = uuid.UUID(after).int
    count = max(1, math.ceil(rows / (page_size * _FILL)))
    bounds = [str(uuid.UUID(int=low + (_TOP - low) * i // count)) for i in range(1, count)]
    starts = [after, *bounds]
    ends: list[str | None] = [*bounds, None]
    return list(zip(starts, ends, strict=True))


_STRUCTURE: Final = re.compile(rb'["{}\[\]]')
_BACKSLASHES: Final = re.compile(rb"\\*")


def last_row_key(body: bytes, key: str = "id") -> str | None:
    """The `key` of the last object of a JSON list, read from the end of the raw body.

    Costs about the size of the last row, not of the body: the next keyset page can be asked
    for before the page is parsed. None when the body does not end like a list of objects
    (the mapper then says what is wrong with it).
    """
    tail = body.rstrip()
    if not tail.endswith(b"]"):
        return None
    window = 1 << 14
    while True:
        start = max(0, len(tail) - window)
        found = _last_object(tail[start:])
        if found is not None or start == 0:
            break
        window <<= 2  # the last row is longer than the window: look further back
    if found is None:
        return None
    try:
        row = json.loads(tail[start + found[0] : start + found[1]])
    except ValueError:
        return None
    value = row.get(key) if isinstance(row, dict) else None
    return value if isinstance(value, str) else None


def _last_object(tail: bytes) -> tuple[int, int] | None:
    """Where the last top-level object of `tail` (a list's end) starts and ends, if inside."""
    backwards = tail[::-1]
    depth, in_string, end = 0, False, -1
    for match in _STRUCTURE.finditer(backwards):
        at = match.start()
        char = backwards[at : at + 1]
        if char == b'"':
            # Backwards, a quote's escaping backslashes come after it: odd means escaped.
            escapes = _BACKSLASHES.match(backwards, at + 1).end() - at - 1  # type: ignore[union-attr]
            in_string = in_string if escapes % 2 else not in_string
            continue
        if in_string:
            continue
        depth += 1 if char in b"]}" else -1
        if char == b"}" and depth == 2:
            end = len(tail) - at
        elif char == b"{" and depth == 1:
            return len(tail) - at - 1, end
        if depth <= 0:
            return None
    return None

"""Keyset paging plans: how a large organisation is split into id ranges fetched side by side.

Pure arithmetic over UUIDs (no I/O). Row ids are random (version 4) UUIDs, so equal slices of
the id space hold about equal numbers of rows; an unlucky slice just takes a second page, and
an id scheme that is not random costs speed, never completeness (each range is keyset-paged
to its end, and the sync checks the server's count).
"""

from __future__ import annotations

import math
import uuid
from typing import Final

__all__ = [
    "PARALLEL_PAGES",
    "SEQUENTIAL_PAGES",
    "WRITE_QUEUE",
    "IdRange",
    "id_ranges",
    "pages_needed",
]

__io__ = "none"

#: Pages requested from the server at the same time (the parallel fetch of a large sync).
PARALLEL_PAGES: Final = 4
#: Up to this many pages after the first are fetched one after another (keyset on the last
#: id); more are split into id ranges fetched side by side.
SEQUENTIAL_PAGES: Final = 3
#: Mapped pages waiting for the writer: with the pages in flight, this bounds memory.
WRITE_QUEUE: Final = 2

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

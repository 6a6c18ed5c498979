"""The API side: every probe for one caller (a test user or the anon key), as that caller.

Only ids leave a probe. Probes are batched, never dropped: the organisations of a probe go
into one ``in.(…)`` filter (up to `ORGS_PER_REQUEST` a request) and rows are attributed to the
organisation they carry; a count over organisations where the caller should see nothing is
one request, split per organisation only when it is not zero (counts are never negative, so a
zero total proves every organisation's zero); foreign ids go `IDS_PER_REQUEST` a request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

from .callers import CallerPlan, Collected
from .frames import (
    ALL_ORGANISATIONS,
    SEARCH_COLUMN,
    Probe,
    audit_tables,
    probes_by_table,
    root_of,
    unfiltered_by_table,
)
from .plan import IDS_PER_REQUEST
from .surface import SurfaceTarget

if TYPE_CHECKING:
    from ..remote import Filter, RemoteReader

__all__ = [
    "IDS_PER_REQUEST",
    "ORGS_PER_REQUEST",
    "OUTSIDE_FILTER",
    "CallerProbes",
    "probe_caller",
    "read_shape",
]
__io__ = "none"

#: Organisations per ``in.(…)`` filter (ids per ``id=in.(…)`` request: `IDS_PER_REQUEST`).
ORGS_PER_REQUEST: Final = 100

#: Where a row goes that a filtered probe returned although it was not asked for.
OUTSIDE_FILTER: Final = "(not asked for)"

#: The column the selects keyset-page on, where it is not ``id``. ``organisation_members``'
#: key is (user_id, organisation_id): paging on user_id alone could only split equal keys
#: across pages when more than a page of memberships is visible, i.e. when they leak anyway.
_PAGE_KEYS: Final[dict[str, str]] = {"organisation_members": "user_id"}
#: The columns the selects ask for, where not ``id, organisation_id``.
_SELECT_COLUMNS: Final[dict[str, str]] = {
    "organisations": "id",
    "organisation_members": "user_id, organisation_id",
}


def read_shape(table: str) -> tuple[str, str]:
    """(columns to select, column to keyset-page on) when reading `table`'s ids."""
    return _SELECT_COLUMNS.get(table, "id, organisation_id"), _PAGE_KEYS.get(table, "id")


T = TypeVar("T")
_Rows = list[dict[str, Any]]


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _in(values: Sequence[str]) -> str:
    return f"({','.join(values)})"


def _text(value: Any) -> str | None:
    return None if value is None else str(value).lower()


def _org_column(table: str) -> str:
    return "id" if table == "organisations" else "organisation_id"


def _row_identity(table: str, row: Mapping[str, Any]) -> tuple[Any, Any]:
    """(id as the universe spells it, the organisation the row says it belongs to).

    A membership is its user within its organisation; the universe's id for it is
    ``"<user_id>:<organisation_id>"``, so it stays unique across organisations (a user who is
    a member of two is two rows, which the disjointness check must not confuse).
    """
    if table == "organisations":
        return row.get("id"), row.get("id")
    if table == "organisation_members":
        user_id, org = row.get("user_id"), row.get("organisation_id")
        return (None if user_id is None else f"{user_id}:{org}"), org
    return row.get("id"), row.get("organisation_id")


class CallerProbes:
    """Runs every probe of one `CallerPlan` and collects ids only (`record_run` and
    `record_rows` also record what the sweep's and the function probes' requests saw).
    """

    def __init__(
        self, plan: CallerPlan, reader: RemoteReader, limit: asyncio.Semaphore, out: Collected
    ) -> None:
        self.plan, self.reader, self.limit, self.out = plan, reader, limit, out
        self.user = plan.user
        self.root = root_of(plan.tables)
        self.children = [spec for spec in plan.tables if spec.parent is not None]
        self.embedded_tables = [spec.name for spec in plan.tables]
        # The sync's one query shape: the root with every child embedded, as arrays named
        # like their tables (`schemas.EMBEDDED_SELECT` for the spec's tables).
        self.embedded_select = ", ".join(["*", *(f"{c.name}(*)" for c in self.children)])

    # -- recording --------------------------------------------------------------------------

    def record_run(
        self, org: str, table: str, probe: Probe, *, count: int | None = None, error: Any = None
    ) -> None:
        """One run of `probe` on `table` for `org`: its count, or the error it met."""
        denied = bool(
            error is not None
            and error.kind == "auth"
            and (error.code == "42501" or error.status in (401, 403))
        )
        code = (error.code or (str(error.status) if error.status else None)) if error else None
        self.out.runs.append(
            (
                self.user,
                org,
                table,
                probe.value,
                count,
                error.kind.value if error is not None else None,
                code,
                denied,
            )
        )

    def _seen(
        self,
        org: str,
        table: str,
        probe: Probe,
        row_id: Any,
        row_org: Any,
        row_parent_id: Any = None,
        parent_id: Any = None,
        parent_org: Any = None,
    ) -> None:
        self.out.observed.append(
            (
                self.user,
                org,
                table,
                probe.value,
                _text(row_id),
                _text(row_org),
                _text(row_parent_id),
                _text(parent_id),
                _text(parent_org),
            )
        )

    def record_rows(
        self, table: str, probe: Probe, rows: list[dict[str, Any]], asked: Sequence[str] | None
    ) -> None:
        """Record rows under their own organisation (or `OUTSIDE_FILTER` if not asked for)."""
        wanted = set(asked) if asked is not None else None
        for row in rows:
            row_id, row_org = _row_identity(table, row)
            org = _text(row_org) or OUTSIDE_FILTER
            if wanted is not None and org not in wanted:
                org = OUTSIDE_FILTER
            self._seen(org, table, probe, row_id, row_org)

    def _seen_embedded(
        self, probe: Probe, rows: list[dict[str, Any]], asked: Sequence[str] | None
    ) -> None:
        self.record_rows(self.root.name, probe, rows, asked)
        root_key, root_scope = self.root.key, self.root.scope
        for row in rows:
            for spec in self.children:
                children = row.get(spec.name)
                for child in children if isinstance(children, list) else []:
                    org = _text(child.get(spec.scope)) or OUTSIDE_FILTER
                    if asked is not None and org not in asked:
                        org = OUTSIDE_FILTER
                    self._seen(
                        org,
                        spec.name,
                        probe,
                        child.get(spec.key),
                        child.get(spec.scope),
                        child.get(spec.parent[0]) if spec.parent else None,
                        row.get(root_key),
                        row.get(root_scope),
                    )

    # -- requests ---------------------------------------------------------------------------

    async def _rows(
        self, table: str, columns: str, filters: list[Filter], *, key: str = "id"
    ) -> list[dict[str, Any]]:
        async with self.limit:
            return await self.reader.rows(table, columns, filters, key=key)

    async def _count(self, table: str, filters: list[Filter]) -> int:
        async with self.limit:
            return await self.reader.count(table, filters)

    async def run(self) -> None:
        """Every probe of the plan, concurrently (bounded by the shared semaphore)."""
        jobs = [self.search()]
        probes = probes_by_table(self.plan.tables)
        for table in audit_tables(self.plan.tables):
            jobs += [
                self.select(table),
                self.counted(table),
                self.all_rows(table),
                self.all_count(table),
            ]
            if Probe.FOREIGN_IDS in probes[table]:
                jobs.append(self.foreign_ids(table))
        jobs += [self.embedded(), self.all_search(), self.all_embedded()]
        jobs += [self.surface(target) for target in self.plan.surface]
        await asyncio.gather(*jobs)

    # -- filtered to the audited organisations ---------------------------------------------

    async def _batched(
        self,
        tables: Sequence[str],
        probe: Probe,
        fetch: Callable[[Sequence[str]], Awaitable[_Rows]],
        record: Callable[[_Rows, Sequence[str]], None],
    ) -> None:
        """Run `fetch(chunk)` per chunk of organisations; runs per organisation and table."""
        from ..remote import RemoteFailure

        for chunk in _chunks(list(self.plan.orgs), ORGS_PER_REQUEST):
            try:
                rows = await fetch(chunk)
            except RemoteFailure as exc:
                for org in chunk:
                    for table in tables:
                        self.record_run(org, table, probe, error=exc.error)
                continue
            for org in chunk:
                for table in tables:
                    self.record_run(org, table, probe)
            record(rows, chunk)

    async def select(self, table: str) -> None:
        """A plain select of the table over the audited organisations."""

        async def fetch(chunk: Sequence[str]) -> list[dict[str, Any]]:
            columns, key = read_shape(table)
            return await self._rows(
                table, columns, [(_org_column(table), "in", _in(chunk))], key=key
            )

        await self._batched(
            [table],
            Probe.SELECT,
            fetch,
            lambda rows, chunk: self.record_rows(table, Probe.SELECT, rows, chunk),
        )

    async def search(self) -> None:
        """An ``ilike`` search on the root table's names over the audited organisations."""
        root = self.root.name

        async def fetch(chunk: Sequence[str]) -> list[dict[str, Any]]:
            return await self._rows(
                root,
                "id, organisation_id",
                [
                    (SEARCH_COLUMN, "ilike", self.plan.search_pattern),
                    ("organisation_id", "in", _in(chunk)),
                ],
            )

        await self._batched(
            [root],
            Probe.SEARCH,
            fetch,
            lambda rows, chunk: self.record_rows(root, Probe.SEARCH, rows, chunk),
        )

    async def embedded(self) -> None:
        """Exactly the sync's select (the root with its children embedded); ids are kept."""

        async def fetch(chunk: Sequence[str]) -> list[dict[str, Any]]:
            return await self._rows(
                self.root.name, self.embedded_select, [("organisation_id", "in", _in(chunk))]
            )

        await self._batched(
            self.embedded_tables,
            Probe.EMBEDDED,
            fetch,
            lambda rows, chunk: self._seen_embedded(Probe.EMBEDDED, rows, chunk),
        )

    async def counted(self, table: str) -> None:
        """``count=exact`` per organisation where the caller should see rows; one count over
        the others, split per organisation only when it is not zero.
        """
        from ..remote import RemoteFailure

        column = _org_column(table)
        members = [o for o in self.plan.orgs if o in self.plan.member_orgs]
        others = [o for o in self.plan.orgs if o not in self.plan.member_orgs]
        singles = list(members)
        for chunk in _chunks(others, ORGS_PER_REQUEST):
            try:
                total = await self._count(table, [(column, "in", _in(chunk))])
            except RemoteFailure as exc:
                for org in chunk:
                    self.record_run(org, table, Probe.COUNT, error=exc.error)
                continue
            if total:
                singles += chunk
            else:
                for org in chunk:
                    self.record_run(org, table, Probe.COUNT, count=0)
        await asyncio.gather(*[self._count_one(table, org) for org in singles])

    async def _count_one(self, table: str, org: str) -> None:
        from ..remote import RemoteFailure

        try:
            count = await self._count(table, [(_org_column(table), "eq", org)])
        except RemoteFailure as exc:
            self.record_run(org, table, Probe.COUNT, error=exc.error)
            return
        self.record_run(org, table, Probe.COUNT, count=count)

    async def foreign_ids(self, table: str) -> None:
        """A direct ``id=in.(…)`` request for rows the caller must not see."""
        from ..remote import RemoteFailure

        owner = {
            row_id: org
            for (org, t), ids in self.plan.foreign.items()
            if t == table
            for row_id in ids
        }
        for row_id, org in owner.items():
            self.out.requested.append((self.user, org, table, Probe.FOREIGN_IDS.value, row_id))
        errors: dict[str, Any] = {}
        for chunk in _chunks(sorted(owner), IDS_PER_REQUEST):
            try:
                rows = await self._rows(table, "id, organisation_id", [("id", "in", _in(chunk))])
            except RemoteFailure as exc:
                errors.update({owner[i]: exc.error for i in chunk if owner[i] not in errors})
                continue
            for row in rows:
                got = _text(row.get("id")) or ""
                self._seen(
                    owner.get(got, OUTSIDE_FILTER),
                    table,
                    Probe.FOREIGN_IDS,
                    got,
                    row.get("organisation_id"),
                )
        for org in sorted(set(owner.values())):
            self.record_run(org, table, Probe.FOREIGN_IDS, error=errors.get(org))

    # -- across all organisations ----------------------------------------------------------

    async def _unfiltered(
        self,
        tables: Sequence[str],
        probe: Probe,
        fetch: Callable[[], Awaitable[_Rows]],
        record: Callable[[_Rows], None],
    ) -> None:
        from ..remote import RemoteFailure

        try:
            rows = await fetch()
        except RemoteFailure as exc:
            for table in tables:
                self.record_run(ALL_ORGANISATIONS, table, probe, error=exc.error)
            return
        for table in tables:
            self.record_run(ALL_ORGANISATIONS, table, probe)
        record(rows)

    async def all_rows(self, table: str) -> None:
        """Every row of the table the caller can see, wherever it belongs."""

        async def fetch() -> list[dict[str, Any]]:
            columns, key = read_shape(table)
            return await self._rows(table, columns, [], key=key)

        await self._unfiltered(
            [table],
            Probe.ALL_ROWS,
            fetch,
            lambda rows: self.record_rows(table, Probe.ALL_ROWS, rows, None),
        )

    async def all_count(self, table: str) -> None:
        """``count=exact`` of the whole table, as the caller."""
        from ..remote import RemoteFailure

        if Probe.ALL_COUNT not in unfiltered_by_table(self.plan.tables)[table]:
            return
        try:
            count = await self._count(table, [])
        except RemoteFailure as exc:
            self.record_run(ALL_ORGANISATIONS, table, Probe.ALL_COUNT, error=exc.error)
            return
        self.record_run(ALL_ORGANISATIONS, table, Probe.ALL_COUNT, count=count)

    async def all_search(self) -> None:
        """The ``ilike`` search with no organisation filter."""

        root = self.root.name

        async def fetch() -> list[dict[str, Any]]:
            return await self._rows(
                root, "id, organisation_id", [(SEARCH_COLUMN, "ilike", self.plan.search_pattern)]
            )

        await self._unfiltered(
            [root],
            Probe.ALL_SEARCH,
            fetch,
            lambda rows: self.record_rows(root, Probe.ALL_SEARCH, rows, None),
        )

    async def all_embedded(self) -> None:
        """The sync's embedded select with no organisation filter."""

        async def fetch() -> list[dict[str, Any]]:
            return await self._rows(self.root.name, self.embedded_select, [])

        await self._unfiltered(
            self.embedded_tables,
            Probe.ALL_EMBEDDED,
            fetch,
            lambda rows: self._seen_embedded(Probe.ALL_EMBEDDED, rows, None),
        )

    async def surface(self, target: SurfaceTarget, probe: Probe = Probe.SURFACE) -> None:
        """Every row an exposed view, materialised view or function gives the caller."""

        async def fetch() -> list[dict[str, Any]]:
            return await self._rows(target.path, target.columns, [])

        def record(rows: list[dict[str, Any]]) -> None:
            for row in rows:
                # The organisation is settled against ground truth by the row's id.
                self._seen(
                    ALL_ORGANISATIONS,
                    target.label,
                    probe,
                    row.get("id"),
                    row.get("organisation_id"),
                )

        await self._unfiltered([target.label], probe, fetch, record)


async def probe_caller(
    plan: CallerPlan, reader: RemoteReader, *, limit: asyncio.Semaphore, out: Collected
) -> None:
    """Every probe of `plan` through `reader` (signed in as that caller), collected in `out`."""
    await CallerProbes(plan, reader, limit, out).run()

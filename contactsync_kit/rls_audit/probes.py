"""The API side: every probe for one user (or the anon key), as that user, ids only kept."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from ..schemas import EMBEDDED_SELECT
from .frames import AUDIT_TABLES, PROBES_BY_TABLE, Probe

if TYPE_CHECKING:
    from ..remote import Filter, RemoteReader

__all__ = ["Collected", "anon_reader", "probe_user"]

#: The column the plain select keyset-pages on, where it is not ``id``: unique within the
#: organisation filter (``organisation_members``' key is (user_id, organisation_id)).
_PAGE_KEYS: Final[dict[str, str]] = {"organisation_members": "user_id"}
#: The columns the plain select asks for, where not ``id, organisation_id``.
_SELECT_COLUMNS: Final[dict[str, str]] = {"organisations": "id",
                                          "organisation_members": "user_id, organisation_id"}


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





async def anon_reader(url: str, key: str) -> RemoteReader:
    """A `RemoteReader` on a client holding only the anon (publishable) key — no sign-in.

    Refuses RLS-bypassing keys like `session.sign_in` does.
    """
    from ..remote import RemoteReader
    from ..session import anonymous_client

    return RemoteReader(await anonymous_client(url, key))


@dataclass
class Collected:
    runs: list[tuple[Any, ...]] = field(default_factory=list)
    observed: list[tuple[Any, ...]] = field(default_factory=list)
    requested: list[tuple[Any, ...]] = field(default_factory=list)


class _UserProbes:
    """Runs every probe for one user (or the anon key) and collects ids only."""

    def __init__(self, user: str, reader: RemoteReader, orgs: list[str],
                 foreign: Mapping[tuple[str, str], list[str]], search_pattern: str,
                 limit: asyncio.Semaphore, out: Collected) -> None:
        self.user, self.reader, self.orgs = user, reader, orgs
        self.foreign, self.pattern, self.limit, self.out = foreign, search_pattern, limit, out

    def _run(self, org: str, table: str, probe: Probe, *, count: int | None = None,
             error: Any = None) -> None:
        denied = bool(error is not None and error.kind == "auth"
                      and (error.code == "42501" or error.status in (401, 403)))
        self.out.runs.append((self.user, org, table, probe.value, count,
                              error.kind.value if error is not None else None,
                              (error.code or (str(error.status) if error.status else None))
                              if error is not None else None, denied))

    def _seen(self, org: str, table: str, probe: Probe, row_id: Any, row_org: Any,
              contact_id: Any = None, parent_id: Any = None, parent_org: Any = None) -> None:
        self.out.observed.append((self.user, org, table, probe.value, _text(row_id),
                                  _text(row_org), _text(contact_id), _text(parent_id),
                                  _text(parent_org)))

    async def _rows(self, table: str, columns: str, filters: list[Filter], *,
                    key: str = "id") -> list[dict[str, Any]]:
        async with self.limit:
            return await self.reader.rows(table, columns, filters, key=key)

    async def _count(self, table: str, filters: list[Filter]) -> int:
        async with self.limit:
            return await self.reader.count(table, filters)

    async def run(self) -> None:
        jobs = [self.search()]
        for org in self.orgs:
            jobs += [self.plain(org, table) for table in AUDIT_TABLES
                     if Probe.SELECT in PROBES_BY_TABLE[table]]
            jobs += [self.counted(org, table) for table in AUDIT_TABLES
                     if Probe.COUNT in PROBES_BY_TABLE[table]]
            jobs.append(self.embedded(org))
            jobs += [self.foreign_ids(org, table) for table in AUDIT_TABLES
                     if Probe.FOREIGN_IDS in PROBES_BY_TABLE[table]]
        await asyncio.gather(*jobs)

    @staticmethod
    def _org_filter(table: str, org: str) -> list[Filter]:
        return [("id" if table == "organisations" else "organisation_id", "eq", org)]

    async def plain(self, org: str, table: str) -> None:
        from ..remote import RemoteFailure

        columns = _SELECT_COLUMNS.get(table, "id, organisation_id")
        try:
            rows = await self._rows(table, columns, self._org_filter(table, org),
                                    key=_PAGE_KEYS.get(table, "id"))
        except RemoteFailure as exc:
            self._run(org, table, Probe.SELECT, error=exc.error)
            return
        self._run(org, table, Probe.SELECT)
        for row in rows:
            row_id, row_org = _row_identity(table, row)
            self._seen(org, table, Probe.SELECT, row_id, row_org)

    async def counted(self, org: str, table: str) -> None:
        from ..remote import RemoteFailure

        try:
            count = await self._count(table, self._org_filter(table, org))
        except RemoteFailure as exc:
            self._run(org, table, Probe.COUNT, error=exc.error)
            return
        self._run(org, table, Probe.COUNT, count=count)

    async def search(self) -> None:
        from ..remote import RemoteFailure

        # One request across every probed organisation, as an app's search box would send;
        # the in-filter keeps other tenants of a shared server out of the audit.
        filters: list[Filter] = [("full_name", "ilike", self.pattern),
                                 ("organisation_id", "in", f"({','.join(self.orgs)})")]
        try:
            rows = await self._rows("contacts", "id, organisation_id", filters)
        except RemoteFailure as exc:
            for org in self.orgs:
                self._run(org, "contacts", Probe.SEARCH, error=exc.error)
            return
        for org in self.orgs:
            self._run(org, "contacts", Probe.SEARCH)
        for row in rows:
            row_org = _text(row.get("organisation_id"))
            self._seen(row_org or "", "contacts", Probe.SEARCH, row.get("id"), row_org)

    async def embedded(self, org: str) -> None:
        from ..remote import RemoteFailure

        tables = ("contacts", "notes", "contact_assignments")
        try:
            # Exactly the sync's select. Whole rows arrive; only ids are kept.
            rows = await self._rows("contacts", EMBEDDED_SELECT,
                                    [("organisation_id", "eq", org)])
        except RemoteFailure as exc:
            for table in tables:
                self._run(org, table, Probe.EMBEDDED, error=exc.error)
            return
        for table in tables:
            self._run(org, table, Probe.EMBEDDED)
        for row in rows:
            self._seen(org, "contacts", Probe.EMBEDDED, row.get("id"), row.get("organisation_id"))
            for child_table in tables[1:]:
                children = row.get(child_table)
                for child in children if isinstance(children, list) else []:
                    self._seen(org, child_table, Probe.EMBEDDED, child.get("id"),
                               child.get("organisation_id"), child.get("contact_id"),
                               row.get("id"), row.get("organisation_id"))

    async def foreign_ids(self, org: str, table: str) -> None:
        from ..remote import RemoteFailure

        ids = self.foreign.get((org, table), [])
        if not ids:
            return  # nothing in this organisation the user must not see
        for row_id in ids:
            self.out.requested.append((self.user, org, table, Probe.FOREIGN_IDS.value, row_id))
        try:
            rows = await self._rows(table, "id, organisation_id",
                                    [("id", "in", f"({','.join(ids)})")])
        except RemoteFailure as exc:
            self._run(org, table, Probe.FOREIGN_IDS, error=exc.error)
            return
        self._run(org, table, Probe.FOREIGN_IDS)
        for row in rows:
            self._seen(org, table, Probe.FOREIGN_IDS, row.get("id"), row.get("organisation_id"))


def _text(value: Any) -> str | None:
    return None if value is None else str(value).lower()


def _foreign_sample(universe: pl.DataFrame, expected: pl.DataFrame, user: str,
                    sample: int) -> dict[tuple[str, str], list[str]]:
    """Per (organisation, table): up to `sample` ids the user must not see, deterministic."""
    tables = [t for t, probes in PROBES_BY_TABLE.items() if Probe.FOREIGN_IDS in probes]
    hidden = universe.filter(pl.col("table").is_in(tables)).join(
        expected.filter(pl.col("user") == user), on=["table", "organisation_id", "id"],
        how="anti",
    ).sort(["organisation_id", "table", "id"])
    picked = hidden.group_by(["organisation_id", "table"]).agg(pl.col("id").head(sample))
    return {(org, table): ids for org, table, ids in picked.rows()}


async def probe_user(user: str, reader: RemoteReader, orgs: list[str], universe: pl.DataFrame,
                 expected: pl.DataFrame, search_pattern: str, *, foreign_sample: int,
                 limit: asyncio.Semaphore, out: Collected) -> None:
    """Every probe for one user (or the anon key) through `reader`, collected into `out`."""
    foreign = _foreign_sample(universe, expected, user, foreign_sample)
    await _UserProbes(user, reader, orgs, foreign, search_pattern, limit, out).run()


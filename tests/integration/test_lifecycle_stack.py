"""The cache's lifecycle on the real stack: the server vouches for the person, its clock rules.

Real PostgreSQL + PostgREST + the auth stand-in; the second session is a real process.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from contactsync_kit import (
    SessionEndReason,
    SignInError,
    SyncErrorKind,
    SystemClock,
    start_session,
)
from contactsync_kit.devstack import DevStack, SeedResult
from contactsync_kit.tokens import mint_hs256, unverified_claims
from tests.session_worker import Worker


class SkewedClock:
    """This computer's clock, off by `offset` (a dual-boot machine's local-time RTC)."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return SystemClock().now() + self.offset


def contents(path: Path) -> bytes:
    return path.read_bytes()


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


async def _synced_cache(stack: DevStack, seeded: SeedResult, path: Path) -> tuple[str, bytes]:
    user = seeded.user("org1-coordinator")
    session = await start_session(
        stack.url, stack.anon_key, email=user.email, password=user.password, cache_path=path
    )
    result = await session.repository.sync_contacts_for_organisation(user.organisation_ids[0])
    assert result.ok and result.items_synced > 0
    await session.aclose()
    return user.user_id, contents(path)


def _forge(token: str, **changes: object) -> str:
    claims = {**(unverified_claims(token) or {}), **changes}
    lifetime = int(claims.pop("exp")) - int(claims.pop("iat"))
    return mint_hs256("not-the-servers-secret-" * 2, claims, lifetime_s=lifetime)


@pytest.mark.parametrize("form", ["bad_signature", "revoked_session", "unknown_user"])
async def test_a_token_the_server_refuses_opens_and_erases_nothing(
    stack: DevStack, seeded: SeedResult, tmp_path: Path, form: str
) -> None:
    path = tmp_path / "cache.sqlite3"
    user_id, before = await _synced_cache(stack, seeded, path)
    genuine = stack.access_token_for(user_id)
    if form == "bad_signature":  # the previous person's sub, signed by someone else
        token = _forge(genuine)
    elif form == "revoked_session":  # a real token whose session was ended on the server
        token = genuine
        session_id = (unverified_claims(genuine) or {})["session_id"]
        stack.sql("DELETE FROM auth.sessions WHERE id = %s", session_id)
    else:  # signed with the server's own secret, for a user the server does not have
        claims = {**(unverified_claims(genuine) or {}), "sub": str(uuid.uuid4())}
        del claims["exp"], claims["iat"]
        token = mint_hs256(stack.jwt_secret, claims, lifetime_s=3600)
    with pytest.raises(SignInError) as refused:
        await start_session(stack.url, stack.anon_key, access_token=token, cache_path=path)
    assert refused.value.kind is SyncErrorKind.AUTH
    assert contents(path) == before  # not opened, not erased


@pytest.mark.parametrize(("hours", "said"), [(2, "2 h ahead of"), (-3, "3 h behind")])
async def test_a_skewed_client_clock_syncs_and_is_named(
    stack: DevStack, seeded: SeedResult, tmp_path: Path, hours: int, said: str
) -> None:
    user = seeded.user("org1-coordinator")
    session = await start_session(
        stack.url,
        stack.anon_key,
        email=user.email,
        password=user.password,
        cache_path=tmp_path / "cache.sqlite3",
        clock=SkewedClock(timedelta(hours=hours)),
    )
    result = await session.repository.sync_contacts_for_organisation(user.organisation_ids[0])
    assert result.ok, result.error
    assert session.clock_note() == f"this computer's clock is {said} the server"
    await session.sign_out()


async def test_an_expired_token_is_still_judged_expired(
    stack: DevStack, seeded: SeedResult, tmp_path: Path
) -> None:
    user = seeded.user("org1-coordinator")
    token = stack.access_token_for(user.user_id, lifetime_s=-1)
    with pytest.raises(SignInError):
        await start_session(stack.url, stack.anon_key, access_token=token, cache_path=tmp_path)


async def test_two_processes_two_people_one_path_on_the_real_stack(
    stack: DevStack, seeded: SeedResult, tmp_path: Path, workers: list[Worker]
) -> None:
    path = tmp_path / "shared.sqlite3"
    first, second = seeded.user("org1-coordinator"), seeded.user("org2-coordinator")
    configs = [
        {"url": stack.url, "key": stack.anon_key, "email": u.email, "password": u.password}
        for u in (first, second)
    ]
    a, b = (Worker({**c, "cache_path": str(path)}) for c in configs)
    workers += [a, b]
    assert a.call("start")["ok"]
    assert a.call("sync", org=first.organisation_ids[0])["value"]["ok"]
    assert b.call("start")["ok"]
    assert b.call("sync", org=second.organisation_ids[0])["value"]["ok"]
    told = a.call("read")
    assert told["reason"] == SessionEndReason.OTHER_PERSON.value
    assert a.call("sync", org=first.organisation_ids[0])["value"]["kind"] == "signed_out"
    assert b.call("read")["value"] == [second.organisation_ids[0]]


@pytest.mark.parametrize(("hours", "said"), [(2, "2 h ahead of"), (-26, "26 h behind")])
def test_a_whole_process_with_a_skewed_clock_signs_in_syncs_and_is_told(
    stack: DevStack, seeded: SeedResult, tmp_path: Path, hours: int, said: str
) -> None:
    """time.time() skewed too, so supabase-py's own expiry checks see the same wrong clock."""
    user = seeded.user("org1-coordinator")
    worker = Worker(
        {
            "url": stack.url,
            "key": stack.anon_key,
            "email": user.email,
            "password": user.password,
            "cache_path": str(tmp_path / "cache.sqlite3"),
            "skew_s": hours * 3600,
        }
    )
    try:
        assert worker.call("start")["ok"]
        for _ in range(2):  # a second sync too: the session still holds
            synced = worker.call("sync", org=user.organisation_ids[0])["value"]
            assert synced["ok"], synced
        note = worker.call("clock_note")["value"]
        assert note == f"this computer's clock is {said} the server"
    finally:
        worker.stop()

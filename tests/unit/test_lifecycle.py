"""Many sessions, one machine: one live owner per cache file, every other session told in words.

The second session is a real process (`tests.session_worker`): another tab's kernel, another
notebook, another person. The server is `FakeSupabase`, seeded the same in every process.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from contactsync_kit import (
    ContactCache,
    ContactCacheSyncRepository,
    ContactSyncError,
    SessionEndedError,
    SessionEndReason,
    SignInError,
    SyncFailure,
    UnsafeCachePathError,
    UserSession,
    start_session,
)
from contactsync_kit import lease as lease_module
from contactsync_kit.cache_files import erase_cache_files
from contactsync_kit.results import SyncErrorKind
from contactsync_kit.testing import FakeSupabase
from tests.session_worker import ORGS, PASSWORD, Worker, fake_server

ALICE, BOB = "alice@example.org", "bob@example.org"
TOLD = {
    SessionEndReason.OTHER_PERSON: "another person signed in on this computer",
    SessionEndReason.SIGNED_OUT_ELSEWHERE: "signed out in another window; sign in again",
}


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


def spawn(workers: list[Worker], email: str, cache_path: Path | None, **env: str) -> Worker:
    config: dict[str, Any] = {"email": email}
    if cache_path is not None:
        config["cache_path"] = str(cache_path)
    worker = Worker(config, env=env)
    workers.append(worker)
    return worker


async def open_session(
    email: str, path: Path | None, fake: FakeSupabase | None = None, **options: Any
) -> UserSession:
    fake = fake or fake_server()
    return await start_session(
        fake.url,
        fake.anon_key,
        email=email,
        password=PASSWORD,
        cache_path=path,
        http_client=fake.http_client(),
        **options,
    )


def exists(path: str | Path) -> bool:
    return Path(path).exists()


def assert_told(answer: dict[str, Any], reason: SessionEndReason) -> None:
    assert answer == {
        "ok": False,
        "error": "SessionEndedError",
        "kit": True,
        "reason": reason.value,
        "message": reason.message,
    }


async def test_an_open_session_never_reads_or_writes_the_next_persons_cache(
    workers: list[Worker], tmp_path: Path
) -> None:
    path = tmp_path / "shared.sqlite3"
    alice = spawn(workers, ALICE, path)
    assert alice.call("start")["ok"]
    assert alice.call("sync", org=ORGS[0])["value"]["items"] == 10
    # Bob signs in on the same path while Alice's notebook is still open.
    bob = await open_session(BOB, path)
    result = await bob.repository.sync_contacts_for_organisation(ORGS[1])
    assert result.ok and result.items_synced == 15
    for op in ("overview", "read", "counts"):
        assert_told(alice.call(op), SessionEndReason.OTHER_PERSON)
    synced = alice.call("sync", org=ORGS[0])["value"]
    assert synced["kind"] == "signed_out"
    assert TOLD[SessionEndReason.OTHER_PERSON] in synced["message"]
    # Bob's file holds Bob's organisation only: Alice's sync wrote nothing into it.
    assert bob.cache.overview().get_column("organisation_id").to_list() == [ORGS[1]]
    assert bob.cache.counts()["contacts"] == 15
    # Alice signing out now must not erase Bob's file.
    assert alice.call("sign_out") == {"ok": True, "value": {}}
    assert bob.cache.counts()["contacts"] == 15
    await bob.sign_out()


async def test_sign_out_in_another_window_is_told_in_words_and_sign_out_is_idempotent(
    workers: list[Worker], tmp_path: Path
) -> None:
    path = tmp_path / "cache.sqlite3"
    tab_a = await open_session(ALICE, path)
    assert (await tab_a.repository.sync_contacts_for_organisation(ORGS[0])).ok
    tab_b = spawn(workers, ALICE, path)
    assert tab_b.call("start")["ok"]
    assert tab_b.call("counts")["value"]["contacts"] == 10  # the same person shares the file
    removed = tab_b.call("sign_out")["value"]
    assert removed["contacts"] == 10
    assert not path.exists()
    failure = await tab_a.repository.sync_contacts_for_organisation(ORGS[0])
    assert isinstance(failure, SyncFailure)
    assert failure.error.kind is SyncErrorKind.SIGNED_OUT
    assert failure.error.message == "signed out in another window; sign in again"
    assert tab_a.ended is SessionEndReason.SIGNED_OUT_ELSEWHERE
    with pytest.raises(SessionEndedError) as raised:
        tab_a.cache.counts()
    assert raised.value.reason is SessionEndReason.SIGNED_OUT_ELSEWHERE
    assert await tab_a.sign_out() == {}
    assert await tab_a.sign_out() == {}
    assert tab_b.call("sign_out") == {"ok": True, "value": {}}  # a double click
    assert not path.exists()


async def test_two_people_signing_in_on_one_path_at_once_get_typed_answers(
    workers: list[Worker], tmp_path: Path
) -> None:
    path = tmp_path / "race.sqlite3"
    for _ in range(3):
        alice, bob = spawn(workers, ALICE, path), spawn(workers, BOB, path)
        alice.send("start")
        bob.send("start")
        answers = [alice.answer(), bob.answer()]  # raises on any raw error
        live = [w for w, a in zip((alice, bob), answers, strict=True) if a["ok"]]
        still = [w for w in live if w.call("counts")["ok"]]
        assert len(still) == 1, answers  # exactly one owner; the other was told
        for worker in (alice, bob):
            worker.call("close")


async def test_a_person_who_did_not_sign_out_loses_nothing_to_the_next_but_privacy(
    workers: list[Worker], tmp_path: Path
) -> None:
    """A crashed or closed session holds nothing: the next person's sign-in erases it."""
    path = tmp_path / "cache.sqlite3"
    alice = spawn(workers, ALICE, path)
    alice.call("start")
    alice.call("sync", org=ORGS[0])
    alice.process.kill()
    alice.process.wait()
    bob = await open_session(BOB, path)
    assert bob.cache.counts()["contacts"] == 0
    assert bob.cache.overview().height == 0
    await bob.sign_out()


async def test_two_people_on_one_machine_each_get_their_own_file_in_the_folder(
    workers: list[Worker], tmp_path: Path
) -> None:
    """Two support staff on one server: both work at once; unheld files go at sign-in."""
    folder = tmp_path / "caches"
    folder.mkdir()
    alice = spawn(workers, ALICE, folder)
    bob = spawn(workers, BOB, folder)
    alice_path, bob_path = alice.call("start")["value"], bob.call("start")["value"]
    assert alice_path != bob_path and Path(alice_path).parent == folder
    assert alice.call("sync", org=ORGS[0])["value"]["ok"]
    assert bob.call("sync", org=ORGS[1])["value"]["ok"]
    assert alice.call("overview")["value"] == [ORGS[0]]
    assert bob.call("overview")["value"] == [ORGS[1]]
    # Bob leaves without signing out; Alice stays. Alice signing in again elsewhere keeps
    # her live file; Bob's unheld file is erased before anyone else's session opens.
    bob.call("close")
    again = await open_session(ALICE, folder)
    assert again.cache.path == alice_path
    assert not exists(bob_path)
    assert exists(alice_path)
    assert alice.call("counts")["value"]["contacts"] == 10
    await again.sign_out()
    assert_told(alice.call("counts"), SessionEndReason.SIGNED_OUT_ELSEWHERE)


async def test_a_forged_token_opens_and_erases_nothing(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    fake = fake_server()
    alice = await open_session(ALICE, path, fake)
    await alice.repository.sync_contacts_for_organisation(ORGS[0])
    alice.close()
    before = path.read_bytes()
    # Alice's user id in a token the server did not sign.
    forged = FakeSupabase(users={ALICE: PASSWORD}).user_token(ALICE)
    forged = forged.rsplit(".", 1)[0] + ".c2lnbmF0dXJlLW9mLW5vLW9uZQ"
    with pytest.raises(SignInError, match="did not accept this access token"):
        await start_session(
            fake.url,
            fake.anon_key,
            access_token=forged,
            cache_path=path,
            http_client=fake.http_client(),
        )
    assert path.read_bytes() == before


@pytest.mark.parametrize(("skew", "said"), [(-2, "2 h ahead of"), (3, "3 h behind")])
async def test_a_skewed_clock_neither_locks_out_nor_goes_unsaid(
    tmp_path: Path, skew: int, said: str
) -> None:
    """The server's clock is the judge of expiry; the offset is said in words."""
    fake = fake_server()
    fake.server_clock_offset = timedelta(hours=skew)
    session = await open_session(ALICE, tmp_path / "c.sqlite3", fake)
    assert abs(session.clock_offset - timedelta(hours=skew)) < timedelta(seconds=5)
    assert session.clock_note() == f"this computer's clock is {said} the server"
    assert (await session.repository.sync_contacts_for_organisation(ORGS[0])).ok
    await session.sign_out()


async def test_agreeing_clocks_say_nothing(tmp_path: Path) -> None:
    session = await open_session(ALICE, tmp_path / "c.sqlite3")
    assert session.clock_note() is None
    await session.sign_out()


# -- every public method, in every state where the session no longer holds the cache ------

ARGUMENTS: dict[str, dict[str, Any]] = {
    "sync_contacts_for_organisation": {"organisation_id": ORGS[0]},
    "last_synced_at": {"organisation_id": ORGS[0]},
    "counts": {},
    "read_table": {"table": "contacts"},
    "begin_sync": {"organisation_id": ORGS[0]},
    "remember_organisation_names": {"names": {ORGS[0]: "Solstreif"}},
    "cancel_sync": {"organisation_id": ORGS[0]},
}


async def _end(session: UserSession, how: str, path: Path) -> SessionEndReason:
    if how == "signed_out":
        await session.sign_out()
        return SessionEndReason.SIGNED_OUT
    if how == "closed":
        session.close()
        return SessionEndReason.CLOSED
    if how == "signed_out_elsewhere":
        other = await open_session(ALICE, path)
        await other.sign_out()
        return SessionEndReason.SIGNED_OUT_ELSEWHERE
    other = await open_session(BOB, path)
    other.close()
    return SessionEndReason.OTHER_PERSON


def _public_methods(obj: object) -> list[str]:
    return sorted(
        name
        for name, member in inspect.getmembers(type(obj))
        if not name.startswith("_") and (inspect.isfunction(member) or isinstance(member, property))
    )


async def _call(obj: object, name: str) -> Any:
    member = getattr(obj, name)
    if not callable(member):
        return member
    parameters = inspect.signature(member).parameters
    arguments = ARGUMENTS.get(name) or {}
    if name in ("record_attempt", "apply_sync", "reset", "open"):
        return None  # class-level or needing built inputs: covered by the write path below
    if any(p.default is p.empty and p.name not in arguments for p in parameters.values()):
        raise AssertionError(f"no arguments known for {type(obj).__name__}.{name}")
    result = member(**arguments)
    return await result if inspect.isawaitable(result) else result


@pytest.mark.parametrize("how", ["signed_out", "closed", "signed_out_elsewhere", "other_person"])
async def test_every_public_method_answers_in_types_once_the_session_has_ended(
    tmp_path: Path, how: str
) -> None:
    path = tmp_path / "cache.sqlite3"
    session = await open_session(ALICE, path)
    assert (await session.repository.sync_contacts_for_organisation(ORGS[0])).ok
    reason = await _end(session, how, path)
    assert session.ended is reason
    walked: list[str] = []
    for obj in (session, session.cache, session.repository):
        for name in _public_methods(obj):
            walked.append(f"{type(obj).__name__}.{name}")
            try:
                value = await _call(obj, name)
            except SessionEndedError as exc:
                assert exc.reason is reason and exc.message == reason.message
                continue
            except ContactSyncError as exc:  # typed, e.g. no access token after sign-out
                assert exc.kind is not None
                continue
            finally:
                if name == "sign_out" and reason is SessionEndReason.CLOSED:
                    reason = SessionEndReason.SIGNED_OUT  # signing out after close erases
            if isinstance(value, SyncFailure):
                assert value.error.kind is SyncErrorKind.SIGNED_OUT
                assert value.error.message == reason.message
    assert session.ended is reason
    assert {"UserSession.sign_out", "ContactCache.overview", "ContactCache.read_table"} <= set(
        walked
    )
    assert "ContactCacheSyncRepository.sync_contacts_for_organisation" in walked
    # A second sign-out (a double click) is as quiet as the first.
    assert await session.sign_out() == {}
    await session.aclose()


async def test_writes_after_the_end_are_refused_in_types(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    session = await open_session(ALICE, path)
    other = await open_session(BOB, path)
    with pytest.raises(SessionEndedError):
        session.cache.clear()
    with pytest.raises(SessionEndedError):
        session.cache.begin_sync(ORGS[0]).commit(session.clock.now())
    assert other.cache.counts()["contacts"] == 0
    await other.sign_out()
    await session.aclose()


def test_a_cache_opened_directly_is_released_by_close(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    cache = ContactCache.open(path)
    cache.close()
    cache.close()
    with pytest.raises(SessionEndedError) as raised:
        cache.counts()
    assert raised.value.reason is SessionEndReason.CLOSED
    reopened = ContactCache.open(path)
    assert reopened.counts()["contacts"] == 0
    reopened.close()


async def test_a_repository_on_a_closed_in_memory_cache_fails_typed() -> None:
    cache = ContactCache.open(":memory:")
    repository = ContactCacheSyncRepository(None, cache, source=fake_source())
    cache.close()
    result = await repository.sync_contacts_for_organisation(ORGS[0])
    assert isinstance(result, SyncFailure) and result.error.kind is SyncErrorKind.SIGNED_OUT


def fake_source() -> Any:
    from contactsync_kit.testing import FakeContactSource

    return FakeContactSource()


async def test_sign_out_after_close_still_erases_what_is_still_ours(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    session = await open_session(ALICE, path)
    assert (await session.repository.sync_contacts_for_organisation(ORGS[0])).ok
    session.close()
    assert exists(path)
    assert await session.sign_out() == {}  # no rows counted: the cache was closed
    assert not exists(path) and not exists(f"{path}.lock")
    assert session.ended is SessionEndReason.SIGNED_OUT


async def test_a_sync_running_when_another_person_takes_over_writes_nothing_of_theirs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cache.sqlite3"
    slow = fake_server()
    slow.delay_s = 0.3
    alice = await open_session(ALICE, path, slow)
    running = asyncio.create_task(alice.repository.sync_contacts_for_organisation(ORGS[0]))
    await asyncio.sleep(0.1)  # Alice's sync is waiting for the server
    bob = await open_session(BOB, path)
    assert (await bob.repository.sync_contacts_for_organisation(ORGS[1])).ok
    result = await running
    assert isinstance(result, SyncFailure) and result.error.kind is SyncErrorKind.SIGNED_OUT
    assert bob.cache.overview().get_column("organisation_id").to_list() == [ORGS[1]]
    assert bob.cache.read_table("sync_log").height == 1  # Alice's attempt is not logged here
    await bob.sign_out()
    await alice.sign_out()


def test_a_hard_link_at_the_cache_path_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.sqlite3"
    elsewhere.write_bytes(b"")
    os.link(elsewhere, tmp_path / "cache.sqlite3")
    with pytest.raises(UnsafeCachePathError, match="hard link"):
        ContactCache.open(tmp_path / "cache.sqlite3")


async def test_another_person_takes_over_an_encrypted_cache_left_open(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    alice = await open_session(ALICE, path, cache_key="alice's key")
    assert (await alice.repository.sync_contacts_for_organisation(ORGS[0])).ok
    bob = await open_session(BOB, path, cache_key="bob's key")
    assert bob.cache.counts()["contacts"] == 0
    assert alice.ended is SessionEndReason.OTHER_PERSON
    assert (await bob.repository.sync_contacts_for_organisation(ORGS[1])).ok
    await bob.sign_out()
    await alice.aclose()


async def test_organisation_names_live_in_the_cache_and_go_with_it(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    alice = await open_session(ALICE, path)
    alice.cache.remember_organisation_names({ORGS[0]: "Solstreif Helpers"})
    assert alice.cache.organisation_names() == {ORGS[0]: "Solstreif Helpers"}
    bob = await open_session(BOB, path)  # takes the file over: nothing of Alice's is left
    assert bob.cache.organisation_names() == {}
    bob.cache.remember_organisation_names({ORGS[1]: "Tindefjell"})
    bob.cache.clear()
    assert bob.cache.organisation_names() == {}
    await bob.sign_out()
    await alice.aclose()


def test_closing_while_signing_out_waits_for_the_sign_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cancelled sync's cleanup closes the cache while sign-out erases it on another thread.
    # The close must wait until sign-out is done with the lock file's descriptor: two
    # releases at once closed it twice (EBADF, or another file's reused descriptor).
    cache = ContactCache.open(tmp_path / "cache.sqlite3")
    erase = erase_cache_files
    closer = threading.Thread(target=cache.close)
    waited: list[bool] = []

    def erase_while_closing(path: Path) -> list[Path]:
        closer.start()
        closer.join(timeout=0.5)
        waited.append(closer.is_alive())
        return erase(path)

    monkeypatch.setattr(lease_module, "erase_cache_files", erase_while_closing)
    erased = cache.erase()
    closer.join(timeout=10)
    assert waited == [True], "the close went ahead in the middle of the sign-out"
    assert not closer.is_alive()
    assert tmp_path / "cache.sqlite3" in erased
    assert not (tmp_path / "cache.sqlite3").exists()

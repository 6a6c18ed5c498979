"""A session in another process, driven one JSON line at a time: the other tab, kernel or person.

The child signs in (against `FakeSupabase` seeded the same way in every process, or against
a real stack's URL), then answers each command with one JSON line. Any exception is
reported with its class and whether it is one of the kit's (`ContactSyncError`): the tests
assert that no raw error ever reaches a caller.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "pw-for-tests"
ORGS = ("0b8c1f0e-0000-4000-8000-000000000001", "0b8c1f0e-0000-4000-8000-000000000002")


def fake_server() -> Any:
    """The same FakeSupabase in every process: two users, two organisations of contacts."""
    from contactsync_kit.testing import FakeSupabase

    fake = FakeSupabase(users={"alice@example.org": PASSWORD, "bob@example.org": PASSWORD})
    for n, org in enumerate(ORGS):
        fake.add_contacts(org, 10 + 5 * n, notes=2, seed=n)
    return fake


class _SkewedClock:
    """This machine's wall clock, off by `skew_s` (a dual-boot machine's local-time RTC)."""

    def __init__(self, skew_s: float) -> None:
        self.skew = timedelta(seconds=skew_s)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.skew


def _skew_the_whole_process(skew_s: float) -> _SkewedClock:
    # supabase-py judges its session's expiry by time.time(): skew it too, as the OS would.
    real = time.time
    time.time = lambda: real() + skew_s
    return _SkewedClock(skew_s)


async def _start(config: dict[str, Any]) -> Any:
    from contactsync_kit import start_session

    if "url" in config:
        skew = config.get("skew_s")
        return await start_session(
            config["url"],
            config["key"],
            email=config["email"],
            password=config["password"],
            cache_path=config.get("cache_path"),
            clock=None if skew is None else _skew_the_whole_process(skew),
        )
    fake = fake_server()
    return await start_session(
        fake.url,
        fake.anon_key,
        email=config["email"],
        password=PASSWORD,
        cache_path=config.get("cache_path"),
        http_client=fake.http_client(),
    )


async def _run(session: Any, command: dict[str, Any]) -> Any:
    op = command["op"]
    if op == "sync":
        result = await session.repository.sync_contacts_for_organisation(command["org"])
        error = result.error
        return {
            "ok": result.ok,
            "items": result.items_synced,
            "kind": error.kind.value if error else None,
            "message": error.message if error else None,
        }
    if op == "counts":
        return session.cache.counts()
    if op == "overview":
        return session.cache.overview().get_column("organisation_id").to_list()
    if op == "read":
        return sorted(set(session.cache.read_table("contacts").get_column("organisation_id")))
    if op == "last_synced_at":
        return session.repository.last_synced_at(command["org"])
    if op == "sign_out":
        return await session.sign_out()
    if op == "close":
        session.close()
        return None
    if op == "ended":
        return session.ended
    if op == "path":
        return session.cache.path
    if op == "clock_note":
        return session.clock_note()
    raise ValueError(f"unknown op {op!r}")


async def serve(config: dict[str, Any]) -> None:
    """Sign in, say so, then answer commands from stdin until it closes."""
    from contactsync_kit import ContactSyncError

    loop = asyncio.get_running_loop()
    session = None
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        command = json.loads(line)
        try:
            if command["op"] == "start":
                session = await _start({**config, **command.get("config", {})})
                value: Any = session.cache.path
            else:
                value = await _run(session, command)
            answer = {"ok": True, "value": value}
        except ContactSyncError as exc:
            reason = getattr(exc, "reason", None)
            answer = {"ok": False, "error": type(exc).__name__, "kit": True, "reason": reason}
            answer["message"] = str(exc)
        except Exception as exc:  # reported, never hidden: the tests fail on these
            answer = {"ok": False, "error": type(exc).__name__, "kit": False, "message": repr(exc)}
        print(json.dumps(answer, default=str), flush=True)


class Worker:
    """The parent's handle on one child session process."""

    def __init__(self, config: dict[str, Any], env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.session_worker", json.dumps(config)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )

    def send(self, op: str, **fields: Any) -> None:
        """Send a command without waiting for its answer."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.process.stdin.flush()

    def answer(self) -> dict[str, Any]:
        """The next answer (a dict with ``ok`` and ``value`` or ``error``)."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"the session process died (exit {self.process.poll()})"
        answer: dict[str, Any] = json.loads(line)
        assert answer["ok"] or answer["kit"], f"a raw error reached the caller: {answer}"
        return answer

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send a command and wait for its answer."""
        self.send(op, **fields)
        return self.answer()

    def stop(self) -> None:
        """Close stdin and wait for the process to end."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


if __name__ == "__main__":
    asyncio.run(serve(json.loads(sys.argv[1])))

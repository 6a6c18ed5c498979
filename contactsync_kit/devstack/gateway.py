"""The stack's HTTP gateway: Supabase's API gateway in miniature, with fault controls.

One aiohttp server on 127.0.0.1 routes ``/rest/v1/*`` to PostgREST (streaming the response
back) and ``/auth/v1/*`` to `auth.AuthService`. Like Supabase's Kong gateway it
requires an ``apikey`` (header or query parameter) that is one of the project's keys, answering
401 ``{"message": "No API key found in request"}`` / ``{"message": "Invalid API key"}``
otherwise, and when a request has no ``Authorization`` header it forwards
``Authorization: Bearer <apikey>``.

When PostgREST is not running (``stack.stop_postgrest()``) REST requests get what Kong answers
for an upstream that refuses connections: **502** with
``{"message": "An invalid response was received from the upstream server"}``.

The server runs on its own event loop in a background thread (`LoopThread`), so the stack
works the same from sync code, pytest, notebooks (which already run a loop) and asyncio code.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, replace
from typing import Any, Final, TypeVar

import aiohttp
from aiohttp import web
from yarl import URL

from ..tokens import unverified_claims
from .auth import AuthService

__all__ = ["Faults", "Gateway", "LoopThread", "RecordedRequest", "RequestLog"]

# The aiohttp server and its client to PostgREST.
__io__ = "network"

T = TypeVar("T")

# RFC 9110 hop-by-hop headers plus the ones aiohttp must compute itself for the new message.
_HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
_BAD_GATEWAY: Final = {"message": "An invalid response was received from the upstream server"}


class LoopThread:
    """An asyncio event loop running forever in a daemon thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 60) -> T:
        """Run ``coro`` on the loop and wait for its result from the calling thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        """Stop the loop, join the thread and close the loop (idempotent)."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()


@dataclass(frozen=True)
class _CannedResponse:
    status: int
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...]


class Faults:
    """Fault injection for ``/rest/v1`` requests (auth is never affected). Thread-safe.

    * ``latency_s``: seconds to wait before forwarding each REST request.
    * ``cut_after_bytes``: send the status, headers and the first N body bytes, then abort the
      connection (a response shorter than N is delivered whole).
    * `respond`: answer REST requests with a fixed status/body instead of forwarding.

    Stopping PostgREST is on the stack (``stack.stop_postgrest()``), not here.
    `reset` clears everything.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latency_s = 0.0
        self._cut_after_bytes: int | None = None
        self._canned: _CannedResponse | None = None
        self._canned_times: int | None = None

    @property
    def latency_s(self) -> float:
        """Added delay before each REST request is forwarded, in seconds."""
        with self._lock:
            return self._latency_s

    @latency_s.setter
    def latency_s(self, value: float) -> None:
        if value < 0:
            raise ValueError("latency_s must be >= 0")
        with self._lock:
            self._latency_s = float(value)

    @property
    def cut_after_bytes(self) -> int | None:
        """Abort REST responses after this many body bytes; ``None`` disables."""
        with self._lock:
            return self._cut_after_bytes

    @cut_after_bytes.setter
    def cut_after_bytes(self, value: int | None) -> None:
        if value is not None and value < 0:
            raise ValueError("cut_after_bytes must be >= 0 or None")
        with self._lock:
            self._cut_after_bytes = value

    def respond(
        self,
        status: int,
        body: str | bytes | Any = b"",
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        times: int | None = None,
    ) -> None:
        """Answer REST requests with ``status`` and ``body`` instead of forwarding them.

        ``body`` may be bytes, a str, or any other value (JSON-encoded). ``times`` limits how many
        requests get the canned answer (``None``: until `reset` or `clear_response`).
        """
        if isinstance(body, bytes):
            raw = body
        elif isinstance(body, str):
            raw = body.encode("utf-8")
        else:
            raw = json.dumps(body).encode("utf-8")
        canned = _CannedResponse(status, raw, content_type, tuple((headers or {}).items()))
        with self._lock:
            self._canned = canned
            self._canned_times = times

    def clear_response(self) -> None:
        """Stop answering with the canned response."""
        with self._lock:
            self._canned = None
            self._canned_times = None

    def reset(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._latency_s = 0.0
            self._cut_after_bytes = None
            self._canned = None
            self._canned_times = None

    def _take(self) -> tuple[float, int | None, _CannedResponse | None]:
        """The faults for one request; consumes one use of a limited canned response."""
        with self._lock:
            canned = self._canned
            if canned is not None and self._canned_times is not None:
                self._canned_times -= 1
                if self._canned_times <= 0:
                    self._canned = None
                    self._canned_times = None
            return self._latency_s, self._cut_after_bytes, canned


@dataclass(frozen=True)
class RecordedRequest:
    """One request the gateway handled (for tests that count round trips)."""

    service: str  # "rest" or "auth"
    method: str
    path: str  # below the service prefix, e.g. "/contacts"
    query: str  # raw query string
    status: int  # 0 if the request failed before a status was chosen
    role: str | None  # the JWT's `role` claim as forwarded (unverified), if any
    at: float  # time.time() when the request arrived
    broken: bool = False  # the body was cut off (a fault, PostgREST dying, client gone)


class RequestLog:
    """Thread-safe record of the gateway's requests; bounded to the last ``maxlen`` entries.

    A request is recorded as soon as its status is known, before any of its response is
    sent: once a client holds a response, its entry is already here. If the body then fails
    to arrive whole, the entry is replaced by one with ``broken=True``.
    """

    def __init__(self, maxlen: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._entries: list[RecordedRequest] = []
        self._maxlen = maxlen

    def _add(self, entry: RecordedRequest) -> None:
        with self._lock:
            self._entries.append(entry)
            if len(self._entries) > self._maxlen:
                del self._entries[: len(self._entries) - self._maxlen]

    def _replace(self, old: RecordedRequest, new: RecordedRequest) -> None:
        with self._lock:
            # Newest first: the entry being replaced was added moments ago.
            for index in range(len(self._entries) - 1, -1, -1):
                if self._entries[index] is old:
                    self._entries[index] = new
                    return

    @property
    def entries(self) -> list[RecordedRequest]:
        """A copy of the recorded requests, oldest first."""
        with self._lock:
            return list(self._entries)

    def rest(self) -> list[RecordedRequest]:
        """Only the ``/rest/v1`` requests."""
        return [e for e in self.entries if e.service == "rest"]

    def clear(self) -> None:
        """Forget all recorded requests."""
        with self._lock:
            self._entries.clear()


def _unverified_role(authorization: str | None) -> str | None:
    # Only for the request log: the signature is PostgREST's business, not the log's.
    if not authorization or not authorization.lower().startswith("bearer "):
        return None
    claims = unverified_claims(authorization[7:].strip())
    role = claims.get("role") if claims is not None else None
    return role if isinstance(role, str) else None


class _Exchange:
    """One REST request's log entry: written once its status is known, before the body."""

    def __init__(
        self, log: RequestLog, request: web.Request, path: str, authorization: str | None, at: float
    ) -> None:
        self._log = log
        self._template = RecordedRequest(
            "rest",
            request.method,
            path,
            request.rel_url.raw_query_string,
            0,
            _unverified_role(authorization),
            at,
        )
        self._entry: RecordedRequest | None = None

    def status(self, status: int) -> None:
        """Record the request with ``status``; call before the response is sent."""
        self._entry = replace(self._template, status=status)
        self._log._add(self._entry)

    def broken(self) -> None:
        """The response did not reach the client whole (or no status was ever chosen)."""
        if self._entry is None:
            self._log._add(self._template)
        elif not self._entry.broken:
            self._log._replace(self._entry, replace(self._entry, broken=True))


class Gateway:
    """The aiohttp application. Create and use it on one event loop (the stack's loop thread)."""

    def __init__(
        self,
        *,
        auth: AuthService,
        faults: Faults,
        log: RequestLog,
        api_keys: Callable[[], Iterable[str]],
    ) -> None:
        self._auth = auth
        self._faults = faults
        self._log = log
        self._api_keys = api_keys
        self.rest_upstream: str | None = None  # "http://127.0.0.1:PORT" while PostgREST runs
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self.port = 0

    async def start(self) -> int:
        """Listen on a free port of 127.0.0.1 and return it."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/rest/v1{tail:(/.*)?}", self._rest)
        app.router.add_route("*", "/auth/v1{tail:(/.*)?}", self._auth_route)
        app.router.add_route("*", "/{tail:.*}", self._no_route)
        # No access log: tests make thousands of requests and the log is the RequestLog.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1])
        # auto_decompress=False: bytes go back exactly as PostgREST sent them.
        self._client = aiohttp.ClientSession(
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            connector=aiohttp.TCPConnector(limit=64, force_close=False),
        )
        return self.port

    async def stop(self) -> None:
        """Close the upstream client and the server (idempotent)."""
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- routing -------------------------------------------------------------------------------

    @staticmethod
    async def _no_route(request: web.Request) -> web.Response:
        return web.json_response({"message": "no Route matched with those values"}, status=404)

    def _check_api_key(self, request: web.Request) -> tuple[str | None, web.Response | None]:
        key = request.headers.get("apikey") or request.query.get("apikey")
        if not key:
            return None, web.json_response({"message": "No API key found in request"}, status=401)
        if key not in set(self._api_keys()):
            return None, web.json_response(
                {
                    "message": "Invalid API key",
                    "hint": "Double check your Supabase `anon` or `service_role` API key.",
                },
                status=401,
            )
        return key, None

    def _record_auth(self, request: web.Request, path: str, status: int, at: float) -> None:
        # The auth handlers build whole responses: recorded here, before aiohttp sends them.
        self._log._add(
            RecordedRequest(
                "auth",
                request.method,
                path,
                request.rel_url.raw_query_string,
                status,
                _unverified_role(request.headers.get("Authorization")),
                at,
            )
        )

    async def _auth_route(self, request: web.Request) -> web.StreamResponse:
        at = time.time()
        path = request.match_info["tail"] or "/"
        _, denied = self._check_api_key(request)
        response = denied or await self._auth.handle(request, path)
        self._record_auth(request, path, response.status, at)
        return response

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        at = time.time()
        raw_path = request.rel_url.raw_path
        tail = raw_path[len("/rest/v1") :] or "/"
        key, denied = self._check_api_key(request)
        authorization = request.headers.get("Authorization")
        if denied is not None:
            _Exchange(self._log, request, tail, authorization, at).status(denied.status)
            return denied
        if authorization is None and key is not None and key.count(".") == 2:
            authorization = f"Bearer {key}"
        exchange = _Exchange(self._log, request, tail, authorization, at)
        try:
            return await self._forward(request, tail, authorization, exchange)
        except BaseException:
            # Cancelled (client gone) or failed: the log must not claim a whole response.
            exchange.broken()
            raise

    async def _forward(
        self, request: web.Request, tail: str, authorization: str | None, exchange: _Exchange
    ) -> web.StreamResponse:
        latency, cut_after, canned = self._faults._take()
        if latency > 0:
            await asyncio.sleep(latency)
        if canned is not None:
            exchange.status(canned.status)
            return web.Response(
                status=canned.status,
                body=canned.body,
                content_type=_mime(canned.content_type),
                charset=_charset(canned.content_type),
                headers=dict(canned.headers),
            )
        upstream, client = self.rest_upstream, self._client
        if upstream is None or client is None:
            exchange.status(502)
            return web.json_response(_BAD_GATEWAY, status=502)
        headers = [
            (k, v)
            for k, v in request.headers.items()
            if k.lower() not in _HOP_BY_HOP and k.lower() != "authorization"
        ]
        if authorization is not None:
            headers.append(("Authorization", authorization))
        query = request.rel_url.raw_query_string
        url = URL(f"{upstream}{tail}" + (f"?{query}" if query else ""), encoded=True)
        body = await request.read() if request.body_exists else None
        try:
            upstream_response = await client.request(
                request.method, url, headers=headers, data=body, allow_redirects=False
            )
        except (aiohttp.ClientConnectionError, OSError):
            exchange.status(502)
            return web.json_response(_BAD_GATEWAY, status=502)
        async with upstream_response:
            return await self._stream(request, upstream_response, cut_after, exchange)

    @staticmethod
    async def _stream(
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        cut_after: int | None,
        exchange: _Exchange,
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for name, value in upstream.headers.items():
            if name.lower() not in _HOP_BY_HOP or name.lower() == "content-length":
                response.headers.add(name, value)
        exchange.status(upstream.status)  # before prepare(): nothing has been sent yet
        sent = 0
        try:
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                if cut_after is not None and sent + len(chunk) >= cut_after:
                    await response.write(chunk[: cut_after - sent])
                    exchange.broken()
                    _abort(request)
                    return response
                await response.write(chunk)
                sent += len(chunk)
        except ConnectionResetError:
            # The client went away (it cancelled the request): nothing is left to send to.
            exchange.broken()
            return response
        except aiohttp.ClientError:
            # PostgREST died mid-body: the client must see a broken response, not a short one.
            exchange.broken()
            _abort(request)
            return response
        await response.write_eof()
        return response


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        # abort(), not close(): no orderly shutdown, like a dropped mobile connection.
        transport.abort()


def _mime(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip()


def _charset(content_type: str) -> str | None:
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset":
            return value.strip()
    return None

"""`AiohttpTransport`: httpx's interface, aiohttp's HTTP/1.1 parser underneath.

supabase-py talks through an ``httpx.AsyncClient``; its default transport parses responses
in pure Python (h11), which cost a full sync about 0.8 CPU-seconds per 100,000 contacts.
aiohttp parses in C (llhttp), about half that. Only the transport changes: requests, headers,
timeouts and the response are httpx's, and aiohttp's exceptions are translated into httpx's
where they enter, so everything above (supabase-py, `remote`) sees what it always saw:
a refused or dropped connection is an ``httpx.ConnectError`` / ``httpx.ReadError`` /
``httpx.RemoteProtocolError``, a timeout one of httpx's ``TimeoutException`` classes.

A response's body is read whole before it is handed back (a page of the sync is bounded by
the server's row cap), so the connection is back in the pool at once. aiohttp binds its
session to an event loop: one is made per loop the client is used from.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx

__all__ = ["AiohttpTransport"]

__io__ = "network"


@contextlib.contextmanager
def _translated(request: httpx.Request) -> Iterator[None]:
    """aiohttp's and asyncio's exceptions as the httpx ones they correspond to."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc) or "connect timeout", request=request) from exc
    except (aiohttp.SocketTimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise httpx.ReadTimeout(str(exc) or "read timeout", request=request) from exc
    except TimeoutError as exc:  # asyncio's: the whole request's budget
        raise httpx.PoolTimeout("timed out", request=request) from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx.ConnectError(str(exc), request=request) from exc
    except aiohttp.ServerDisconnectedError as exc:
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc
    except (aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc
    except (aiohttp.ClientOSError, aiohttp.ClientConnectionError) as exc:
        raise httpx.ReadError(str(exc), request=request) from exc
    except aiohttp.ClientError as exc:
        raise httpx.TransportError(str(exc), request=request) from exc


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx async transport that sends each request with aiohttp (HTTP/1.1, keep-alive).

    Pass it to ``httpx.AsyncClient(transport=AiohttpTransport())``; `sign_in` does.
    """

    def __init__(self) -> None:
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}

    def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            for other in [lp for lp in self._sessions if lp.is_closed()]:
                # Its loop is gone, and its connections with it: forget it quietly.
                self._sessions.pop(other).detach()
            session = aiohttp.ClientSession(
                # httpx decodes (and its headers ask for) content encodings; cookies are httpx's.
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            )
            self._sessions[loop] = session
        return session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request`; the response comes back with its body read."""
        timeout: dict[str, Any] = request.extensions.get("timeout", {})
        with _translated(request):
            body = await request.aread()
            async with self._session().request(
                request.method,
                str(request.url),
                headers=list(request.headers.multi_items()),
                data=body or None,
                allow_redirects=False,
                compress=None,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=timeout.get("pool"),
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
            ) as response:
                content = await response.read()
                return httpx.Response(
                    status_code=response.status,
                    headers=response.raw_headers,
                    content=content,
                    request=request,
                    extensions={"http_version": b"HTTP/1.1"},
                )

    def __del__(self) -> None:
        # supabase-py never closes the httpx client it was given, so neither is this closed:
        # without this, aiohttp would print "Unclosed client session" at every exit.
        # Detaching marks a session closed; the connector's own synchronous close drops its
        # idle keep-alive sockets (what its finaliser would do, minus the warning).
        for session in self._sessions.values():
            connector = session.connector
            session.detach()
            if connector is not None:
                with contextlib.suppress(Exception):
                    connector._close()
        self._sessions.clear()

    async def aclose(self) -> None:
        """Close the sessions of this event loop (the others' loops are closed or elsewhere)."""
        loop = asyncio.get_running_loop()
        session = self._sessions.pop(loop, None)
        if session is not None:
            await session.close()

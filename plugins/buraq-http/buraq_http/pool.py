"""One ``httpx.AsyncClient`` (one connection pool) per event loop, shared by every task on that loop.

A client per task would pay a TCP and TLS handshake per task; one global client would break
the moment a second loop (a test's ``asyncio.run``, another thread) used it, because its
connections belong to the loop that opened them. So each loop gets its own, found by a
weak reference to the loop: a loop that is gone takes its client with it.
"""

from __future__ import annotations

import asyncio
import threading
import weakref

import httpx

# Connections kept open per worker process, across all its http.request pipelines.
MAX_CONNECTIONS = 100
MAX_KEEPALIVE = 20

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()
_guard = threading.Lock()


def client() -> httpx.AsyncClient:
    """The running loop's client, made on first use (and again if someone closed it)."""
    loop = asyncio.get_running_loop()
    with _guard:
        found = _clients.get(loop)
        if found is None or found.is_closed:
            found = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_KEEPALIVE),
                follow_redirects=False,
            )
            _clients[loop] = found
        return found


async def close() -> None:
    """Close the running loop's client, if it has one; call before a loop you made ends, to close its sockets."""
    with _guard:
        found = _clients.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.aclose()

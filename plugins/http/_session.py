"""One ``aiohttp.ClientSession`` per step object and event loop, or the user's own."""

from __future__ import annotations

import asyncio
import threading

import aiohttp


class SessionHolder:
    """Hands out the session a step uses in the running loop.

    Created on first use in each loop. Creating a session is synchronous (no ``await``
    between the lookup and the store), so any number of concurrent first calls in one loop
    get the same session; a thread lock covers loops in other threads. ``aclose()`` closes
    the sessions this holder created and never a session the user passed in.
    """

    __slots__ = ("_by_loop", "_limit_per_host", "_lock", "_user_session")

    def __init__(self, session: aiohttp.ClientSession | None, limit_per_host: int | None) -> None:
        self._user_session = session
        self._limit_per_host = limit_per_host
        self._by_loop: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
        self._lock = threading.Lock()

    def get(self) -> aiohttp.ClientSession:
        if self._user_session is not None:
            return self._user_session
        loop = asyncio.get_running_loop()
        session = self._by_loop.get(loop)
        if session is None or session.closed:
            with self._lock:
                session = self._by_loop.get(loop)
                if session is None or session.closed:
                    for other in [lp for lp in self._by_loop if lp.is_closed()]:
                        del self._by_loop[other]
                    session = self._new_session()
                    self._by_loop[loop] = session
        return session

    def _new_session(self) -> aiohttp.ClientSession:
        # Keep-alive and pooling are aiohttp's defaults (limit=100 connections in all);
        # limit_per_host=0 means no per-host limit.
        connector = aiohttp.TCPConnector(limit_per_host=self._limit_per_host or 0)
        # raise_for_status stays off: the step checks the status itself (non-2xx raises).
        return aiohttp.ClientSession(connector=connector)

    async def aclose(self) -> None:
        """Close every session this holder created (the user's session stays open)."""
        with self._lock:
            sessions = list(self._by_loop.items())
            self._by_loop.clear()
        current = asyncio.get_running_loop()
        for loop, session in sessions:
            if session.closed:
                continue
            if loop is current:
                await session.close()
            elif loop.is_running():
                # A session belongs to its loop: close it there.
                future = asyncio.run_coroutine_threadsafe(session.close(), loop)
                await asyncio.wrap_future(future)
            # A session whose loop is already closed has no open transport left to close.

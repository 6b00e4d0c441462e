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
        """Close the sessions this holder created (the user's session stays open): the
        running loop's, and those of loops running in other threads (closed on their own
        loop). A session of a loop that is not running now is kept for ``aclose()`` in
        that loop, since it can only be closed there."""
        current = asyncio.get_running_loop()
        with self._lock:
            todo = [
                (loop, self._by_loop.pop(loop))
                for loop in list(self._by_loop)
                if loop is current or loop.is_running() or loop.is_closed()
            ]
        for loop, session in todo:
            if session.closed or loop.is_closed():
                continue
            if loop is current:
                await session.close()
            else:
                future = asyncio.run_coroutine_threadsafe(session.close(), loop)
                await asyncio.wrap_future(future)

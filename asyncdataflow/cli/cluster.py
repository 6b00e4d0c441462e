"""``--dask ADDRESS``: the Dask client ``asyncdataflow map`` runs its chunks through."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from .errors import UsageError

__all__ = ["open_client"]


async def open_client(address: str, resources: contextlib.AsyncExitStack) -> Any:
    """An asynchronous ``distributed.Client`` for ``address``: a scheduler address
    (``tcp://host:8786``) or ``local:N``, a local cluster of N worker processes (one
    thread each) started here and closed with ``resources``."""
    import distributed

    logging.getLogger("distributed").setLevel(logging.WARNING)
    if address.startswith("local:"):
        count = address.removeprefix("local:")
        if not count.isdigit() or int(count) < 1:
            raise UsageError(f"--dask {address}: write local:N with N >= 1 worker processes")
        cluster = await resources.enter_async_context(
            distributed.LocalCluster(
                n_workers=int(count),
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",  # any free port: never warn that 8787 is taken
                worker_dashboard_address=None,
                asynchronous=True,
            )  # type: ignore[no-untyped-call]
        )
        address = cluster.scheduler_address
    try:
        client = distributed.Client(address, asynchronous=True, timeout="30s")  # type: ignore[no-untyped-call]
        return await resources.enter_async_context(client)
    except OSError as error:
        raise UsageError(f"--dask {address}: no Dask scheduler answers there ({error})") from None

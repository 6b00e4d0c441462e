"""``flow.map`` on a Dask cluster: inputs cut into chunks, one Dask task per chunk, the
flow mapped over each chunk on the event loop of a worker, results in input order.

>>> async with Client(address, asynchronous=True) as client:  # doctest: +SKIP
...     async for result in asyncdataflow.dask.map(flow, inputs, client=client, concurrency=10):
...         print(result)

See docs/scale.md for when to use it and how to size chunks.
"""

from __future__ import annotations

import asyncio
import itertools
import pickle
import uuid
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from typing import Any

try:
    import cloudpickle  # type: ignore[import-untyped]
    import distributed
except ImportError as error:  # pragma: no cover - the extra is installed in tests
    raise ImportError(
        'asyncdataflow.dask needs distributed: pip install "asyncdataflow[dask]"'
    ) from error

from .exceptions import DataFlowCallError, DataFlowNotPicklableError, DataFlowRunError
from .flow import DataFlow

# what Dask pickles tasks with: cloudpickle pickles what pickle does (importable functions
# by reference) and lambdas, closures and __main__'s functions by value
_dumps: Callable[[Any], bytes] = cloudpickle.dumps
_loads: Callable[[bytes], Any] = pickle.loads

__all__ = ["map"]

Result = dict[str, Any]
Inputs = Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]]


def map(
    flow: DataFlow,
    inputs: Inputs,
    *,
    client: distributed.Client,
    concurrency: int,
    chunk_size: int = 100,
    max_pending: int | None = None,
    return_exceptions: bool = False,
    retries: int = 0,
) -> AsyncIterator[Result | BaseException]:
    """Run ``flow`` once per kwargs mapping of ``inputs`` on the Dask cluster of
    ``client`` and yield the results in input order, as ``flow.map`` does.

    Inputs (a sync or async iterable) are read lazily and cut into chunks of
    ``chunk_size``; each chunk is one Dask task that runs ``flow.map(chunk,
    concurrency=concurrency)`` on the event loop of a worker, then closes the flow there
    (``aclose()``: the sessions and pools it opened on that worker). At most
    ``max_pending`` chunks are submitted and not yet consumed (all their results
    yielded); the default is twice the worker threads of the cluster when the map starts
    (at least 2).

    Without ``return_exceptions``, the first failed run (in input order) ends the map:
    the results before it are yielded, its exception is raised, and the chunks still
    pending are cancelled. With ``return_exceptions=True`` a failed run yields its
    exception in its place. Closing the iterator early cancels the pending chunks.

    A chunk whose worker is lost is run again by Dask on another worker
    (``distributed.scheduler.allowed-failures`` times, then ``KilledWorker`` is raised);
    ``retries`` is passed to ``client.submit`` and re-runs a chunk whose task failed as a
    whole. Either way some runs of a chunk may happen twice: make writers idempotent.

    ``client`` may be asynchronous (``Client(asynchronous=True)``, used on its own loop)
    or synchronous (used from inside a running event loop: its blocking calls go to a
    thread). The flow is pickled (as its definition and options) when ``map`` is called:
    a flow that cannot be sent to the workers raises
    :class:`~asyncdataflow.exceptions.DataFlowNotPicklableError` before anything is
    submitted.
    """
    _check_int("concurrency", concurrency, 1)
    _check_int("chunk_size", chunk_size, 1)
    if max_pending is not None:
        _check_int("max_pending", max_pending, 1)
    _check_int("retries", retries, 0)
    if not isinstance(flow, DataFlow):
        raise DataFlowCallError(f"asyncdataflow.dask.map(): {flow!r} is not a DataFlow")
    if flow.infinity_loop:
        raise DataFlowCallError(
            f"flow {flow.name!r} is an infinity loop; asyncdataflow.dask.map() needs runs "
            "that finish"
        )
    if not isinstance(client, distributed.Client):
        raise DataFlowCallError(
            f"asyncdataflow.dask.map(client={client!r}): pass a distributed.Client"
        )
    payload = dumps_flow(flow)
    return _map(
        flow.name,
        payload,
        inputs,
        client,
        concurrency,
        chunk_size,
        max_pending,
        return_exceptions,
        retries,
    )


def _check_int(name: str, value: object, least: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise DataFlowCallError(
            f"asyncdataflow.dask.map({name}={value!r}): must be an int >= {least}"
        )


# -- sending the flow ---------------------------------------------------------------


def dumps_flow(flow: DataFlow) -> bytes:
    """``flow`` pickled as Dask pickles tasks (with cloudpickle), or
    :class:`DataFlowNotPicklableError` naming what cannot be sent."""
    try:
        return _dumps(flow)
    except Exception as error:
        culprit = _unpicklable_step(flow.definition, "definition")
        if culprit is not None:
            where, item, step_error = culprit
            raise DataFlowNotPicklableError(
                f"flow {flow.name!r} cannot be sent to Dask workers: step {_name(item)} at "
                f"{where} cannot be pickled ({type(step_error).__name__}: {step_error}). "
                "Build what it holds (locks, sockets, sessions, pools, open files) inside "
                "the step on first use, or give it a __reduce__ that rebuilds it from its "
                "configuration"
            ) from step_error
        raise DataFlowNotPicklableError(
            f"flow {flow.name!r} cannot be sent to Dask workers: "
            f"{type(error).__name__}: {error}. Its steps pickle; check its options "
            "(executor=, plugins=, retry=)"
        ) from error


def _unpicklable_step(definition: tuple[Any, ...], path: str) -> tuple[str, Any, Exception] | None:
    for i, item in enumerate(definition):
        where = f"{path}[{i}]"
        if isinstance(item, tuple):
            found = _unpicklable_step(item, where)
        elif isinstance(item, DataFlow):
            found = _unpicklable_step(item.definition, where)
            if found is None:
                try:
                    _dumps(item)
                except Exception as error:
                    found = (where, item, error)
        else:
            try:
                _dumps(item)
            except Exception as error:
                found = (where, item, error)
            else:
                found = None
        if found is not None:
            return found
    return None


def _name(item: Any) -> str:
    name = getattr(item, "name", None)
    if not isinstance(name, str):
        name = getattr(item, "__qualname__", None) or type(item).__qualname__
    return repr(name)


# -- on the worker ----------------------------------------------------------------


async def run_chunk(
    payload: bytes,
    chunk: bytes,
    first: int,
    concurrency: int,
    return_exceptions: bool,
) -> bytes:
    """The Dask task of one chunk (a coroutine function: the worker awaits it on its
    event loop). Builds the flow from ``payload``, maps it over the pickled list of
    inputs ``chunk`` and closes it. Returns the pickled list of results in order; a
    failed run's exception stands in its place (without ``return_exceptions`` it is the
    last item: the runs after it were not started or were cancelled). ``first`` is the
    index of the chunk's first input in the map.

    Inputs and results travel as one pickle each: Dask serializes a list item by item,
    which costs more than the runs of a chunk of trivial steps."""
    flow: DataFlow = _loads(payload)
    results: list[Result | BaseException] = []
    try:
        # an exception or a cancellation inside the generator ends (closes) it
        runs = flow.map(_loads(chunk), concurrency=concurrency, return_exceptions=return_exceptions)
        async for item in runs:
            results.append(item)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:
        task = asyncio.current_task()
        if isinstance(error, asyncio.CancelledError) and task and task.cancelling():
            raise  # the chunk itself is cancelled (by Dask): not a run's failure
        results.append(error)
    finally:
        await flow.aclose()  # a failure here fails the chunk (and Dask's retries apply)
    address = _worker_address()
    for i, item in enumerate(results):
        if isinstance(item, BaseException):
            item.add_note(
                f"asyncdataflow.dask: raised on worker {address} by the run of input #{first + i}"
            )
    try:
        return _dumps(results)
    except Exception:
        return _dumps([_sendable(item, first + i, address) for i, item in enumerate(results)])


def _worker_address() -> str:
    try:
        return str(distributed.get_worker().address)
    except ValueError:  # not on a worker (called directly, e.g. in a test)
        return "<no worker>"


def _sendable(item: Any, index: int, address: str) -> Any:
    """``item`` if it can be pickled, else a :class:`DataFlowRunError` that says what it
    was (a result or an exception) and why it cannot come back."""
    try:
        _dumps(item)
    except Exception as pickling:
        what = "exception" if isinstance(item, BaseException) else "result"
        stand_in = DataFlowRunError(
            f"the {what} of the run of input #{index} on worker {address} cannot be pickled "
            f"to come back ({type(pickling).__name__}: {pickling}): "
            f"{type(item).__module__}.{type(item).__qualname__}: {item}"
        )
        for note in getattr(item, "__notes__", ()):
            stand_in.add_note(note)
        return stand_in
    return item


# -- on the client ----------------------------------------------------------------


async def _ask(client: distributed.Client, method: Callable[..., Any], *args: Any) -> Any:
    """Call one of the client's blocking-or-awaitable methods from the running loop: an
    asynchronous client's returns an awaitable; a synchronous client's blocks, so it runs
    in a thread."""
    if client.asynchronous:
        return await method(*args)
    return await asyncio.to_thread(method, *args)


async def _map(
    name: str,
    payload: bytes,
    inputs: Inputs,
    client: distributed.Client,
    concurrency: int,
    chunk_size: int,
    max_pending: int | None,
    return_exceptions: bool,
    retries: int,
) -> AsyncIterator[Result | BaseException]:
    if max_pending is None:
        threads = await _ask(client, client.nthreads)
        max_pending = max(2, 2 * sum(threads.values()))
    it: Iterable[Mapping[str, Any]] | None = None
    ait: AsyncIterator[Mapping[str, Any]] | None = None
    if isinstance(inputs, AsyncIterable):
        ait = aiter(inputs)
    else:
        it = iter(inputs)
    prefix = f"asyncdataflow.map-{name}-{uuid.uuid4().hex}"
    numbers = itertools.count()
    pending: deque[distributed.Future[Any]] = deque()
    index = 0
    exhausted = False
    try:
        while True:
            while not exhausted and len(pending) < max_pending:
                chunk: list[dict[str, Any]] = []
                while len(chunk) < chunk_size:
                    try:
                        kw = next(it) if it is not None else await anext(ait)  # type: ignore[arg-type, call-overload]
                    except (StopIteration, StopAsyncIteration):
                        exhausted = True
                        break
                    if not isinstance(kw, Mapping):
                        raise DataFlowCallError(
                            f"map(): input #{index + len(chunk)} is a {type(kw).__name__}, "
                            f"not a mapping of keyword arguments for flow {name!r}"
                        )
                    chunk.append(dict(kw))
                if chunk:
                    try:
                        packed = _dumps(chunk)
                    except Exception as error:
                        raise DataFlowCallError(
                            f"map(): inputs #{index} to #{index + len(chunk) - 1} cannot be "
                            f"pickled to go to the workers ({type(error).__name__}: {error})"
                        ) from error
                    future = client.submit(
                        run_chunk,
                        payload,
                        packed,
                        index,
                        concurrency,
                        return_exceptions,
                        key=f"{prefix}-{next(numbers)}",
                        retries=retries,
                    )
                    pending.append(future)
                    index += len(chunk)
            if not pending:
                return
            results = _loads(await _ask(client, pending[0].result))
            for item in results:
                if not return_exceptions and isinstance(item, BaseException):
                    raise item
                yield item
            pending.popleft()
    finally:
        if pending:
            futures = list(pending)
            pending.clear()
            await _ask(client, client.cancel, futures)

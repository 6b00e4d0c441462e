"""flow.map: runs of one flow over many inputs, bounded, results in input order.

Two tasks share one deque of runs. The feeder pulls an input only when there is room
(fewer than ``concurrency`` runs going and fewer than ``2 * concurrency`` started and not
yet yielded), starts its run and appends it. The consumer (the async generator the caller
iterates) yields the head of the deque as soon as it is done. So a finished result is
never held back by an input iterable that is waiting for its next input, and admitting an
input costs the same whatever the concurrency: counters kept by the runs' done callbacks,
no scan of the deque.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._gather import cancel_and_wait
from .exceptions import DataFlowCallError

if TYPE_CHECKING:
    from .flow import DataFlow

Result = dict[str, Any]
Inputs = Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]]


class _Feed:
    """The feeder's state, and the wake-ups between it, the runs and the consumer."""

    __slots__ = (
        "concurrency",
        "consumer_waiting",
        "error",
        "failed",
        "feeder_waiting",
        "feeding",
        "flow",
        "inputs",
        "loop",
        "pending",
        "return_exceptions",
        "running",
        "window",
    )

    def __init__(
        self, flow: DataFlow, inputs: Inputs, concurrency: int, return_exceptions: bool
    ) -> None:
        self.flow = flow
        self.inputs = inputs
        self.concurrency = concurrency
        self.window = 2 * concurrency
        self.return_exceptions = return_exceptions
        self.loop = asyncio.get_running_loop()
        self.pending: deque[asyncio.Task[Result]] = deque()
        self.running = 0  # runs started whose done callback has not run yet
        self.failed = False  # a run failed and return_exceptions is off: start no more
        self.feeding = True
        self.error: BaseException | None = None  # raised by the input iterable
        self.feeder_waiting: asyncio.Future[None] | None = None
        self.consumer_waiting: asyncio.Future[None] | None = None

    def run_done(self, task: asyncio.Task[Result]) -> None:
        self.running -= 1
        if not self.return_exceptions and (task.cancelled() or task.exception() is not None):
            self.failed = True
        self.wake_feeder()
        waiting = self.consumer_waiting
        if waiting is not None and self.pending and self.pending[0] is task:
            if not waiting.done():
                waiting.set_result(None)

    def wake_feeder(self) -> None:
        waiting = self.feeder_waiting
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    def wake_consumer(self) -> None:
        waiting = self.consumer_waiting
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    async def wait(self) -> None:
        """The consumer waits for the head run to finish, or for a run or the end of the
        inputs when there is none."""
        self.consumer_waiting = waiting = self.loop.create_future()
        try:
            await waiting
        finally:
            self.consumer_waiting = None

    async def run(self) -> None:
        """The feeder: pull inputs while there is room, start their runs."""
        flow = self.flow
        loop = self.loop
        pending = self.pending
        concurrency = self.concurrency
        window = self.window
        done = self.run_done
        inputs = self.inputs
        it = None if isinstance(inputs, AsyncIterable) else iter(inputs)
        ait = aiter(inputs) if it is None else None  # type: ignore[arg-type]
        index = 0
        try:
            while True:
                while self.running >= concurrency or len(pending) >= window:
                    if self.failed:
                        return
                    self.feeder_waiting = waiting = loop.create_future()
                    try:
                        await waiting
                    finally:
                        self.feeder_waiting = None
                if self.failed:
                    return
                try:
                    kw = next(it) if it is not None else await anext(ait)  # type: ignore[arg-type]
                except (StopIteration, StopAsyncIteration):
                    return
                if self.failed:
                    return
                if not isinstance(kw, Mapping):
                    raise DataFlowCallError(
                        f"map(): input #{index} is a {type(kw).__name__}, not a mapping "
                        f"of keyword arguments for flow {flow.name!r}"
                    )
                task: asyncio.Task[Result] = loop.create_task(flow(**kw))  # type: ignore[arg-type]
                index += 1
                self.running += 1
                task.add_done_callback(done)
                pending.append(task)
                if len(pending) == 1:
                    self.wake_consumer()
        except BaseException as error:  # the consumer raises it after the earlier results
            self.error = error
        finally:
            self.feeding = False
            self.wake_consumer()


async def ordered_map(
    flow: DataFlow, inputs: Inputs, concurrency: int, return_exceptions: bool
) -> AsyncIterator[Result | BaseException]:
    """The consumer: see :meth:`DataFlow.map`."""
    feed = _Feed(flow, inputs, concurrency, return_exceptions)
    pending = feed.pending
    feeder = feed.loop.create_task(feed.run())
    try:
        while True:
            if pending:
                head = pending[0]
                if head.done():
                    pending.popleft()
                    feed.wake_feeder()
                    try:
                        result = head.result()
                    except BaseException as error:  # a run's CancelledError too
                        if not return_exceptions:
                            raise
                        yield error
                    else:
                        yield result
                    continue
            elif not feed.feeding:
                failure, feed.error = feed.error, None
                if failure is not None:
                    raise failure
                return
            await feed.wait()
    finally:
        await cancel_and_wait([feeder, *pending])

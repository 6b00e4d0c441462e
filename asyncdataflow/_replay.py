"""flow.replay(sink): run dead letters through the flow again."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._dead_letters import REPLAYING
from .exceptions import DataFlowCallError

if TYPE_CHECKING:
    from .durable import DeadLetter, DeadLetterSink
    from .flow import DataFlow

_TOP = re.compile(r"definition\[(\d+)\]")


@dataclass(frozen=True, slots=True)
class Replayed:
    """What :meth:`DataFlow.replay` did: how many letters ran through and were removed,
    and the ones that failed again (they stay in the sink), each with its error."""

    succeeded: int
    failed: tuple[tuple[DeadLetter, BaseException], ...]


def _tail(flow: DataFlow, letter: DeadLetter, tails: dict[str, DataFlow | None]) -> Any:
    """The flow a letter is replayed through: the whole flow for a letter written outside
    a stream, else the steps after its source (a flow of them, built once per source)."""
    if letter.source is None:
        return flow
    if letter.source not in tails:
        match = _TOP.fullmatch(letter.source)
        if match is None:
            raise DataFlowCallError(
                f"replay: the letter of step {letter.step!r} comes from a record of the source "
                f"at {letter.source}, inside a block; replay runs the records of sources at the "
                f"top level of a definition (definition[N]). Move the source up, or replay it "
                f"with a flow of the steps after it"
            )
        rest = flow.definition[int(match.group(1)) + 1 :]
        tails[letter.source] = (
            flow.__class__(
                rest,
                args_visibility=flow.args_visibility,
                executor=flow.executor,
                plugins=flow.plugins,
                name=f"{flow.name} (replay after {letter.source})",
                retry=flow.retry,
            )
            if rest
            else None
        )
    return tails[letter.source]


async def replay(flow: DataFlow, sink: DeadLetterSink) -> Replayed:
    """See :meth:`DataFlow.replay`."""
    if flow.infinity_loop:
        raise DataFlowCallError(f"flow {flow.name!r} is an infinity loop; replay needs runs")
    tails: dict[str, DataFlow | None] = {}
    done: list[str] = []
    failed: list[tuple[DeadLetter, BaseException]] = []
    letters = [letter async for letter in sink.letters()]
    replaying = REPLAYING.set(True)  # a step failing again writes no second letter
    try:
        for letter in letters:
            if letter.flow != flow.name:
                continue
            target = _tail(flow, letter, tails)
            try:
                if target is not None:
                    await target(**letter.input)
            except Exception as error:
                if target is not flow:  # places in its notes are in the shorter flow
                    error.add_note(
                        f"asyncdataflow: replaying a dead letter of step {letter.step!r} at "
                        f"{letter.path} of flow {flow.name!r} through the steps after its "
                        f"source {letter.source}: places above count from that source"
                    )
                failed.append((letter, error))
                continue
            if letter.id is not None:
                done.append(letter.id)
    finally:
        REPLAYING.reset(replaying)
    if done:
        await sink.remove(done)
    return Replayed(len(done), tuple(failed))

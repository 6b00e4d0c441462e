"""Running the `asyncdataflow` command in this process, for the tests: `main(argv)` with
stdout, stderr and stdin swapped, the working directory and `sys.path` restored after.
The `cli` fixture of conftest.py hands out `in_process(...)`."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from asyncdataflow.cli import main

TESTS = Path(__file__).resolve().parent
EXAMPLES = TESTS.parent / "examples"


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


class _Terminal(io.TextIOWrapper):
    """A stderr that says it is a terminal (for the progress bar)."""

    def __init__(self) -> None:
        super().__init__(io.BytesIO(), encoding="utf-8", newline="", write_through=True)

    def isatty(self) -> bool:
        return True

    def getvalue(self) -> str:
        buffer = self.buffer
        assert isinstance(buffer, io.BytesIO)
        return buffer.getvalue().decode()


Cli = Callable[..., Done]


def in_process(capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """`cli(*argv, cwd=TESTS, stdin=b"", tty=False)`: run `main(argv)` in this process,
    with tests/ and examples/ importable."""
    monkeypatch.setattr(sys, "path", [str(TESTS), str(EXAMPLES), *sys.path])

    def run(*argv: str, cwd: Path = TESTS, stdin: bytes = b"", tty: bool = False) -> Done:
        monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
        terminal = _Terminal() if tty else None
        if terminal is not None:
            monkeypatch.setattr(sys, "stderr", terminal)
        try:
            code = main(list(argv))
        except SystemExit as exit:  # argparse's own errors
            code = int(exit.code or 0)
        out, err = capsysbinary.readouterr()
        if terminal is not None:
            monkeypatch.setattr(sys, "stderr", sys.__stderr__)
            err = terminal.getvalue().encode()
        return Done(code, out.decode(), err.decode())

    return run

"""`asyncdataflow map --journal FILE`: a map stopped by a signal, or killed, and run again
with the same journal writes every result to --output exactly once."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cli_harness import Cli

TESTS = Path(__file__).resolve().parent


def _inputs(path: Path, count: int) -> None:
    path.write_text("".join(json.dumps({"n": i}) + "\n" for i in range(count)))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("ASYNCDATAFLOW_LOAD_PLUGINS", "http")
    return env


def _map(inputs: Path, output: Path, journal: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "asyncdataflow",
            "map",
            "cli_flows:slow_squares",
            "--input",
            str(inputs),
            "--output",
            str(output),
            "--errors",
            os.devnull,
            "--journal",
            str(journal),
            "--concurrency",
            "20",
        ],
        cwd=TESTS,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _stop_when(proc: subprocess.Popen[bytes], output: Path, lines: int, sig: int) -> None:
    """Send ``sig`` once ``output`` holds ``lines`` lines (a condition, polled)."""
    while proc.poll() is None:
        if output.exists() and output.read_bytes().count(b"\n") >= lines:
            proc.send_signal(sig)
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(0.01)


def _results(output: Path) -> list[int]:
    return [json.loads(line)["n"] for line in output.read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_stopped_three_times_and_run_again_every_result_is_written_once(
    tmp_path: Path, sig: int
) -> None:
    inputs, output, journal = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "j"
    _inputs(inputs, 1000)
    codes = []
    for stop_at in (150, 450, 800):
        proc = _map(inputs, output, journal)
        try:
            _stop_when(proc, output, stop_at, sig)
            _, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
        codes.append(proc.returncode)
        if sig == signal.SIGTERM:
            assert proc.returncode in (0, 128 + signal.SIGTERM), err
    stopped = 128 + signal.SIGTERM if sig == signal.SIGTERM else -signal.SIGKILL
    assert stopped in codes  # at least one run was stopped half-way
    proc = _map(inputs, output, journal)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert _results(output) == list(range(1000))  # each once, in input order


def test_journal_needs_an_output_file(cli: Cli, tmp_path: Path) -> None:
    _inputs(tmp_path / "in.jsonl", 2)
    done = cli(
        "map", "cli_flows:slow_squares", "--input", str(tmp_path / "in.jsonl"),
        "--journal", str(tmp_path / "j"),
    )  # fmt: skip
    assert done.returncode == 2
    assert "--journal needs --output" in done.stderr


def test_a_rerun_after_a_finished_map_writes_nothing_new(cli: Cli, tmp_path: Path) -> None:
    inputs, output, journal = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "j"
    _inputs(inputs, 30)
    argv = (
        "map", "cli_flows:slow_squares", "--input", str(inputs), "--output", str(output),
        "--journal", str(journal),
    )  # fmt: skip
    assert cli(*argv).returncode == 0
    assert _results(output) == list(range(30))
    assert cli(*argv).returncode == 0
    assert _results(output) == list(range(30))


def test_an_output_shorter_than_the_journal_says_is_refused(cli: Cli, tmp_path: Path) -> None:
    inputs, output, journal = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "j"
    _inputs(inputs, 5)
    argv = (
        "map", "cli_flows:slow_squares", "--input", str(inputs), "--output", str(output),
        "--journal", str(journal),
    )  # fmt: skip
    assert cli(*argv).returncode == 0
    output.write_text("")
    done = cli(*argv)
    assert done.returncode == 2
    assert "shorter than the journal" in done.stderr

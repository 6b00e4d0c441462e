"""The `asyncdataflow` command against the flows in tests/cli_flows.py and the broker in
examples/broker_graph.py.

Most tests call `main(argv)` in this process (the `cli` fixture of conftest.py: stdout,
stderr and the exit code, the working directory and `sys.path` restored afterwards).
Real subprocesses only where the process matters: signals, stdin as a pipe, the console
script, `python -m`, and the plugin table (entry points and global registrations are per
process)."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from cli_harness import Cli, Done

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
EXAMPLES = ROOT / "examples"

BROKER_MERMAID = """\
flowchart TD
    %% broker
    n0["receive_request<br/>in: request<br/>out: query, systems"]
    n1["dispatch_request<br/>in: query, systems<br/>out: query_a, query_b"]
    subgraph b2["concurrent"]
        subgraph b2_0["sequential"]
            n2_0_0["ask_system_a<br/>in: query_a<br/>out: raw_a"]
            n2_0_1["transform_data_a<br/>in: raw_a<br/>out: data_a"]
        end
        subgraph b2_1["sequential"]
            n2_1_0["ask_system_b<br/>in: query_b<br/>out: raw_b"]
            n2_1_1["transform_data_b<br/>in: raw_b<br/>out: data_b"]
        end
    end
    n3["compose_response<br/>in: data_a?, data_b?<br/>out: response"]
    n0 --> n1
    n1 --> n2_0_0
    n1 --> n2_1_0
    n2_0_0 --> n2_0_1
    n2_1_0 --> n2_1_1
    n2_0_1 --> n3
    n2_1_1 --> n3
"""


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(TESTS), str(EXAMPLES), *filter(None, [env.get("PYTHONPATH")])]
    )
    env.setdefault("ASYNCDATAFLOW_LOAD_PLUGINS", "http")
    env.update(extra)
    return env


def subprocess_cli(
    *args: str, cwd: Path = TESTS, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncdataflow", *args],
        cwd=cwd,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def popen(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "asyncdataflow", *args],
        cwd=TESTS,
        env=_env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,  # type: ignore[call-overload]
    )


def wait_for(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# -- run ------------------------------------------------------------------------------


def test_run_prints_the_result_as_json_on_stdout(cli: Cli) -> None:
    done = cli("run", "cli_flows:greet", "name=Ada")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"greeting": "hello Ada!"}
    assert done.stderr == ""


def test_run_passes_key_colon_equals_as_json_and_key_equals_as_string(cli: Cli) -> None:
    done = cli("run", "cli_flows:echo_flow", 'payload:={"a": [1, 2.5, null]}')
    assert json.loads(done.stdout) == {"payload": {"a": [1, 2.5, None]}, "type": "dict"}
    done = cli("run", "cli_flows:echo_flow", "payload=3")
    assert json.loads(done.stdout) == {"payload": "3", "type": "str"}
    done = cli("run", "cli_flows:echo_flow", "payload=a=b:=c")  # split at the first =
    assert json.loads(done.stdout) == {"payload": "a=b:=c", "type": "str"}


def test_run_calls_a_zero_argument_factory(cli: Cli) -> None:
    done = cli("run", "cli_flows:make_greet", "name=Bo", "punctuation=?")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"greeting": "hello Bo?"}


def test_run_writes_values_json_cannot_hold_with_str(cli: Cli) -> None:
    done = cli("run", "cli_flows:stamped")
    assert json.loads(done.stdout) == {"when": "2024-01-02", "where": "/tmp"}


def test_run_indent_pretty_prints(cli: Cli) -> None:
    done = cli("run", "cli_flows:greet", "name=Ada", "--indent", "2")
    assert done.stdout == '{\n  "greeting": "hello Ada!"\n}\n'


def test_run_of_a_failing_flow_prints_the_traceback_with_the_step_note_and_exits_1(
    cli: Cli,
) -> None:
    done = cli("run", "cli_flows:failing", "name=x")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "ValueError: cannot send 'hello x!'" in done.stderr
    assert "raised by step 'explode' at definition[1]" in done.stderr


def test_run_imports_a_module_from_the_current_directory(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "here_flows.py").write_text(
        "from asyncdataflow import DataFlow\n"
        "async def double(x): return {'y': 2 * x}\n"
        "flow = DataFlow((double,))\n"
    )
    done = cli("run", "here_flows:flow", "x:=21", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"y": 42}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "no_such_module:flow"], "cannot import 'no_such_module': No module named"),
        (["run", "cli_flows"], "expected MODULE:ATTR"),
        (["run", "cli_flows:nope"], "has no attribute 'nope'; flows in it: echo_flow"),
        (["run", "cli_flows:not_a_flow"], "is int, not a DataFlow"),
        (["run", "cli_flows:returns_other"], "returned int, not a DataFlow"),
        (["run", "broker_graph:main"], "is an async function"),
        (["run", "cli_flows:needs_arguments"], "is a callable that needs arguments"),
        (["run", "cli_flows:greet", "name"], "'name': expected key=value"),
        (["run", "cli_flows:greet", "1st=a"], "'1st=a': expected key=value"),
        (["run", "cli_flows:greet", "n:=[1,"], "the value after := is not strict JSON"),
        (["run", "cli_flows:greet", "a=1", "a=2"], "'a' is given twice"),
        (["run", "cli_flows:greet", "--interval", "1"], "add --loop"),
        (["map", "cli_flows:squares", "--input", "/no/such/file.jsonl"], "--input"),
        (["map", "cli_flows:looping", "--input", "-"], "is an infinity loop"),
        (["graph", "cli_flows:greet", "--output", "x.txt"], "unknown extension"),
        (["plugins", "no_such_module"], "cannot import 'no_such_module'"),
    ],
)
def test_user_errors_go_to_stderr_without_traceback_and_exit_2(
    cli: Cli, args: list[str], message: str
) -> None:
    done = cli(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("asyncdataflow: error: ")
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_module_that_fails_to_import_shows_its_traceback_and_exits_2(
    cli: Cli, tmp_path: Path
) -> None:
    (tmp_path / "broken_flows.py").write_text("import json\nraise RuntimeError('boom')\n")
    done = cli("run", "broken_flows:flow", cwd=tmp_path)
    assert done.returncode == 2
    assert "importing 'broken_flows' failed" in done.stderr
    assert "RuntimeError: boom" in done.stderr


def test_console_script_is_installed_and_runs() -> None:
    script = shutil.which("asyncdataflow", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the console script is not installed next to this interpreter")
    done = subprocess.run(
        [script, "run", "cli_flows:greet", "name=Cy"],
        cwd=TESTS,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"greeting": "hello Cy!"}


def test_python_dash_m_runs_the_command_and_reports_usage_errors() -> None:
    done = subprocess_cli("run", "cli_flows:greet", "name=Ada")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"greeting": "hello Ada!"}
    done = subprocess_cli("run", "cli_flows:nope")
    assert done.returncode == 2
    assert done.stderr.startswith("asyncdataflow: error: ")


# -- run --loop -----------------------------------------------------------------------


def test_run_loop_stopped_by_sigterm_finishes_its_iteration_closes_and_exits_0(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "marker"
    proc = popen("run", "cli_flows:ticker", "--loop", f"marker={marker}", "nap:=0.8")
    try:
        wait_for(lambda: lines(marker).count("start") >= 2)  # inside the 2nd iteration
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert lines(marker) == ["start", "end", "start", "end", "closed"]
    assert json.loads(out) == {"done": 2}  # the result of the iteration it finished
    assert "stopping after the current iteration" in err


def test_run_loop_keeps_the_flows_checkpoint_and_dead_letters(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADF_TEST_DURABLE_DIR", str(tmp_path))
    done = cli("run", "cli_flows:make_durable_counter", "--loop")
    assert done.returncode == 1
    assert "DataFlowFunctionResultError" in done.stderr  # 4 ended the loop
    assert json.loads((tmp_path / "state.json").read_text()) == {"counter": {"definition[0]": 3}}
    (letter,) = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert (letter["flow"], letter["input"]) == ("counter", {"n": 2})


def test_run_loop_second_sigterm_cancels_the_iteration_promptly(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    proc = popen("run", "cli_flows:ticker", "--loop", f"marker={marker}", "nap:=30")
    try:
        wait_for(lambda: lines(marker) == ["start"])
        proc.send_signal(signal.SIGTERM)
        assert proc.stderr is not None
        assert "stopping after the current iteration" in proc.stderr.readline()
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        elapsed = time.monotonic() - started
    finally:
        proc.kill()
    assert elapsed < 10  # the 30 s iteration did not run to its end
    assert proc.returncode == 128 + signal.SIGTERM
    assert out == ""
    assert "run cancelled" in err
    assert lines(marker) == ["start", "closed"]  # cancelled mid-iteration, then closed


def test_a_single_run_is_cancelled_by_sigint_then_closed_and_exits_130(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    proc = popen("run", "cli_flows:ticker", f"marker={marker}", "nap:=30")
    try:
        wait_for(lambda: lines(marker) == ["start"])
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGINT
    assert out == ""
    assert "SIGINT: run cancelled" in err
    assert lines(marker) == ["start", "closed"]


def test_run_loop_each_prints_every_iteration_and_sigint_stops(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    proc = popen(
        "run",
        "cli_flows:ticker",
        "--loop",
        "--each",
        "--interval",
        "0.01",
        f"marker={marker}",
        "nap:=0.05",
    )
    try:
        wait_for(lambda: lines(marker).count("end") >= 3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    printed = [json.loads(line) for line in out.splitlines()]
    finished = lines(marker).count("end")
    assert printed == [{"done": i} for i in range(1, finished + 1)]


def test_run_of_an_infinity_loop_flow_is_stopped_by_a_signal(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    proc = popen("run", "cli_flows:ticking", f"marker={marker}", "nap:=0")
    try:
        wait_for(lambda: lines(marker).count("end") >= 1)  # the loop has turned
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    finished = lines(marker).count("end")
    assert json.loads(out) == {"done": finished}
    assert lines(marker)[-1] == "closed"


# -- map ------------------------------------------------------------------------------


def _write_inputs(path: Path, count: int, extra: Sequence[str] = ()) -> None:
    rows = [json.dumps({"n": i}) for i in range(count)]
    # bad lines in the middle: not JSON, not an object, and a blank line (skipped)
    rows[10:10] = list(extra)
    path.write_text("\n".join(rows) + "\n")


def test_map_over_1000_inputs_keeps_order_reports_every_failure_and_exits_1(
    cli: Cli, tmp_path: Path
) -> None:
    source, out, errors = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    _write_inputs(source, 1000, ["not json", "", "[1, 2]"])
    done = cli(
        "map",
        "cli_flows:squares",
        "--input",
        str(source),
        "--output",
        str(out),
        "--errors",
        str(errors),
        "--concurrency",
        "50",
    )
    assert done.returncode == 1
    assert done.stdout == ""
    failing = [n for n in range(1000) if n % 7 == 3]
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert results == [{"n": n, "square": n * n} for n in range(1000) if n % 7 != 3]

    failures = [json.loads(line) for line in errors.read_text().splitlines()]
    assert len(failures) == len(failing) + 2
    assert [f["line"] for f in failures] == sorted(f["line"] for f in failures)
    by_line = {f["line"]: f for f in failures}
    assert by_line[11] == {
        "line": 11,
        "input": "not json",
        "error": {
            "type": "json.decoder.JSONDecodeError",
            "message": "Expecting value: line 1 column 1 (char 0)",
        },
    }
    assert by_line[13]["input"] == [1, 2]
    assert by_line[13]["error"]["type"] == "TypeError"
    runs = [f for f in failures if isinstance(f["input"], dict)]
    assert [f["input"]["n"] for f in runs] == failing
    for f in runs:
        n = f["input"]["n"]
        assert f["line"] == n + 1 + (3 if n >= 10 else 0)  # the three lines put in at 10
        assert f["error"]["type"] == "ValueError"
        assert f["error"]["message"] == f"n={n} is unlucky"
        assert "raised by step 'square' at definition[0]" in f["error"]["notes"][0]
    # stderr is not a terminal: one summary line
    assert re.fullmatch(
        rf"asyncdataflow map: 1002 inputs, {1000 - len(failing)} ok, {len(failing) + 2} "
        r"failed in [\d.]+s \([\d.]+/s\)\n",
        done.stderr,
    )


def test_map_writes_results_to_stdout_and_failures_to_stderr(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"n": 1}\n{"n": 3}\n{"n": 2}\n')
    done = cli("map", "cli_flows:squares", "--input", str(source))
    assert done.returncode == 1
    assert [json.loads(line) for line in done.stdout.splitlines()] == [
        {"n": 1, "square": 1},
        {"n": 2, "square": 4},
    ]
    err = done.stderr.splitlines()
    assert json.loads(err[0])["line"] == 2
    assert err[1].startswith("asyncdataflow map: 3 inputs, 2 ok, 1 failed")


def test_map_reads_stdin_and_exits_0_when_all_succeed(cli: Cli) -> None:
    done = cli(
        "map",
        "cli_flows:greet",
        "--input",
        "-",
        stdin=b'{"name": "a"}\n{"name": "b", "punctuation": "?"}\n',
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ['{"greeting": "hello a!"}', '{"greeting": "hello b?"}']


def test_map_shows_a_progress_bar_when_stderr_is_a_terminal(cli: Cli, tmp_path: Path) -> None:
    source, out, errors = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    source.write_text("".join(json.dumps({"n": i}) + "\n" for i in range(300)))
    done = cli(
        "map",
        "cli_flows:slow_squares",
        "--input",
        str(source),
        "--output",
        str(out),
        "--errors",
        str(errors),
        "--concurrency",
        "5",
        tty=True,
    )
    assert done.returncode == 0
    screen = done.stderr
    frames = [f for f in screen.split("\r") if f.strip("\x1b[K \n")]
    assert len(frames) >= 3  # redrawn in place while it ran
    assert all(f.startswith("\x1b[K") for f in frames)
    last = frames[-1]
    assert re.fullmatch(
        r"\x1b\[K\[#{24}\]  300/300  ok 300  failed 0  \d+\.\d/s  ETA 0:00  in \d+\.\ds\n?",
        last,
    )
    middle = [f for f in frames if not re.search(r"\]  (0|300)/300", f)]
    assert middle, frames  # frames drawn while it ran, with a rate and an ETA
    assert re.search(r"\[#*\.+\]  \d+/300  ok \d+  failed 0  [\d.]+/s  ETA \d+:\d\d", middle[0])
    assert screen.endswith("\n")
    assert "asyncdataflow map:" not in screen  # the bar, not the summary line
    assert len(out.read_text().splitlines()) == 300


# -- graph ----------------------------------------------------------------------------


def test_graph_prints_the_brokers_mermaid_text(cli: Cli) -> None:
    done = cli("graph", "broker_graph:broker")
    assert done.returncode == 0, done.stderr
    assert done.stdout == BROKER_MERMAID


def test_graph_dot_format_prints_clusters(cli: Cli) -> None:
    done = cli("graph", "broker_graph:broker", "--format", "dot")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('digraph "broker" {\n')
    assert "subgraph cluster_b2 {" in done.stdout
    assert 'n2_0_0 [label="ask_system_a\\nin: query_a\\nout: raw_a"];' in done.stdout


def test_graph_writes_text_formats_by_extension(cli: Cli, tmp_path: Path) -> None:
    assert cli("graph", "broker_graph:broker", "--output", str(tmp_path / "b.mmd")).returncode == 0
    assert (tmp_path / "b.mmd").read_text() == BROKER_MERMAID
    assert cli("graph", "broker_graph:broker", "--output", str(tmp_path / "b.dot")).returncode == 0
    assert (tmp_path / "b.dot").read_text().startswith('digraph "broker"')


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
@pytest.mark.parametrize("ext", ["svg", "png"])
def test_graph_renders_an_image_with_graphviz(cli: Cli, tmp_path: Path, ext: str) -> None:
    target = tmp_path / f"broker.{ext}"
    done = cli("graph", "broker_graph:broker", "--output", str(target))
    assert done.returncode == 0, done.stderr
    data = target.read_bytes()
    if ext == "svg":
        text = data.decode()
        assert "<svg" in text
        for name in ("receive_request", "ask_system_b", "transform_data_a", "compose_response"):
            assert name in text
    else:
        assert data.startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
def test_docs_broker_svg_is_the_current_rendering() -> None:
    """docs/broker.svg is regenerated with `asyncdataflow graph broker_graph:broker
    --output docs/broker.svg` (from examples/); it must show the broker as it is now."""
    svg = (ROOT / "docs" / "broker.svg").read_text()
    for fn in (
        "receive_request",
        "dispatch_request",
        "ask_system_a",
        "transform_data_a",
        "ask_system_b",
        "transform_data_b",
        "compose_response",
    ):
        assert f">{fn}</text>" in svg
    assert "in: data_a?, data_b?" in svg


def test_graph_image_without_graphviz_says_how_to_install_it(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    done = cli("graph", "broker_graph:broker", "--output", str(tmp_path / "b.svg"))
    assert done.returncode == 2
    assert "apt-get install graphviz" in done.stderr
    assert "brew install graphviz" in done.stderr
    assert not (tmp_path / "b.svg").exists()


# -- plugins --------------------------------------------------------------------------


def _demo_distribution(where: Path) -> None:
    """A real installed distribution (dist-info on PYTHONPATH) with an entry point."""
    (where / "cli_demo_plugin.py").write_text(
        "from asyncdataflow import hookimpl\n"
        "@hookimpl\n"
        "def after_step_run(step):\n    pass\n"
        "@hookimpl\n"
        "def on_step_error(step):\n    pass\n"
    )
    info = where / "cli_demo_plugin-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cli-demo-plugin\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text("[asyncdataflow]\ndemo = cli_demo_plugin\n")


def test_plugins_lists_built_in_entry_point_and_registered_plugins(tmp_path: Path) -> None:
    _demo_distribution(tmp_path)
    env = _env(ASYNCDATAFLOW_LOAD_PLUGINS="demo")
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    done = subprocess_cli("plugins", "cli_registers", env=env)
    assert done.returncode == 0, done.stderr
    table = done.stdout.splitlines()
    assert re.split(r"\s{2,}", table[0]) == ["NAME", "SOURCE", "HOOKS"]
    rows = {re.split(r"\s{2,}", line)[0]: re.split(r"\s{2,}", line)[1:] for line in table[1:]}
    assert rows == {
        "asyncdataflow.retry": ["built-in", "step_retry_delay"],
        "demo": ["entry point (cli-demo-plugin 1.2)", "after_step_run, on_step_error"],
        "cli-audit": ["registered", "after_flow_run, before_flow_run"],
    }


def test_plugins_json_includes_a_flows_own_plugins() -> None:
    done = subprocess_cli(
        "plugins", "cli_registers:traced", "--json", env=_env(ASYNCDATAFLOW_LOAD_PLUGINS="")
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        {
            "name": "asyncdataflow.retry",
            "source": "built-in",
            "distribution": None,
            "plugin": "asyncdataflow.plugin_manager._RetryPlugin",
            "hooks": ["step_retry_delay"],
        },
        {
            "name": "cli-audit",
            "source": "registered",
            "distribution": None,
            "plugin": "cli_registers.Audit",
            "hooks": ["after_flow_run", "before_flow_run"],
        },
        {
            "name": "cli_flows.Tracer",
            "source": "flow traced",
            "distribution": None,
            "plugin": "cli_flows.Tracer",
            "hooks": ["before_step_run"],
        },
    ]


# -- bad input, strict JSON, files (issue: every promise holds under bad input) --------


def _map_files(
    cli: Cli, tmp_path: Path, target: str, rows: Sequence[bytes]
) -> tuple[Done, list[object], dict[int, dict[str, object]]]:
    source, out, errors = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    source.write_bytes(b"".join(row + b"\n" for row in rows))
    done = cli("map", target, "--input", str(source), "--output", str(out), "--errors", str(errors))
    results = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    failures = [json.loads(line) for line in errors.read_text(encoding="utf-8").splitlines()]
    return done, results, {f["line"]: f for f in failures}


def test_map_a_bad_line_is_a_failure_of_that_line_and_the_rest_is_processed(
    cli: Cli, tmp_path: Path
) -> None:
    rows = [
        b'{"payload": 1}',
        b'{"payload": "caf\xe9"}',  # Latin-1, not UTF-8
        b'{"payload": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"payload": ' + b"9" * 5000 + b"}",  # over Python's 4,300-digit limit
        b'{"payload": "\\ud800"}',  # a lone surrogate: fails only when written
        b'{"payload": 2}',
    ]
    done, results, failures = _map_files(cli, tmp_path, "cli_flows:echo_flow", rows)
    assert done.returncode == 1
    assert results == [{"payload": 1, "type": "int"}, {"payload": 2, "type": "int"}]
    assert sorted(failures) == [2, 3, 4, 5]
    assert failures[2]["error"]["type"] == "UnicodeDecodeError"
    assert failures[2]["input"] == '{"payload": "caf\\xe9"}'
    assert "nested deeper" in failures[3]["error"]["message"]
    assert failures[4]["error"]["type"] == "ValueError"
    assert "digits" in failures[4]["error"]["message"]
    assert failures[5]["input"] == {"payload": "\ud800"}  # the record itself is written
    assert "not valid Unicode" in failures[5]["error"]["message"]
    assert "2 ok, 4 failed" in done.stderr


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested deeper than Python can parse"),
        ("9" * 5000, "not strict JSON"),
        ("NaN", "not strict JSON"),
    ],
)
def test_run_with_a_json_value_python_cannot_take_is_a_usage_error(
    cli: Cli, value: str, message: str
) -> None:
    done = cli("run", "cli_flows:echo_flow", f"payload:={value}")
    assert done.returncode == 2
    assert done.stderr.startswith("asyncdataflow: error: ")
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr) < 1000  # the 200,000 characters are not echoed


@pytest.mark.parametrize("kind", ["nan", "inf", "-inf"])
def test_run_of_a_result_holding_nan_or_infinity_writes_no_json_and_exits_1(
    cli: Cli, kind: str
) -> None:
    done = cli("run", "cli_flows:not_a_number", f"kind={kind}")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "NaN or Infinity" in done.stderr


def test_run_of_a_result_holding_a_lone_surrogate_writes_nothing_and_exits_1(cli: Cli) -> None:
    done = cli("run", "cli_flows:lone_surrogate", "text=x")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "not valid Unicode ('\\ud800'" in done.stderr


def test_map_writes_strict_json_nan_results_and_inputs_are_failures_of_their_line(
    cli: Cli, tmp_path: Path
) -> None:
    rows = [b'{"kind": "1.5"}', b'{"kind": "nan"}', b'{"kind": "-inf"}', b'{"kind": NaN}']
    done, results, failures = _map_files(cli, tmp_path, "cli_flows:not_a_number", rows)
    assert done.returncode == 1
    assert results == [{"value": 1.5}]
    assert sorted(failures) == [2, 3, 4]
    assert failures[2]["input"] == {"kind": "nan"}
    assert "NaN or Infinity" in failures[2]["error"]["message"]
    assert failures[4]["input"] == '{"kind": NaN}'
    assert "NaN is not JSON" in failures[4]["error"]["message"]
    text = (tmp_path / "out.jsonl").read_text() + (tmp_path / "err.jsonl").read_text()
    assert "Infinity" not in text.replace("NaN or Infinity", "")


@pytest.mark.parametrize("option", ["--output", "--errors"])
def test_map_refuses_to_write_over_its_input(cli: Cli, tmp_path: Path, option: str) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"n": 1}\n{"n": 2}\n')
    (tmp_path / "alias.jsonl").symlink_to(source)
    for spelling in (str(source), "./in.jsonl", str(tmp_path / "alias.jsonl")):
        done = cli(
            "map", "cli_flows:squares", "--input", str(source), option, spelling, cwd=tmp_path
        )
        assert done.returncode == 2, done.stderr
        assert f"{option} {spelling!r} is the input file" in done.stderr
        assert source.read_text() == '{"n": 1}\n{"n": 2}\n'


def test_map_closes_the_flow_when_writing_a_result_fails(cli: Cli, tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full (a device whose writes fail with ENOSPC)")
    marker, gate = tmp_path / "marker", tmp_path / "gate"
    gate.touch()
    source = tmp_path / "in.jsonl"
    rows = [{"n": n, "marker": str(marker), "gate": str(gate)} for n in range(3)]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = cli("map", "cli_flows:gated", "--input", str(source), "--output", "/dev/full")
    assert done.returncode == 1
    assert "writing failed" in done.stderr
    assert "No space left on device" in done.stderr
    assert lines(marker)[-1] == "closed"


# -- naming the flow by its file ------------------------------------------------------


def test_a_flow_target_may_be_a_file_path(cli: Cli, tmp_path: Path) -> None:
    name = f"flows_{tmp_path.name}"
    (tmp_path / f"{name}.py").write_text(
        "from asyncdataflow import DataFlow\n"
        "async def double(x): return {'y': 2 * x}\n"
        "flow = DataFlow((double,))\n"
    )
    package = tmp_path / f"pkg_{tmp_path.name}"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text("async def triple(x): return {'y': 3 * x}\n")
    (package / "flows.py").write_text(
        "from asyncdataflow import DataFlow\nfrom .helpers import triple\n"
        "flow = DataFlow((triple,))\n"
    )
    (tmp_path / "sub").mkdir()
    for target, cwd, y in [
        (f"./{name}.py:flow", tmp_path, 42),
        (f"{name}.py:flow", tmp_path, 42),
        (f"../{name}.py:flow", tmp_path / "sub", 42),
        (f"{tmp_path / name}.py:flow", TESTS, 42),
        (f"{package.name}/flows.py:flow", tmp_path, 63),  # relative imports work
        (f"{package}/flows:flow", TESTS, 63),  # .py may be left off
        ("./cli_flows.py:greet", TESTS, None),
    ]:
        done = (
            cli("run", target, "x:=21", "name=Ada", cwd=cwd)
            if y is None
            else cli("run", target, "x:=21", cwd=cwd)
        )
        assert done.returncode == 0, (target, done.stderr)
        expected = {"y": y} if y is not None else {"greeting": "hello Ada!"}
        assert json.loads(done.stdout) == expected, target


def test_a_file_path_target_that_does_not_resolve_says_what_to_type(
    cli: Cli, tmp_path: Path
) -> None:
    done = cli("run", "./missing.py:flow", cwd=tmp_path)
    assert done.returncode == 2
    assert f"'./missing.py': no such file (looked for {tmp_path / 'missing.py'})" in done.stderr
    assert "Traceback" not in done.stderr
    (tmp_path / "json.py").write_text("flow = 1\n")  # shadowed by the standard library
    done = cli("run", f"{tmp_path / 'json.py'}:flow", cwd=tmp_path)
    assert done.returncode == 2
    assert "the module name 'json' is already taken" in done.stderr
    assert "rename the file" in done.stderr


# -- plugins registered in code ---------------------------------------------------------


def test_plugins_labels_a_plugin_registered_in_code_as_registered(cli: Cli) -> None:
    from asyncdataflow import register_plugin, unregister_plugin
    from asyncdataflow.plugins import log

    name = register_plugin(log)  # the package's log plugin, registered by the user
    try:
        done = cli("plugins", "--json")
    finally:
        unregister_plugin(log)
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert name == "asyncdataflow.plugins.log"
    assert rows[name]["source"] == "registered"
    assert rows["asyncdataflow.retry"]["source"] == "built-in"


# -- map: stdin as a pipe, signals (real processes) ----------------------------------


def _readline(stream: object, timeout: float = 30) -> str:
    """One line from a subprocess pipe, or fail after `timeout` without hanging."""
    assert hasattr(stream, "readline")
    assert hasattr(stream, "fileno")
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, "timed out waiting for a line"
    line: str = stream.readline()
    return line


def test_map_input_from_a_pipe_writes_a_result_before_the_next_line_arrives() -> None:
    proc = popen("map", "cli_flows:greet", "--input", "-", stdin=subprocess.PIPE)
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        proc.stdin.write('{"name": "a"}\n')
        proc.stdin.flush()
        # the next line has not come, and stdin is still open: the run went ahead anyway
        assert json.loads(_readline(proc.stdout)) == {"greeting": "hello a!"}
        proc.stdin.write('{"name": "b"}\n')
        proc.stdin.flush()
        assert json.loads(_readline(proc.stdout)) == {"greeting": "hello b!"}
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    finally:
        _end(proc)


def _end(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _gated_line(n: int, tmp_path: Path) -> str:
    return json.dumps({"n": n, "marker": str(tmp_path / "marker"), "gate": str(tmp_path / "gate")})


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_map_on_a_signal_reads_no_more_finishes_the_runs_in_flight_and_closes(
    tmp_path: Path, signum: signal.Signals
) -> None:
    marker, out = tmp_path / "marker", tmp_path / "out.jsonl"
    proc = popen(
        "map", "cli_flows:gated", "--input", "-", "--output", str(out), stdin=subprocess.PIPE
    )
    assert proc.stdin is not None
    assert proc.stderr is not None
    try:
        proc.stdin.write(_gated_line(0, tmp_path) + "\n" + _gated_line(1, tmp_path) + "\n")
        proc.stdin.flush()
        wait_for(lambda: sorted(lines(marker)) == ["start 0", "start 1"])
        proc.send_signal(signum)
        assert "reading no more input" in _readline(proc.stderr)
        proc.stdin.write(_gated_line(2, tmp_path) + "\n")  # comes too late: not run
        proc.stdin.flush()
        (tmp_path / "gate").touch()  # let the two runs in flight finish
        assert proc.wait(timeout=30) == 128 + signum
    finally:
        _end(proc)
    assert [json.loads(line) for line in lines(out)] == [{"n": 0}, {"n": 1}]
    assert "start 2" not in lines(marker)
    assert lines(marker)[-1] == "closed"


def test_map_second_signal_cancels_the_runs_in_flight_and_still_closes(tmp_path: Path) -> None:
    marker, out = tmp_path / "marker", tmp_path / "out.jsonl"
    proc = popen(
        "map", "cli_flows:gated", "--input", "-", "--output", str(out), stdin=subprocess.PIPE
    )
    assert proc.stdin is not None
    assert proc.stderr is not None
    try:
        proc.stdin.write(_gated_line(0, tmp_path) + "\n")
        proc.stdin.flush()
        wait_for(lambda: lines(marker) == ["start 0"])
        proc.send_signal(signal.SIGTERM)
        assert "reading no more input" in _readline(proc.stderr)
        proc.send_signal(signal.SIGTERM)  # the gate never opens: only cancelling ends it
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
        assert "runs in flight cancelled" in proc.stderr.read()
    finally:
        _end(proc)
    assert lines(out) == []
    assert lines(marker) == ["start 0", "closed"]


# -- outside the CLI: the service recipe of docs/cli.md -------------------------------


def test_the_service_recipe_stops_on_sigterm_after_the_iteration_and_closes_the_flow(
    tmp_path: Path,
) -> None:
    doc = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    section = doc.split("## Without the CLI: a service that stops cleanly", 1)[1]
    script = tmp_path / "service.py"
    script.write_text(section.split("```python\n", 1)[1].split("```", 1)[0])
    done = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr  # not -15: the signal was handled
    assert done.stdout.splitlines() == ["closed", "{'source': 'orders', 'polls': 3}"]
    assert done.stderr == ""


def test_help_lists_every_registered_subcommand(cli: Cli) -> None:
    from asyncdataflow.cli import COMMANDS

    done = cli("--help")
    assert done.returncode == 0
    listed = re.findall(r"^    (\w+) ", done.stdout, flags=re.M)
    assert listed == [register.__module__.rsplit(".", 1)[1] for register in COMMANDS]
    assert listed[:3] == ["run", "map", "graph"]


def test_each_subcommand_s_help_is_its_handler_s_docstring(cli: Cli) -> None:
    import importlib
    import inspect

    from asyncdataflow.cli import COMMANDS

    listing = " ".join(cli("--help").stdout.split())  # argparse wraps long lines
    for register in COMMANDS:
        module = importlib.import_module(register.__module__)
        name = module.__name__.rsplit(".", 1)[1]
        summary, _, description = (inspect.getdoc(module.handle) or "").partition("\n\n")
        assert f" {name} {summary} " in listing, name
        shown = " ".join(cli(name, "--help").stdout.split())
        assert f" {' '.join(description.split())} " in shown, name

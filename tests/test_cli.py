"""The `asyncdataflow` command, run as a real subprocess (`python -m asyncdataflow`) against
the flows in tests/cli_flows.py and the broker in examples/broker_graph.py."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

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


def cli(
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


def test_run_prints_the_result_as_json_on_stdout() -> None:
    done = cli("run", "cli_flows:greet", "name=Ada")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"greeting": "hello Ada!"}
    assert done.stderr == ""


def test_run_passes_key_colon_equals_as_json_and_key_equals_as_string() -> None:
    done = cli("run", "cli_flows:echo_flow", 'payload:={"a": [1, 2.5, null]}')
    assert json.loads(done.stdout) == {"payload": {"a": [1, 2.5, None]}, "type": "dict"}
    done = cli("run", "cli_flows:echo_flow", "payload=3")
    assert json.loads(done.stdout) == {"payload": "3", "type": "str"}
    done = cli("run", "cli_flows:echo_flow", "payload=a=b:=c")  # split at the first =
    assert json.loads(done.stdout) == {"payload": "a=b:=c", "type": "str"}


def test_run_calls_a_zero_argument_factory() -> None:
    done = cli("run", "cli_flows:make_greet", "name=Bo", "punctuation=?")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"greeting": "hello Bo?"}


def test_run_writes_values_json_cannot_hold_with_str() -> None:
    done = cli("run", "cli_flows:stamped")
    assert json.loads(done.stdout) == {"when": "2024-01-02", "where": "/tmp"}


def test_run_indent_pretty_prints() -> None:
    done = cli("run", "cli_flows:greet", "name=Ada", "--indent", "2")
    assert done.stdout == '{\n  "greeting": "hello Ada!"\n}\n'


def test_run_of_a_failing_flow_prints_the_traceback_with_the_step_note_and_exits_1() -> None:
    done = cli("run", "cli_flows:failing", "name=x")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "ValueError: cannot send 'hello x!'" in done.stderr
    assert "raised by step 'explode' at definition[1]" in done.stderr


def test_run_imports_a_module_from_the_current_directory(tmp_path: Path) -> None:
    (tmp_path / "here_flows.py").write_text(
        "from asyncdataflow import DataFlow\n"
        "async def double(x): return {'y': 2 * x}\n"
        "flow = DataFlow((double,))\n"
    )
    env = _env()
    env["PYTHONPATH"] = ""  # only the working directory can provide it
    done = cli("run", "here_flows:flow", "x:=21", cwd=tmp_path, env=env)
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
        (["run", "cli_flows.py:greet"], "name the module, not the file: cli_flows:ATTR"),
        (["run", "cli_flows:greet", "name"], "'name': expected key=value"),
        (["run", "cli_flows:greet", "1st=a"], "'1st=a': expected key=value"),
        (["run", "cli_flows:greet", "n:=[1,"], "the value after := is not JSON"),
        (["run", "cli_flows:greet", "a=1", "a=2"], "'a' is given twice"),
        (["run", "cli_flows:greet", "--interval", "1"], "add --loop"),
        (["map", "cli_flows:squares", "--input", "/no/such/file.jsonl"], "--input"),
        (["map", "cli_flows:looping", "--input", "-"], "is an infinity loop"),
        (["graph", "cli_flows:greet", "--output", "x.txt"], "unknown extension"),
        (["plugins", "no_such_module"], "cannot import 'no_such_module'"),
    ],
)
def test_user_errors_go_to_stderr_without_traceback_and_exit_2(
    args: list[str], message: str
) -> None:
    done = cli(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("asyncdataflow: error: ")
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_module_that_fails_to_import_shows_its_traceback_and_exits_2(tmp_path: Path) -> None:
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
    tmp_path: Path,
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


def test_map_writes_results_to_stdout_and_failures_to_stderr(tmp_path: Path) -> None:
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


def test_map_reads_stdin_and_exits_0_when_all_succeed() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "asyncdataflow", "map", "cli_flows:greet", "--input", "-"],
        input='{"name": "a"}\n{"name": "b", "punctuation": "?"}\n',
        cwd=TESTS,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ['{"greeting": "hello a!"}', '{"greeting": "hello b?"}']


def test_map_shows_a_progress_bar_when_stderr_is_a_terminal(tmp_path: Path) -> None:
    source, out, errors = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    source.write_text("".join(json.dumps({"n": i}) + "\n" for i in range(300)))
    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the other side closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "asyncdataflow",
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
            ],
            cwd=TESTS,
            env=_env(),
            stderr=slave,
            stdout=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    finally:
        os.close(slave)
        reader.join(timeout=10)
        os.close(master)
    assert done.returncode == 0
    screen = b"".join(chunks).decode()
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


def test_graph_prints_the_brokers_mermaid_text() -> None:
    done = cli("graph", "broker_graph:broker")
    assert done.returncode == 0, done.stderr
    assert done.stdout == BROKER_MERMAID


def test_graph_dot_format_prints_clusters() -> None:
    done = cli("graph", "broker_graph:broker", "--format", "dot")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('digraph "broker" {\n')
    assert "subgraph cluster_b2 {" in done.stdout
    assert 'n2_0_0 [label="ask_system_a\\nin: query_a\\nout: raw_a"];' in done.stdout


def test_graph_writes_text_formats_by_extension(tmp_path: Path) -> None:
    assert cli("graph", "broker_graph:broker", "--output", str(tmp_path / "b.mmd")).returncode == 0
    assert (tmp_path / "b.mmd").read_text() == BROKER_MERMAID
    assert cli("graph", "broker_graph:broker", "--output", str(tmp_path / "b.dot")).returncode == 0
    assert (tmp_path / "b.dot").read_text().startswith('digraph "broker"')


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
@pytest.mark.parametrize("ext", ["svg", "png"])
def test_graph_renders_an_image_with_graphviz(tmp_path: Path, ext: str) -> None:
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


def test_graph_image_without_graphviz_says_how_to_install_it(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    done = cli(
        "graph",
        "broker_graph:broker",
        "--output",
        str(tmp_path / "b.svg"),
        env=_env(PATH=str(empty)),
    )
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
    done = cli("plugins", "cli_flows", env=env)
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
    done = cli("plugins", "cli_flows:traced", "--json", env=_env(ASYNCDATAFLOW_LOAD_PLUGINS=""))
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
            "plugin": "cli_flows.Audit",
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

"""The package as a user installs it: a wheel built from the repository, installed
(non-editable) into a fresh directory, imported from outside the repository.

This guards the packaging that an editable install hides: the pack's sources live in the
repository's top-level ``plugins/`` and must land in the wheel as
``asyncdataflow.plugins.{http,mysql,files}``, with their private modules and ``py.typed``.

It builds a wheel, so it takes a few seconds (it stays in the default run). The build uses
the running environment's setuptools (``--no-build-isolation``) when that is new enough for
``pyproject.toml``; otherwise pip builds in an isolated environment, as ``pip install .``
does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# setuptools reads the SPDX ``license = "MIT"`` string from version 77 on
NO_ISOLATION_SETUPTOOLS = (77, 0)

PROBE = r"""
import asyncio, importlib, json, sys

import asyncdataflow
from asyncdataflow import DataFlow
from asyncdataflow.plugins import files, http, mysql

modules = {}
for name in list(sys.modules):
    if name == "asyncdataflow" or name.startswith("asyncdataflow."):
        module = sys.modules[name]
        if getattr(module, "__file__", None):
            modules[name] = module.__file__

async def double(x):
    return {"y": 2 * x}

def shape(y):
    return {"z": y + 1}

result = asyncio.run(DataFlow((double, shape))(x=20))
print(json.dumps({
    "modules": modules,
    "result": result,
    "factories": {
        p.__name__: [f for f in ("reader", "writer") if callable(getattr(p, f, None))]
        for p in (http, mysql, files)
    },
    "all": {p.__name__: sorted(p.__all__) for p in (http, mysql, files)},
}))
"""


def probe(code: str, cwd: Path, pythonpath: Path | None = None, drop: tuple[str, ...] = ()) -> str:
    """Run ``code`` in a fresh interpreter (warnings are errors) and return its stdout."""
    hidden = ("PYTHONPATH", "PYTHONHOME", *drop)
    env = {k: v for k, v in os.environ.items() if k not in hidden}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def setuptools_version() -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version("setuptools").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return (0,)


def pip(*args: str, cwd: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, f"pip {' '.join(args)}:\n{out.stdout}\n{out.stderr}"


def test_the_pack_imports_from_an_installed_wheel(tmp_path: Path) -> None:
    # Build from a copy of the working tree: setuptools writes build/ and *.egg-info next to
    # the sources, and a stale build/lib would leak old files into the wheel.
    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "venv",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            ".*_cache",
            ".hypothesis",
        ),
    )
    wheels = tmp_path / "wheels"
    isolation = ["--no-build-isolation"] if setuptools_version() >= NO_ISOLATION_SETUPTOOLS else []
    pip("wheel", "--no-deps", *isolation, str(src), "-w", str(wheels), cwd=tmp_path)
    (wheel,) = wheels.glob("asyncdataflow-*.whl")

    site = tmp_path / "site"
    pip("install", "--no-deps", "--no-compile", "--target", str(site), str(wheel), cwd=tmp_path)
    assert (site / "asyncdataflow" / "py.typed").is_file()
    for pack in ("http", "mysql", "files"):
        assert (site / "asyncdataflow" / "plugins" / pack / "__init__.py").is_file()

    run = tmp_path / "elsewhere"  # neither the repository nor the install directory
    run.mkdir()
    report = json.loads(probe(PROBE, cwd=run, pythonpath=site))

    modules = report["modules"]
    for name in (
        "asyncdataflow",
        "asyncdataflow.flow",
        "asyncdataflow.plugins",
        "asyncdataflow.plugins.http",
        "asyncdataflow.plugins.mysql",
        "asyncdataflow.plugins.files",
    ):
        assert name in modules, name
    private = [n for n in modules if n.startswith("asyncdataflow.plugins.") and "._" in n]
    assert private, "the packs' private modules were imported too"
    for name, file in modules.items():  # every one from the install, none from the repo
        assert Path(file).resolve().is_relative_to(site.resolve()), (name, file)

    assert report["result"] == {"z": 41}
    assert report["factories"] == {
        "asyncdataflow.plugins.http": ["reader", "writer"],
        "asyncdataflow.plugins.mysql": ["reader", "writer"],
        "asyncdataflow.plugins.files": ["reader", "writer"],
    }
    for name, names in report["all"].items():
        assert {"reader", "writer"} <= set(names), name


def test_the_source_tree_maps_the_pack_like_an_install() -> None:
    """From the repository root, ``python -c``/``-m`` import the source ``asyncdataflow/``
    (it shadows any installed copy); its ``__init__`` maps ``plugins/`` onto
    ``asyncdataflow.plugins`` just as pyproject.toml does for an install."""
    code = (
        "import json, asyncdataflow\n"
        "from asyncdataflow.plugins import files, http, mysql\n"
        "print(json.dumps([asyncdataflow.__file__, http.__file__, files.__file__]))\n"
    )
    out = probe(code, cwd=ROOT)
    core, http_init, files_init = (Path(p) for p in json.loads(out))
    assert core == ROOT / "asyncdataflow" / "__init__.py"
    assert http_init == ROOT / "plugins" / "http" / "__init__.py"
    assert files_init == ROOT / "plugins" / "files" / "__init__.py"


def test_the_core_imports_none_of_the_integration_libraries(tmp_path: Path) -> None:
    """The core needs only pluggy: building and running a flow (entry points loaded, the
    HTTP pack's hook plugin among them) imports no aiohttp, aiomysql or aiofiles."""
    code = (
        "import asyncio, json, sys\n"
        "from asyncdataflow import DataFlow, get_plugin_manager\n"
        "async def f(x):\n"
        "    return {'y': x}\n"
        "print(asyncio.run(DataFlow((f,))(x=1)))\n"
        "names = [n for n, _ in get_plugin_manager().list_name_plugin()]\n"
        "heavy = ['aiohttp', 'aiomysql', 'pymysql', 'aiofiles', 'prometheus_client',\n"
        "         'opentelemetry']\n"
        "print(json.dumps({'plugins': names, 'loaded': [m for m in heavy if m in sys.modules]}))\n"
    )
    out = probe(code, cwd=tmp_path, drop=("ASYNCDATAFLOW_LOAD_PLUGINS",))
    first, second = out.splitlines()
    assert first == "{'y': 1}"
    report = json.loads(second)
    assert "http" in report["plugins"]  # the entry point was loaded...
    assert report["loaded"] == []  # ...without importing any integration library


def test_the_version_is_written_once_and_the_license_ships() -> None:
    import asyncdataflow

    assert version("asyncdataflow") == asyncdataflow.__version__
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'dynamic = ["version"]' in pyproject
    assert "\nversion =" not in pyproject.split("[tool.")[0]
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")

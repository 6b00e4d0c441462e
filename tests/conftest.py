"""Shared fixtures. Installed third-party plugins are kept out of the tests unless a test
asks for them: entry points load only the names in ASYNCDATAFLOW_LOAD_PLUGINS.

``mysql_url`` and ``tables`` are for the tests that talk to the MySQL/MariaDB server
(see ``_mysql_server.py``): without a server they skip, saying how to get one (under
``CI=true`` they fail)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from _mysql_server import Tables, require_server
from cli_harness import Cli, in_process
from hypothesis import settings

# Property tests: a quick look in the development loop, the full search in CI (and
# whenever HYPOTHESIS_PROFILE=ci is set).
settings.register_profile("dev", max_examples=60, deadline=None)
settings.register_profile("ci", max_examples=600, deadline=None, print_blob=True)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)

os.environ.setdefault("ASYNCDATAFLOW_LOAD_PLUGINS", "http")


@pytest.fixture
def mysql_url() -> str:
    return require_server()


@pytest.fixture
def tables(mysql_url: str) -> Iterator[Tables]:
    made = Tables(mysql_url)
    try:
        yield made
    finally:
        made.drop()


@pytest.fixture
def cli(capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """`cli(*argv, cwd=tests/, stdin=b"", tty=False)`: the `asyncdataflow` command run in
    this process (see cli_harness.py)."""
    return in_process(capsysbinary, monkeypatch)

"""Shared fixtures. Installed third-party plugins are kept out of the tests unless a test
asks for them: entry points load only the names in ASYNCDATAFLOW_LOAD_PLUGINS."""

from __future__ import annotations

import os

os.environ.setdefault("ASYNCDATAFLOW_LOAD_PLUGINS", "http")

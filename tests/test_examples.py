"""The seed examples in examples/seed_*.py, run as a user runs them: ``python examples/x.py``
in a subprocess, from a directory outside the source tree, with warnings as errors. Each
prints its results deterministically; the output is checked exactly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

EXPECTED = {
    "seed_endpoints.py": """\
flow.map over three endpoints, at most 3 at a time:
  {'status': 0, 'source': 'endpoint1', 'rows': 6}
  {'status': 0, 'source': 'endpoint2', 'rows': 3}
  {'status': 0, 'source': 'endpoint3', 'rows': 4}
sources in flight at once: 3
database:
  endpoint1: [1, 2, 3, 4, 5, 6]
  endpoint2: [10, 20, 30]
  endpoint3: [7, 7, 7, 7]
asyncio.gather, as in the seed:
  {'status': 0, 'source': 'endpoint1', 'rows': 6}
  {'status': 0, 'source': 'endpoint2', 'rows': 3}
  {'status': 0, 'source': 'endpoint3', 'rows': 4}
""",
    "seed_merge.py": """\
query_1: {'status': 0, 'rows': 3}
query_2: {'status': 0, 'rows': 2}
query_3: {'status': 0, 'rows': 1}
written to endpoint_c: [(1, 10), (2, 20), (3, 30), (4, 40), (5, 50), (6, 60)]
three at once: [{'status': 0, 'rows': 3}, {'status': 0, 'rows': 2}, {'status': 0, 'rows': 1}]
rows in endpoint_c now: 12
""",
    "seed_broker.py": """\
request 1 for systems ['a']:
  response: {'id': 1, 'customer': 'Ann (Lyon)'}
  ran: receive_request, dispatch_request, ask_system_a, transform_data_a, compose_response
  not taken: ask_system_b, transform_data_b
request 2 for systems ['b']:
  response: {'id': 2, 'balance': 24.5}
  ran: receive_request, dispatch_request, ask_system_b, transform_data_b, compose_response
  not taken: ask_system_a, transform_data_a
request 3 for systems ['a', 'b']:
  response: {'id': 3, 'customer': 'Bob (Oslo)', 'balance': 3.25}
  ran: receive_request, dispatch_request, ask_system_a, transform_data_a, \
ask_system_b, transform_data_b, compose_response
  not taken: -
request 4 for systems []:
  error: DataFlowRoutingError
  ran: receive_request, dispatch_request
  not taken: ask_system_a, transform_data_a, ask_system_b, transform_data_b
""",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_seed_example_prints_its_results(name: str, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / name)],
        cwd=tmp_path,  # not the repository: the installed package is what is imported
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert out.stdout == EXPECTED[name]


def test_every_seed_example_is_tested() -> None:
    assert {p.name for p in EXAMPLES.glob("seed_*.py")} == set(EXPECTED)

"""RunInfo.id is unique in a process and across processes, forked ones included."""

from __future__ import annotations

import os

import pytest

from asyncdataflow import RunInfo


def test_run_ids_are_unique_within_a_process() -> None:
    ids = {RunInfo({}).id for _ in range(1000)}
    assert len(ids) == 1000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_process_forked_after_import_makes_ids_of_its_own() -> None:
    parent_next = RunInfo({}).id
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its first id and leave at once
        try:
            os.write(write, RunInfo({}).id.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        child_first = pipe.read().decode()
    os.waitpid(pid, 0)
    parent_after = RunInfo({}).id
    # the child's counter and prefix used to be the parent's copy: same id as the parent's next
    assert child_first not in (parent_next, parent_after)
    assert child_first.split("-")[0] == f"{pid:x}"

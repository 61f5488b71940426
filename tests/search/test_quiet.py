"""Quiet slots: the driver pauses this machine's registered training processes while it
re-times a latency, and always continues them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from search.latency.quiet import HOST, Workers, start_time

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")


def _state(pid: int) -> str:
    """The process's state letter in /proc/<pid>/stat: T when stopped."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.fixture
def busy():
    p = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    yield p
    p.kill()
    p.wait()


def test_registered_processes_are_stopped_for_the_slot_and_continued_after(tmp_path, busy):
    workers = Workers(tmp_path / "workers")
    assert workers.register(busy.pid) == tmp_path / "workers" / f"{HOST}-{busy.pid}"
    assert workers.register() is not None  # the driver itself is never paused
    assert workers.pids() == [busy.pid]
    with workers.paused() as n:
        assert n == 1
        assert _state(busy.pid) == "T"
    assert _state(busy.pid) != "T"
    with pytest.raises(RuntimeError), workers.paused():  # however the slot ends
        assert _state(busy.pid) == "T"
        raise RuntimeError("a timing failed")
    assert _state(busy.pid) != "T"
    assert workers.slots == 2 and workers.paused_s > 0
    workers.unregister(busy.pid)
    with workers.paused() as n:
        assert n == 0 and _state(busy.pid) != "T"
    assert workers.slots == 2  # a slot that stopped nothing is not counted


def test_stale_and_foreign_files_pause_nothing(tmp_path, busy):
    """A file whose pid now names another process (its start time differs) is removed; a file
    of a process that has ended is removed; another machine's file is left alone."""
    workers = Workers(tmp_path)
    (tmp_path / f"{HOST}-{busy.pid}").write_text(str(int(start_time(busy.pid)) - 1))
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    (tmp_path / f"{HOST}-{ended.pid}").write_text("1")
    (tmp_path / f"another-host-{os.getpid()}").write_text(start_time(os.getpid()))
    assert workers.pids() == []
    with workers.paused() as n:
        assert n == 0 and _state(busy.pid) != "T"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"another-host-{os.getpid()}"]

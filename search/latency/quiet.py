"""Quiet slots: the trials training on the driver's machine are paused while the driver
re-times a latency it is about to rule on.

Niceness and the CPU-time fallback (search.latency.measure) keep a worker from taking the timed
core, but not from slowing it: on a virtual machine the two vCPUs may share one physical
core or its cache and clock, and a worker training on the other vCPU slows every call of
a 20-50 us network by 1.3x or more, in CPU time as much as in wall time. Only a core with
no training on the machine times a network the way a user's idle machine would. So each
trial registers its process in the run's artifacts (``<artifacts>/workers/<host>-<pid>``,
holding the process's start time, so that a stale file never names a reused pid), and the
driver stops those processes (SIGSTOP) for the length of a re-timing and continues them
(SIGCONT) after it: a few seconds per borderline verdict and per trained network
(search.latency.screen). Processes on other machines of a cluster are not touched: they do not
share the driver's CPU. Where ``/proc`` is missing (not Linux), nothing is paused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

HOST = socket.gethostname()


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` from field 3 (the state) on, or None when there is
    no such process or no ``/proc``; the command name before them may hold spaces."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def start_time(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (field 22), which tells a
    process from a later one given the same pid; None when there is no such process or no
    ``/proc``."""
    fields = _stat(pid)
    return None if fields is None else fields[19]


def is_stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped (state T), or gone."""
    fields = _stat(pid)
    return fields is None or fields[0] in ("T", "t", "Z", "X")


def _wait_stopped(pids: list[int], timeout_s: float = 1.0) -> None:
    """Return once every process of ``pids`` has stopped: SIGSTOP is delivered when the
    kernel next schedules the process, so ``kill`` can return while it still runs on the
    other core, and a timing started then would share the machine with it."""
    deadline = time.perf_counter() + timeout_s
    waiting = list(pids)
    while waiting and time.perf_counter() < deadline:
        waiting = [pid for pid in waiting if not is_stopped(pid)]
        if waiting:
            time.sleep(0.001)
    if waiting:
        log.debug("process(es) %s had not stopped after %.1f s", waiting, timeout_s)


class Workers:
    """The training processes registered in ``directory`` by this machine's trials."""

    def __init__(self, directory: Path | str):
        self.directory = Path(directory)
        self.slots, self.paused_s = 0, 0.0  # slots that stopped at least one process, and their length

    def _file(self, pid: int) -> Path:
        return self.directory / f"{HOST}-{pid}"

    def register(self, pid: int | None = None) -> Path | None:
        """Record process ``pid`` (default: this one) as training; returns its file, or None
        where processes cannot be told apart (no ``/proc``)."""
        pid = os.getpid() if pid is None else pid
        started = start_time(pid)
        if started is None:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._file(pid)
        path.write_text(started)
        return path

    def unregister(self, pid: int | None = None) -> None:
        self._file(os.getpid() if pid is None else pid).unlink(missing_ok=True)

    def pids(self) -> list[int]:
        """The registered processes of this machine that still run (not this one); a file
        whose process has ended, or whose pid now names another process, is removed."""
        alive = []
        for path in self.directory.glob(f"{HOST}-*"):
            try:
                pid, recorded = int(path.name.rsplit("-", 1)[1]), path.read_text()
            except (ValueError, OSError):
                continue
            if start_time(pid) != recorded:
                path.unlink(missing_ok=True)
            elif pid != os.getpid():
                alive.append(pid)
        return sorted(alive)

    @contextlib.contextmanager
    def paused(self) -> Iterator[int]:
        """Stop the registered processes for the body of the ``with``; yields how many were
        stopped. They are continued however the body ends."""
        stopped = []
        start = time.perf_counter()
        try:
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGSTOP)
                except (ProcessLookupError, PermissionError):
                    continue
                stopped.append(pid)
            if stopped:
                _wait_stopped(stopped)
                log.debug("paused %d training process(es) for a timing", len(stopped))
            yield len(stopped)
        finally:
            for pid in stopped:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGCONT)
            if stopped:
                self.slots += 1
                self.paused_s += time.perf_counter() - start

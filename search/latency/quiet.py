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

A file in that folder is a request to stop a process, so the driver stops only what is this
run's training: the folder is owner-only (:meth:`Workers.create`: made 0o700, or set to it,
and refused where another user owns it), and before each stop the process must be a
descendant of the driver (a local Ray's workers are children of the raylet its ``ray.init``
started) or, for a Ray cluster started elsewhere, whose workers are not, a process of the
driver's user started after this run began, with the start time its file records. Anything
else a file names (pid 1, a user's shell, another run's worker) is left running, with a
warning.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

HOST = socket.gethostname()


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` from field 3 (the state) on, or None when there is
    no such process or no ``/proc``; the command name before them may hold spaces."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def start_time(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (field 22), which tells a
    process from a later one given the same pid; None when there is no such process or no
    ``/proc``."""
    fields = _stat(pid)
    return None if fields is None else fields[19]


def _parent(pid: int) -> int | None:
    """The parent of process ``pid`` (field 4), or None when there is no such process."""
    fields = _stat(pid)
    return None if fields is None else int(fields[1])


def descends_from(pid: int, ancestor: int) -> bool:
    """Whether process ``pid`` is a child, grandchild... of process ``ancestor``, by the chain
    of parents in ``/proc``."""
    for _ in range(4096):  # deeper than any real tree: a chain that changes while read cannot loop forever
        parent = _parent(pid)
        if parent is None:
            return False
        if parent == ancestor:
            return True
        if parent <= 1:  # init's children, and init itself (whose parent is 0)
            return False
        pid = parent
    return False


def _uids(pid: int) -> set[int] | None:
    """The real, effective, saved and file-system user ids of process ``pid``, or None."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("Uid:"):
            return {int(uid) for uid in line.split()[1:]}
    return None


def _ticks_since_boot() -> int | None:
    """Now, in the unit of :func:`start_time` (clock ticks since boot); None without ``/proc``.
    Read from the decimal text, not through a float (12345.67 x 100 is 1234566.99...)."""
    try:
        whole, _, fraction = Path("/proc/uptime").read_text().split()[0].partition(".")
        tick = os.sysconf("SC_CLK_TCK")
        return int(whole) * tick + int((fraction + "00")[:2]) * tick // 100
    except (OSError, ValueError, IndexError):
        return None


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
    """The training processes registered in ``directory`` by this machine's trials. Made by the
    driver when its run begins: the processes it may stop are its own descendants and those of
    its user started since (see the module docstring)."""

    def __init__(self, directory: Path | str):
        self.directory = Path(directory)
        self.driver = os.getpid()
        self.uid = os.getuid()
        # when this run began, in start_time's unit (a tick, 10 ms), one tick on: a process that
        # started in the tick the run began may have started just before it
        now = _ticks_since_boot()
        self.since = None if now is None else now + 1
        self.slots, self.paused_s = 0, 0.0  # slots that stopped at least one process, and their length
        self._refused: set[tuple[int, str]] = set()  # (pid, start time) already warned about

    def create(self) -> Path:
        """The folder, owner-only: made with mode 0o700, or set to it where it exists with
        another mode. A folder of another user, or anything that is not a folder (a symbolic
        link among them), is refused with a PermissionError naming it: whoever can write
        there could have this driver stop their choice of process."""
        self.directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            self.directory.mkdir(mode=0o700)
        try:  # the folder itself, not where a link would lead, checked and set through one descriptor
            fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as e:
            if e.errno not in (errno.ENOTDIR, errno.ELOOP):  # a file, a link
                raise
            raise PermissionError(f"{self.directory} is not a folder: it cannot hold this run's training "
                                  f"processes; remove it or choose other --artifacts") from None
        try:
            info = os.fstat(fd)
            if info.st_uid != self.uid:
                raise PermissionError(f"{self.directory} belongs to user id {info.st_uid}, not to this user "
                                      f"({self.uid}): refusing to take the processes to pause from it; remove it "
                                      f"or choose other --artifacts")
            if stat.S_IMODE(info.st_mode) != 0o700:
                os.fchmod(fd, 0o700)
        finally:
            os.close(fd)
        return self.directory

    def is_run_worker(self, pid: int, recorded: str) -> bool:
        """Whether process ``pid``, registered with start time ``recorded``, is one of this
        run's training processes: a descendant of the driver, or a process of the driver's user
        that started after this run began and at the time its file records."""
        if descends_from(pid, self.driver):
            return True
        started = start_time(pid)
        return (started is not None and started == recorded and self.since is not None
                and int(started) > self.since and _uids(pid) == {self.uid})

    def _file(self, pid: int) -> Path:
        return self.directory / f"{HOST}-{pid}"

    def register(self, pid: int | None = None) -> Path | None:
        """Record process ``pid`` (default: this one) as training; returns its file, or None
        where processes cannot be told apart (no ``/proc``)."""
        pid = os.getpid() if pid is None else pid
        started = start_time(pid)
        if started is None:
            return None
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._file(pid)
        path.write_text(started)
        return path

    def unregister(self, pid: int | None = None) -> None:
        self._file(os.getpid() if pid is None else pid).unlink(missing_ok=True)

    def pids(self) -> list[int]:
        """The registered processes of this machine that still run and are this run's training
        (:meth:`is_run_worker`; never the driver); a file whose process has ended, or whose pid
        now names another process, is removed, and one naming a process that is not this run's
        is ignored, with a warning."""
        alive = []
        for path in self.directory.glob(f"{HOST}-*"):
            try:
                pid, recorded = int(path.name.rsplit("-", 1)[1]), path.read_text()
            except (ValueError, OSError):
                continue
            if start_time(pid) != recorded:
                path.unlink(missing_ok=True)
            elif pid == os.getpid():
                continue
            elif self.is_run_worker(pid, recorded):
                alive.append(pid)
            elif (pid, recorded) not in self._refused:
                self._refused.add((pid, recorded))
                log.warning("not pausing process %d named by %s: it is neither a descendant of this driver nor "
                            "a process of this user started during this run", pid, path)
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

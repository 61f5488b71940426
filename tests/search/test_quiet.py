"""Quiet slots: the driver pauses this machine's registered training processes while it
re-times a latency, and always continues them; only this run's training processes, listed in
an owner-only folder."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from search.latency.quiet import HOST, Workers, descends_from, start_time

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


def _detached_sleep(user: int | None = None) -> int:
    """The pid of a ``sleep`` that is no descendant of this process: started by a shell that
    exits at once, so its parent becomes init (or the nearest subreaper above this process)."""
    done = subprocess.run(["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True,
                          start_new_session=True, check=True, timeout=30, user=user)
    pid = int(done.stdout)
    assert not descends_from(pid, os.getpid()) and _state(pid) != "T"
    return pid


@pytest.fixture
def detached():
    """Start detached sleeps (``detached(user=None)``); each is killed, by its pid, afterwards."""
    pids = []

    def start(user: int | None = None) -> int:
        pids.append(_detached_sleep(user))
        return pids[-1]

    yield start
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_a_file_naming_a_process_that_is_not_this_runs_training_stops_nothing(tmp_path, busy, detached, caplog):
    """Whoever can write the folder cannot have the driver stop their choice of process: pid 1
    and a process of this user started before the run are left running, with a warning, though
    their files record their true start times; the driver's own child (a local Ray's worker
    descends from the driver) is stopped."""
    before = detached()
    time.sleep(0.05)  # a few clock ticks (start times count in ticks): surely before the run began
    workers = Workers(tmp_path / "workers")
    for pid in (before, 1, busy.pid):
        workers.register(pid)
    with caplog.at_level(logging.WARNING, logger="search.latency.quiet"), workers.paused() as n:
        assert n == 1
        assert _state(busy.pid) == "T"
        assert _state(before) != "T" and _state(1) != "T"
    assert _state(busy.pid) != "T"
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2 and all("not pausing process" in m for m in warned)
    assert any(f"process {before} " in m for m in warned) and any("process 1 " in m for m in warned)
    with workers.paused():  # warned once per process, and still not stopped
        assert _state(before) != "T" and _state(1) != "T"
    assert len(caplog.records) == 2


def test_a_process_of_this_user_started_during_the_run_is_stopped_though_not_a_descendant(tmp_path, detached):
    """A Ray cluster started elsewhere runs the trials in processes that do not descend from
    the driver: one of the driver's user, started after the run began at the time its file
    records, is stopped; one with a forged start time, or of another user, is not."""
    workers = Workers(tmp_path / "workers")
    time.sleep(0.05)  # a few clock ticks: surely after the run began
    during = detached()
    workers.register(during)
    assert workers.pids() == [during]
    with workers.paused() as n:
        assert n == 1 and _state(during) == "T"
    assert _state(during) != "T"
    assert workers.is_run_worker(during, start_time(during))
    assert not workers.is_run_worker(during, str(int(start_time(during)) + 1))  # not the process the file names
    if os.getuid() == 0:  # a process of another user, started during the run
        other = detached(user=65534)
        workers.register(other)
        assert not workers.is_run_worker(other, start_time(other))
        with workers.paused() as n:
            assert n == 1 and _state(other) != "T"


def test_the_workers_folder_is_made_owner_only(tmp_path):
    made = Workers(tmp_path / "artifacts" / "workers").create()
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o777)  # an --artifacts folder that exists already, writable by everyone
    (loose / "workers").mkdir()
    (loose / "workers").chmod(0o777)
    assert Workers(loose / "workers").create() == loose / "workers"
    assert stat.S_IMODE((loose / "workers").stat().st_mode) == 0o700
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "workers").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PermissionError, match="is not a folder"):
        Workers(tmp_path / "linked" / "workers").create()
    (tmp_path / "file").mkdir()
    (tmp_path / "file" / "workers").write_text("")
    with pytest.raises(PermissionError, match="is not a folder"):
        Workers(tmp_path / "file" / "workers").create()


@pytest.mark.skipif(os.getuid() != 0, reason="making a folder of another user needs root")
def test_a_workers_folder_of_another_user_is_refused(tmp_path):
    theirs = tmp_path / "workers"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, 65534, 65534)
    with pytest.raises(PermissionError, match=r"belongs to user id 65534, not to this user"):
        Workers(theirs).create()
    assert stat.S_IMODE(theirs.stat().st_mode) == 0o755


RUN_SPACE = """
study: quiet
seed_presets: false
sampler: {name: random, seed: 0}
budget: {trials: 2}
architecture:
  stages: 1
  blocks_per_stage: 1
  channels: {low: 4, high: 8}
  conv: [conv3x3]
  last_block: [plain]
  dropout: 0.0
  pool: [true]
  head: [gap]
training:
  epochs: 1
  batch_size: 32
  image_size: [16]
"""


def test_a_run_stops_its_training_only_and_makes_its_workers_folder_owner_only(tmp_path, detached, monkeypatch,
                                                                              caplog):
    """A run whose --artifacts and workers folder exist writable by everyone, holding files that
    name pid 1 and a process of this user started before the run: trial 0's re-check stops
    trial 1's worker (it waits on its hold until trial 0 is told), those two processes are
    never stopped, and the folder is owner-only after the run."""
    from search.data import DataConfig, load_dataset
    from search.run import runner
    from search.run.worker import WORKERS_DIR
    from search.space import load_space
    from tests.search.infra_helpers import wait_for

    (tmp_path / "quiet.yaml").write_text(RUN_SPACE)
    space = load_space(tmp_path / "quiet.yaml")
    data = load_dataset(DataConfig(source="synthetic", image_size=16, synthetic_count=120), cache_dir=tmp_path / "cache")
    artifacts = tmp_path / "artifacts"
    folder = artifacts / WORKERS_DIR
    folder.mkdir(parents=True)
    artifacts.chmod(0o777)
    folder.chmod(0o777)
    intruders = [detached(), 1]
    for pid in intruders:
        Workers(folder).register(pid)
    holds = tmp_path / "holds"
    holds.mkdir()
    for number in (0, 1):
        (holds / f"trial-{number}.hold").touch()
    monkeypatch.setenv("CASTSEARCH_TRIAL_PIDFILE_DIR", str(holds))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    caplog.set_level(logging.INFO, logger="search.run.runner")
    stopped: set[int] = set()
    running = True

    def watch() -> None:
        while running:
            stopped.update(pid for pid in intruders if _state(pid) == "T")
            time.sleep(0.002)

    def release_trial_0() -> None:  # once trial 1's worker has registered: it writes its pid file after
        try:
            wait_for(lambda: (holds / "trial-1.pid").exists(), 240, "trial 1 to start")
        finally:
            (holds / "trial-0.hold").unlink()

    def on_progress(progress) -> None:  # trial 0 has been re-checked and told: let trial 1 go on
        if progress.run_finished >= 1:
            (holds / "trial-1.hold").unlink(missing_ok=True)

    threads = [threading.Thread(target=watch, daemon=True), threading.Thread(target=release_trial_0, daemon=True)]
    for t in threads:
        t.start()
    try:
        summary = runner.run_search(space, {16: data}, runner.RunOptions(
            study_name="quiet", storage=f"sqlite:///{tmp_path}/quiet.db", trials=2, timeout_s=None, workers=2,
            artifacts=artifacts), on_progress=on_progress)
    finally:
        running = False
        for name in ("trial-0.hold", "trial-1.hold"):
            (holds / name).unlink(missing_ok=True)
        for t in threads:
            t.join(timeout=10)
    assert summary.finished == 2
    assert stopped == set(), "a process the run does not own was stopped"
    assert all(_state(pid) != "T" for pid in intruders)
    (slots,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("training paused for")]
    assert int(slots.split()[3]) >= 1, slots  # trial 1's worker, at least while trial 0 was re-checked
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_a_process_started_just_before_the_run_is_not_one_it_started(tmp_path):
    """The run's start and a process's start are read in clock ticks from two files that round
    differently; a process started in the tick the run began counts as started before it."""
    from search.latency import quiet

    before = quiet._ticks_since_boot()
    child = subprocess.Popen(["sleep", "5"])
    try:
        started = int(quiet.start_time(child.pid))
        after = quiet._ticks_since_boot()
        assert before - 1 <= started <= after + 1  # the same clock, in the same unit
        workers = quiet.Workers(tmp_path)
        assert workers.since > started  # so not "started during this run", whatever the rounding
    finally:
        child.kill()
        child.wait()

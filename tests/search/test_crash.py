"""A long search survives being killed and bad input: SIGKILL of the driver, then the same
command again; a Ray worker killed mid-trial; a trial whose training raises; unreadable
files among the images."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from search.cli import main
from tests.search.infra_helpers import (
    castsearch,
    env,
    make_image_folder,
    session_names,
    started,
    wait_for,
    write_space,
)

RAY_AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")


def _trials(storage: str, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=storage).trials


def _counted(trials) -> list[optuna.trial.FrozenTrial]:
    """Trials that count towards a budget: complete (feasible or not) or pruned, never invalid."""
    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            and not t.user_attrs.get("invalid")]


def test_sigkilled_driver_then_the_same_command_resumes_to_the_budget(tmp_path):
    data = make_image_folder(tmp_path / "images")
    space = write_space(tmp_path, study="crash", data=data, trials=4)
    storage = f"sqlite:///{tmp_path}/crash.db"
    pids = tmp_path / "pids"
    pids.mkdir()
    (pids / "trial-1.hold").touch()  # trial 1 waits on its worker until the driver is killed
    command = castsearch("run", str(space), "--storage", storage, "--workers", "1",
                         "--artifacts", str(tmp_path / "artifacts"))
    log = tmp_path / "first.log"
    with started(command, log, env=env(CASTSEARCH_TRIAL_PIDFILE_DIR=str(pids)), cwd=tmp_path) as first:
        # trial 1 has started on its worker, so trial 0 has finished: kill the driver now
        wait_for(lambda: (pids / "trial-1.pid").exists() or first.poll() is not None, 240, "trial 1 to start")
        assert first.poll() is None, log.read_text()[-4000:]
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)  # reaped, as a shell would: its pid is gone
        (pids / "trial-1.hold").unlink()
        before = {t.number: t for t in _trials(storage, "crash")}
        assert before[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
        assert before[1].state == TrialState.RUNNING
        # The local Ray it started goes with it: GCS, raylet and workers at once (fate-sharing);
        # Ray's two agents exit on their own about a minute later and hold nothing a new run needs.
        wait_for(lambda: not [n for n in session_names(first.pid) if n not in RAY_AGENTS], 30,
                 "the killed driver's GCS, raylet and workers to exit")

        # the same command again, at once
        rerun = subprocess.run(command, env=env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-5000:]
    assert "resumed run" in rerun.stdout

    after = {t.number: t for t in _trials(storage, "crash")}
    for number, t in before.items():  # what had finished is still there, unchanged
        if t.state.is_finished():
            assert (after[number].state, after[number].values) == (t.state, t.values)
            assert after[number].user_attrs == t.user_attrs
    assert after[1].state == TrialState.FAIL and "driver died" in after[1].user_attrs["error"]
    assert [t.number for t in after.values() if not t.state.is_finished()] == []  # nothing RUNNING
    assert len(_counted(after.values())) == 4  # the first run's budget, finished by the two runs
    runs = optuna.load_study(study_name="crash", storage=storage).user_attrs
    runs = [v for k, v in runs.items() if k.startswith("run:")]
    assert len(runs) == 2 and all(r["done"] for r in runs)
    (dead,) = [r for r in runs if r["resumed_from"] is None]
    (resumed,) = [r for r in runs if r["resumed_from"] == dead["run_id"]]
    assert resumed["trials"] == 4 - len([t for t in _counted(before.values())])


def _add_bad_files(root: Path) -> dict[str, str]:
    """Unreadable files among the images: what each is, by path."""
    good = (root / "class_0" / "000.png").read_bytes()
    bad = {
        root / "class_0" / "corrupt.png": os.urandom(300),
        root / "class_1" / "truncated.png": good[: len(good) // 3],
        root / "class_1" / "zero.jpg": b"",
        root / "class_2" / "notes.txt": b"not an image\n",
        root / "class_2" / "weird <name> & 'quote'.png": b"<script>alert(1)</script>",
    }
    for path, content in bad.items():
        path.write_bytes(content)
    return {str(p.resolve()): p.name for p in bad}


def test_worker_killed_mid_trial_and_a_raising_trial_fail_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    """One run over images with unreadable files; the worker of trial 0 is SIGKILLed while it
    runs, trial 1 raises (an injected fault): both are failed with their reason, the others
    complete, and the unreadable files are skipped and reported by name."""
    data = make_image_folder(tmp_path / "images")
    bad = _add_bad_files(data)
    space = write_space(tmp_path, study="faults", data=data, trials=4)
    storage = f"sqlite:///{tmp_path}/faults.db"
    pids = tmp_path / "pids"
    pids.mkdir()
    monkeypatch.setenv("CASTSEARCH_TRIAL_PIDFILE_DIR", str(pids))
    monkeypatch.setenv("CASTSEARCH_INJECT_FAULT", "1")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    killed: list[int] = []

    def kill_trial_0_worker() -> None:
        pidfile = pids / "trial-0.pid"
        deadline = time.time() + 240
        while not pidfile.exists() and time.time() < deadline:
            time.sleep(0.05)
        if pidfile.exists():
            pid = int(pidfile.read_text())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    killer = threading.Thread(target=kill_trial_0_worker, daemon=True)
    killer.start()
    rc = main(["run", str(space), "--storage", storage, "--workers", "1", "--artifacts", str(tmp_path / "artifacts")])
    out = capsys.readouterr().out
    killer.join(timeout=5)
    assert rc == 0, out
    assert killed and killed[0] != os.getpid()

    trials = {t.number: t for t in _trials(storage, "faults")}
    assert trials[0].state == TrialState.FAIL
    assert "worker raised or died" in trials[0].user_attrs["error"]
    assert trials[1].state == TrialState.FAIL
    assert "RuntimeError: injected fault in trial 1" in trials[1].user_attrs["error"]
    rest = [t for n, t in trials.items() if n > 1]
    assert rest and all(t.state == TrialState.COMPLETE for t in rest)  # the run went on
    assert not [t for t in trials.values() if not t.state.is_finished()]
    assert "2 trials finished" in out

    # the unreadable files: skipped, named in the output and in every trained trial's data identity
    for path in bad:
        assert f"skipped {path}: " in out
    for t in rest:
        skipped = {s["path"]: s["reason"] for s in t.user_attrs["data"]["skipped"]}
        assert set(skipped) == set(bad)
        assert "empty file" in skipped[str((data / "class_1" / "zero.jpg").resolve())]
        assert t.user_attrs["data"]["counts"] == {"train": 27, "val": 6, "test": 3}


DISK_FULL_ONCE = "CASTSEARCH_TEST_DISK_FULL_ONCE"  # a file: the weights write that removes it finds the disk full


def _disk_fills_once() -> None:
    """Ray's worker set-up hook (this module's test below): ``torch.save`` of a trial's weights
    writes half the file and raises ENOSPC, once in the whole run (the first write that removes
    the file named by $CASTSEARCH_TEST_DISK_FULL_ONCE), as a write that fills the disk does."""
    import errno
    import io

    import torch

    save = torch.save

    def save_on_a_filling_disk(obj, f, *args, **kwargs):
        token = os.environ.get(DISK_FULL_ONCE)
        if token and isinstance(f, str | os.PathLike) and str(f).endswith("model.pt.tmp"):
            try:
                os.unlink(token)
            except FileNotFoundError:
                pass
            else:
                whole = io.BytesIO()
                save(obj, whole, *args, **kwargs)
                Path(f).write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))
        return save(obj, f, *args, **kwargs)

    torch.save = save_on_a_filling_disk


def test_a_disk_that_fills_while_a_trials_weights_are_written_fails_that_trial_alone(tmp_path, monkeypatch, capsys):
    """The first trial's weights write fills the disk (ENOSPC after half the file): that trial is
    failed with the OSError as its reason and leaves no weights, partial or whole; the other
    trials complete with readable weights and the study and its run record are whole."""
    import ray

    from search.study.record import TrialRecord, read_weights

    data = make_image_folder(tmp_path / "images")
    space = write_space(tmp_path, study="full", data=data, trials=3)
    storage = f"sqlite:///{tmp_path}/full.db"
    artifacts = tmp_path / "artifacts"
    token = tmp_path / "disk-fills-once"
    token.touch()
    monkeypatch.setenv(DISK_FULL_ONCE, str(token))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("PYTHONPATH", env()["PYTHONPATH"])  # Ray's workers import the hook from this module
    # the run uses the Ray started here, whose workers run the hook before any trial
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
             configure_logging=False, runtime_env={"worker_process_setup_hook": _disk_fills_once})
    try:
        rc = main(["run", str(space), "--storage", storage, "--workers", "1", "--artifacts", str(artifacts)])
    finally:
        ray.shutdown()
    out = capsys.readouterr().out
    assert rc == 0, out
    assert not token.exists()  # the disk did fill

    trials = _trials(storage, "full")
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1, [(t.number, t.state, t.user_attrs.get("error")) for t in trials]
    error = failed[0].user_attrs["error"]
    assert error.startswith("OSError: [Errno 28] No space left on device") and "model.pt.tmp" in error
    assert "weights_path" not in failed[0].user_attrs
    folder = artifacts / f"trial-{failed[0].number:05d}"
    assert not list(folder.glob("model.pt*")), sorted(p.name for p in folder.iterdir())
    rest = [t for t in trials if t is not failed[0]]
    assert len(rest) == 2 and all(t.state == TrialState.COMPLETE for t in rest)  # the run went on to its budget
    for t in rest:
        record = TrialRecord.read(t)
        assert read_weights(record.weights_path) and record.load_network() is not None
        assert not list(Path(record.weights_path).parent.glob("*.tmp"))
    study = optuna.load_study(study_name="full", storage=storage)
    runs = [v for k, v in study.user_attrs.items() if k.startswith("run:")]
    assert len(runs) == 1 and runs[0]["done"]
    assert "2 trials finished" in out

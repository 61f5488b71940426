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

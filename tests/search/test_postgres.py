"""One study in PostgreSQL shared by several drivers: a private PostgreSQL server (initdb +
pg_ctl in a temporary folder, 127.0.0.1 on a free port), ``castsearch run --storage
postgresql+psycopg2://...``, and two drivers on one new study at the same time."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from castmodels import PRESETS
from search.run import runs
from search.space import load_space
from search.study import storage as studylib
from tests.search.infra_helpers import (
    REPO,
    castsearch,
    env,
    make_image_folder,
    postgres_server,
    postgres_unavailable,
    started,
    write_space,
)

pytestmark = pytest.mark.skipif(postgres_unavailable() is not None, reason=str(postgres_unavailable()))


@pytest.fixture(scope="module")
def pg():
    with postgres_server() as server:
        yield server


def _all_at_once(n: int, fn) -> list[str]:
    """Run ``fn`` in ``n`` threads released together; the errors they raised."""
    barrier = threading.Barrier(n)
    errors: list[str] = []

    def go():
        try:
            barrier.wait()
            fn()
        except Exception as e:  # collected for the assertion
            errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=go) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return errors


def test_drivers_creating_one_study_in_an_empty_database_at_once(pg):
    """Optuna's tables are created by whichever driver comes first; the others retry and load
    the study, and the paper's presets are queued exactly once."""
    url = pg.create_database("race")
    space = load_space(REPO / "spaces" / "paper.yaml")
    errors = _all_at_once(4, lambda: runs.enqueue_presets(studylib.open_study("paper", url), space, url))
    assert errors == []
    study = optuna.load_study(study_name="paper", storage=url)
    queued = Counter(t.user_attrs.get("preset") or "near " + t.user_attrs["near_preset"] for t in study.trials)
    assert queued == Counter([*PRESETS, *(f"near {name}" for name in PRESETS)])  # each preset and its nearest once
    assert all(t.state == TrialState.WAITING for t in study.trials)


def test_drivers_starting_together_resume_a_dead_run_once(pg):
    url = pg.create_database("resume")
    study = studylib.open_study("s", url)
    dead = runs.RunRecord(run_id="dead", trials=5, timeout_s=None, host="elsewhere")
    dead.heartbeat = time.time() - 10 * runs.STALE_AFTER_S
    dead.save(study)
    study.ask().set_user_attr("run_id", "dead")
    resumed = []
    errors = _all_at_once(4, lambda: resumed.append(runs.recover(studylib.open_study("s", url), url)))
    assert errors == []
    assert [r.run_id for r in resumed if r is not None] == ["dead"]
    (orphan,) = optuna.load_study(study_name="s", storage=url).trials
    assert orphan.state == TrialState.FAIL and "driver died" in orphan.user_attrs["error"]


def test_another_hosts_driver_is_judged_by_postgresqls_clock(pg, monkeypatch):
    """Heartbeats and their staleness are read from the server's clock: this host's clock ten
    minutes ahead leaves a driver of another host alive; a heartbeat stale by the server's
    clock does not."""
    url = pg.create_database("clock")
    study = studylib.open_study("s", url)
    assert abs(studylib.database_now(study) - time.time()) < 5  # the server runs on this machine
    remote = runs.RunRecord(run_id="remote", trials=5, timeout_s=None)
    runs.begin(study, url, remote, seed=1)
    study.ask().set_user_attr("run_id", "remote")
    monkeypatch.setattr(runs, "HOST", "another-host")
    clock = time.time
    monkeypatch.setattr(runs.time, "time", lambda: clock() + 600)
    assert runs.recover(study, url) is None
    remote.heartbeat = studylib.database_now(study) - 2 * runs.STALE_AFTER_S
    remote.save(study)
    assert runs.recover(study, url).run_id == "remote"
    (orphan,) = study.trials
    assert orphan.state == TrialState.FAIL


def _finished(trials, run_id: str) -> int:
    return runs.finished_by(trials, run_id)


@pytest.mark.slow  # two drivers (30 s; test_runs has them on SQLite): make test-all and CI run it
def test_two_drivers_search_one_study_in_postgres_at_once(pg, tmp_path):
    url = pg.create_database("castsearch")
    data = make_image_folder(tmp_path / "images")
    common = ["--storage", url, "--workers", "1", "--artifacts", str(tmp_path / "artifacts")]

    # two drivers on one new study in PostgreSQL, started together, budgets 2 and 3
    shared = write_space(tmp_path, study="shared", data=data, trials=2)
    logs = [tmp_path / "driver-a.log", tmp_path / "driver-b.log"]
    with started(castsearch("run", str(shared), *common), logs[0], env=env(), cwd=tmp_path) as a, \
            started(castsearch("run", str(shared), "--trials", "3", *common), logs[1], env=env(), cwd=tmp_path) as b:
        codes = [a.wait(timeout=400), b.wait(timeout=400)]
    outputs = [log.read_text() for log in logs]
    assert codes == [0, 0], "\n\n".join(o[-4000:] for o in outputs)
    for out in outputs:
        assert "Traceback" not in out and "ERROR" not in out, out[-4000:]
    assert "2 trials finished" in outputs[0] and "3 trials finished" in outputs[1]
    assert all("postgresql" in out for out in outputs)  # each names the storage it searched in
    front = subprocess.run(castsearch("front", "--study", "shared", "--storage", url, "--json"), env=env(),
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert front.returncode == 0, front.stderr
    rows = json.loads(front.stdout)

    study = optuna.load_study(study_name="shared", storage=url)
    trials = study.trials
    runs = {k[len("run:"):]: v for k, v in study.user_attrs.items() if k.startswith("run:")}
    assert len(runs) == 2 and all(r["done"] for r in runs.values())
    assert sorted(r["trials"] for r in runs.values()) == [2, 3]
    # each driver counted its own trials only, and finished its own budget
    for run_id, r in runs.items():
        assert _finished(trials, run_id) == r["trials"]
    # the sum of both budgets, nothing duplicated, lost, failed or left running
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert len({t._trial_id for t in trials}) == len(trials)
    assert {t.user_attrs["run_id"] for t in trials} == set(runs)
    assert [t for t in trials if t.state not in (TrialState.COMPLETE, TrialState.PRUNED)] == []
    assert rows and {r["trial"] for r in rows} <= {t.number for t in trials if t.state == TrialState.COMPLETE}
    assert sum(1 for t in trials if not t.user_attrs.get("invalid")) == 5
    # each driver sampled with its own seed, so they did not draw the same networks
    assert sorted((r["index"], r["seed"]) for r in runs.values())[0] == (0, 0)  # the space's seed: 0
    assert len({r["seed"] for r in runs.values()}) == 2
    drawn = [[t.params for t in trials if t.user_attrs["run_id"] == run_id] for run_id in runs]
    assert drawn[0][:2] != drawn[1][:2]


def test_no_file_a_postgresql_backed_run_writes_holds_the_password(pg, tmp_path):
    """The storage URL's password reaches neither castsearch's files nor Ray's (its session
    folder: logs, job records), and the artifacts folder castsearch creates is owner-only."""
    import shutil
    import stat
    import tempfile

    secret = "SECRETPW7731"
    url = pg.create_database("secret").replace("postgres@", f"postgres:{secret}@")
    data = make_image_folder(tmp_path / "images")
    space = write_space(tmp_path, study="pw", data=data, trials=1)
    ray_tmp = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))  # short: Ray's socket paths must fit
    artifacts = tmp_path / "art"
    try:
        run = subprocess.run(castsearch("run", str(space), "--storage", url, "--workers", "1",
                                        "--artifacts", str(artifacts)),
                             env=env(RAY_TMPDIR=str(ray_tmp)), cwd=tmp_path, capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
        assert secret not in run.stdout + run.stderr
        assert list(artifacts.rglob("tuner.pkl")), "Tune wrote no experiment state: nothing was checked"
        holding = [str(p) for root in (tmp_path, ray_tmp) for p in root.rglob("*")
                   if p.is_file() and not p.is_symlink() and secret.encode() in p.read_bytes()]
        assert holding == []
        assert stat.S_IMODE(artifacts.stat().st_mode) == 0o700
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)

"""Run bookkeeping: seeds of a study's runs, which drivers are alive (this host's by their
process, another host's by a heartbeat on the database's clock), what a dead run leaves to
resume, the quiet re-timing deferred while another run trains, the run's closing summary, and
a Tune pickle without the database URL; all without Ray but two ``castsearch run`` drivers on
one study at once. What a run queues before its sampler (the presets, their nearest points, an
earlier study's front) is test_runs_presets.py's."""

from __future__ import annotations

import dataclasses
import itertools
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from castmodels import PRESETS
from search.cli import main
from search.latency.measure import SPREAD
from search.latency.quiet import Workers, is_stopped, start_time
from search.latency.screen import Screen
from search.latency.timer import Timer
from search.run import runner, runs
from search.run.searcher import StudySearcher
from search.space import load_space
from search.study import storage as studylib
from search.study.record import TrialRecord
from tests.search.infra_helpers import castsearch, env, started, write_space
from tests.search.runs_helpers import _study

REPO = Path(__file__).resolve().parents[2]


def _dead(run_id: str, trials: int | None = 5) -> runs.RunRecord:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return runs.RunRecord(run_id=run_id, trials=trials, timeout_s=None, pid=int(gone.stdout))


def test_each_run_of_a_study_samples_with_its_own_seed(tmp_path):
    study, url = _study(tmp_path)
    first = runs.RunRecord(run_id="a", trials=2, timeout_s=None)
    second = runs.RunRecord(run_id="b", trials=2, timeout_s=None)
    runs.begin(study, url, first, seed=555)
    runs.begin(study, url, second, seed=555)
    assert (first.index, first.seed) == (0, 555)  # a single driver stays reproducible
    assert second.index == 1 and second.seed not in (None, 555)
    assert runs.run_seed(555, 1) == second.seed  # derived, not random: the same on every machine
    assert runs.run_seed(None, 3) is None
    stored = {r.run_id: (r.index, r.seed) for r in runs.runs(study)}
    assert stored == {"a": (0, 555), "b": (1, second.seed)}

    # two samplers seeded this way draw different points
    points = []
    for run in (first, second):
        s = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=run.seed))
        points.append([s.ask().suggest_int("stages", 2, 5) for _ in range(8)])
    assert points[0] != points[1]


def test_a_run_that_died_before_any_trial_is_not_resumed(tmp_path):
    study, url = _study(tmp_path)
    _dead("never-started").save(study)
    new = runs.RunRecord(run_id="new", trials=3, timeout_s=None)
    assert runs.begin(study, url, new, seed=1) is None
    assert new.resumed_from is None and new.trials == 3  # nothing to resume ...
    assert all(r.done for r in runs.runs(study) if r.run_id == "never-started")  # ... and it is closed


def test_a_run_killed_mid_budget_is_resumed_by_the_next(tmp_path):
    study, url = _study(tmp_path)
    dead = _dead("killed", trials=5)
    dead.save(study)
    for state in (TrialState.COMPLETE, TrialState.RUNNING):
        t = study.ask()
        TrialRecord(run_id="killed").write(t)
        if state == TrialState.COMPLETE:
            study.tell(t, values=[0.5, 1.0, 100.0])
    new = runs.RunRecord(run_id="new", trials=9, timeout_s=None)
    runs.begin(study, url, new, seed=1)
    assert (new.resumed_from, new.trials) == ("killed", 4)


@pytest.fixture
def sleeper():
    """A live process of this host that does nothing: a driver stalled for as long as a test needs."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _running_trial(study, run_id: str) -> int:
    t = study.ask()
    TrialRecord(run_id=run_id).write(t)
    return t.number


def _state(study, number: int) -> TrialState:
    return study.get_trials(deepcopy=False)[number].state


def test_a_stalled_driver_on_this_host_is_not_recovered(tmp_path, sleeper):
    """Its process is alive and is the one that began the run: however old its heartbeat, its
    trials are left running and its budget is not resumed."""
    study, url = _study(tmp_path)
    stalled = runs.RunRecord(run_id="stalled", trials=5, timeout_s=None, pid=sleeper.pid)
    runs.begin(study, url, stalled, seed=1)
    assert stalled.pid_start == start_time(sleeper.pid) is not None  # recorded as the run began
    stalled.heartbeat = studylib.database_now(study) - 10 * runs.STALE_AFTER_S  # no beat for 10 minutes
    stalled.save(study)
    running = _running_trial(study, "stalled")
    assert runs.recover(study, url) is None
    assert _state(study, running) == TrialState.RUNNING
    assert [r.run_id for r in runs.others_live(study, "mine")] == ["stalled"]
    new = runs.RunRecord(run_id="new", trials=3, timeout_s=None)
    assert runs.begin(study, url, new, seed=1) is None and (new.resumed_from, new.trials) == (None, 3)
    assert not {r.run_id: r for r in runs.runs(study)}["stalled"].done


def test_a_driver_whose_pid_is_gone_or_recycled_is_recovered(tmp_path, sleeper):
    """On this host a driver is its process: a pid no process holds is a dead driver, and so is
    a pid held by a process that started at another time than the one that began the run
    (the system gave the pid to a later process), whatever their heartbeats say. A record
    written before start times were kept is judged by its pid alone."""
    study, url = _study(tmp_path)
    clock = studylib.database_now(study)
    gone = _dead("gone")
    gone.pid_start, gone.heartbeat = "12345", clock  # beat just now
    recycled = runs.RunRecord(run_id="recycled", trials=5, timeout_s=None, pid=sleeper.pid,
                              pid_start=str(int(start_time(sleeper.pid)) - 1), heartbeat=clock)
    older = runs.RunRecord(run_id="older", trials=5, timeout_s=None, pid=sleeper.pid, heartbeat=clock - 3600)
    for r in (gone, recycled, older):
        r.save(study)
    trials = {run_id: _running_trial(study, run_id) for run_id in ("gone", "recycled", "older")}
    assert runs.recover(study, url) is not None
    assert {run_id: _state(study, n) for run_id, n in trials.items()} == {
        "gone": TrialState.FAIL, "recycled": TrialState.FAIL, "older": TrialState.RUNNING}
    done = {r.run_id: r.done for r in runs.runs(study)}
    assert done == {"gone": True, "recycled": True, "older": False}


def test_another_hosts_driver_is_judged_by_the_databases_clock(tmp_path, monkeypatch):
    """A driver on another host beats with the database's clock, and is judged by it: this
    host's clock ten minutes ahead does not make it look dead; a heartbeat truly older than
    STALE_AFTER_S by the database's clock does."""
    study, url = _study(tmp_path)
    remote = runs.RunRecord(run_id="remote", trials=5, timeout_s=None)
    runs.begin(study, url, remote, seed=1)
    running = _running_trial(study, "remote")
    assert abs(remote.heartbeat - studylib.database_now(study)) < 5
    monkeypatch.setattr(runs, "HOST", "another-host")  # the record's host is now another machine
    clock = time.time
    monkeypatch.setattr(runs.time, "time", lambda: clock() + 600)
    assert runs.recover(study, url) is None
    assert _state(study, running) == TrialState.RUNNING
    assert [r.run_id for r in runs.others_live(study, "mine")] == ["remote"]

    # its heartbeat writes the database's clock, not this host's
    monkeypatch.setattr(runs, "HEARTBEAT_S", 0.01)
    stop, before = threading.Event(), remote.heartbeat
    beat = threading.Thread(target=runs.heartbeat, args=(study, remote, stop))
    beat.start()
    try:
        deadline = time.monotonic() + 10
        while remote.heartbeat == before and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        beat.join(timeout=10)
    assert remote.heartbeat != before and abs(remote.heartbeat - clock()) < 5
    assert runs.recover(study, url) is None

    remote.heartbeat = studylib.database_now(study) - 2 * runs.STALE_AFTER_S  # its last beat, long ago
    remote.save(study)
    assert runs.recover(study, url).run_id == "remote"
    assert _state(study, running) == TrialState.FAIL


def test_run_refuses_impossible_flags_before_writing_anything(tmp_path, capsys):
    storage = tmp_path / "flags.db"
    start = time.perf_counter()
    code = main(["run", str(REPO / "spaces" / "paper.yaml"), "--data", "synthetic", "--trials", "1",
                 "--workers", "-1", "--storage", f"sqlite:///{storage}", "--artifacts", str(tmp_path / "art")])
    assert code != 0
    assert "--workers must be at least 1, not -1" in capsys.readouterr().err
    assert time.perf_counter() - start < 10  # refused before data, study or Ray
    assert not storage.exists() and not (tmp_path / "art").exists()
    with pytest.raises(ValueError, match="--trials"):
        runner.check_options(runner.RunOptions("s", "sqlite://", trials=0, timeout_s=None))
    with pytest.raises(ValueError, match="time budget"):
        runner.check_options(runner.RunOptions("s", "sqlite://", trials=None, timeout_s=-5))


def _complete(study, values, **attrs):
    t = study.ask()
    TrialRecord(**attrs).write(t)
    study.tell(t, values=values)
    return t


def test_front_is_not_retimed_while_another_run_of_the_study_trains(tmp_path, monkeypatch):
    study, _ = _study(tmp_path)
    timed = []
    monkeypatch.setattr(studylib, "pareto_front", lambda s: timed.append(1) or [])
    other = runs.RunRecord(run_id="other", trials=5, timeout_s=None)  # this process: alive
    other.save(study)
    assert runs.retime_study_front(study, "mine") == 0 and timed == []
    other.done = True
    other.save(study)
    runs.retime_study_front(study, "mine")
    assert timed == [1]


def test_the_front_is_retimed_with_the_runs_workers_paused(tmp_path, monkeypatch):
    """A trial the time budget cut can still be training after Ray shut down: the runner's
    workers stay stopped for the whole re-timing, and continue after it."""
    study, _ = _study(tmp_path)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        workers = Workers(tmp_path / "workers")
        workers.register(busy.pid)
        states = []
        monkeypatch.setattr(studylib, "pareto_front", lambda s: states.append(is_stopped(busy.pid)) or [])
        runs.retime_study_front(study, "mine", Timer(quiet=workers.paused))
        assert states == [True] and not is_stopped(busy.pid)
    finally:
        busy.kill()
        busy.wait()


def test_a_short_fronts_re_timing_passes_are_spread_in_time(tmp_path, monkeypatch):
    """The host's slow stretches can outlast a pass over a short front: each network's timings
    in successive passes are at least gap_s apart, and its re-timed latency is the lowest of
    all of them."""
    from search.latency import measure as measurelib
    from search.training.recipe import TrainRecipe

    study, _ = _study(tmp_path)
    recipe = TrainRecipe.named("default", image_size=16).to_dict()
    for values, preset in (([0.9, 1.0, 150_000], "custom-140k-3x3"), ([0.8, 0.5, 90_000], "custom-140k-dw")):
        _complete(study, values, preset=preset, arch=PRESETS[preset].to_dict(), recipe=recipe,
                  data={"class_names": ["a", "b"]}, latency_runtime="torch")
    started = {}

    def spy(timer):
        def timed(model, *args, **kwargs):
            started.setdefault(id(model), []).append(time.monotonic())
            return timer(model, *args, **kwargs)
        return timed

    monkeypatch.setattr(measurelib, "measure", spy(measurelib.measure))
    monkeypatch.setattr(measurelib, "time_single", spy(measurelib.time_single))
    assert runs.retime_study_front(study, passes=3, gap_s=0.5) == 2
    assert len(started) == 2 and all(len(times) == 3 for times in started.values())
    for times in started.values():
        assert all(later - earlier >= 0.45 for earlier, later in itertools.pairwise(times))
    for t in studylib.pareto_front(study):
        r = studylib.retimed(study, t.number)
        assert len(r["latency_timings_ms"]) == 3 * SPREAD and r["latency_ms"] == min(r["latency_timings_ms"])
    with pytest.raises(ValueError, match="passes must be >= 1"):
        runs.retime_study_front(study, passes=0)


def test_the_front_is_re_timed_at_the_pace_of_the_studys_relative_limit(tmp_path, monkeypatch):
    """Where the run's limit was relative, each re-timing is paced by the limit's reference, as
    the run's timings were (search.latency.timer.Pacer): the reference timed at twice its latency when
    the limit was set halves every timing beside it; the clock's timings stay on record."""
    from search.latency import measure as measurelib
    from search.latency import screen as screenlib
    from search.training.recipe import TrainRecipe

    study, _ = _study(tmp_path)
    recipe = TrainRecipe.named("default", image_size=16).to_dict()
    _complete(study, [0.9, 1.0, 150_000], preset="custom-140k-dw", arch=PRESETS["custom-140k-dw"].to_dict(),
              recipe=recipe, data={"class_names": ["a", "b"]}, latency_runtime="torch")
    study.set_user_attr(f"{screenlib.LIMIT_PREFIX}16", {"max_latency_ms": 9.0, "relative_to": "custom-140k-3x3",
                                                        "factor": 1.0, "reference_ms": 0.5, "runtime": "torch"})
    reference, paced = measurelib.time_single, []

    def twice_as_slow(model, input_shape, **kwargs):
        if kwargs["spread"] != 1:  # the front network's own timings, by the clock
            return reference(model, input_shape, **kwargs)
        paced.append(model)  # the pacer's one timing per slot
        r = reference(model, input_shape, **kwargs)
        return dataclasses.replace(r, median_ms=1.0, cpu_median_ms=1.0, spread_ms=[1.0])

    monkeypatch.setattr(measurelib, "time_single", twice_as_slow)
    assert runs.retime_study_front(study, passes=2, gap_s=0.0) == 1
    r = studylib.retimed(study, studylib.pareto_front(study)[0].number)
    assert r["paces"] == [2.0] * (2 * SPREAD) and len(r["latency_timings_ms"]) == 2 * SPREAD
    assert r["latency_ms"] == pytest.approx(min(r["latency_timings_ms"]) / 2)
    assert studylib.front_rows(study)[0]["latency_paced_by"] == "custom-140k-3x3"
    # one timing of the reference per slot (two passes), the front network's own by the clock
    assert len(paced) == 2 and 1.0 not in r["latency_timings_ms"]


def test_run_outcome_counts_sampled_networks_and_dominated_presets(tmp_path):
    study, _ = _study(tmp_path)
    _complete(study, [0.90, 1.0, 500_000], run_id="r", preset="custom-590k-dw")
    _complete(study, [0.80, 0.5, 150_000], run_id="r", preset="custom-140k-3x3")
    best = _complete(study, [0.91, 0.4, 90_000], run_id="r")  # dominates both presets
    _complete(study, [0.50, 2.0, 10_000], run_id="r")  # trained, on the front (smallest)
    _complete(study, [0.0, 9.0, 10_000], run_id="r", infeasible=True, screened="latency over the limit")
    _complete(study, [0.30, 5.0, 5_000], run_id="other")  # another run's: on the front, not counted
    invalid = study.ask()
    TrialRecord(run_id="r", invalid="no pixels left").write(invalid)
    study.tell(invalid, state=TrialState.PRUNED)
    pruned = study.ask()
    TrialRecord(run_id="r").write(pruned)
    study.tell(pruned, state=TrialState.PRUNED)
    o = runs.run_outcome(study, "r")
    assert (o.trained, o.infeasible, o.invalid, o.pruned, o.failed, o.presets_trained) == (2, 1, 1, 1, 0, 2)
    assert (o.front, o.front_searched) == (3, 3)
    assert o.dominated == {"custom-590k-dw": [best.number], "custom-140k-3x3": [best.number]}


def test_the_summary_warns_when_the_front_holds_only_presets(capsys):
    from search.cli import print_run_summary

    outcome = runs.RunOutcome(trained=0, infeasible=12, presets_trained=6, front=2, front_searched=0)
    summary = runner.RunSummary(run_id="abc", resumed_from=None, finished=6, budget=None, elapsed_s=500,
                                front=[], timeout_s=1500, outcome=outcome, artifacts=Path("/tmp/x"))
    print_run_summary(summary)
    out = capsys.readouterr().out
    assert "6 trials finished in 8m20s of 25m00s" in out
    assert "0 trained · 12 infeasible" in out
    assert "2 networks, 0 of them found by the search" in out
    assert "warning: no searched network is on the front" in out


def test_the_summary_names_a_seeded_nearest_point_among_the_dominating_trials(tmp_path, capsys):
    from search.cli import print_run_summary

    study, _ = _study(tmp_path)
    _complete(study, [0.80, 1.0, 150_000], run_id="r", preset="custom-140k-dw")
    near = _complete(study, [0.85, 0.9, 116_000], run_id="r", near_preset="custom-140k-dw")
    sampled = _complete(study, [0.82, 0.5, 20_000], run_id="r")
    o = runs.run_outcome(study, "r")
    assert o.seeded == {near.number: "custom-140k-dw"}
    summary = runner.RunSummary(run_id="r", resumed_from=None, finished=3, budget=None, elapsed_s=60,
                                front=[], timeout_s=None, outcome=o, artifacts=None)
    print_run_summary(summary)
    out = capsys.readouterr().out
    assert "2 of them found by the search (1 seeded nearest point, seed_nearest)" in out
    assert (f"custom-140k-dw (by trials {near.number} (seeded: nearest custom-140k-dw), {sampled.number})" in out
            or f"custom-140k-dw (by trials {sampled.number}, {near.number} (seeded: nearest custom-140k-dw))" in out)


def test_artifacts_default_beside_a_sqlite_database(tmp_path):
    assert runner.default_artifacts(f"sqlite:///{tmp_path}/db/mt.db", "mt") == tmp_path / "db" / "mt"
    assert runner.default_artifacts("postgresql+psycopg2://u:pw@host/x", "mt") == Path("studies") / "mt"


def test_tunes_pickle_of_the_searcher_holds_no_database_url(tmp_path):
    space = load_space(REPO / "spaces" / "paper.yaml")
    url = f"sqlite:///{tmp_path}/SECRETPW.db"
    study = studylib.open_study("s", url)
    run = runs.RunRecord(run_id="r", trials=1, timeout_s=None)
    screen = Screen(study, Timer(space.latency_runtime), num_classes=3)
    searcher = StudySearcher(study, space, run, tmp_path, None, print, screen, {})
    blob = pickle.dumps(searcher)
    assert b"SECRETPW" not in blob
    assert searcher.study is study  # the live searcher keeps its study


def test_two_drivers_search_one_sqlite_study_at_once(tmp_path):
    """Two ``castsearch run`` processes on one SQLite study, started together: neither takes the
    other for dead (each sees the other's live process on this host), both finish their own
    budget, and no trial is failed or run twice. The space queues no presets (they would take
    the two budgets of two trials); queueing them once from drivers started together is
    tests/search/test_postgres.py's."""
    space = write_space(tmp_path, study="pair", data="synthetic", trials=2)
    storage = f"sqlite:///{tmp_path}/pair.db"
    command = castsearch("run", str(space), "--storage", storage, "--trials", "2", "--workers", "1",
                         "--artifacts", str(tmp_path / "artifacts"))
    logs = [tmp_path / "driver-a.log", tmp_path / "driver-b.log"]
    quick = env(CASTSEARCH_TIMING="quick")
    with started(command, logs[0], env=quick, cwd=tmp_path) as a, started(command, logs[1], env=quick, cwd=tmp_path) as b:
        codes = [a.wait(timeout=300), b.wait(timeout=300)]
    outputs = [log.read_text() for log in logs]
    assert codes == [0, 0], "\n\n".join(o[-4000:] for o in outputs)
    for out in outputs:
        assert "2 trials finished" in out and "Traceback" not in out, out[-4000:]

    study = optuna.load_study(study_name="pair", storage=storage)
    records = runs.runs(study)
    assert len(records) == 2 and all(r.done and r.pid_start is not None for r in records)
    assert {r.resumed_from for r in records} == {None}  # neither resumed the other
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials if t.state != TrialState.COMPLETE] == []  # nothing failed, pruned or left running
    assert len(trials) == 4 and {TrialRecord.read(t).preset for t in trials} == {None}  # 2 sampled per driver
    assert sorted(runs.finished_by(trials, r.run_id) for r in records) == [2, 2]
    assert len({r.seed for r in records}) == 2  # each drew with its own seed

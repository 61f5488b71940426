"""The search end to end (local Ray, 2 workers) and the study bookkeeping around Tune. The
early-stopping rungs and the trial configuration they read are test_scheduler.py's."""

import json
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.data import DataConfig, load_dataset
from search.latency.measure import SPREAD
from search.latency.quiet import Workers, is_stopped
from search.latency.retime import RETIME_PASSES, retime_seconds
from search.latency.screen import Screen
from search.latency.timer import Timer
from search.run import runner, runs
from search.run.searcher import StudySearcher
from search.run.worker import ERROR, FINAL, OUTCOME, PREVIEW, VAL_SCORE, WORKERS_DIR
from search.space import load_space
from search.study import storage as studylib
from search.trial.config import KEY, TrialConfig

TINY_SPACE = """
study: tiny
seed_presets: false
constraints: {max_params: 2500}
sampler: {name: random, seed: 3}
budget: {trials: 6}
architecture:
  stages: {low: 1, high: 2}
  blocks_per_stage: {low: 1, high: 2}
  channels: {low: 4, high: 32}
  conv: [conv3x3, dwsep]
  last_block: [plain, stride2]
  dropout: 0.0
  pool: [true, false]
  head: [gap]
training:
  epochs: 2
  batch_size: 32
  image_size: [16]
enhancements:
  blurpool: [false, true]
"""

ATTRS = ("arch", "recipe", "macro_f1", "per_class_recall", "macs", "latency_iqr_ms", "batch_latency_ms",
         "data", "machine", "versions", "weights_path", "run_id", "node_id")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    path = root / "tiny.yaml"
    path.write_text(TINY_SPACE)
    data = load_dataset(DataConfig(source="synthetic", image_size=16, synthetic_count=360), cache_dir=root / "cache")
    return load_space(path), {16: data}, root


def _opts(root: Path, trials: int, workers: int = 2) -> runner.RunOptions:
    return runner.RunOptions(study_name="tiny", storage=f"sqlite:///{root}/tiny.db", trials=trials,
                             timeout_s=None, workers=workers, artifacts=root / "artifacts")


def test_tiny_search_end_to_end_with_two_workers_then_again(tiny, capfd, monkeypatch):
    space, datasets, root = tiny
    seen = []
    first = runner.run_search(space, datasets, _opts(root, trials=6), on_progress=seen.append)
    assert first.finished == 6
    err = capfd.readouterr().err  # Ray's start-up banner (token authentication) is not for the user
    assert "Token authentication" not in err and "ray-security" not in err
    assert seen and seen[-1].run_finished == 6

    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{root}/tiny.db")
    assert study.metric_names == ["val_balanced_accuracy", "latency_ms", "params"]
    assert len(study.directions) == 3
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                and not t.user_attrs.get("invalid") and not t.user_attrs.get("screened")]
    assert len(finished) == 6  # the budget counts trials that reached a worker
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]

    trained = [t for t in study.trials if t.state == TrialState.COMPLETE and studylib.is_feasible(t)]
    assert trained, "at least one feasible trial should complete"
    for t in trained:
        for key in ATTRS:
            assert key in t.user_attrs, f"trial {t.number} lacks user attr {key}"
        assert Path(t.user_attrs["weights_path"]).is_file()
        phases = t.user_attrs["worker_seconds"]
        assert set(phases) == {"measure", "train", "evaluate", "save"} and all(v >= 0 for v in phases.values())
        # judged by a preview (the tiny space's 2 epochs compressed to 1) before it trained
        assert t.user_attrs["preview"]["epochs"] == 1 and 0.0 <= t.user_attrs["preview"]["score"] <= 1.0
        assert len(t.user_attrs["val_accuracy"]) == t.user_attrs["epochs_run"] == 2  # the full training's epochs
        assert 0.0 <= t.values[0] <= 1.0 and t.values[1] > 0 and t.values[2] <= 2500
        # the objective is the validation split's balanced accuracy; test figures sit beside it
        assert (t.user_attrs["objective_metric"], t.user_attrs["objective_split"]) == ("balanced_accuracy", "validation")
        assert t.values[0] == t.user_attrs["validation"]["balanced_accuracy"]
        assert 0.0 <= t.user_attrs["test_accuracy"] <= 1.0
        assert t.user_attrs["data"]["class_names"] == datasets[16].class_names
        # the latency: the lowest of the screen's timings (more when a reading was retaken) and the
        # driver's re-check once trained
        timings = t.user_attrs["latency_timings_ms"]
        assert len(timings) >= 2 * SPREAD and len(timings) % SPREAD == 0 and t.values[1] == min(timings)
    retimed = [studylib.retimed(study, t.number) for t in studylib.pareto_front(study)]
    assert retimed and all(r is not None for r in retimed)  # the quiet re-timing: passes over the front
    for r in retimed:
        assert len(r["latency_timings_ms"]) == RETIME_PASSES * SPREAD and r["latency_ms"] == min(r["latency_timings_ms"])
    for t in study.trials:
        if t.state == TrialState.COMPLETE and not studylib.is_feasible(t):
            assert t.user_attrs["infeasible"] and t.values[2] > 2500
            assert "weights_path" not in t.user_attrs  # never trained

    front = studylib.pareto_front(study)
    assert front and all(t.state == TrialState.COMPLETE and studylib.is_feasible(t) for t in front)
    for t in front:
        assert studylib.retimed(study, t.number)["latency_ms"] > 0

    # The same command again adds its budget to the same study. Its front is re-timed with the
    # run's training processes stopped: one the time budget cut may still be training.
    busy, stopped = [], []
    retime_study_front = runner.retime_study_front

    def retime_with_a_cut_trial_alive(study, run_id, timer):
        busy.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        Workers(root / "artifacts" / WORKERS_DIR).register(busy[0].pid)
        with timer.quiet():
            stopped.append(is_stopped(busy[0].pid))
        return retime_study_front(study, run_id, timer)

    monkeypatch.setattr(runner, "retime_study_front", retime_with_a_cut_trial_alive)
    try:
        second = runner.run_search(space, datasets, _opts(root, trials=2, workers=1))
        assert stopped == [True] and not is_stopped(busy[0].pid)
    finally:
        for p in busy:
            p.kill()
            p.wait()
    assert second.finished == 2
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{root}/tiny.db")
    runs = [v for k, v in study.user_attrs.items() if k.startswith("run:")]
    assert len(runs) == 2 and all(r["done"] for r in runs)
    assert sorted(r["index"] for r in runs) == [0, 1] and len({r["seed"] for r in runs}) == 2
    o = second.outcome  # every trial of the second run is counted once in its summary
    mine = [t for t in study.trials if t.user_attrs.get("run_id") == second.run_id]
    assert o.trained + o.infeasible + o.invalid + o.pruned + o.failed + o.presets_trained == len(mine)
    assert second.artifacts == (root / "artifacts").resolve()
    # the trials registered their processes for the screen's quiet slots (search.latency.quiet); none outlives the run
    workers = second.artifacts / WORKERS_DIR
    assert workers.is_dir() and Workers(workers).pids() == []


def _searcher(tmp_path, space, trials=5):
    """A StudySearcher as run_search builds it, without Ray (quick latency timings)."""
    study = studylib.open_study("s", f"sqlite:///{tmp_path}/s.db", sampler=optuna.samplers.RandomSampler(seed=0))
    run = runs.RunRecord(run_id="r1", trials=trials, timeout_s=None)
    screen = Screen(study, Timer(space.latency_runtime), num_classes=9)
    limits = {size: space.constraints for size in space.image_sizes}
    return study, StudySearcher(study, space, run, tmp_path, None, None, screen, limits)


def _suggest(searcher: StudySearcher, trial_id: str) -> TrialConfig:
    """The configuration the searcher hands Tune for its trial ``trial_id``."""
    return searcher.suggest(trial_id)[KEY]


def test_candidates_over_max_params_never_reach_a_worker(tiny, tmp_path):
    """The parameter count is exact from the spec: the driver tells an over-limit candidate to
    the study at once, and only candidates within the limit are handed to Tune."""
    from search.latency.measure import count_params
    from search.trial.pipeline import build_candidate

    space = tiny[0]
    limit = space.constraints.max_params
    study, searcher = _searcher(tmp_path, space, trials=6)
    configs = [_suggest(searcher, f"t{i}") for i in range(6)]
    for config in configs:
        assert count_params(build_candidate(config.arch, config.recipe, 9)) <= limit
    screened = [t for t in study.trials if t.user_attrs.get("screened")]
    assert screened, "the tiny space draws over-limit networks; some must have been screened"
    for t in screened:
        assert t.state == TrialState.COMPLETE and not studylib.is_feasible(t)
        assert t.values[1] == float("inf") and t.values[2] > limit and t.user_attrs["infeasible"]
        assert t.constraints["max_params"] > 0 and t.constraints["max_latency_ms"] == 0.0
        assert "parameters > max_params" in t.user_attrs["screened"]
    assert runs.finished_by(study.trials, "r1") == 0  # screened trials are not the run's trials
    assert searcher.issued == 6 and studylib.counts(study.trials)["infeasible"] == len(screened)


def test_early_stopped_trial_is_pruned_never_complete(tiny, tmp_path):
    space = tiny[0]
    study, searcher = _searcher(tmp_path, space)
    suggestion = searcher.suggest("a")
    assert set(suggestion) == {KEY}  # Tune's config holds the trial's one typed configuration
    config = suggestion[KEY]
    assert isinstance(config, TrialConfig) and config.out_dir == tmp_path / f"trial-{config.number:05d}"
    searcher.on_trial_result("a", {"epoch": 1, VAL_SCORE: 0.4})
    searcher.on_trial_complete("a", {"epoch": 1, VAL_SCORE: 0.4})  # ASHA stopped it: no final result
    t = study.trials[config.number]
    assert t.state == TrialState.PRUNED and t.values is None
    assert t.user_attrs["val_accuracy"] == [0.4] and t.user_attrs["pruned_at_epoch"] == 1
    assert studylib.pareto_front(study) == []


def test_a_failed_latency_recheck_keeps_the_screening_figure(tiny, tmp_path, monkeypatch, caplog):
    """The re-check as a trial ends must not cost the search: if it raises, the trial is told
    with the latency it was screened at."""
    from search.trial.pipeline import run_candidate

    space, datasets, _ = tiny
    study, searcher = _searcher(tmp_path, space)
    config = _suggest(searcher, "a")
    screened = config.measurement.latency_ms
    outcome = run_candidate(config.arch, config.recipe, datasets[16], out_dir=config.out_dir, metric=config.metric,
                            measurement=config.measurement)

    def broken(*args, **kwargs):
        raise RuntimeError("no core left")

    monkeypatch.setattr(searcher.screen, "recheck", broken)
    searcher.on_trial_complete("a", {FINAL: True, OUTCOME: outcome.provenance(datasets[16])})
    t = study.trials[config.number]
    assert t.state == TrialState.COMPLETE and t.values[1] == screened
    assert "latency re-check failed (RuntimeError: no core left)" in caplog.text


def test_trial_error_is_failed_with_its_message(tiny, tmp_path):
    study, searcher = _searcher(tmp_path, tiny[0])
    config = _suggest(searcher, "a")
    searcher.on_trial_complete("a", {FINAL: True, ERROR: "RuntimeError: out of memory"})
    t = study.trials[config.number]
    assert t.state == TrialState.FAIL and "out of memory" in t.user_attrs["error"]
    config = _suggest(searcher, "b")
    searcher.on_trial_complete("b", None, error=True)  # the worker died: Tune knows no more
    assert study.trials[config.number].state == TrialState.FAIL


def test_searcher_stops_at_its_budget(tiny, tmp_path):
    _, searcher = _searcher(tmp_path, tiny[0], trials=2)
    assert isinstance(searcher.suggest("a"), dict)
    assert isinstance(searcher.suggest("b"), dict)
    assert searcher.suggest("c") == "FINISHED"


def test_recover_fails_orphans_of_a_dead_run_and_resumes_its_budget(tmp_path):
    study = studylib.open_study("s", f"sqlite:///{tmp_path}/s.db")
    dead = runs.RunRecord(run_id="dead", trials=5, timeout_s=None, host="elsewhere")
    dead.heartbeat = time.time() - 10 * runs.STALE_AFTER_S
    dead.save(study)
    alive = runs.RunRecord(run_id="alive", trials=3, timeout_s=None)
    alive.save(study)
    for run_id, state in (("dead", TrialState.COMPLETE), ("dead", TrialState.RUNNING), ("alive", TrialState.RUNNING)):
        t = study.ask()
        t.set_user_attr("run_id", run_id)
        if state == TrialState.COMPLETE:
            study.tell(t, values=[0.5, 1.0, 100.0])
    resumed = runs.recover(study, f"sqlite:///{tmp_path}/s.db")
    assert resumed.run_id == "dead"
    states = {(t.user_attrs["run_id"], t.state) for t in study.trials}
    assert states == {("dead", TrialState.COMPLETE), ("dead", TrialState.FAIL), ("alive", TrialState.RUNNING)}
    assert "driver died" in study.trials[1].user_attrs["error"]
    assert runs.finished_by(study.trials, "dead") == 1
    assert runs.recover(study, f"sqlite:///{tmp_path}/s.db") is None  # a dead run is resumed once
    assert json.loads(json.dumps(study.user_attrs["run:dead"]))["done"] is True


def test_a_killed_driver_on_this_host_is_dead_at_once(tmp_path):
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    now = time.time()
    assert runs.RunRecord(run_id="x", trials=1, timeout_s=None, pid=int(gone.stdout)).is_dead(now)
    assert not runs.RunRecord(run_id="y", trials=1, timeout_s=None).is_dead(now)  # this process
    assert not runs.RunRecord(run_id="z", trials=1, timeout_s=None, host="elsewhere").is_dead(now)


def test_a_preview_is_the_schedule_compressed_and_a_stopped_trial_keeps_it(tiny, tmp_path):
    """A preview of all of a recipe's epochs is that recipe's training: the same score as the
    full run's (same seed). The driver keeps a trial's preview apart from its epoch history; a
    trial stopped at its preview is PRUNED with the preview on record."""
    from dataclasses import replace

    from search.trial.pipeline import preview, run_candidate

    space, datasets, _ = tiny
    study, searcher = _searcher(tmp_path, space)
    config = _suggest(searcher, "a")
    assert config.preview == 1  # the tiny space trains 2 epochs and stops early by previews (the default)
    data = datasets[16]
    recipe = replace(config.recipe, epochs=1)
    whole = run_candidate(config.arch, recipe, data, metric="balanced_accuracy")
    assert preview(config.arch, recipe, data, 1, "balanced_accuracy") == whole.objective
    searcher.on_trial_result("a", {"epoch": 1, VAL_SCORE: 0.4, PREVIEW: 2.5})
    searcher.on_trial_complete("a", {"epoch": 1, VAL_SCORE: 0.4, PREVIEW: 2.5})
    t = study.trials[config.number]
    assert t.state == TrialState.PRUNED and t.values is None
    assert t.user_attrs["preview"] == {"epochs": 1, "score": 0.4, "seconds": 2.5}
    assert t.user_attrs["val_accuracy"] == [] and t.user_attrs["pruned_at_epoch"] == 1


# the tiny space with the presets in the study and the floor they set
FLOOR_SPACE = TINY_SPACE.replace("seed_presets: false", "seed_presets: true").replace(
    "{max_params: 2500}", "{max_params: 1000000, min_accuracy: presets}")


def test_min_accuracy_presets_holds_the_search_until_the_presets_set_the_floor(tiny, tmp_path):
    """Under ``min_accuracy: presets`` only presets go out until every preset has trained; then
    the floor is the least accurate preset's validation accuracy, it is stored in the study and
    it is every later candidate's min_accuracy. A trained network under it is off the front and
    counted apart from the infeasible ones; a stopped one carries its shortfall as a constraint."""
    import dataclasses

    from search.trial.pipeline import run_candidate

    data = tiny[1][16]
    path = tmp_path / "floor.yaml"
    path.write_text(FLOOR_SPACE)
    space = load_space(path)
    assert space.accuracy_floor == "presets" and space.constraints.min_accuracy is None
    study, searcher = _searcher(tmp_path, space, trials=20)
    assert runs.enqueue_presets(study, space, f"sqlite:///{tmp_path}/s.db") == 6
    configs = {f"p{i}": _suggest(searcher, f"p{i}") for i in range(6)}
    assert all(c.protect and c.min_accuracy is None for c in configs.values())
    assert searcher.suggest("early") is None  # presets are training: no candidate yet

    def train(trial_id, config):
        outcome = run_candidate(config.arch, config.recipe, data, out_dir=config.out_dir, metric=config.metric,
                                measurement=config.measurement)
        searcher.on_trial_complete(trial_id, {FINAL: True, OUTCOME: outcome.provenance(data)})

    for trial_id, config in list(configs.items())[:5]:
        train(trial_id, config)
    assert searcher.suggest("early") is None  # one preset still training
    train("p5", configs["p5"])

    presets = [t for t in study.trials if t.user_attrs.get("preset")]
    floor = min(t.values[0] for t in presets)
    config = _suggest(searcher, "a")
    assert not config.protect and config.min_accuracy == floor
    stored = study.user_attrs[studylib.FLOOR_ATTR]
    assert stored["min_accuracy"] == floor and stored["trial"] in [t.number for t in presets]
    assert all(studylib.is_feasible(t) for t in presets)  # the least accurate preset meets its own floor

    # a floor no one-epoch network reaches: the trained candidate is below it, not infeasible
    searcher.limits = {16: dataclasses.replace(searcher.limits[16], min_accuracy=0.99)}
    train("a", config)
    t = study.trials[config.number]
    assert t.state == TrialState.COMPLETE and t.constraints["min_accuracy"] > 0 and studylib.below_floor(t)
    assert t not in studylib.pareto_front(study)
    c = studylib.counts(study.trials)
    assert c["below_floor"] == 1 and c["infeasible"] == 0 and c["complete"] == 6

    config = _suggest(searcher, "b")
    searcher.on_trial_result("b", {"epoch": 1, VAL_SCORE: 0.4})
    searcher.on_trial_complete("b", {"epoch": 1, VAL_SCORE: 0.4})  # stopped early
    t = study.trials[config.number]
    assert t.state == TrialState.PRUNED and t.constraints["min_accuracy"] == pytest.approx(0.59)


def test_a_run_says_at_its_start_what_it_does_with_its_budget(tiny, tmp_path, capsys):
    """The plan line: the wall time and the CPU time it buys, the presets queued and their
    seeds, the sampler after them, and the front's re-timing inside the budget."""
    from search.cli.printing import format_plan, print_plan

    _, _, root = tiny
    space = load_space(root / "tiny.yaml", overrides={("seed_presets",): True, ("budget",): {"timeout": "2m"}})
    storage = f"sqlite:///{tmp_path}/plan.db"
    study = studylib.open_study("plan", storage, metric=space.metric)
    assert runs.enqueue_presets(study, space, storage) == 6
    opts = runner.RunOptions(study_name="plan", storage=storage, trials=None, timeout_s=120.0, workers=2)
    timer = Timer(space.latency_runtime)
    assert timer.quick  # the suite's protocol: no gap between passes
    plan = runner.run_plan(study, space, opts, None, 120.0, timer)
    assert (plan.presets, plan.preset_seeds, plan.nearest, plan.front, plan.sampler) == (6, 1, 0, 6, "random")
    assert plan.retime_s == retime_seconds(6, timer.timing) and plan.cpu_hours == 120.0 * 2 / 3600
    assert plan.search_s == 120.0 - plan.retime_s - runner.STOP_S
    line = (f"budget 2m00s on 2 workers (4 CPU-minutes): the paper's 6 presets first, then the random sampler "
            f"until the budget is spent; the front is re-timed at the end (about {plan.retime_s:.0f} s for a "
            f"front of 6, inside the budget)")
    assert format_plan(plan) == line
    print_plan(plan)
    assert capsys.readouterr().out == f"  {line}\n"
    counted = runner.run_plan(study, space, opts, 8, 120.0, timer)
    assert format_plan(counted).startswith("budget 8 trials or 2m00s on 2 workers (4 CPU-minutes): ")
    assert "until 8 trials have finished or the time is spent;" in format_plan(counted)


def test_a_timed_run_ends_within_its_budget_and_says_which_trials_it_cut(tiny, tmp_path):
    """A run given 60 s ends within them (and a tolerance for shutting down): it stops
    dispatching while its front's re-timing still fits, stops the trials in flight (failed,
    with the reason, so the sampler learns nothing from them) and leaves no process training."""
    space, datasets, root = tiny
    space = load_space(root / "tiny.yaml", overrides={("budget",): {"timeout": "60s"}, ("training", "epochs"): 6})
    storage = f"sqlite:///{tmp_path}/timed.db"
    opts = runner.RunOptions(study_name="timed", storage=storage, trials=None, timeout_s=space.budget.timeout_s,
                             workers=2, artifacts=tmp_path / "artifacts")
    plans = []
    start = time.time()
    summary = runner.run_search(space, datasets, opts, on_start=plans.append)
    wall = time.time() - start
    assert wall <= 60.0 + max(0.05 * 60.0, 30.0), f"the run took {wall:.1f} s of 60"
    assert summary.elapsed_s <= wall and summary.timeout_s == 60.0 and summary.budget is None
    assert [(p.timeout_s, p.trials, p.workers, p.presets) for p in plans] == [(60.0, None, 2, 0)]
    study = optuna.load_study(study_name="timed", storage=storage)
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    cut = [t for t in study.trials if t.state == TrialState.FAIL]
    assert cut, "a trial of 6 epochs on each worker was training when the budget ran out"
    for t in cut:
        assert t.user_attrs["error"].startswith(runner.BUDGET_CUT), t.user_attrs["error"]
        assert runs.retry_preset([t])  # a preset cut so is queued again by the next run
    # the summary counts them apart from trials that failed
    assert (summary.outcome.cut, summary.outcome.failed) == (len(cut), 0)
    assert Workers(tmp_path / "artifacts" / WORKERS_DIR).pids() == []

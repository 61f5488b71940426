"""Run a search: Optuna asks, Ray Tune trains, Optuna is told. The only module that imports Ray.

The study in SQL is the single source of truth. A :class:`StudySearcher` (a Ray Tune
searcher) asks the Optuna study for each new trial, decodes it into a candidate and
hands it to Tune; Tune runs the trial on a worker (one CPU, one torch thread) under a
successive-halving scheduler (:class:`ParetoRungs`); when Tune reports the trial's end the
searcher tells the study: COMPLETE with (accuracy, latency_ms, params), the latency the lower of
the screen's and a re-check taken as the trial ends (:meth:`search.latency.screen.Screen.recheck`),
PRUNED when the scheduler stopped it early (never with partial values), FAIL with the error when it raised or its worker
died. Run records, recovery of a killed run, the presets and the front's re-timing are
:mod:`search.run.runs`; this module holds the Ray glue only. Each trial registers its process in
``<artifacts>/workers`` (:mod:`search.latency.quiet`), so that the driver can pause this machine's
training while it re-times a latency verdict.

Two test hooks are read from the workers' environment, by :func:`_test_hooks` alone:
``CASTSEARCH_TRIAL_PIDFILE_DIR=<dir>`` makes each trial write ``<dir>/trial-<number>.pid``
with its worker's pid first thing, so a test can kill that worker mid-trial (and, while
``<dir>/trial-<number>.hold`` exists, wait there, so the trial is surely still running when the
test acts), and ``CASTSEARCH_INJECT_FAULT=<n>[,<n>...]`` makes those trials raise. They stay in the
environment because the tests that need them drive the real ``castsearch run`` in a
subprocess (which they kill, or whose workers they kill): the environment is the only
channel that reaches Ray's worker processes from there, and a Python seam (a wrapped trial
function) would test a different entry point from the one users run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
import ray
from optuna.trial import TrialState
from ray import tune
from ray.tune.schedulers import FIFOScheduler
from ray.tune.schedulers.trial_scheduler import TrialScheduler
from ray.tune.search import Searcher

from castmodels import ArchSpec
from search.data.rules import AUTO
from search.latency.measure import Measurement
from search.latency.quiet import Workers
from search.latency.screen import Screen, Verdict, resolve_limits
from search.latency.timer import Timer
from search.run.runs import (
    RunOutcome,
    RunRecord,
    begin,
    enqueue_presets,
    finished_by,
    heartbeat,
    retime_study_front,
    run_outcome,
)
from search.space import Candidate, InvalidCandidate, SearchSpace, suggest
from search.study import storage as studylib
from search.study.front import objective_point
from search.study.record import Limits, TrialRecord

log = logging.getLogger(__name__)

FINAL = "final"
MAX_SKIPPED = 200  # candidates in a row that are invalid or screened out before the searcher gives up (each distinct one is timed)
VAL_SCORE = "val_score"  # what Tune and the scheduler see each epoch: the objective's metric on the validation split
PREVIEW = "preview"  # set (to its seconds) on the result of a trial's preview (budget.early_stopping: preview)


# ---------------------------------------------------------------------------------------
# The bridge between Tune and the study.


@dataclass
class Progress:
    complete: int
    running: int
    pruned: int
    infeasible: int
    invalid: int
    failed: int
    best_accuracy: float | None
    front_size: int
    elapsed_s: float
    time_left_s: float | None
    run_finished: int
    run_budget: int | None
    below_floor: int = 0  # trained, less accurate than min_accuracy


class StudySearcher(Searcher):
    """Tune's searcher backed by the Optuna study: each suggestion is an asked trial."""

    def __init__(self, study: optuna.Study, space: SearchSpace, run: RunRecord, artifacts: Path,
                 deadline: float | None, on_progress: Callable[[Progress], None] | None, screen: Screen,
                 limits: dict[int, Limits]):
        super().__init__(metric=VAL_SCORE, mode="max")
        self.study, self.space, self.run, self.artifacts = study, space, run, artifacts
        self.deadline = deadline
        self.on_progress = on_progress
        self.screen = screen
        self.limits = limits  # by image size (a relative latency limit depends on it)
        self.live: dict[str, optuna.Trial] = {}
        self.sizes: dict[str, int] = {}
        self.candidates: dict[str, Candidate] = {}
        self.val_history: dict[str, list[float]] = {}
        self.previews: dict[str, dict] = {}  # the preview each live trial reported (early_stopping: preview)
        self.issued = 0
        # min_accuracy: presets is resolved once the presets have trained; until then only presets go out
        self.floor_pending = space.accuracy_floor is not None
        self.t0 = time.time()

    # Tune checkpoints searchers by pickling them; our state is the SQL study.
    def save_to_dir(self, *args, **kwargs) -> None:
        pass

    def __getstate__(self) -> dict:
        """What Tune pickles into ``tuner.pkl`` under the artifacts folder: never the study,
        whose storage URL may hold a database password, nor the screen and callbacks that
        hold it too. A run is resumed from the study, never from Tune's pickle."""
        state = self.__dict__.copy()
        for key in ("study", "screen", "on_progress", "live"):
            state[key] = None
        return state

    def suggest(self, trial_id: str):
        if self.run.trials is not None and self.issued >= self.run.trials:
            return Searcher.FINISHED
        if self.deadline is not None and time.time() >= self.deadline:
            return Searcher.FINISHED
        if self.floor_pending and not self._floor_ready():
            return None  # Tune asks again when a preset finishes
        for _ in range(MAX_SKIPPED):
            ot = self.study.ask()
            TrialRecord(run_id=self.run.run_id).write(ot)
            fixed = TrialRecord.of_attrs(ot.user_attrs).preset_arch
            try:
                cand = suggest(self.space, ot, ArchSpec.from_dict(fixed) if fixed else None)
            except InvalidCandidate as e:
                TrialRecord(invalid=str(e)).write(ot)
                self.study.tell(ot, state=TrialState.PRUNED)
                continue
            TrialRecord(arch=cand.arch.to_dict(), arch_code=cand.arch.code(), recipe=cand.recipe.to_dict(),
                        enhancements=cand.enhancements_summary()).write(ot)
            verdict = self._screen(ot, cand)
            if verdict.feasible:
                break
            if self.deadline is not None and time.time() >= self.deadline:
                return Searcher.FINISHED
        else:
            raise RuntimeError(f"the space produced {MAX_SKIPPED} candidates in a row that cannot be built or "
                               f"break a limit ({self.space.constraints}): widen the limits or narrow the "
                               f"architecture ranges")
        record = TrialRecord.of_attrs(ot.user_attrs)
        preset = record.preset is not None
        self.live[trial_id] = ot
        self.sizes[trial_id] = cand.recipe.image_size
        self.candidates[trial_id] = cand
        self.val_history[trial_id] = []
        self.issued += 1
        return {
            "number": ot.number,
            "candidate": cand.to_dict(),
            "measurement": verdict.measurement.to_dict(),
            "out_dir": str(self.artifacts / f"trial-{ot.number:05d}"),
            "workers_dir": str(self.artifacts / WORKERS_DIR),
            "metric": self.space.metric,
            "seeds": self.space.seeds,
            # seeds_for: front: the front as it stands, which the first training must join to be retrained,
            # and the mean so far to be retrained again.
            # A preset is trained with every seed: it is the reference the floor, the front and the
            # report compare against, and one draw of it is several points off on a small data set.
            "front": ([list(t.values) for t in studylib.pareto_front(self.study)]
                      if self.space.seeds > 1 and self.space.seeds_for == "front" and not preset else None),
            # never stopped early: the presets, and the space's points nearest them (seed_nearest),
            # which are there to show the sampler what the paper's designs reach when trained out
            "protect": preset or record.near_preset is not None,
            "min_accuracy": self.limits[cand.recipe.image_size].min_accuracy,
            # early_stopping: preview: epochs of the compressed schedule the trial is judged by first
            "preview": preview_epochs(self.space.budget.early_stopping, self.space.max_epochs, cand.recipe.epochs),
        }

    def _floor_ready(self) -> bool:
        """Whether a candidate may go out under ``min_accuracy: presets``: while a preset waits
        in the queue it is the next one asked; while presets train (and none waits) nothing
        goes out, since the floor is the least accurate preset's accuracy; once they are done
        the floor is resolved into the limits and the search starts."""
        pending = [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
                   if TrialRecord.read(t).preset is not None]
        if any(t.state == TrialState.WAITING for t in pending):
            return True
        if pending:
            return False
        self.floor_pending = False
        least = studylib.least_accurate_preset(self.study.get_trials(deepcopy=False))
        if least is None:
            log.warning("min_accuracy: presets, but no preset trained in this study: the search has no "
                        "accuracy floor")
            return True
        floor, name = least.values[0], TrialRecord.read(least).preset
        self.limits = {size: dataclasses.replace(lim, min_accuracy=floor) for size, lim in self.limits.items()}
        self.study.set_user_attr(studylib.FLOOR_ATTR, {"min_accuracy": floor, "preset": name, "trial": least.number,
                                              "at": time.time()})
        log.info("min_accuracy = %.4f, the validation %s of %s (trial %d), the least accurate preset",
                 floor, self.space.metric, name, least.number)
        return True

    def _screen(self, ot: optuna.Trial, cand: Candidate) -> Verdict:
        """Check ``cand`` against the limits before it is dispatched (:mod:`search.latency.screen`).

        An infeasible candidate is told to the study at once: COMPLETE with its constraint
        values, so the sampler learns to avoid the region, accuracy 0 (never trained) and
        latency +inf when only its parameter count was needed to rule it out. It occupies no
        worker and does not count towards the run's trials."""
        limits = self.limits[cand.recipe.image_size]
        verdict = self.screen.check(cand.arch, cand.recipe, limits)
        if verdict.feasible:
            return verdict
        record = TrialRecord(infeasible=True, screened=verdict.reason)
        latency = math.inf
        if verdict.measurement is not None:
            record.add_measurement(verdict.measurement.to_dict())
            latency = verdict.measurement.latency_ms
        record.write(ot)
        constraints = limits.constraint_values(None, 0.0 if math.isinf(latency) else latency, verdict.params)
        for name, value in constraints.items():
            ot.set_constraint(name, value)
        self.study.tell(ot, values=[0.0, latency, float(verdict.params)])
        return verdict

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.val_history and not result.get(FINAL):
            if PREVIEW in result:
                self.previews[trial_id] = {"epochs": int(result["epoch"]), "score": float(result[VAL_SCORE]),
                                           "seconds": float(result[PREVIEW])}
            else:
                self.val_history[trial_id].append(float(result[VAL_SCORE]))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot = self.live.pop(trial_id, None)
        if ot is None:
            return
        history = self.val_history.pop(trial_id, [])
        preview = self.previews.pop(trial_id, None)
        size = self.sizes.pop(trial_id)
        cand = self.candidates.pop(trial_id)
        result = result or {}
        record = TrialRecord(node_id=result.get("node_id") or None, preview=preview)
        if error or result.get("error"):
            record.error = result.get("error") or "the trial's worker raised or died (see the Ray logs)"
            record.val_accuracy = history
            record.write(ot)
            self.study.tell(ot, state=TrialState.FAIL)
        elif result.get(FINAL):
            outcome = json.loads(result["outcome"])
            if outcome.get("validation") is not None:  # trained: its latency joins the front, so time it again
                try:
                    outcome["measurement"] = {**outcome["measurement"],
                                              **self.screen.recheck(cand.arch, cand.recipe).to_dict()}
                except Exception as e:  # the screen's figure stands; the search goes on
                    log.warning("trial %d: latency re-check failed (%s: %s); its screening latency stands",
                                ot.number, type(e).__name__, e)
            studylib.tell_outcome(self.study, ot, record, outcome, self.limits[size])
        else:
            record.val_accuracy = history
            record.pruned_at_epoch = int(result.get("epoch", len(history)))
            record.write(ot)
            floor = self.limits[size].min_accuracy
            seen = history + ([preview["score"]] if preview else [])
            if floor is not None and seen:
                # TPE ranks a stopped trial with the trained ones that missed the floor, by how far
                # below it the trial was when stopped, not ahead of them (where Optuna puts trials
                # stopped early that carry no constraint)
                ot.set_constraint("min_accuracy", floor - max(seen))
            self.study.tell(ot, state=TrialState.PRUNED)
        self.report()

    def fail_leftovers(self, reason: str) -> None:
        for trial_id in list(self.live):
            ot = self.live.pop(trial_id)
            self.sizes.pop(trial_id, None)
            self.candidates.pop(trial_id, None)
            TrialRecord(error=reason).write(ot)
            self.study.tell(ot, state=TrialState.FAIL)

    def report(self) -> None:
        if self.on_progress is None:
            return
        trials = self.study.get_trials(deepcopy=False)
        c = studylib.counts(trials)
        feasible = [t for t in trials if t.state == TrialState.COMPLETE and studylib.is_feasible(t)]
        best = max((t.values[0] for t in feasible), default=None)
        now = time.time()
        self.on_progress(Progress(
            complete=c["complete"], running=len(self.live), pruned=c["pruned"],
            infeasible=c["infeasible"], invalid=c["invalid"], failed=c["failed"], best_accuracy=best,
            front_size=len(studylib.pareto_front(self.study)), elapsed_s=now - self.t0,
            time_left_s=None if self.deadline is None else max(0.0, self.deadline - now),
            run_finished=finished_by(trials, self.run.run_id), run_budget=self.run.trials,
            below_floor=c["below_floor"],
        ))



# ---------------------------------------------------------------------------------------
# The trial, as it runs on a Ray worker.


def _test_hooks(number: int) -> None:
    """The environment's test hooks for trial ``number`` (see the module docstring)."""
    pid_dir = os.environ.get("CASTSEARCH_TRIAL_PIDFILE_DIR")
    if pid_dir:
        Path(pid_dir, f"trial-{number}.pid").write_text(str(os.getpid()))
        hold = Path(pid_dir, f"trial-{number}.hold")
        deadline = time.monotonic() + 600
        while hold.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    fault = os.environ.get("CASTSEARCH_INJECT_FAULT")
    if fault and str(number) in fault.split(","):
        raise RuntimeError(f"injected fault in trial {number} (CASTSEARCH_INJECT_FAULT)")


WORKER_NICE = 10  # the niceness a trial trains at
WORKERS_DIR = "workers"  # under the run's artifacts: this machine's training processes (search.latency.quiet)


def _trial(config: dict, datasets: dict | None = None) -> None:
    import torch

    from search.trial.pipeline import preview, run_candidate

    torch.set_num_threads(int(os.environ.get("CASTSEARCH_TRIAL_THREADS", "1")))
    # training yields the core to the driver's latency timings (search.latency.screen): a timing that
    # shares its core with a worker of equal priority runs on caches the worker keeps evicting
    os.setpriority(os.PRIO_PROCESS, 0, max(WORKER_NICE, os.getpriority(os.PRIO_PROCESS, 0)))
    # ... and is paused while the driver re-times a verdict (search.latency.quiet)
    workers = Workers(config["workers_dir"])
    workers.register()
    node_id = ray.get_runtime_context().get_node_id()
    cand = Candidate.from_dict(config["candidate"])
    data = datasets[cand.recipe.image_size]
    last_epoch = cand.recipe.epochs
    metric = config["metric"]

    def on_epoch(epoch: int, score: float) -> None:
        if epoch < last_epoch:  # the last epoch is reported once, with the final result
            tune.report({"epoch": epoch, VAL_SCORE: score, "node_id": node_id})

    try:
        _test_hooks(config["number"])
        if config.get("preview"):  # the short look first; the scheduler stops the trial here or lets it train
            start = time.perf_counter()
            score = preview(cand.arch, cand.recipe, data, config["preview"], metric)
            tune.report({"epoch": config["preview"], VAL_SCORE: score, PREVIEW: time.perf_counter() - start,
                         "node_id": node_id})
        front, floor = config.get("front"), config.get("min_accuracy")
        outcome = run_candidate(cand.arch, cand.recipe, data, out_dir=config["out_dir"], metric=metric,
                                measurement=Measurement(**config["measurement"]), on_epoch=on_epoch,
                                seeds=config.get("seeds", 1),
                                repeat_if=None if front is None else lambda o: joins_front(o, front, floor))
    except Exception as e:
        tune.report({"epoch": 0, VAL_SCORE: 0.0, "node_id": node_id, FINAL: True,
                     "error": f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}"})
        return
    finally:
        workers.unregister()
    val = outcome.objective if outcome.objective is not None else 0.0
    tune.report({"epoch": max(outcome.epochs_run, 1), VAL_SCORE: val, "node_id": node_id,
                 FINAL: True, "outcome": json.dumps(outcome.provenance(data))})


def joins_front(outcome, front: list[list[float]], min_accuracy: float | None = None) -> bool:
    """Whether a trained outcome's (objective, latency, params) is dominated by no point of
    ``front`` (the study's front when the trial was dispatched) and meets ``min_accuracy``:
    only such a trial is trained with the further seeds under ``objectives.accuracy.seeds_for: front``,
    and it is asked again of the mean so far before each seed after the second."""
    if min_accuracy is not None and outcome.objective < min_accuracy:
        return False
    point = objective_point(outcome.objective, outcome.measurement.latency_ms, outcome.measurement.params)
    return not any(studylib.dominates(q, point) for q in front)


REDUCTION = 3  # rungs at grace, grace x 3, grace x 9, ... epochs


def grace_epochs(max_epochs: int) -> int:
    """The first rung: a third of the longest schedule (at least one epoch).

    Under the default one-cycle schedule the first quarter of training warms the learning
    rate up, so a score after one epoch of ten ranks candidates by how fast they start, not by
    where they end: with a rung at epoch 1, an X-SDD search stopped all 30 networks it sampled in
    its first 7 minutes there. The first rung sits past the warm-up, and the next at
    ``REDUCTION`` times that."""
    return max(1, math.ceil(max_epochs / REDUCTION))


def preview_epochs(early_stopping: str, max_epochs: int, epochs: int) -> int | None:
    """Under ``early_stopping: preview``, the epochs of a trial's preview: the first rung's
    (:func:`grace_epochs` of the longest schedule), or None when the trial's own schedule is not
    longer than that (its full training is no dearer than the look)."""
    if early_stopping != "preview":
        return None
    grace = grace_epochs(max_epochs)
    return grace if grace < min(epochs, max_epochs) else None


class ParetoRungs(FIFOScheduler):
    """Successive halving for a search with three objectives.

    ASHA ranks trials at each rung by accuracy alone, so in a search for small, fast networks
    it stops exactly the candidates the front needs: a 50K-parameter network is less accurate
    after four epochs than the paper's 600K-parameter presets, and with its first rung at a
    third of the schedule ASHA still stopped 10 of the first 11 networks an X-SDD search
    sampled, while the presets filled its rungs. Here a trial reaching a
    rung (``grace`` epochs, then ``REDUCTION`` times more, below ``max_t``) is recorded there
    with (validation score, latency, parameters) -- latency and parameters measured by the
    driver before dispatch -- and stopped when at least ``REDUCTION - 1`` trials recorded at
    the same rung dominate it: a network is stopped only for networks at least as accurate
    at the same point of training *and* as fast *and* as small. Trials marked ``protect``
    (the presets and, under ``seed_nearest``, the space's points nearest them) are recorded
    but never stopped.

    With ``preview`` there is one rung, at ``grace`` epochs, and it reads only the score each
    trial reports at the end of its preview (:func:`search.trial.pipeline.preview`: the schedule
    compressed to ``grace`` epochs) before its full training; the scores of that training's
    epochs are not judged."""

    def __init__(self, max_t: int, grace: int, metric: str = "val_score", preview: bool = False):
        super().__init__()
        self.score_key = metric
        self.preview = preview
        self.milestones = [m for m in (grace * REDUCTION ** k for k in range(1 if preview else 16)) if m < max_t]
        self.rungs: dict[int, list[list[float]]] = {m: [] for m in self.milestones}
        self.passed: dict[str, set[int]] = {}

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if result.get(FINAL) or self.score_key not in result or self.preview != (PREVIEW in result):
            return TrialScheduler.CONTINUE
        epoch = int(result.get("epoch", 0))
        passed = self.passed.setdefault(trial.trial_id, set())
        decision = TrialScheduler.CONTINUE
        for milestone in self.milestones:
            if epoch < milestone or milestone in passed:
                continue
            passed.add(milestone)
            m = trial.config.get("measurement") or {}
            point = objective_point(result[self.score_key], m.get("latency_ms", 0.0), m.get("params", 0))
            dominated_by = sum(studylib.dominates(other, point) for other in self.rungs[milestone])
            self.rungs[milestone].append(point)
            if dominated_by >= REDUCTION - 1 and not trial.config.get("protect"):
                decision = TrialScheduler.STOP
        return decision

    def on_trial_complete(self, tune_controller, trial, result) -> None:
        self.passed.pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self.passed.pop(trial.trial_id, None)


def _scheduler(max_epochs: int, early_stopping: str = "preview") -> FIFOScheduler:
    """Pareto rungs (read part-way through each trial's schedule, or at the end of its preview),
    or (``early_stopping: none``) Tune's FIFO scheduler, which stops nothing."""
    if early_stopping == "none":
        return FIFOScheduler()
    return ParetoRungs(max_t=max(1, max_epochs), grace=grace_epochs(max_epochs), metric=VAL_SCORE,
                       preview=early_stopping == "preview")


# ---------------------------------------------------------------------------------------
# The driver.


@dataclass
class RunOptions:
    study_name: str
    storage: str
    trials: int | None
    timeout_s: float | None
    workers: int = 1
    cpus_per_trial: float = 1.0
    address: str | None = None
    artifacts: Path | None = None
    quiet_retime: bool = True


@dataclass
class RunSummary:
    run_id: str
    resumed_from: str | None
    finished: int
    budget: int | None
    elapsed_s: float
    front: list
    timeout_s: float | None = None
    outcome: RunOutcome | None = None
    artifacts: Path | None = None


def default_artifacts(storage: str, study_name: str) -> Path:
    """Where a run's trial weights go unless told: beside a SQLite database
    (``<its folder>/<study>/``), so they travel with the study; ``studies/<study>/`` for a server
    database."""
    import sqlalchemy as sa

    url = sa.engine.make_url(storage)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(url.database).parent / study_name
    return Path("studies") / study_name


def check_options(opts: RunOptions) -> None:
    """Refuse impossible flags before anything is written or started."""
    if opts.workers < 1:
        raise ValueError(f"--workers must be at least 1, not {opts.workers}")
    if opts.trials is not None and opts.trials < 1:
        raise ValueError(f"--trials must be at least 1, not {opts.trials}")
    if opts.timeout_s is not None and not opts.timeout_s > 0:
        raise ValueError(f"the time budget must be positive, not {opts.timeout_s} s")
    if not opts.cpus_per_trial > 0:
        raise ValueError(f"CPUs per trial must be positive, not {opts.cpus_per_trial}")


def loaded_channels(space: SearchSpace, datasets: dict) -> SearchSpace:
    """``space`` with ``data.channels`` what the loaded images have (``auto`` resolved), so
    limits and candidates are worked out for the networks that will train on them. The
    datasets of all image sizes must agree, and agree with a count the space gives."""
    counts = sorted({data.in_channels for data in datasets.values()})
    if len(counts) > 1:
        raise ValueError(f"the data was loaded with {' and '.join(map(str, counts))} channels at different image "
                         f"sizes; load every size with one count (the one channels: auto chose at the first)")
    if space.data.channels not in (AUTO, counts[0]):
        raise ValueError(f"the data was loaded with {counts[0]} channel(s), but the space's data.channels is "
                         f"{space.data.channels}")
    return space.with_channels(counts[0])


def run_search(space: SearchSpace, datasets: dict, opts: RunOptions,
               on_progress: Callable[[Progress], None] | None = None) -> RunSummary:
    """Run (or resume) a search until its budget is spent; return the study's front."""
    check_options(opts)
    space = loaded_channels(space, datasets)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's legacy reporter honours verbose=0
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no CSV/JSON/TensorBoard per trial
    study = studylib.open_study(opts.study_name, opts.storage, metric=space.metric)
    run = RunRecord(run_id=uuid.uuid4().hex[:8], trials=opts.trials, timeout_s=opts.timeout_s)
    dead = begin(study, opts.storage, run, space.sampler.seed)
    trials, timeout_s, resumed_from = run.trials, run.timeout_s, run.resumed_from
    if resumed_from is not None:
        log.info("resuming run %s that was interrupted: %d of %d trials finished, %d to go",
                 dead.run_id, dead.trials - trials, dead.trials, trials)
    if run.seed != space.sampler.seed:
        log.info("run %d of this study: its sampler seed is %s (from the space's %s)", run.index + 1,
                 run.seed, space.sampler.seed)
    study.sampler = studylib.make_sampler(space.sampler.name, run.seed, space.sampler.population_size)
    queued = enqueue_presets(study, space, opts.storage)
    if queued:
        log.info("enqueued %d paper presets as the first trials", queued)

    artifacts = (opts.artifacts or default_artifacts(opts.storage, opts.study_name)).resolve()
    artifacts.mkdir(mode=0o700, parents=True, exist_ok=True)  # owner-only where castsearch creates it
    deadline = time.time() + timeout_s if timeout_s else None
    num_classes = next(iter(datasets.values())).num_classes
    # Latency is timed here, on the driver, before Ray starts training: the first timings
    # (a relative limit's reference among them) meet an idle machine.
    workers = Workers(artifacts / WORKERS_DIR)
    timer = Timer(space.latency_runtime, quiet=workers.paused)  # every timing of this run
    screen = Screen(study, timer, num_classes)
    limits = {size: resolve_limits(space.constraints, space.relative_latency, screen, size, space.data.channels)
              for size in space.image_sizes}
    searcher = StudySearcher(study, space, run, artifacts, deadline, on_progress, screen, limits)

    started_ray = not ray.is_initialized()
    logging.getLogger("ray").setLevel(logging.ERROR)  # before init: its token-auth banner is not for users
    if started_ray:
        if opts.address:
            ray.init(address=opts.address, log_to_driver=False, configure_logging=False)
        else:
            # "local": a Ray of its own, even when `ray start` left a cluster address on this machine
            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     configure_logging=False)

    stop = threading.Event()
    beat = threading.Thread(target=heartbeat, args=(study, run, stop), daemon=True)
    beat.start()
    t0 = time.time()
    try:
        if trials is None or trials > 0:
            tuner = tune.Tuner(
                tune.with_resources(tune.with_parameters(_trial, datasets=datasets), {"cpu": opts.cpus_per_trial}),
                tune_config=tune.TuneConfig(
                    search_alg=searcher, scheduler=_scheduler(space.max_epochs, space.budget.early_stopping),
                    num_samples=-1, max_concurrent_trials=opts.workers, reuse_actors=True,
                    time_budget_s=timeout_s,
                ),
                run_config=tune.RunConfig(storage_path=str(artifacts / "ray"), name=f"run-{run.run_id}",
                                          verbose=0, log_to_file=True),
            )
            tuner.fit()
            log.info("training paused for %d re-timings, %.1f s in all (search.latency.quiet)", workers.slots,
                     workers.paused_s)
    finally:
        searcher.fail_leftovers("stopped before it finished (time budget or interrupt)")
        stop.set()
        if started_ray:
            ray.shutdown()
    if opts.quiet_retime:  # a trial the budget cut may still be training after ray.shutdown()
        retime_study_front(study, run.run_id, timer)
    run.done = True
    run.heartbeat = time.time()
    run.save(study)
    return RunSummary(run_id=run.run_id, resumed_from=resumed_from,
                      finished=finished_by(study.get_trials(deepcopy=False), run.run_id),
                      budget=trials, elapsed_s=time.time() - t0, front=studylib.pareto_front(study),
                      timeout_s=timeout_s, outcome=run_outcome(study, run.run_id), artifacts=artifacts)

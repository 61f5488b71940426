"""Run a search: the driver that starts Ray, runs Tune and keeps the run's record.

:func:`run_search` opens (or resumes) the study, enqueues the presets, resolves the limits on
this machine (latency is timed here, before Ray starts training), then lets Ray Tune run the
trials: the :class:`search.run.searcher.StudySearcher` asks the study for each one and tells
it the result, the worker (:func:`search.run.worker.train_trial`) trains it, and the scheduler
(:mod:`search.run.scheduler`) stops the dominated ones early. Run records, recovery of a killed
run, the presets and the front's re-timing are :mod:`search.run.runs`.

A run's time budget is its wall time, from :func:`run_search`'s start to its return: the
front's re-timing at the end is inside it. :class:`Deadline` stops the search (no trial
starts, those training are stopped) when what is left is what the re-timing of the front as
it stands (:func:`search.latency.retime.retime_seconds`) and the run's end (:data:`STOP_S`)
need; a trial it stops is failed with that reason (the sampler learns nothing from it, and a
preset it cut is queued again by the next run).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ray
from optuna.trial import TrialState
from ray import tune
from ray.tune.stopper import Stopper

from search.data.rules import AUTO
from search.latency.quiet import Workers
from search.latency.retime import RETIME_GAP_S, RETIME_PASSES, retime_seconds
from search.latency.screen import Screen, resolve_limits
from search.latency.timer import Timer
from search.run.resources import check_resources, cluster_gpus, local_gpus, trial_resources
from search.run.runs import (
    BUDGET_CUT,
    RunOutcome,
    RunRecord,
    begin,
    enqueue_presets,
    finished_by,
    heartbeat,
    retime_study_front,
    run_outcome,
    seed_fronts,
)
from search.run.scheduler import make_scheduler
from search.run.searcher import Progress, StudySearcher
from search.run.worker import WORKERS_DIR, train_trial
from search.space import SearchSpace
from search.study import storage as studylib
from search.study.front import pareto_front
from search.study.record import TrialRecord
from search.trial.reuse import Trainings, content_digest

log = logging.getLogger(__name__)

STOP_S = 15.0  # a run's end after its search stops: Tune stops the trials in flight (killed after 5 s), Ray shuts down
INTERRUPTED = "stopped before it finished: the run was interrupted"


@dataclass
class RunOptions:
    study_name: str
    storage: str
    trials: int | None
    timeout_s: float | None
    workers: int = 1
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0  # a fraction shares a GPU between trials (search.run.resources)
    address: str | None = None
    artifacts: Path | None = None
    quiet_retime: bool = True


@dataclass
class RunPlan:
    """What a run will do with its budget, worked out as it starts (the presets queued)."""
    timeout_s: float | None
    trials: int | None
    workers: int
    cpus_per_trial: float
    sampler: str
    presets: int       # the paper's presets waiting in the study's queue, trained first
    preset_seeds: int  # trainings of each preset (objectives.accuracy.seeds)
    nearest: int       # the space's points nearest the presets, queued after them (seed_nearest)
    front: int         # networks the re-timing estimate counts: the front now, or the presets if more, at least 1
    retime_s: float    # the front's re-timing at the end, estimated (0: not re-timed)
    search_s: float | None  # of the time budget, what is left to the search after the run's end is reserved
    gpus_per_trial: float = 0.0
    image_sizes: tuple[int, ...] = ()  # the space's; presets train at each where it has several
    passes: int = RETIME_PASSES
    gap_s: float = RETIME_GAP_S  # between a network's timings in two passes (0 under the quick protocol)
    resumed_from: str | None = None

    @property
    def cpu_hours(self) -> float | None:
        return None if self.timeout_s is None else self.timeout_s * self.workers * self.cpus_per_trial / 3600


class Deadline(Stopper):
    """Tune's stopper for a run's wall time (module docstring): true once the time left before
    ``end`` is what ``reserve(front size)`` says the run's end needs. It keeps ``searcher``'s
    deadline (when it stops asking for trials) at that time, the front's size read again
    every :attr:`REFRESH_S` seconds."""

    REFRESH_S = 5.0

    def __init__(self, study, end: float, reserve: Callable[[int], float], searcher: StudySearcher):
        self.study, self.end, self.reserve, self.searcher = study, end, reserve, searcher
        self.checked = 0.0
        self.reached = False
        self.stop_all()

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False  # trials are stopped all at once, by stop_all

    def stop_all(self) -> bool:
        now = time.time()
        if now - self.checked >= self.REFRESH_S:
            self.checked = now
            self.searcher.deadline = self.end - self.reserve(len(pareto_front(self.study)))
        self.reached = self.reached or now >= self.searcher.deadline
        return self.reached

    def __getstate__(self) -> dict:
        """What Tune pickles: never the study, whose storage URL may hold a password."""
        return {**self.__dict__, "study": None, "searcher": None, "reserve": None}


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
    check_resources(opts.cpus_per_trial, opts.gpus_per_trial)
    if opts.gpus_per_trial > 0 and opts.address is None and not ray.is_initialized():
        local_gpus(opts.gpus_per_trial)  # a run of its own on a machine without a GPU: refused here


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


def run_plan(study, space: SearchSpace, opts: RunOptions, trials: int | None, timeout_s: float | None,
             timer: Timer, resumed_from: str | None = None) -> RunPlan:
    """What a run of ``space`` on ``study`` will do with its budget, read once its presets are
    queued: the trials waiting first, the sampler after them, the front's re-timing at the end
    (estimated for the front as it stands, or for the presets waiting when they are more, or
    for one network)."""
    waiting = [TrialRecord.read(t) for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))]
    presets = sum(r.preset is not None for r in waiting)
    front = max(len(pareto_front(study)), presets, 1)
    retime = retime_seconds(front, timer.timing) if opts.quiet_retime else 0.0
    return RunPlan(timeout_s=timeout_s, trials=trials, workers=opts.workers, cpus_per_trial=opts.cpus_per_trial,
                   gpus_per_trial=opts.gpus_per_trial, image_sizes=tuple(space.image_sizes),
                   sampler=space.sampler.name, presets=presets, preset_seeds=space.seeds,
                   nearest=sum(r.near_preset is not None for r in waiting), front=front,
                   retime_s=retime, search_s=None if timeout_s is None else timeout_s - retime - STOP_S,
                   gap_s=0.0 if timer.quick else RETIME_GAP_S, resumed_from=resumed_from)


def run_search(space: SearchSpace, datasets: dict, opts: RunOptions,
               on_progress: Callable[[Progress], None] | None = None,
               on_start: Callable[[RunPlan], None] | None = None) -> RunSummary:
    """Run (or resume) a search until its budget is spent; return the study's front.
    ``on_start`` is told the run's :class:`RunPlan` before anything is timed or trained."""
    t0 = time.time()  # a time budget counts from here to the return (module docstring)
    check_options(opts)
    space = loaded_channels(space, datasets)
    # the folders first: a workers folder refused here leaves no run record behind
    artifacts = (opts.artifacts or default_artifacts(opts.storage, opts.study_name)).resolve()
    artifacts.mkdir(mode=0o700, parents=True, exist_ok=True)  # owner-only where castsearch creates it
    workers = Workers(artifacts / WORKERS_DIR)
    workers.create()  # owner-only: a file there has this driver stop a process (search.latency.quiet)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's legacy reporter honours verbose=0
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no CSV/JSON/TensorBoard per trial
    fronts = seed_fronts(space, opts.storage)  # seed_from: a missing study fails here, before the run begins
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
    queued = enqueue_presets(study, space, opts.storage, fronts)
    if queued:
        log.info("enqueued %d paper presets as the first trials", queued)

    num_classes = next(iter(datasets.values())).num_classes
    # Latency is timed here, on the driver, before Ray starts training: the first timings
    # (a relative limit's reference among them) meet an idle machine.
    timer = Timer(space.latency_runtime, quiet=workers.paused)  # every timing of this run

    def reserve(front: int) -> float:
        """What the run needs once its search stops, for a front of ``front`` networks."""
        return STOP_S + (retime_seconds(front, timer.timing) if opts.quiet_retime else 0.0)

    if on_start is not None:
        on_start(run_plan(study, space, opts, trials, timeout_s, timer, resumed_from))
    screen = Screen(study, timer, num_classes)
    limits = {size: resolve_limits(space.constraints, space.relative_latency, screen, size, space.data.channels)
              for size in space.image_sizes}
    end = t0 + timeout_s if timeout_s else None
    searcher = StudySearcher(study, space, run, artifacts, end, on_progress, screen, limits, opts.gpus_per_trial)
    deadline = Deadline(study, end, reserve, searcher) if end is not None else None
    # full trainings done before, in any study on this data, are reused (search.trial.reuse)
    trainings = Trainings.in_cache(space.data.cache_dir, opts.study_name)
    for data in datasets.values():
        content_digest(data)  # once, here: the workers' copies of the datasets carry it

    started_ray = not ray.is_initialized()
    logging.getLogger("ray").setLevel(logging.ERROR)  # before init: its token-auth banner is not for users
    if started_ray:
        if opts.address:
            ray.init(address=opts.address, log_to_driver=False, configure_logging=False)
        else:
            # "local": a Ray of its own, even when `ray start` left a cluster address on this machine
            ray.init(address="local", num_cpus=os.cpu_count(), num_gpus=local_gpus(opts.gpus_per_trial),
                     include_dashboard=False, log_to_driver=False, configure_logging=False)
    if opts.address or not started_ray:
        cluster_gpus(opts.gpus_per_trial)  # none yet: trials wait for a GPU node, and the log says so

    stop = threading.Event()
    beat = threading.Thread(target=heartbeat, args=(study, run, stop), daemon=True)
    beat.start()
    ended = False
    try:
        if trials is None or trials > 0:
            tuner = tune.Tuner(
                tune.with_resources(tune.with_parameters(train_trial, datasets=datasets, trainings=trainings),
                                    trial_resources(opts.cpus_per_trial, opts.gpus_per_trial)),
                tune_config=tune.TuneConfig(
                    search_alg=searcher, scheduler=make_scheduler(space.max_epochs, space.budget.early_stopping),
                    num_samples=-1, max_concurrent_trials=opts.workers, reuse_actors=True,
                ),
                run_config=tune.RunConfig(storage_path=str(artifacts / "ray"), name=f"run-{run.run_id}",
                                          verbose=0, log_to_file=True, stop=deadline),
            )
            tuner.fit()
            log.info("training paused for %d re-timings, %.1f s in all (search.latency.quiet)", workers.slots,
                     workers.paused_s)
        ended = True
    finally:
        if deadline is not None and deadline.reached:
            cut = f"{BUDGET_CUT} ({timeout_s:.0f} s): stopped so that the front's re-timing fits in the budget"
        else:
            cut = INTERRUPTED if not ended else "stopped before it finished: the search ended"
        searcher.fail_leftovers(cut)
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
                      budget=trials, elapsed_s=time.time() - t0, front=pareto_front(study),
                      timeout_s=timeout_s, outcome=run_outcome(study, run.run_id), artifacts=artifacts)

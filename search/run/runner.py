"""Run a search: the driver that starts Ray, runs Tune and keeps the run's record.

:func:`run_search` opens (or resumes) the study, enqueues the presets, resolves the limits on
this machine (latency is timed here, before Ray starts training), then lets Ray Tune run the
trials: the :class:`search.run.searcher.StudySearcher` asks the study for each one and tells
it the result, the worker (:func:`search.run.worker.train_trial`) trains it, and the scheduler
(:mod:`search.run.scheduler`) stops the dominated ones early. Run records, recovery of a killed
run, the presets and the front's re-timing are :mod:`search.run.runs`.
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
from ray import tune

from search.data.rules import AUTO
from search.latency.quiet import Workers
from search.latency.screen import Screen, resolve_limits
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
from search.run.scheduler import make_scheduler
from search.run.searcher import Progress, StudySearcher
from search.run.worker import WORKERS_DIR, train_trial
from search.space import SearchSpace
from search.study import storage as studylib
from search.study.front import pareto_front
from search.trial.reuse import Trainings

log = logging.getLogger(__name__)


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
    workers.create()  # owner-only: a file there has this driver stop a process (search.latency.quiet)
    timer = Timer(space.latency_runtime, quiet=workers.paused)  # every timing of this run
    screen = Screen(study, timer, num_classes)
    limits = {size: resolve_limits(space.constraints, space.relative_latency, screen, size, space.data.channels)
              for size in space.image_sizes}
    searcher = StudySearcher(study, space, run, artifacts, deadline, on_progress, screen, limits)
    # full trainings done before, in any study on this data, are reused (search.trial.reuse)
    trainings = Trainings.in_cache(space.data.cache_dir, opts.study_name)

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
                tune.with_resources(tune.with_parameters(train_trial, datasets=datasets, trainings=trainings),
                                    {"cpu": opts.cpus_per_trial}),
                tune_config=tune.TuneConfig(
                    search_alg=searcher, scheduler=make_scheduler(space.max_epochs, space.budget.early_stopping),
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
                      budget=trials, elapsed_s=time.time() - t0, front=pareto_front(study),
                      timeout_s=timeout_s, outcome=run_outcome(study, run.run_id), artifacts=artifacts)

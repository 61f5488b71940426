"""The trial as it runs on a Ray worker: Tune's trainable, and what it reports.

:func:`train_trial` receives one :class:`search.trial.config.TrialConfig` (Tune's config is
``{KEY: TrialConfig}``) and the run's datasets, trains the candidate with
:func:`search.trial.pipeline.run_candidate` (after its preview, under ``early_stopping:
preview``) and reports each epoch's validation score under :data:`VAL_SCORE`. Its last report
is marked :data:`FINAL` and carries either the :class:`search.trial.pipeline.TrialResult`
under :data:`OUTCOME`, as it is, or the error under :data:`ERROR`. Each trial registers its
process in ``<artifacts>/workers`` (:mod:`search.latency.quiet`), so that the driver can pause
this machine's training while it re-times a latency verdict. With the run's store of trainings
(:mod:`search.trial.reuse`) a full training stored by an earlier run or study is not trained
again; a protected trial (a preset) found there skips its preview too, which decides nothing
for a trial never stopped early.

Two test hooks are read from the workers' environment, by :func:`_test_hooks` alone:
``CASTSEARCH_TRIAL_PIDFILE_DIR=<dir>`` makes each trial write ``<dir>/trial-<number>.pid``
with its worker's pid first thing (and ``trial-<number>.gpu`` with the ``CUDA_VISIBLE_DEVICES``
Ray set for it), so a test can kill that worker mid-trial (and, while
``<dir>/trial-<number>.hold`` exists, wait there, so the trial is surely still running when the
test acts), and ``CASTSEARCH_INJECT_FAULT=<n>[,<n>...]`` makes those trials raise. They stay in the
environment because the tests that need them drive the real ``castsearch run`` in a
subprocess (which they kill, or whose workers they kill): the environment is the only
channel that reaches Ray's worker processes from there, and a Python seam (a wrapped trial
function) would test a different entry point from the one users run.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

import ray
from ray import tune

from search.latency.quiet import Workers
from search.run.resources import device_name, trial_device
from search.study.front import dominates, objective_point
from search.trial.config import KEY, TrialConfig
from search.trial.reuse import Trainings

# The keys of what a trial reports to Tune (and Tune hands the scheduler and the searcher).
VAL_SCORE = "val_score"  # each epoch: the objective's metric on the validation split
PREVIEW = "preview"  # set (to its seconds) on the result of a trial's preview (budget.early_stopping: preview)
FINAL = "final"  # set on the trial's last result, which carries OUTCOME or ERROR
OUTCOME = "outcome"  # the TrialResult of a trial that ran to its end
ERROR = "error"  # what a trial that raised raised, with its traceback

WORKER_NICE = 10  # the niceness a trial trains at
WORKERS_DIR = "workers"  # under the run's artifacts: this machine's training processes (search.latency.quiet)


def _test_hooks(number: int) -> None:
    """The environment's test hooks for trial ``number`` (see the module docstring)."""
    pid_dir = os.environ.get("CASTSEARCH_TRIAL_PIDFILE_DIR")
    if pid_dir:
        Path(pid_dir, f"trial-{number}.gpu").write_text(os.environ.get("CUDA_VISIBLE_DEVICES", ""))
        Path(pid_dir, f"trial-{number}.pid").write_text(str(os.getpid()))
        hold = Path(pid_dir, f"trial-{number}.hold")
        deadline = time.monotonic() + 600
        while hold.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    fault = os.environ.get("CASTSEARCH_INJECT_FAULT")
    if fault and str(number) in fault.split(","):
        raise RuntimeError(f"injected fault in trial {number} (CASTSEARCH_INJECT_FAULT)")


def train_trial(config: dict, datasets: dict | None = None, trainings: Trainings | None = None) -> None:
    """Tune's trainable: train the trial ``config[KEY]`` on ``datasets[its image size]``, taking
    its full trainings from ``trainings`` where they are stored there and storing the others."""
    import torch

    from search.trial.pipeline import preview, run_candidate

    trial: TrialConfig = config[KEY]
    torch.set_num_threads(int(os.environ.get("CASTSEARCH_TRIAL_THREADS", "1")))
    # training yields the core to the driver's latency timings (search.latency.screen): a timing that
    # shares its core with a worker of equal priority runs on caches the worker keeps evicting
    os.setpriority(os.PRIO_PROCESS, 0, max(WORKER_NICE, os.getpriority(os.PRIO_PROCESS, 0)))
    # ... and is paused while the driver re-times a verdict (search.latency.quiet)
    workers = Workers(trial.workers_dir)
    workers.register()
    node_id = ray.get_runtime_context().get_node_id()
    device = trial_device(trial.gpus)
    data = datasets[trial.image_size].to(device)  # on a GPU: moved there once, for every epoch and seed

    def on_epoch(epoch: int, score: float) -> None:
        if epoch < trial.epochs:  # the last epoch is reported once, with the final result
            tune.report({"epoch": epoch, VAL_SCORE: score, "node_id": node_id})

    def repeat_if(outcome) -> bool:
        return joins_front(outcome, trial.front, trial.min_accuracy)

    try:
        _test_hooks(trial.number)
        if trial.preview and not (trial.protect and stored(trainings, trial, data, device)):
            # the short look first; the scheduler stops the trial here or lets it train
            start = time.perf_counter()
            score = preview(trial.arch, trial.recipe, data, trial.preview, trial.metric, device)
            tune.report({"epoch": trial.preview, VAL_SCORE: score, PREVIEW: time.perf_counter() - start,
                         "node_id": node_id})
        outcome = run_candidate(trial.arch, trial.recipe, data, out_dir=trial.out_dir, metric=trial.metric,
                                measurement=trial.measurement, on_epoch=on_epoch, seeds=trial.seeds,
                                repeat_if=None if trial.front is None else repeat_if, trainings=trainings,
                                device=device)
        outcome.device = device_name(device)
    except Exception as e:
        tune.report({"epoch": 0, VAL_SCORE: 0.0, "node_id": node_id, FINAL: True,
                     ERROR: f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}"})
        return
    finally:
        workers.unregister()
    val = outcome.objective if outcome.objective is not None else 0.0
    tune.report({"epoch": max(outcome.epochs_run, 1), VAL_SCORE: val, "node_id": node_id,
                 FINAL: True, OUTCOME: outcome.provenance(data)})


def stored(trainings: Trainings | None, trial: TrialConfig, data, device: str = "cpu") -> bool:
    """Whether the trial's first full training (on ``device``) is in the store, with its metric's scores."""
    if trainings is None:
        return False
    found = trainings.get(trainings.key(trial.arch.to_dict(), trial.recipe, data, device))
    return found is not None and found.metric == trial.metric


def joins_front(outcome, front: Sequence[Sequence[float]], min_accuracy: float | None = None) -> bool:
    """Whether a trained outcome's (objective, latency, params) is dominated by no point of
    ``front`` (the study's front when the trial was dispatched) and meets ``min_accuracy``:
    only such a trial is trained with the further seeds under ``objectives.accuracy.seeds_for: front``,
    and it is asked again of the mean so far before each seed after the second."""
    if min_accuracy is not None and outcome.objective < min_accuracy:
        return False
    point = objective_point(outcome.objective, outcome.measurement.latency_ms, outcome.measurement.params)
    return not any(dominates(q, point) for q in front)

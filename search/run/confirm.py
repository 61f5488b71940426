"""``castsearch confirm``: retrain the front and the paper's presets with other seeds.

One training run is one draw: with a few hundred validation and test images, two seeds of
the same network differ by several points. :func:`confirm_study` retrains every front trial
and every paper preset of a study ``seeds`` times, each with a seed of its own (after the
seeds the search already averaged, ``objectives.accuracy.seeds``: the trial's recipe seed + 1,
+ 2, ... for a trial trained once; same architecture, recipe and split), and stores per trial
the validation objective, the test accuracy and the test split's worst-class recall of each
run with their mean, standard deviation and 95% interval (Student's t), as the study user
attr ``confirmed:<trial number>``
(:func:`search.study.front.confirmed`). ``front``, the report and the model card show these
figures, and dominance claims use their means. Runs go to a pool of worker processes, one
torch thread each. A run already trained, by an earlier confirm or as a search's further seed
in any study on the same data, is taken from the store of trainings (:mod:`search.trial.reuse`,
in ``cache_dir``) and each one trained here is stored; the summary lists the reused seeds and
the study each was trained in (``reused``).
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

import optuna

from search.study import front
from search.study import storage as studylib
from search.study.record import TrialRecord

log = logging.getLogger(__name__)

# Student's t, two-sided 95%, by degrees of freedom (seeds - 1); 1.96 beyond the table.
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}


def t95(df: int) -> float:
    """The two-sided 95% quantile of Student's t with ``df`` degrees of freedom (conservative:
    between table entries, the smaller df's)."""
    if df < 1:
        raise ValueError(f"a 95% interval needs at least 2 runs, got {df + 1}")
    return _T95[max(k for k in _T95 if k <= df)] if df <= 30 else 1.96


def summarise(values: list[float]) -> dict:
    """Mean, sample standard deviation and 95% interval of the mean of ``values`` (fractions:
    the interval is clipped to [0, 1], which a t interval over few runs can overshoot)."""
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    half = t95(len(values) - 1) * sd / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return {"mean": mean, "std": sd, "ci95": [max(0.0, mean - half), min(1.0, mean + half)], "runs": list(values)}


@dataclass(frozen=True)
class _Run:
    number: int
    seed: int
    record: dict  # TrialRecord.attrs() of the trial
    study: str  # the study confirmed: what the trainings stored here are credited to


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _retrain(run: _Run, cache_dir: str | None) -> tuple[int, dict, dict | None]:
    """Train trial ``run.number``'s network again with ``run.seed``, or take that training from
    the store: (number, :func:`search.trial.pipeline.seed_run`, ``{"seed", "study"}`` when it
    was reused, with the study it was trained in)."""
    from search.data import load_dataset
    from search.trial.pipeline import build_candidate, seed_run, seed_training
    from search.trial.reuse import Trainings

    record = TrialRecord.of_attrs(run.record)
    data = load_dataset(record.data_config(), cache_dir=cache_dir)
    if data.identity["split_hash"] != record.data["split_hash"]:
        raise ValueError(f"the data at {record.data['source']} is not what trial {run.number} was trained on "
                         f"(split hash {data.identity['split_hash'][:12]}, expected {record.data['split_hash'][:12]})")
    metric, arch, classes = record.objective[0], record.arch_spec(), len(record.class_names)
    trained = seed_training(lambda recipe: build_candidate(arch, recipe, classes), record.train_recipe(),
                            run.seed, data, metric, device="cpu", spec=arch.to_dict(),
                            trainings=Trainings.in_cache(cache_dir, run.study))
    reused = None if trained.reused is None else {"seed": run.seed, "study": trained.reused.study}
    return run.number, seed_run(run.seed, trained.validation, trained.test, metric), reused


def new_seeds(record: TrialRecord, seeds: int) -> list[int]:
    """``seeds`` training seeds that ``record``'s trial has not used: those after its recipe's
    seed and the further seeds its objective already averaged."""
    first = record.train_recipe().seed + len(record.seed_runs or [None])
    return list(range(first, first + seeds))


def trials_to_confirm(study: optuna.Study, top: int | None = None) -> list[TrialRecord]:
    """The front's trials and the study's paper presets (trained and feasible), by number.

    With ``top``, of the front's searched trials only the ``top`` most accurate and each
    preset's challenger: the most accurate searched front trial that dominates the preset on
    the study's figures (none when nothing does). The challengers are picked before any
    retraining, one per preset, so "does the search beat this preset?" is asked of one network
    chosen in advance, not of the luckiest of many retrained ones. No dominating trial is left
    out by looking at the front only: whatever dominates a preset, a front trial at least as
    accurate does too."""
    on_front = [t.number for t in front.pareto_front(study)]  # most accurate first
    chosen = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        record = TrialRecord.read(t)
        if record.trained and front.is_feasible(t) and (t.number in on_front or record.preset):
            chosen.append(record)
    if top is not None:
        searched = sorted((r for r in chosen if not r.preset), key=lambda r: on_front.index(r.number))
        kept = {r.number for r in searched[:top]} | {c.number for c in challengers(chosen).values()}
        chosen = [r for r in chosen if r.preset or r.number in kept]
    return chosen


def challengers(records: list[TrialRecord]) -> dict[str, TrialRecord]:
    """For each preset among ``records``, the most accurate searched record that dominates it
    (ties: the first in ``records``); presets nothing dominates are left out. Searched is what
    the headline counts (:func:`search.study.front.searched`): not a preset, not a seeded
    nearest point, so confirm retrains the network that the headline will judge."""
    searched = [(r, front.point(r)) for r in records if not r.preset and not r.near_preset]
    found = {}
    for preset in (r for r in records if r.preset):
        if beaters := front.dominating(front.point(preset), searched):
            found[preset.preset] = beaters[0][0]
    return found


def already_confirmed(study: optuna.Study, record: TrialRecord, seeds: int) -> dict | None:
    """The summary stored for ``record``'s trial when it was confirmed with exactly the seeds
    ``seeds`` new runs would use, on its objective's metric; else None."""
    stored = front.confirmed(study, record.number)
    if stored and stored["seeds"] == new_seeds(record, seeds) and stored["metric"] == record.objective[0]:
        return stored
    return None


def confirm_study(study: optuna.Study, seeds: int = 3, workers: int = 1, cache_dir: str | None = None,
                  on_trial: Callable[[TrialRecord, dict], None] | None = None,
                  top: int | None = None) -> dict[int, dict]:
    """Retrain the front (or :func:`trials_to_confirm`'s ``top`` choice) and the presets of
    ``study`` ``seeds`` times each (module docstring); store and return the summaries by trial
    number. ``on_trial`` sees each as it is stored. A trial already confirmed with exactly
    these seeds is not trained again (a killed or narrower confirm picks up where it was)."""
    if seeds < 2:
        raise ValueError(f"--seeds must be at least 2 to measure a spread, got {seeds}")
    if top is not None and top < 1:
        raise ValueError(f"--top must be at least 1, got {top}")
    records = {r.number: r for r in trials_to_confirm(study, top)}
    if not records:
        raise ValueError(f"study {study.study_name!r} has no trained feasible trial on its front to confirm")
    summaries = {n: stored for n, r in records.items() if (stored := already_confirmed(study, r, seeds))}
    records = {n: r for n, r in records.items() if n not in summaries}
    runs = [_Run(n, seed, r.attrs(), study.study_name) for n, r in records.items() for seed in new_seeds(r, seeds)]
    results: dict[int, list[dict]] = {n: [] for n in records}
    reused: dict[int, list[dict]] = {n: [] for n in records}
    with ProcessPoolExecutor(max(1, workers), mp_context=get_context("spawn"), initializer=_init_worker) as pool:
        for number, run, source in pool.map(_retrain, runs, [cache_dir] * len(runs)):
            results[number].append(run)
            if source is not None:
                reused[number].append(source)
            if len(results[number]) < seeds:
                continue
            record = records[number]
            done = sorted(results[number], key=lambda r: r["seed"])
            summary = {"metric": record.objective[0], "split": record.objective[1],
                       "seeds": [r["seed"] for r in done],
                       "objective": summarise([r["validation"] for r in done]),
                       "test_accuracy": summarise([r["test_accuracy"] for r in done]),
                       "test_worst_class_recall": summarise([r["test_worst_class_recall"] for r in done]),
                       "at": time.time()}
            if reused[number]:  # taken from the store of trainings, not trained by this confirm
                summary["reused"] = sorted(reused[number], key=lambda r: r["seed"])
            study.set_user_attr(f"{front.CONFIRMED}{number}", summary)
            summaries[number] = summary
            if on_trial is not None:
                on_trial(record, summary)
    return summaries


def confirm(study_name: str, storage: str, seeds: int, workers: int | None = None, cache_dir: str | None = None,
            top: int | None = None, on_start: Callable[[str], None] | None = None,
            on_trial: Callable[[TrialRecord, dict], None] | None = None) -> dict[int, dict]:
    """Load the stored study ``study_name`` and :func:`confirm_study` it with ``workers`` (default:
    one per CPU). Before any training, ``on_start`` (default: this module's log) is told in one
    line what will be retrained and which trials are already confirmed with these seeds."""
    if top is not None and top < 1:
        raise ValueError(f"--top must be at least 1, got {top}")
    study = studylib.load_existing_study(study_name, storage)
    todo = trials_to_confirm(study, top)
    workers = workers or os.cpu_count() or 1
    which = "the front" if top is None else (f"the {top} most accurate searched trials of the front, each "
                                             "preset's challenger")
    done = [r.number for r in todo if already_confirmed(study, r, seeds)]
    again = f"; trial(s) {', '.join(map(str, done))} already confirmed with these seeds" if done else ""
    line = (f"confirming {len(todo)} trial(s) of study {study_name!r} ({which} and the paper's presets): "
            f"{seeds} more seeds each, {workers} worker(s){again}")
    (on_start or log.info)(line)
    return confirm_study(study, seeds=seeds, workers=workers, cache_dir=cache_dir, on_trial=on_trial, top=top)

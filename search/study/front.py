"""The front: which trials count, their objective points, dominance, and what the front beats.

- :func:`objective_point` / :func:`point`: a trial's (accuracy, latency_ms, params) in
  :data:`~search.study.record.OBJECTIVES` order, from a FrozenTrial or a TrialRecord, with the
  mean accuracy ``castsearch confirm`` measured in place of the search's own where asked
  (:func:`confirmed_point`);
- :func:`is_feasible`, :func:`below_floor`, :func:`within_limits`: which stored trials count;
- :func:`dominates`, :func:`dominating`, :func:`pareto_front`, :func:`hypervolume`;
- :func:`headline`: which of the paper's presets a searched network dominates, on the
  search's single figures and on confirmed means, and by which trial; :func:`format_headline`
  says it in plain text (:func:`headline_summary` and :func:`headline_rows`, for other layouts);
- :func:`front_rows` / :func:`reference_row`: the front and its references as rows for
  people and for JSON, with the quiet-phase re-timing (:func:`retimed`) and the confirmed
  figures (:func:`confirmed`) where the study stores them.

Nothing here knows SQL: every function reads an ``optuna.Study`` or its FrozenTrials.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from search.study.record import DIRECTIONS, OBJECTIVES, TrialRecord

__all__ = ["CONFIRMED", "RETIMED", "Headline", "Win", "add_dominated", "below_floor", "confirmed",
           "confirmed_point", "counts", "dominates", "dominating", "figure_name", "format_headline", "front_rows",
           "headline",
           "headline_rows", "headline_summary", "hypervolume", "is_feasible", "least_accurate_preset",
           "objective_point", "pareto_front", "point", "presets", "reference_row", "retimed", "searched",
           "within_limits"]

RETIMED = "retimed:"  # study user attr retimed:<trial number>: the front's quiet-phase re-timing
CONFIRMED = "confirmed:"  # study user attr confirmed:<trial number>: castsearch confirm's figures

T = TypeVar("T")


# ---------------------------------------------------------------------------------------
# The objective point of a trial


def objective_point(accuracy: float, latency_ms: float, params: float) -> list[float]:
    """The objective vector in :data:`~search.study.record.OBJECTIVES` order, as the study
    stores it (every value a float)."""
    return [float(accuracy), float(latency_ms), float(params)]


def point(trial: FrozenTrial | TrialRecord, confirmed: dict | None = None) -> list[float]:
    """``trial``'s objective values; with ``confirmed`` (a :func:`confirmed` summary of it), its
    confirmed mean accuracy in place of the search's own (latency and parameters stay)."""
    if isinstance(trial, TrialRecord):
        accuracy, latency_ms, params = trial.accuracy, trial.latency_ms, trial.params
    else:
        accuracy, latency_ms, params = trial.values
    if confirmed is not None:
        accuracy = confirmed["objective"]["mean"]
    return objective_point(accuracy, latency_ms, params)


def retimed(study: optuna.Study, number: int) -> dict | None:
    """The quiet-phase re-timing of front trial ``number``, if the run that found it did one."""
    return study.user_attrs.get(f"{RETIMED}{number}")


def confirmed(study: optuna.Study, number: int) -> dict | None:
    """The seed-repeated figures ``castsearch confirm`` stored for trial ``number``
    (study user attr ``confirmed:<trial number>``; see :mod:`search.run.confirm`)."""
    return study.user_attrs.get(f"{CONFIRMED}{number}")


def confirmed_point(study: optuna.Study, trial: FrozenTrial | TrialRecord) -> list[float] | None:
    """``trial``'s point with its confirmed mean accuracy, or None where it was not confirmed."""
    summary = confirmed(study, trial.number)
    return None if summary is None else point(trial, summary)


# ---------------------------------------------------------------------------------------
# Which trials count


def is_feasible(trial: FrozenTrial) -> bool:
    return all(v <= 0.0 for v in trial.constraints.values()) and not TrialRecord.read(trial).infeasible


def below_floor(trial: FrozenTrial) -> bool:
    """A trained trial that meets the architecture limits but is less accurate than ``min_accuracy``."""
    c = trial.constraints
    return (c.get("min_accuracy", 0.0) > 0.0 and not TrialRecord.read(trial).infeasible
            and all(v <= 0.0 for k, v in c.items() if k != "min_accuracy"))


def within_limits(trial: FrozenTrial) -> bool:
    """A COMPLETE trial trained within the latency and parameter limits, whether or not
    ``min_accuracy`` kept it off the front: what dominance over the presets is asked of."""
    return trial.state == TrialState.COMPLETE and (is_feasible(trial) or below_floor(trial))


def presets(trials: Iterable[FrozenTrial]) -> dict[str, FrozenTrial]:
    """The paper presets trained within the limits, by name (a preset trained twice: the later)."""
    return {r.preset: t for t in trials if within_limits(t) and (r := TrialRecord.read(t)).preset is not None}


def searched(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """The trials within the limits that the sampler drew: neither a preset nor a point
    ``seed_nearest`` queued from a preset's design, nor one ``seed_from`` queued from an
    earlier study's front."""
    return [t for t in trials if within_limits(t) and (r := TrialRecord.read(t)).preset is None
            and r.near_preset is None and r.seeded_from is None and r.baseline is None and r.invalid is None]


def least_accurate_preset(trials: list[FrozenTrial]) -> FrozenTrial | None:
    """The trained, feasible preset with the lowest accuracy objective (``min_accuracy: presets``)."""
    found = [t for t in trials if t.state == TrialState.COMPLETE and TrialRecord.read(t).preset is not None
             and is_feasible(t)]
    return min(found, key=lambda t: t.values[0], default=None)


def counts(trials: list[FrozenTrial]) -> dict[str, int]:
    """Trials by outcome, for progress lines. ``invalid``: sampled points that cannot be
    built (skipped at once, never trained, not counted in the budget)."""
    c = {"complete": 0, "running": 0, "pruned": 0, "infeasible": 0, "below_floor": 0, "invalid": 0, "failed": 0,
         "waiting": 0}
    for t in trials:
        if TrialRecord.read(t).invalid:
            c["invalid"] += 1
        elif t.state == TrialState.COMPLETE:
            c["complete" if is_feasible(t) else "below_floor" if below_floor(t) else "infeasible"] += 1
        elif t.state == TrialState.RUNNING:
            c["running"] += 1
        elif t.state == TrialState.PRUNED:
            c["pruned"] += 1
        elif t.state == TrialState.FAIL:
            c["failed"] += 1
        else:
            c["waiting"] += 1
    return c


# ---------------------------------------------------------------------------------------
# Dominance, the front, hypervolume


def dominates(a: Sequence[float], b: Sequence[float], directions=DIRECTIONS) -> bool:
    """Whether objective vector ``a`` Pareto-dominates ``b`` (at least as good everywhere, better once)."""
    better = False
    for x, y, d in zip(a, b, directions, strict=False):
        if d == "minimize":
            x, y = -x, -y
        if x < y:
            return False
        better = better or x > y
    return better


def dominating(target: Sequence[float], candidates: Iterable[tuple[T, Sequence[float] | None]]
               ) -> list[tuple[T, list[float]]]:
    """The ``(candidate, point)`` pairs whose point dominates ``target``, most accurate first
    (ties in the given order); a None point (say, a trial never confirmed) is left out."""
    found = [(c, list(p)) for c, p in candidates if p is not None and dominates(p, target)]
    return sorted(found, key=lambda pair: -pair[1][0])


def pareto_front(study: optuna.Study) -> list[FrozenTrial]:
    """Feasible COMPLETE trials that no other feasible COMPLETE trial dominates, by accuracy."""
    front = [t for t in study.best_trials if is_feasible(t)]
    return sorted(front, key=lambda t: (-t.values[0], t.values[1]))


def hypervolume(points: list[list[float]], reference: list[float]) -> float:
    """Hypervolume of (accuracy, latency_ms, params) points against ``reference``: the volume
    of the region they dominate inside the box the reference point bounds.

    Exact, by slicing: sorted along the first objective, each slab between two consecutive
    first-objective values adds its width times the 2-D hypervolume of the points at least
    that good. O(n^2 log n), fine for fronts of hundreds of points."""
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in DIRECTIONS])  # all minimised
    pts = np.array(points, dtype=float).reshape(-1, len(DIRECTIONS)) * signs
    ref = np.array(reference, dtype=float) * signs
    pts = pts[(pts < ref).all(axis=1)]
    if len(pts) == 0:
        return 0.0
    pts = pts[np.argsort(pts[:, 0], kind="stable")]
    edges = np.append(pts[1:, 0], ref[0])
    return float(sum((edges[i] - pts[i, 0]) * _hypervolume_2d(pts[:i + 1, 1:], ref[1:])
                     for i in range(len(pts))))


def _hypervolume_2d(pts: np.ndarray, ref: np.ndarray) -> float:
    """Area dominated by minimised 2-D points ``pts`` (all inside ``ref``), bounded by ``ref``."""
    area, best_y = 0.0, ref[1]
    for x, y in pts[np.lexsort((pts[:, 1], pts[:, 0]))]:
        if y < best_y:
            area += (ref[0] - x) * (best_y - y)
            best_y = y
    return area


# ---------------------------------------------------------------------------------------
# The headline: which presets a searched network dominates


@dataclass(frozen=True)
class Win:
    """A searched trial that dominates a preset: the most accurate such, with both points
    (confirmed mean accuracies where the comparison is on confirmed means)."""

    trial: int
    point: list[float]
    preset_point: list[float]
    by: int = 1  # how many searched trials dominate the preset


@dataclass(frozen=True)
class Headline:
    """Which of the paper's presets trained in a study a searched network dominates
    (:func:`searched`: not a preset, not a seeded nearest point): on the study's single
    figures, and on the means ``castsearch confirm`` measured, where both the preset and the
    trial were confirmed. Presets by name."""

    presets: list[str]
    dominated_single: dict[str, Win] = field(default_factory=dict)
    dominated_confirmed: dict[str, Win] = field(default_factory=dict)
    confirmed: list[str] = field(default_factory=list)  # presets with confirmed means
    objective: str = "val_balanced_accuracy"  # the figure the points' first value is (figure_name)

    @property
    def not_dominated(self) -> list[str]:
        """The presets dominated neither on single figures nor on confirmed means."""
        return [p for p in self.presets if p not in self.dominated_single and p not in self.dominated_confirmed]

    @property
    def unconfirmed(self) -> list[str]:
        return [p for p in self.presets if p not in self.confirmed]

    def to_dict(self) -> dict:
        """The headline as JSON: per comparison, preset -> the dominating trial and both points,
        each figure named as everywhere else (``objective``: ``val_balanced_accuracy`` by default)."""
        names = (self.objective, *OBJECTIVES[1:])

        def wins(found: dict[str, Win]) -> dict:
            return {p: {"trial": w.trial, "by": w.by, **dict(zip(names, w.point, strict=True)),
                        "preset": dict(zip(names, w.preset_point, strict=True))} for p, w in found.items()}

        return {"objective": self.objective, "presets": self.presets,
                "dominated_single": wins(self.dominated_single),
                "dominated_confirmed": wins(self.dominated_confirmed), "confirmed": self.confirmed,
                "not_dominated": self.not_dominated}


def headline(study: optuna.Study) -> Headline:
    """Which presets of ``study`` a searched trial dominates, single and confirmed (:class:`Headline`)."""
    trials = study.get_trials(deepcopy=False)
    found, drawn = presets(trials), searched(trials)
    single, confirmed_wins, confirmed_presets = {}, {}, []
    for name, preset in sorted(found.items()):
        base = point(preset)
        if beaters := dominating(base, ((t, point(t)) for t in drawn)):
            single[name] = Win(beaters[0][0].number, beaters[0][1], base, len(beaters))
        if (base := confirmed_point(study, preset)) is None:
            continue
        confirmed_presets.append(name)
        if beaters := dominating(base, ((t, confirmed_point(study, t)) for t in drawn)):
            confirmed_wins[name] = Win(beaters[0][0].number, beaters[0][1], base, len(beaters))
    objective = figure_name(*TrialRecord.read(next(iter(found.values()))).objective) if found else Headline.objective
    return Headline(sorted(found), single, confirmed_wins, confirmed_presets, objective)


def headline_summary(h: Headline) -> str:
    """The headline in one sentence: how many presets are dominated, single and confirmed."""
    if not h.presets:
        return "No paper preset was trained within the limits in this study: nothing to compare against."
    left_out = f" ({len(h.unconfirmed)} preset(s) not confirmed)" if h.confirmed and h.unconfirmed else ""
    on_confirmed = (f"{len(h.dominated_confirmed)} of {len(h.confirmed)} on confirmed means{left_out}" if h.confirmed
                    else "not confirmed on means (castsearch confirm)")
    return (f"Paper presets dominated by a searched network (not a preset, not a seeded nearest point): "
            f"{len(h.dominated_single)} of {len(h.presets)} on single figures, {on_confirmed}.")


def headline_rows(h: Headline) -> list[list[str]]:
    """One row per preset: its name, by what it is dominated on single figures, and on
    confirmed means ("no", or "not confirmed" where confirm did not retrain the preset)."""
    return [[name, _win(h.dominated_single.get(name), ""),
             "not confirmed" if name not in h.confirmed else _win(h.dominated_confirmed.get(name), " mean")]
            for name in h.presets]


def format_headline(h: Headline) -> list[str]:
    """The headline as lines of plain text: :func:`headline_summary`, then one line per preset."""
    rows = headline_rows(h)
    width = max((len(name) for name, _, _ in rows), default=0)
    return [headline_summary(h), *(f"  {name:<{width}}  single: {single}; confirmed: {again}"
                                   for name, single, again in rows)]


def _win(w: Win | None, mean: str) -> str:
    if w is None:
        return "no"
    others = f" (and {w.by - 1} more)" if w.by > 1 else ""
    return (f"by #{w.trial}{others}: {100 * w.point[0]:.1f}%{mean} against {100 * w.preset_point[0]:.1f}%, "
            f"{w.point[1]:.2f} ms, {int(w.point[2]):,} params")


# ---------------------------------------------------------------------------------------
# The front and its references, as rows for people and for JSON


def figure_name(metric: str, split: str) -> str:
    """What castsearch calls ``metric`` measured on ``split`` in every row, table and card:
    ``val_<metric>`` or ``test_<metric>``."""
    return f"{'val' if split == 'validation' else split}_{metric}"


def front_rows(study: optuna.Study) -> list[dict]:
    """One dict per front trial, with the quiet-phase latency when the run re-timed it.

    Every figure names its split: ``val_<metric>`` or ``test_<metric>`` (:func:`figure_name`).
    ``objective`` names the one the search ranked by: ``metric`` on ``split`` (the validation
    split, ``val_balanced_accuracy`` by default; ``test_accuracy`` in studies of castsearch 0.1).
    The test figures beside it were never ranked by. ``<split>_majority_<metric>`` is what
    always answering the most common class scores on the objective, and
    ``no_better_than_majority`` flags a network that does not beat it. After ``castsearch
    confirm``, ``<objective>_mean`` / ``_std`` / ``_ci95`` and the same for ``test_accuracy``
    summarise the retraining with other seeds (``seeds``)."""
    from search.latency.config import LIMIT_PREFIX

    rows = []
    for t in pareto_front(study):
        r = TrialRecord.read(t)
        quiet = retimed(study, t.number) or {}
        paced = (quiet.get("paces") if quiet else r.latency_paces) is not None
        limit = (study.user_attrs.get(f"{LIMIT_PREFIX}{r.input_shape()[1]}") or {}) if paced else {}
        metric, split = r.objective
        objective = figure_name(metric, split)
        majority = r.majority_score()
        worst = r.worst_recall
        rows.append({
            "trial": r.number,
            "objective": objective,
            "metric": metric,
            "split": split,
            objective: r.accuracy,
            figure_name(f"majority_{metric}", split): majority,
            "no_better_than_majority": majority is not None and r.accuracy <= majority,
            "test_accuracy": r.test_score,
            "test_balanced_accuracy": r.test_balanced_accuracy,
            "test_worst_class_recall": {"class": worst[0], "recall": worst[1]} if worst else None,
            "test_macro_f1": r.macro_f1,
            "latency_ms": quiet.get("latency_ms", r.latency_ms),
            "latency_ms_during_search": r.latency_ms,
            "latency_runtime": r.runtime,
            "latency_retimed": bool(quiet),
            # each timing divided by this reference's slowdown timed beside it (search.latency.timer.Pacer)
            "latency_paced_by": limit.get("relative_to") if paced else None,
            "batch_latency_ms": quiet.get("batch_latency_ms", r.batch_latency_ms),
            "params": int(r.params),
            "macs": r.macs,
            "image_size": r.recipe["image_size"] if r.recipe else None,  # the network's input side, px
            "arch": r.arch_code,
            "enhancements": r.enhancements,
            "preset": r.preset,
            "weights_path": r.weights_path,
            "seed_runs": r.seed_runs,  # objectives.accuracy.seeds > 1: the accuracy is their mean
        })
        again = confirmed(study, r.number)
        if again is not None:
            rows[-1].update({"seeds": again["seeds"], f"{objective}_mean": again["objective"]["mean"],
                             f"{objective}_std": again["objective"]["std"],
                             f"{objective}_ci95": again["objective"]["ci95"]})
            rows[-1].update(test_accuracy_mean=again["test_accuracy"]["mean"],
                            test_accuracy_std=again["test_accuracy"]["std"],
                            test_accuracy_ci95=again["test_accuracy"]["ci95"])
            if "test_worst_class_recall" in again:  # confirmed before castsearch stored it: absent
                rows[-1]["test_worst_class_recall_mean"] = again["test_worst_class_recall"]["mean"]
    return rows


def reference_row(trial: FrozenTrial) -> dict:
    """The row of one baseline reference point stored by ``castsearch baselines``."""
    r = TrialRecord.read(trial)
    return {
        "reference": True,
        "baseline": r.baseline,
        "pretrained": r.pretrained,
        "pretrained_from": r.pretrained_from,
        "trial": r.number,
        "objective": figure_name(*r.objective),
        "metric": r.objective[0],
        "split": r.objective[1],
        figure_name(*r.objective): r.accuracy,
        "test_accuracy": r.test_score,
        "test_macro_f1": r.macro_f1,
        "latency_ms": r.latency_ms,
        "batch_latency_ms": r.batch_latency_ms,
        "params": int(r.params),
        "macs": r.macs,
        "image_size": r.recipe["image_size"] if r.recipe else None,
        "epochs": r.epochs_run,
        "weights_path": r.weights_path,
    }


def add_dominated(rows: list[dict], references: list[dict]) -> None:
    """Set each front row's ``dominates``: the baselines it Pareto-dominates on the objectives
    (the confirmed mean accuracy where ``castsearch confirm`` measured one)."""
    for row in rows:
        accuracy = row.get(f"{row['objective']}_mean", row[row["objective"]])
        mine = objective_point(accuracy, row["latency_ms"], row["params"])
        row["dominates"] = [ref["baseline"] for ref in references
                            if dominates(mine, objective_point(ref[ref["objective"]], ref["latency_ms"], ref["params"]))]

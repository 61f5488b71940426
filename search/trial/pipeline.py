"""One candidate end to end: build, measure, check constraints, train, evaluate, save.

Shared by ``castsearch train``, the search's Ray trials and the baselines, so a network
trained by hand and one trained inside a search are built, timed and judged the same way.

The trained network is evaluated on both held-out splits. Its objective (what the search
ranks by) is the validation value of ``metric``; the test split is evaluated after training
and only reported: nothing that chooses reads it. With ``seeds`` above 1 a candidate that
trained all its epochs is trained again from scratch with the next seeds, and its objective
is the mean over all of them: one training is one noisy draw, and a search that ranks single
draws picks lucky ones. The first seed's network is the one saved. A search can ask for the
further seeds only where they decide something (``repeat_if``: the first training would join
its front, and before each seed after the second, the mean so far still would), so the draws
that look best are checked, a lucky one stops costing seeds once its mean falls behind, and the
rest cost one training.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from castmodels import ArchSpec
from search.latency.measure import Measurement, library_versions, machine_fingerprint
from search.latency.timer import Timer
from search.study.record import DEFAULT_METRIC, Limits
from search.training.recipe import TrainRecipe
from search.training.train import EvalResult, evaluate, train
from search.trial.build import build_candidate, input_shape

log = logging.getLogger(__name__)

NO_LIMITS = Limits()


@dataclass
class TrialOutcome:
    """What one candidate produced. ``validation`` and ``evaluation`` (the test split) are None
    when it was not trained."""

    measurement: Measurement
    feasible: bool  # met the latency and parameter limits, so it was trained
    metric: str = DEFAULT_METRIC  # the EvalResult field the objective reads, on the validation split
    validation: EvalResult | None = None
    evaluation: EvalResult | None = None  # the test split: reported, never ranked by
    val_scores: list[float] = field(default_factory=list)  # validation ``metric`` after each epoch
    epochs_run: int = 0
    stopped_early: bool = False
    train_seconds: float = 0.0
    images_per_second: float = 0.0
    weights_path: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # measure / train / evaluate / save / seeds
    seed_runs: list[dict] = field(default_factory=list)  # with seeds > 1: :func:`seed_run` of each seed

    def to_dict(self) -> dict:
        d = asdict(self)
        d["evaluation"] = self.evaluation.to_dict() if self.evaluation else None
        d["validation"] = self.validation.to_dict() if self.validation else None
        d["measurement"] = self.measurement.to_dict()
        d["objective"] = self.objective
        return d

    @property
    def objective(self) -> float | None:
        """What the search ranks the candidate by: the validation value of :attr:`metric`, its
        mean over the seeds when it was trained with several."""
        if self.validation is None:
            return None
        if self.seed_runs:
            return statistics.fmean(run["validation"] for run in self.seed_runs)
        return getattr(self.validation, self.metric)

    def provenance(self, data) -> TrialResult:
        """This outcome with where it ran: the data's identity, this machine and the library
        versions."""
        return TrialResult(outcome=self, data=data.identity, machine=machine_fingerprint(),
                           versions=library_versions())


@dataclass(frozen=True)
class TrialResult:
    """A finished candidate as the study stores it: what the pipeline produced and where it
    ran. A search's worker hands it to the driver as it is, and
    :meth:`search.study.record.TrialRecord.add_outcome` reads it; :meth:`to_dict` is what a
    trial's ``metrics.json`` holds."""

    outcome: TrialOutcome
    data: dict  # the dataset's identity (search.data.Dataset.identity)
    machine: dict  # search.latency.measure.machine_fingerprint()
    versions: dict  # search.latency.measure.library_versions()

    def to_dict(self) -> dict:
        return {**self.outcome.to_dict(), "data": self.data, "machine": self.machine, "versions": self.versions}

    def with_measurement(self, measurement: Measurement) -> TrialResult:
        """This result with the candidate measured again (the search's driver re-times a trained
        trial's latency as it ends)."""
        return replace(self, outcome=replace(self.outcome, measurement=measurement))


def run_candidate(arch: ArchSpec, recipe: TrainRecipe, data, **options) -> TrialOutcome:
    """Build ``arch`` (initialised from the recipe's seed) and measure it; if it meets the
    limits train it, evaluate on the test split and (with ``out_dir``) save weights, spec,
    recipe and metrics there. ``options`` are :func:`run_model`'s keyword arguments."""
    torch.manual_seed(recipe.seed)
    model = build_candidate(arch, recipe, data.num_classes)
    return run_model(model, arch.name or arch.code(), arch.to_dict(), recipe, data,
                     rebuild=lambda r: build_candidate(arch, r, data.num_classes), **options)


def preview(arch: ArchSpec, recipe: TrainRecipe, data, epochs: int, metric: str = DEFAULT_METRIC,
            device: str | None = None) -> float:
    """The validation ``metric`` of ``arch`` trained from scratch with ``recipe``'s schedule
    compressed to ``epochs`` epochs (same seed, optimizer, peak learning rate and warm-up
    fraction, so the rate is annealed to its end): the short look early stopping judges a
    trial by under ``budget.early_stopping: preview``. Under a one-cycle schedule a score read
    part-way through the full schedule is read at the peak learning rate, where it swings from
    epoch to epoch; a compressed schedule's end ranks networks as their full training does
    far more closely (bench/rung_fidelity.py)."""
    short = replace(recipe, epochs=epochs)
    torch.manual_seed(short.seed)
    result = train(build_candidate(arch, short, data.num_classes), data, short, device=device, metric=metric)
    return getattr(evaluate(result.model, data.val_x, data.val_y, data.class_names), metric)


def seed_run(seed: int, validation: EvalResult, test: EvalResult, metric: str) -> dict:
    """One training's figures: its seed, validation ``metric`` (what is averaged), test accuracy
    and the test split's worst-class recall (reported only)."""
    return {"seed": seed, "validation": getattr(validation, metric), "test_accuracy": test.accuracy,
            "test_worst_class_recall": min(test.per_class_recall.values(), default=None)}


def train_seed(build: Callable[[TrainRecipe], torch.nn.Module], recipe: TrainRecipe, seed: int, data,
               metric: str, device: str | None = None) -> tuple[EvalResult, EvalResult]:
    """Train the network ``build`` makes from scratch with ``recipe`` at ``seed`` (weights,
    batch order, augmentation); its (validation, test) figures."""
    recipe = replace(recipe, seed=seed)
    torch.manual_seed(seed)
    result = train(build(recipe), data, recipe, device=device, metric=metric)
    return evaluate_splits(result.model, data)


def run_model(
    model: torch.nn.Module,
    name: str,
    spec: dict,
    recipe: TrainRecipe,
    data,
    *,
    out_dir: str | Path | None = None,
    limits: Limits = NO_LIMITS,
    on_epoch: Callable[[int, float], bool | None] | None = None,
    metric: str = DEFAULT_METRIC,
    timer: Timer | None = None,
    measurement: Measurement | None = None,
    seeds: int = 1,
    rebuild: Callable[[TrainRecipe], torch.nn.Module] | None = None,
    repeat_if: Callable[[TrialOutcome], bool] | None = None,
) -> TrialOutcome:
    """:func:`run_candidate` for an already-built network ``name`` (a baseline, say): measure
    ``model``; if it meets ``limits`` train it (``on_epoch`` sees the validation ``metric``),
    evaluate it on the validation and the test split and (with ``out_dir``) save it with
    ``spec``, the JSON description written as spec.json. Latency is measured by ``timer``
    (:class:`search.latency.timer.Timer`: the search's protocol and statistic, in its runtime; ONNX
    Runtime without one), unless ``measurement`` brings it already (a search's
    driver measured the network before dispatch, see :mod:`search.latency.screen`). With ``seeds``
    above 1 and all epochs trained, ``rebuild`` makes the network afresh for each further seed
    (module docstring), unless ``repeat_if`` says the first training's outcome is not worth
    it (a search retraining only what would join its front); from the third seed on it is asked
    again of the mean so far, and the seeds stop once it says no."""
    if seeds > 1 and rebuild is None:
        raise ValueError(f"training {name} with {seeds} seeds needs a way to build it again")
    clock = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        outcome.seconds[phase] = now - clock
        clock = now

    m = measurement or (timer or Timer()).measure(model, input_shape(recipe))
    outcome = TrialOutcome(measurement=m, feasible=limits.architecture_met(m.latency_ms, m.params), metric=metric)
    lap("measure")
    if not outcome.feasible:
        log.info("not training %s: %.3f ms and %d params break a limit (%s)", name, m.latency_ms, m.params, limits)
        return outcome
    result = train(model, data, recipe, on_epoch=on_epoch, metric=metric)
    lap("train")
    outcome.validation, outcome.evaluation = evaluate_splits(result.model, data)
    lap("evaluate")
    outcome.val_scores = list(result.val_scores)
    outcome.epochs_run = result.epochs_run
    outcome.stopped_early = result.stopped_early
    outcome.train_seconds = result.train_seconds
    outcome.images_per_second = result.images_per_second
    if seeds > 1 and not result.stopped_early and (repeat_if is None or repeat_if(outcome)):
        outcome.seed_runs = [seed_run(recipe.seed, outcome.validation, outcome.evaluation, metric)]
        for seed in range(recipe.seed + 1, recipe.seed + seeds):
            if len(outcome.seed_runs) > 1 and repeat_if is not None and not repeat_if(outcome):
                break  # the mean so far no longer decides anything: the next seed would not change the front
            outcome.seed_runs.append(seed_run(seed, *train_seed(rebuild, recipe, seed, data, metric), metric))
        lap("seeds")
    if out_dir is not None:
        outcome.weights_path = str(save_artifacts(Path(out_dir), spec, recipe, data, result.model, outcome))
        lap("save")
    return outcome


def evaluate_splits(model: torch.nn.Module, data) -> tuple[EvalResult, EvalResult]:
    """(validation, test) figures of a trained network: the first ranks, the second reports."""
    return (evaluate(model, data.val_x, data.val_y, data.class_names),
            evaluate(model, data.test_x, data.test_y, data.class_names))


def save_artifacts(out: Path, spec: dict, recipe: TrainRecipe, data, model, outcome: TrialOutcome) -> Path:
    """Write model.pt (state dict), spec.json (``spec``), recipe.json and metrics.json; return the
    weights path."""
    out.mkdir(parents=True, exist_ok=True)
    weights = out / "model.pt"
    tmp = weights.with_suffix(".pt.tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(weights)
    (out / "spec.json").write_text(json.dumps(spec, indent=2) + "\n")
    (out / "recipe.json").write_text(json.dumps(recipe.to_dict(), indent=2) + "\n")
    metrics = {
        **outcome.provenance(data).to_dict(),
        "weights_path": str(weights),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return weights

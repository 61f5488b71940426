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

With a store of trainings (:mod:`search.trial.reuse`), a full training (every epoch of the
recipe, first seed or further) that is already stored is not trained again: its figures and
weights come from the store, and the outcome says which seeds were reused and from which study
(:attr:`TrialOutcome.reused`). What trains here to its end is stored.
"""

from __future__ import annotations

import copy
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
from search.study.record import DEFAULT_METRIC, Limits, read_weights
from search.training.recipe import TrainRecipe
from search.training.train import EvalResult, evaluate, train
from search.trial.build import build_candidate, input_shape
from search.trial.reuse import StoredTraining, Trainings

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
    # the trainings taken from the store instead of trained: {"seed", "study"} each (search.trial.reuse)
    reused: list[dict] = field(default_factory=list)
    device: str = "cpu"  # where it trained: "cpu" or the GPU (search.run.resources.device_name)

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


@dataclass(frozen=True)
class SeedTraining:
    """One full training's (validation, test) figures, and the stored training they were taken
    from when it was reused."""

    validation: EvalResult
    test: EvalResult
    reused: StoredTraining | None = None


def seed_training(build: Callable[[TrainRecipe], torch.nn.Module], recipe: TrainRecipe, seed: int, data,
                  metric: str, device: str | None = None, *, spec: dict | None = None,
                  trainings: Trainings | None = None) -> SeedTraining:
    """Train the network ``build`` makes (``spec``, its JSON description) from scratch with
    ``recipe`` at ``seed`` (weights, batch order, augmentation); with ``trainings``, take it
    from the store when it is there, and store it when it was trained here."""
    recipe = replace(recipe, seed=seed)
    key = trainings.key(spec, recipe, data, device) if trainings is not None and spec is not None else None
    if key is not None and (found := stored_figures(trainings, key)) is not None:
        return SeedTraining(*found[1:], reused=found[0])
    torch.manual_seed(seed)
    result = train(build(recipe), data, recipe, device=device, metric=metric)
    validation, test = evaluate_splits(result.model, data)
    if key is not None:
        store(trainings, key, result, validation, test, metric)
    return SeedTraining(validation, test)


def train_seed(build: Callable[[TrainRecipe], torch.nn.Module], recipe: TrainRecipe, seed: int, data,
               metric: str, device: str | None = None) -> tuple[EvalResult, EvalResult]:
    """Train the network ``build`` makes from scratch with ``recipe`` at ``seed`` (weights,
    batch order, augmentation); its (validation, test) figures."""
    trained = seed_training(build, recipe, seed, data, metric, device)
    return trained.validation, trained.test


def stored_figures(trainings: Trainings, key: str) -> tuple[StoredTraining, EvalResult, EvalResult] | None:
    """The stored training ``key`` with its (validation, test) figures; None when there is none
    or it is damaged (reported)."""
    stored = trainings.get(key)
    if stored is None:
        return None
    try:
        return stored, EvalResult(**stored.validation), EvalResult(**stored.test)
    except TypeError as e:
        return trainings.damaged(trainings.entry(key), f"its figures do not read: {e}")


def store(trainings: Trainings, key: str, result, validation: EvalResult, test: EvalResult, metric: str) -> None:
    """Put a training that ran all its epochs (a :class:`search.training.train.TrainResult`)
    into the store; one stopped early is not the training its key names. A store that cannot
    be written is reported, and the training's outcome stands."""
    if result.stopped_early:
        return
    try:
        trainings.put(key, result.model.state_dict(), validation=validation.to_dict(), test=test.to_dict(),
                      metric=metric, val_scores=list(result.val_scores), epochs=result.epochs_run,
                      train_seconds=result.train_seconds, images_per_second=result.images_per_second)
    except OSError as e:
        log.warning("training not kept for reuse in %s: %s", trainings.folder, e)


def restored(model: torch.nn.Module, trainings: Trainings, stored: StoredTraining) -> torch.nn.Module | None:
    """A copy of ``model`` (left as it is) holding the stored training's weights, in eval mode;
    None, reported, when they do not read or do not fit it."""
    trained = copy.deepcopy(model)
    try:
        trained.load_state_dict(read_weights(str(stored.weights)))
    except (ValueError, RuntimeError) as e:
        trainings.damaged(trainings.entry(stored.key), str(e).splitlines()[0])
        return None
    return trained.eval()


def replayed(on_epoch: Callable[[int, float], bool | None] | None, scores: list[float]) -> bool:
    """Hand ``on_epoch`` a stored training's scores, epoch by epoch, as its training did; False
    when it asks to stop (that training is not the stored one: it is trained, and sees them again)."""
    if on_epoch is None:
        return True
    return not any(on_epoch(epoch, score) for epoch, score in enumerate(scores, 1))


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
    trainings: Trainings | None = None,
    device: str | None = None,
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
    again of the mean so far, and the seeds stop once it says no. With ``trainings`` (the store,
    :mod:`search.trial.reuse`) each seed's full training is taken from it when it is there (the
    stored scores are handed to ``on_epoch`` as the training's were) and stored once trained."""
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
    key = trainings.key(spec, recipe, data, device) if trainings is not None else None
    found = stored_figures(trainings, key) if key is not None else None
    if (found is not None and found[0].metric == metric
            and (trained := restored(model, trainings, found[0])) is not None
            and replayed(on_epoch, found[0].val_scores)):
        stored, outcome.validation, outcome.evaluation = found
        outcome.val_scores, outcome.epochs_run = list(stored.val_scores), stored.epochs
        outcome.train_seconds, outcome.images_per_second = stored.train_seconds, stored.images_per_second
        outcome.reused.append({"seed": recipe.seed, "study": stored.study})
        lap("reuse")
    else:
        result = train(model, data, recipe, on_epoch=on_epoch, metric=metric, device=device)
        lap("train")
        outcome.validation, outcome.evaluation = evaluate_splits(result.model, data)
        lap("evaluate")
        trained = result.model
        outcome.val_scores = list(result.val_scores)
        outcome.epochs_run = result.epochs_run
        outcome.stopped_early = result.stopped_early
        outcome.train_seconds = result.train_seconds
        outcome.images_per_second = result.images_per_second
        if key is not None:
            store(trainings, key, result, outcome.validation, outcome.evaluation, metric)
    if seeds > 1 and not outcome.stopped_early and (repeat_if is None or repeat_if(outcome)):
        outcome.seed_runs = [seed_run(recipe.seed, outcome.validation, outcome.evaluation, metric)]
        for seed in range(recipe.seed + 1, recipe.seed + seeds):
            if len(outcome.seed_runs) > 1 and repeat_if is not None and not repeat_if(outcome):
                break  # the mean so far no longer decides anything: the next seed would not change the front
            run = seed_training(rebuild, recipe, seed, data, metric, device, spec=spec, trainings=trainings)
            outcome.seed_runs.append(seed_run(seed, run.validation, run.test, metric))
            if run.reused is not None:
                outcome.reused.append({"seed": seed, "study": run.reused.study})
        lap("seeds")
    if out_dir is not None:
        outcome.weights_path = str(save_artifacts(Path(out_dir), spec, recipe, data, trained, outcome))
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
    try:
        torch.save(model.state_dict(), tmp)
        tmp.replace(weights)
    except BaseException:  # a full disk, say: no partial weights left behind
        tmp.unlink(missing_ok=True)
        raise
    (out / "spec.json").write_text(json.dumps(spec, indent=2) + "\n")
    (out / "recipe.json").write_text(json.dumps(recipe.to_dict(), indent=2) + "\n")
    metrics = {
        **outcome.provenance(data).to_dict(),
        "weights_path": str(weights),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return weights

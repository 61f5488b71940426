"""What a trial is judged on and what it stores: the objectives, the limits, the trial record.

- :data:`OBJECTIVES` / :data:`DIRECTIONS`: the study's three objectives, in value order;
  :data:`METRICS`, what the accuracy objective can measure (on the validation split), and
  :data:`RUNTIMES`, what the latency objective can be timed in.
- :class:`Limits`: the constraints a trial must meet (latency, parameters, accuracy), in the
  one shape the space file, the pipeline and the study share.
- :class:`TrialRecord`: every fact a trial keeps besides its objective values, one field
  per Optuna user attr (the attr names are the field names, so studies written by any
  castsearch version read the same). It writes itself to an Optuna trial, reads itself
  back from a FrozenTrial, and rebuilds the trained network. Nothing else in castsearch
  indexes a trial's user attrs by string.

Importing this module is cheap (no torch, no optuna): the space file's validation uses it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# what the latency objective can be timed in: the latency package's (no torch), re-exported here
from search.latency.config import DEFAULT_RUNTIME, RUNTIMES

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial
    from torch import nn

    from castmodels import ArchSpec
    from search.data import DataConfig
    from search.latency.measure import Measurement
    from search.training.recipe import TrainRecipe
    from search.trial.pipeline import TrialResult

__all__ = ["CONSTRAINT_NAMES", "DEFAULT_METRIC", "DEFAULT_RUNTIME", "DIRECTIONS", "METRICS", "OBJECTIVES",
           "RUNTIMES", "Limits", "TrialRecord", "majority_score", "read_weights"]

OBJECTIVES = ("accuracy", "latency_ms", "params")
DIRECTIONS = ("maximize", "minimize", "minimize")
CONSTRAINT_NAMES = ("max_latency_ms", "max_params", "min_accuracy")
# What the ``accuracy`` objective measures, always on the validation split (search.training.train.EvalResult
# fields). Balanced accuracy (mean per-class recall) by default: a missed rare defect costs more
# than a mis-sorted common one, and always answering the majority class scores 1 / classes.
METRICS = ("balanced_accuracy", "accuracy", "macro_f1")
DEFAULT_METRIC = "balanced_accuracy"


@dataclass(frozen=True)
class Limits:
    """What a trial must meet to count (None = no limit). Latency and parameters are checked
    before training (an architecture that breaks them is never trained); accuracy after."""

    max_latency_ms: float | None = None
    max_params: float | None = None
    min_accuracy: float | None = None

    def constraint_values(self, accuracy: float | None, latency_ms: float, params: float) -> dict[str, float]:
        """One value per name of :data:`CONSTRAINT_NAMES`, Optuna's convention: > 0 broken by
        that much, <= 0 met. Unset limits (and accuracy before training) are 0.0, met."""
        values = {name: 0.0 for name in CONSTRAINT_NAMES}
        if self.max_latency_ms is not None:
            values["max_latency_ms"] = latency_ms - self.max_latency_ms
        if self.max_params is not None:
            values["max_params"] = float(params - self.max_params)
        if self.min_accuracy is not None and accuracy is not None:
            values["min_accuracy"] = self.min_accuracy - accuracy
        return values

    def architecture_met(self, latency_ms: float, params: float) -> bool:
        """Whether a measured network meets the latency and parameter limits (trainable)."""
        values = self.constraint_values(None, latency_ms, params)
        return values["max_latency_ms"] <= 0 and values["max_params"] <= 0


@dataclass(frozen=True)
class RelativeLimit:
    """``max_latency_ms`` written as ``factor`` times a paper network's latency on the machine
    that runs the search (resolved by :func:`search.latency.screen.resolve_limits`)."""

    relative_to: str  # a castmodels preset
    factor: float = 1.0

    def describe(self) -> str:
        return f"{self.factor:g} x {self.relative_to}"


_VALUE_FIELDS = ("number", "accuracy", "latency_ms", "params")  # read from the trial, never written as attrs


@dataclass
class TrialRecord:
    """One trial's stored facts. Each field but the four objective/number fields at the end is
    one user attr of the Optuna trial; None means "not stored" (and is never written)."""

    # what was asked: the candidate (a search trial) or the reference network (a baseline)
    run_id: str | None = None
    arch: dict | None = None  # ArchSpec.to_dict(), or {"baseline": name}
    arch_code: str | None = None
    recipe: dict | None = None  # TrainRecipe.to_dict()
    enhancements: str | None = None
    preset: str | None = None
    preset_arch: dict | None = None  # a preset the space cannot express: trained as this fixed network
    near_preset: str | None = None  # a searched trial queued first as the space's point nearest this preset
    seeded_from: str | None = None  # "<study>#<trial>": queued first from that earlier study's front (seed_from)
    baseline: str | None = None
    pretrained: bool | None = None
    pretrained_from: str | None = None
    # measured before training, latency in ``latency_runtime`` (absent: torch, castsearch 0.1)
    latency_runtime: str | None = None
    eager_latency_ms: float | None = None
    macs: int | None = None
    latency_iqr_ms: float | None = None
    batch_latency_ms: float | None = None
    batch_size: int | None = None
    threads: int | None = None
    latency_preempted: bool | None = None  # other work held the core while it was timed (CPU time used)
    latency_timings_ms: list[float] | None = None  # each single-image timing, as the clock read it
    latency_paces: list[float] | None = None  # the machine's pace at each (search.latency.timer.Pacer); the
    # objective is the lowest timing divided by its pace (each 1 when unpaced: the lowest timing)
    infeasible: bool | None = None  # broke an architecture limit: measured, never trained
    screened: str | None = None  # why the driver judged it infeasible before dispatch (never reached a worker)
    # trained and evaluated. The objective value is ``objective_metric`` on ``objective_split``
    # (the validation split; absent in studies of castsearch 0.1, which ranked on test accuracy).
    objective_metric: str | None = None
    objective_split: str | None = None
    validation: dict | None = None  # the validation split's EvalResult
    test_accuracy: float | None = None  # the test split's figures: reported, never ranked by
    test_balanced_accuracy: float | None = None
    macro_f1: float | None = None  # test split
    per_class_recall: dict[str, float] | None = None  # test split
    confusion: list[list[int]] | None = None  # test split
    val_accuracy: list[float] | None = None  # the objective's validation value after each epoch
    # objectives.accuracy.seeds > 1: each training's seed, validation value of the metric, test
    # accuracy and test worst-class recall (search.trial.pipeline.seed_run); the objective is their mean
    seed_runs: list[dict] | None = None
    # the seeds whose full training was taken from the store of trainings, not trained here
    # (search.trial.reuse): {"seed", "study": the study it was trained in} each; absent when none
    reused: list[dict] | None = None
    train_device: str | None = None  # the GPU it trained on ("cuda:0 <name> (GPU 2 of the node)"); absent: the CPU
    epochs_run: int | None = None
    train_seconds: float | None = None
    weights_path: str | None = None
    # where and how
    data: dict | None = None  # the dataset's identity (search.data.Dataset.identity)
    machine: dict | None = None
    versions: dict | None = None
    worker_seconds: dict[str, float] | None = None
    node_id: str | None = None
    # budget.early_stopping: preview: the short run it was judged by first, {"epochs", "score", "seconds"}
    preview: dict | None = None
    # how it ended, when not COMPLETE
    pruned_at_epoch: int | None = None
    error: str | None = None
    invalid: str | None = None  # the sampled point cannot be built
    # read back from the trial itself
    number: int | None = None
    accuracy: float | None = None
    latency_ms: float | None = None
    params: float | None = None

    @classmethod
    def attr_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.name not in _VALUE_FIELDS)

    # -- the study side ---------------------------------------------------------------------

    def write(self, trial: optuna.Trial) -> None:
        """Set every stored (non-None) field as a user attr of the running ``trial``."""
        for name, value in self.attrs().items():
            trial.set_user_attr(name, value)

    def attrs(self) -> dict[str, Any]:
        """The user attrs this record stands for (what :meth:`write` sets)."""
        return {name: getattr(self, name) for name in self.attr_names() if getattr(self, name) is not None}

    @classmethod
    def read(cls, trial: FrozenTrial) -> TrialRecord:
        """The record of a stored trial, with its number and objective values."""
        record = cls.of_attrs(trial.user_attrs)
        record.number = trial.number
        if trial.values is not None and len(trial.values) == len(OBJECTIVES):
            record.accuracy, record.latency_ms, record.params = trial.values
        return record

    @classmethod
    def of_attrs(cls, user_attrs: dict[str, Any]) -> TrialRecord:
        """The record a trial's user attrs (of a running trial, say) stand for; attrs it does
        not know are left out."""
        return cls(**{name: user_attrs[name] for name in cls.attr_names() if name in user_attrs})

    def add_outcome(self, result: TrialResult) -> None:
        """Fill the measured and trained fields from what the pipeline produced
        (:meth:`search.trial.pipeline.TrialOutcome.provenance`)."""
        outcome, ev, val = result.outcome, result.outcome.evaluation, result.outcome.validation
        self.add_measurement(outcome.measurement)
        self.data, self.machine, self.versions = result.data, result.machine, result.versions
        self.worker_seconds = dict(outcome.seconds)
        if ev is None:
            self.infeasible = True
            return
        self.objective_metric, self.objective_split, self.validation = outcome.metric, "validation", val.to_dict()
        self.test_accuracy, self.test_balanced_accuracy = ev.accuracy, ev.balanced_accuracy
        self.macro_f1, self.per_class_recall, self.confusion = ev.macro_f1, ev.per_class_recall, ev.confusion
        self.val_accuracy, self.epochs_run = list(outcome.val_scores), outcome.epochs_run
        self.train_seconds, self.weights_path = outcome.train_seconds, outcome.weights_path
        self.seed_runs = outcome.seed_runs or None
        self.reused = list(outcome.reused) or None
        self.train_device = outcome.device if outcome.device != "cpu" else None

    def add_measurement(self, m: Measurement) -> None:
        """Fill the measured fields from a latency and size measurement."""
        self.macs, self.latency_iqr_ms = m.macs, m.latency_iqr_ms
        self.batch_latency_ms, self.batch_size, self.threads = m.batch_latency_ms, m.batch_size, m.threads
        self.latency_runtime, self.eager_latency_ms = m.runtime, m.eager_latency_ms
        self.latency_preempted = m.preempted or None
        self.latency_timings_ms, self.latency_paces = m.latency_timings_ms, m.paces

    # -- derived facts ----------------------------------------------------------------------

    @property
    def trained(self) -> bool:
        return self.weights_path is not None

    @property
    def class_names(self) -> list[str]:
        return list(self.data["class_names"])

    @property
    def objective(self) -> tuple[str, str]:
        """(metric, split) of the accuracy objective; castsearch 0.1 ranked on test accuracy."""
        if self.objective_metric is None:
            return "accuracy", "test"
        return self.objective_metric, self.objective_split

    @property
    def runtime(self) -> str:
        """What the latency objective was measured in (castsearch 0.1 timed torch eager)."""
        return self.latency_runtime or "torch"

    @property
    def test_score(self) -> float | None:
        """Test-split accuracy (the objective value itself in a 0.1 study)."""
        if self.test_accuracy is not None:
            return self.test_accuracy
        return self.accuracy if self.objective == ("accuracy", "test") else None

    def majority_score(self) -> float | None:
        """What always answering the objective split's most common class scores on the
        objective's metric: the floor a useful network must clear."""
        if not self.data or "class_counts" not in self.data:
            return None
        metric, split = self.objective
        counts = self.data["class_counts"]["val" if split == "validation" else split]
        return majority_score(counts, metric)

    @property
    def worst_recall(self) -> tuple[str, float] | None:
        """(class, recall) of the class the network finds least often."""
        if not self.per_class_recall:
            return None
        name = min(self.per_class_recall, key=self.per_class_recall.get)
        return name, self.per_class_recall[name]

    def arch_spec(self) -> ArchSpec:
        from castmodels import ArchSpec

        return ArchSpec.from_dict(self.arch)

    def train_recipe(self) -> TrainRecipe:
        from search.training.recipe import TrainRecipe

        return TrainRecipe.from_dict(self.recipe)

    def input_shape(self) -> tuple[int, int, int]:
        recipe = self.train_recipe()
        return (recipe.channels, recipe.image_size, recipe.image_size)

    def data_config(self) -> DataConfig:
        """How to load the data the trial was trained and tested on."""
        from search.data import DataConfig

        return DataConfig.from_identity(self.data)

    def build_network(self) -> nn.Module:
        """The trial's network as it was trained and is shipped, freshly initialised."""
        from search.trial.build import build_candidate

        return build_candidate(self.arch_spec(), self.train_recipe(), len(self.class_names))

    def load_network(self) -> nn.Module:
        """The trained network in eval mode: :meth:`build_network` with the stored weights.
        A weights file that cannot be read or does not fit the spec is a ValueError naming it."""
        model = self.build_network()
        state = read_weights(self.weights_path)
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise ValueError(f"{self.weights_path} does not fit trial {self.number}'s spec: "
                             f"{str(e).splitlines()[0]}") from None
        return model.eval()


def read_weights(path: str) -> dict:
    """The state dict a trial saved as ``model.pt``, read the safe way (``weights_only``). A
    file that is truncated, not a state dict, or a pickle of anything else is a ValueError
    naming it: such a file is damaged or not castsearch's, and loading it unsafely is no fix."""
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below covers it
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
        raise ValueError(f"cannot read trained weights {path}: {e.strerror}") from None
    except Exception:  # zip, pickle and torch errors alike, or EINVAL for some truncations;
        # not torch's text, which suggests loading the file unsafely
        state = None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"cannot read trained weights {path}: file is truncated or not a castsearch checkpoint")
    return state


def majority_score(class_counts: list[int], metric: str) -> float:
    """The ``metric`` of always answering the most common class, on a split with these
    per-class image counts: its share (accuracy), 1 / classes present (balanced accuracy),
    or its F1 averaged over all classes (macro-F1)."""
    total, top = sum(class_counts), max(class_counts)
    present = sum(1 for c in class_counts if c > 0)
    if metric == "accuracy":
        return top / total
    if metric == "balanced_accuracy":
        return 1 / present
    if metric == "macro_f1":
        share = top / total  # precision of the majority class; its recall is 1
        return 2 * share / (1 + share) / len(class_counts)
    raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")

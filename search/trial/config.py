"""A trial's configuration: every knob of one training, in one typed object.

The search's driver builds a :class:`TrialConfig` from the trial Optuna asked for
(:meth:`search.run.searcher.StudySearcher.suggest`) and hands it to Ray Tune under one key,
:data:`KEY`; the worker (:func:`search.run.worker.train_trial`) trains from it alone, and the
scheduler (:class:`search.run.scheduler.ParetoRungs`) reads the measurement and ``protect``
from it. Nothing on the way is a dict of strings.

Importing this module is cheap (no torch): the types it names are only annotations here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from search.study.record import DEFAULT_METRIC, METRICS

if TYPE_CHECKING:
    from castmodels import ArchSpec
    from search.latency.measure import Measurement
    from search.training.recipe import TrainRecipe

__all__ = ["KEY", "TrialConfig"]

KEY = "trial"  # the one key of Tune's config: {KEY: TrialConfig}


@dataclass(frozen=True)
class TrialConfig:
    """What a search's worker is told to do with one candidate."""

    number: int  # the Optuna trial's number
    arch: ArchSpec  # the network
    recipe: TrainRecipe  # how to train it; its image size names the dataset (:attr:`image_size`)
    measurement: Measurement  # its latency and parameters, measured by the driver before dispatch
    out_dir: Path  # where the trained network is saved (weights, spec, recipe, metrics)
    workers_dir: Path  # where the worker registers its process for the driver's quiet slots
    metric: str = DEFAULT_METRIC  # the validation figure the objective reads (METRICS)
    seeds: int = 1  # trainings from scratch the objective is the mean of (objectives.accuracy.seeds)
    # seeds_for: front: the study's front (objective values) when the trial was dispatched; the
    # further seeds are trained only while the trial would join it. None: every seed is trained.
    front: tuple[tuple[float, ...], ...] | None = None
    # never stopped early: the presets, and the space's points nearest them (seed_nearest)
    protect: bool = False
    min_accuracy: float | None = None  # the accuracy floor a trained trial must meet to join the front
    # budget.early_stopping: preview: epochs of the compressed schedule the trial is judged by first
    preview: int | None = None
    gpus: float = 0.0  # of a GPU Ray gave the trial (--gpus-per-trial): above 0 it trains on that GPU

    def __post_init__(self) -> None:
        if self.number < 0:
            raise ValueError(f"a trial's number cannot be negative (number={self.number})")
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r} for trial {self.number}; known: {', '.join(METRICS)}")
        if self.seeds < 1:
            raise ValueError(f"trial {self.number} must train with at least one seed (seeds={self.seeds})")
        if self.preview is not None and not 0 < self.preview < self.epochs:
            raise ValueError(f"trial {self.number}'s preview must be shorter than its schedule and at least one "
                             f"epoch (preview={self.preview}, epochs={self.epochs})")

    @property
    def image_size(self) -> int:
        """Which of the run's datasets the trial trains on (they are loaded one per image size)."""
        return self.recipe.image_size

    @property
    def epochs(self) -> int:
        """The length of the trial's full training."""
        return self.recipe.epochs

"""What a validated search-space file is: :class:`SearchSpace` and its sections
(:class:`ArchitectureSpace` or :class:`GrowingArchitecture`, :class:`SamplerConfig`,
:class:`Budget`, :class:`DataSettings`), the names a file may use for them, and
:class:`Candidate`, one point of the space."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from castmodels import CONV_TYPES, ArchSpec
from search.data.rules import AUTO, SYNTHETIC_CHANNELS
from search.space.values import Param
from search.study.record import (
    DEFAULT_METRIC,
    DEFAULT_RUNTIME,
    DIRECTIONS,
    Limits,
    RelativeLimit,
)
from search.study.record import OBJECTIVES as OBJECTIVE_NAMES
from search.training.recipe import TrainRecipe

if TYPE_CHECKING:
    from search.data import DataConfig

OBJECTIVES = dict(zip(OBJECTIVE_NAMES, DIRECTIONS, strict=True))  # the file's objectives section
SAMPLERS = ("nsga2", "tpe", "gp", "random")
# preview: each trial first trains its schedule compressed to the first rung's epochs; a trial
# others dominate there stops, the rest train their full schedule from scratch. pareto: Pareto
# rungs (search.run.scheduler.ParetoRungs) read part-way through the full schedule. none: every trial
# trains every epoch of its schedule
EARLY_STOPPING = ("preview", "pareto", "none")
SEEDS_FOR = ("finished", "front")  # objectives.accuracy.seeds_for: which finished trials the extra seeds retrain
LAST_BLOCKS = {"plain": (1, 1), "stride2": (2, 1), "dilation2": (1, 2)}  # (stride, dilation)
# The growing form's conv per stage: castmodels' conv types, or mixed: depthwise-separable
# blocks closed by a 3x3 block (the paper's "D64 C64"; a one-block mixed stage is one 3x3 block)
MIXED = "mixed"
STAGE_CONVS = (*CONV_TYPES, MIXED)
ALPHA_FIELDS = {"label_smoothing": "label_smoothing", "mixup": "mixup_alpha"}  # number, 0 = off
DEFAULT_RECIPE = "default"  # the named recipe a space starts from when training.recipe is absent
ACCURACY_FLOOR = "presets"  # constraints.min_accuracy: presets, the least accurate preset's accuracy
DEFAULT_TIMEOUT_S = 1800.0  # 30 minutes of wall time when the file gives neither budget.trials nor budget.timeout
DEFAULT_POPULATION = 12  # NSGA-II population when sampler.population_size is not given


@dataclass(frozen=True)
class ArchitectureSpace:
    stages: Param
    blocks_per_stage: Param
    channels: Param
    conv: Param
    last_block: Param
    dropout: Param
    pool: Param
    head: Param


@dataclass(frozen=True)
class GrowingArchitecture:
    """The architecture written as widths that never shrink and a downsampling plan that is
    valid at the image size by construction (see spaces/paper.yaml)."""

    stages: Param
    blocks_per_stage: Param
    width: Param  # channels of the first stage
    growth: Param  # each later stage's channels: the previous stage's times this
    conv: Param  # per stage
    last_block: Param  # offered while the map is at least 4 px
    dropout: Param
    pool: Param  # offered while the map is at least 2 px
    head: Param
    max_channels: int = 256  # no stage wider than this


@dataclass(frozen=True)
class SamplerConfig:
    name: str = "tpe"
    seed: int | None = None
    population_size: int | None = None  # nsga2 only (DEFAULT_POPULATION when not given)


@dataclass(frozen=True)
class Budget:
    """When a run stops: after ``trials`` finished trials or ``timeout_s`` seconds of wall time,
    whichever first; by default after :data:`DEFAULT_TIMEOUT_S`, with no trial count."""

    trials: int | None = None
    timeout_s: float | None = DEFAULT_TIMEOUT_S
    early_stopping: str = "preview"  # one of EARLY_STOPPING


@dataclass(frozen=True)
class DataSettings:
    """Where the images come from; the image size is ``training.image_size``."""

    source: str = "synthetic"  # "synthetic" or a folder path
    channels: int | str = AUTO  # 1, 3, or auto: decided from the images when they are loaded (search.data)
    test_fraction: float = 0.1
    val_fraction: float = 0.2
    split_seed: int = 555
    cache_dir: str | None = None
    resize: str = "squash"  # how images are made square: squash, pad or center-crop (search.data.imageio)

    def config(self, image_size: int) -> DataConfig:
        """How to load these images at ``image_size`` px (what every command that reads a
        space's data uses)."""
        from search.data import DataConfig

        return DataConfig(source=self.source, image_size=image_size, channels=self.channels,
                          test_fraction=self.test_fraction, val_fraction=self.val_fraction,
                          split_seed=self.split_seed, resize=self.resize)


@dataclass(frozen=True)
class SearchSpace:
    """A validated search-space file. ``training`` is keyed like TrainRecipe's fields,
    ``enhancements`` by every name in ENHANCEMENTS, ``augmentations`` by every name in
    AUGMENTATIONS (absent in the file: fixed off)."""

    path: str | None
    study: str
    seed_presets: bool
    constraints: Limits
    sampler: SamplerConfig
    budget: Budget
    data: DataSettings
    architecture: ArchitectureSpace | GrowingArchitecture
    training: dict[str, Param]
    enhancements: dict[str, Param]
    augmentations: dict[str, Param]
    recipe: str = DEFAULT_RECIPE  # the named recipe that gives what the file does not set
    metric: str = DEFAULT_METRIC  # what the accuracy objective measures, on the validation split
    seeds: int = 1  # trainings, each with its own seed, that the accuracy of a fully trained trial averages
    seeds_for: str = "finished"  # every fully trained trial, or only one whose first training joins the front
    latency_runtime: str = DEFAULT_RUNTIME  # what the latency objective is timed in (search.study.record.RUNTIMES)
    retime_front: bool = True  # the front re-timed in a quiet phase at the run's end (search.latency.retime)
    cpus_per_trial: float = 1.0  # what each trial asks Ray for (resources section; search.run.resources)
    gpus_per_trial: float = 0.0  # a fraction shares one GPU between trials
    relative_latency: RelativeLimit | None = None  # max_latency_ms relative to a paper network, when so written
    # min_accuracy: presets: at least as accurate as the least accurate preset trained in the
    # study (resolved by the runner once the presets have trained; constraints.min_accuracy is None)
    accuracy_floor: str | None = None
    # queue, as the search's first trials, the point of the (growing-form) space nearest each
    # preset it cannot express (search.space.nearest_trials)
    seed_nearest: bool = False
    # earlier studies in the same storage whose Pareto fronts are queued, as this space's
    # nearest points, after the presets and their nearest points (warm start; empty: off)
    seed_from: tuple[str, ...] = ()

    @property
    def objective_names(self) -> list[str]:
        return list(OBJECTIVES)

    @property
    def directions(self) -> list[str]:
        return list(OBJECTIVES.values())

    @property
    def image_sizes(self) -> list[int]:
        """Every value ``training.image_size`` can take (the runner loads the data at each)."""
        return sorted(self.training["image_size"].values())

    @property
    def named_recipe(self) -> TrainRecipe:
        """``training.recipe`` as it trains for this space's metric (TrainRecipe.for_metric):
        what the presets, their nearest points and the baselines train with, where the space
        admits it."""
        return TrainRecipe.for_metric(self.recipe, self.metric)

    @property
    def max_epochs(self) -> int:
        return max(self.training["epochs"].values())

    @property
    def input_channels(self) -> int:
        """The channels every candidate's network takes: ``data.channels``; for ``auto``, 3 on
        the synthetic set (search.data) and otherwise unknown until the images are loaded
        and :meth:`with_channels` says what they decided (a ValueError before that)."""
        if self.data.channels != AUTO:
            return self.data.channels
        if self.data.source == "synthetic":
            return SYNTHETIC_CHANNELS
        raise ValueError(f"{self.path or '<dict>'}: data.channels is auto, which the images decide: load them "
                         f"and pass their channel count to SearchSpace.with_channels first")

    def with_channels(self, channels: int) -> SearchSpace:
        """This space with ``data.channels`` set to what the loaded images have (what ``auto``
        resolved to), so candidates are built for them and the other image sizes load alike."""
        return replace(self, data=replace(self.data, channels=channels))


@dataclass(frozen=True)
class Candidate:
    """One point of the space: the network and how to train it."""

    arch: ArchSpec
    recipe: TrainRecipe

    def to_dict(self) -> dict:
        return {"arch": self.arch.to_dict(), "recipe": self.recipe.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> Candidate:
        return cls(arch=ArchSpec.from_dict(data["arch"]), recipe=TrainRecipe.from_dict(data["recipe"]))

    def enhancements_summary(self) -> str:
        """E.g. ``"blurpool+swa+ls0.1 aug:hflip+rotate"``, or ``"none"``."""
        r = self.recipe
        short = {"label_smoothing": f"ls{r.label_smoothing:g}", "mixup": f"mixup{r.mixup_alpha:g}"}
        parts = ["+".join(short.get(name, name) for name in r.enhancements)] if r.enhancements else []
        if r.augmentations:
            parts.append("aug:" + "+".join(r.augmentations))
        return " ".join(parts) or "none"


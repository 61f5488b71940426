"""The search space: a YAML file validated into a :class:`SearchSpace`, and the walk that
turns Optuna parameters into a :class:`Candidate` (an ArchSpec plus a TrainRecipe).

``spaces/paper.yaml`` is the paper's space and documents every key. In short, each
searchable value is one of

- a scalar: fixed, never an Optuna parameter;
- a list: a categorical choice (non-empty, no duplicates);
- a range ``{low, high, log?, step?}`` (numeric keys only): an int range for integer
  keys, a float range for the others; ``low <= high``, ``log`` needs ``low > 0``,
  ``log`` and ``step`` do not go together.

The network is a sequence of stages; a stage is ``blocks`` conv blocks (each conv ->
ReLU -> BatchNorm), its last block is plain, stride 2 or dilation 2, and the stage's
dropout and 2x2 max-pool follow that last block. The Optuna parameters are named

    stages, s{i}_blocks, s{i}_b{j}_conv, s{i}_b{j}_channels, s{i}_last, s{i}_dropout,
    s{i}_pool, head                                          (i, j count from 1)
    epochs, batch_size, optimizer, lr, weight_decay, image_size
    blurpool, squeeze_excite, swa, label_smoothing, mixup, cutout, aug_<augmentation>

and a parameter exists only where the point has it (stage 5's parameters only when
``stages >= 5``). :func:`suggest` (an Optuna trial) and :func:`decode` (a dict of
params) share one walk, so a stored trial decodes to the candidate it trained.
:func:`encode` goes the other way and :func:`preset_params` uses it to put the
paper's six networks first in a study.

Every candidate trains with seed ``sampler.seed`` (0 when unset): all trials see the
same initialisation and batch order, so their differences come from the point.

A bad file fails here, before a study exists, with one line that names the file and the key
path: the reader (:class:`_SpaceLoader`, a ``yaml.SafeLoader``) refuses files over 1 MiB,
nesting deeper than 32 levels, a key written twice; the checks bound every number a file
gives (``MAX_*``), refuse NaN and inf, stepped ranges of more than a million points and a
per-block space whose least downsampling point leaves no feature map.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import re
import reprlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import yaml

from castmodels import CONV_TYPES, HEAD_TYPES, PRESETS, ArchSpec, LayerSpec, feature_size
from search.data.rules import AUTO, MIN_IMAGE_SIZE, RESIZES, SYNTHETIC_CHANNELS, valid_channels
from search.study.record import (
    DEFAULT_METRIC,
    DEFAULT_RUNTIME,
    DIRECTIONS,
    METRICS,
    RUNTIMES,
    Limits,
    RelativeLimit,
)
from search.study.record import OBJECTIVES as OBJECTIVE_NAMES
from search.training.recipe import (
    AUGMENTATIONS,
    CLASS_BALANCES,
    ENHANCEMENTS,
    OPTIMIZERS,
    RECIPES,
    SCHEDULES,
    TrainRecipe,
)

if TYPE_CHECKING:
    import optuna

    from search.data import DataConfig

log = logging.getLogger(__name__)

OBJECTIVES = dict(zip(OBJECTIVE_NAMES, DIRECTIONS, strict=True))  # the file's objectives section
SAMPLERS = ("nsga2", "tpe", "gp", "random")
# preview: each trial first trains its schedule compressed to the first rung's epochs; a trial
# others dominate there stops, the rest train their full schedule from scratch. pareto: Pareto
# rungs (search.run.runner.ParetoRungs) read part-way through the full schedule. none: every trial
# trains every epoch of its schedule
EARLY_STOPPING = ("preview", "pareto", "none")
MAX_SEEDS = 10  # objectives.accuracy.seeds: each one is a full training of every finished trial
SEEDS_FOR = ("finished", "front")  # objectives.accuracy.seeds_for: which finished trials the extra seeds retrain
LAST_BLOCKS = {"plain": (1, 1), "stride2": (2, 1), "dilation2": (1, 2)}  # (stride, dilation)
# The growing form's conv per stage: castmodels' conv types, or mixed: depthwise-separable
# blocks closed by a 3x3 block (the paper's "D64 C64"; a one-block mixed stage is one 3x3 block)
MIXED = "mixed"
STAGE_CONVS = (*CONV_TYPES, MIXED)
ALPHA_FIELDS = {"label_smoothing": "label_smoothing", "mixup": "mixup_alpha"}  # number, 0 = off
DEFAULT_RECIPE = "default"  # the named recipe a space starts from when training.recipe is absent
ACCURACY_FLOOR = "presets"  # constraints.min_accuracy: presets, the least accurate preset's accuracy
DEFAULT_TRIALS = 20  # when the file has no budget section
DEFAULT_POPULATION = 12  # NSGA-II population when sampler.population_size is not given
MAX_STAGES = MAX_BLOCKS = 16  # more is a typo, not a small CNN
# Upper bounds on the numbers a file gives: beyond them a value is a typo, and some (a seed
# numpy cannot take, a grid Optuna cannot step) would only fail once a run is under way.
MAX_CHANNELS = 4096  # architecture.channels, width and max_channels
MAX_IMAGE_SIZE = 1024
MAX_BATCH_SIZE = 4096
MAX_EPOCHS = 10_000
MAX_LR = 10.0
MAX_SEED = 2**32 - 1  # numpy's seeds are 32-bit
MAX_POPULATION = 10_000
MAX_TIMEOUT_S = 365 * 86400.0
MAX_GRID_POINTS = 1_000_000  # points of a stepped range
# ... and on the file itself, checked while it is read, before anything else
MAX_FILE_BYTES = 1 << 20  # paper.yaml, comments and all, is about 11 KB
MAX_DEPTH = 32  # levels of nesting (paper.yaml has 4), counting what aliases bring in
MAX_NODES = 10_000  # values, keys and list items (paper.yaml has about 200)
_STUDY_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,40}")
_DURATION = re.compile(r"(?:(\d+(?:\.\d*)?)d)?(?:(\d+(?:\.\d*)?)h)?(?:(\d+(?:\.\d*)?)m)?(?:(\d+(?:\.\d*)?)s)?")
_DURATION_UNITS = (86400.0, 3600.0, 60.0, 1.0)


class SpaceError(ValueError):
    """A search-space file breaks a rule; the message names the file, the key path and the value."""


class InvalidCandidate(ValueError):
    """A sampled point that cannot be built (e.g. its feature map vanishes at this image size)."""


# ---------------------------------------------------------------------------
# Searchable values


@dataclass(frozen=True)
class Fixed:
    """A value the file fixes: never an Optuna parameter."""

    key: str  # where it comes from, e.g. "training.weight_decay"
    value: Any

    def describe(self) -> str:
        return f"fixed at {self.value!r}"

    def admits(self, value: Any) -> bool:
        return value == self.value

    def values(self) -> list:
        return [self.value]

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return self.value  # not a parameter: the trial is not asked


@dataclass(frozen=True)
class Choice:
    """A categorical parameter."""

    key: str
    choices: tuple

    def describe(self) -> str:
        return f"one of {list(self.choices)}"

    def admits(self, value: Any) -> bool:
        return value in self.choices

    def values(self) -> list:
        return list(self.choices)

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.choices))


@dataclass(frozen=True)
class Range:
    """An int range (int low/high) or a float range, optionally log-scaled or stepped."""

    key: str
    low: int | float
    high: int | float
    log: bool = False
    step: int | float | None = None

    @property
    def is_int(self) -> bool:
        return isinstance(self.low, int)

    def describe(self) -> str:
        extra = " (log)" if self.log else f" (step {self.step})" if self.step is not None else ""
        return f"range [{self.low}, {self.high}]{extra}"

    def admits(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int if self.is_int else (int, float)):
            return False
        on_grid = self.step is None or _on_grid(value, self.low, self.step)
        return self.low <= value <= self.high and on_grid

    def suggest(self, trial: optuna.Trial, name: str) -> int | float:
        if self.is_int:
            return trial.suggest_int(name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)


Param = Fixed | Choice | Range


def _on_grid(value: float, low: float, step: float) -> bool:
    k = (value - low) / step
    return math.isfinite(k) and abs(k - round(k)) < 1e-8  # Optuna's own tolerance for stepped floats


# ---------------------------------------------------------------------------
# The space


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
    """When a run stops: after ``trials`` finished trials or ``timeout_s`` seconds, whichever first."""

    trials: int | None = DEFAULT_TRIALS
    timeout_s: float | None = None
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
    relative_latency: RelativeLimit | None = None  # max_latency_ms relative to a paper network, when so written
    # min_accuracy: presets: at least as accurate as the least accurate preset trained in the
    # study (resolved by the runner once the presets have trained; constraints.min_accuracy is None)
    accuracy_floor: str | None = None
    # queue, as the search's first trials, the point of the (growing-form) space nearest each
    # preset it cannot express (search.space.nearest_trials)
    seed_nearest: bool = False

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


# ---------------------------------------------------------------------------
# Value checks: each returns the normalised value or raises ValueError naming it

Check = Callable[[Any], Any]


def _got(value: Any) -> str:
    return f"got {reprlib.repr(value)}"


def _key_text(key: Any) -> str:
    """A key as an error's key path shows it: as written when it is a plain name, otherwise
    quoted and shortened (a key may be long, or hold a line break)."""
    text = str(key)
    return text if _PLAIN_KEY.fullmatch(text) else reprlib.repr(key)


def _integer(minimum: int, maximum: int | None = None) -> Check:
    rule = f"must be an integer >= {minimum}" if maximum is None else f"must be an integer in [{minimum}, {maximum}]"

    def check(value: Any) -> int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if not (ok and value >= minimum and (maximum is None or value <= maximum)):
            raise ValueError(f"{rule}, {_got(value)}")
        return value

    return check


def _number(low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = False) -> Check:
    if high == math.inf:
        rule = f"must be a number {'>' if low_open else '>='} {low:g}"
    else:
        rule = f"must be a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def check(value: Any) -> float:
        number = _as_float(value)
        ok = math.isfinite(number) and (number > low if low_open else number >= low) and (
            number < high if high_open else number <= high)
        if not ok:
            raise ValueError(f"{rule}, {_got(value)}{_number_text_hint(value)}")
        return number

    return check


def _as_float(value: Any) -> float:
    """``value`` as a float: NaN when it is not a number, inf when it is an int too large for a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _number_text_hint(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    try:
        float(value)
    except ValueError:
        return ""
    return " (YAML reads 3e-4 and 1.0e5 as text: write 3.0e-4 and 1.0e+5, with a dot and a signed exponent)"


def _one_of(known: tuple) -> Check:
    def check(value: Any) -> Any:
        if isinstance(value, bool) or value not in known:  # True == 1 must not pass for 1
            raise ValueError(f"must be one of {', '.join(map(str, known))}, {_got(value)}")
        return value

    return check


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, {_got(value)}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a non-empty string, {_got(value)}")
    return value


def _channels(value: Any) -> int | str:
    if not valid_channels(value):  # 1.0 and true are typos, not 1
        raise ValueError(f"must be auto, 1 (grey) or 3 (RGB), {_got(value)}")
    return value


def _optimizer(value: Any) -> str:
    if _text(value) not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {reprlib.repr(value)}; known: {', '.join(OPTIMIZERS)}")
    return value


def _optional(check: Check) -> Check:
    return lambda value: None if value is None else check(value)


def parse_duration(text: str | int | float) -> float:
    """Seconds from ``90``, ``"90s"``, ``"30m"``, ``"2h"``, ``"1h30m"`` or ``"1d"``; must be > 0."""
    seconds = math.nan
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = _as_float(text)
    elif isinstance(text, str):
        s = text.strip().lower()
        if re.fullmatch(r"\d+(?:\.\d*)?", s):
            seconds = float(s)
        elif (m := _DURATION.fullmatch(s)) and any(m.groups()):
            seconds = sum(float(g) * unit for g, unit in zip(m.groups(), _DURATION_UNITS, strict=True) if g)
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"a duration must be seconds > 0 or text like '90s', '30m', '2h', '1h30m', {_got(text)}")
    return seconds


def _duration(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds > MAX_TIMEOUT_S:
        raise ValueError(f"a duration must be at most 365d ({MAX_TIMEOUT_S:g} s), {_got(value)}")
    return seconds


# (check, whether a {low, high} range is allowed) per key
_ARCHITECTURE: dict[str, tuple[Check, bool]] = {
    "stages": (_integer(1, MAX_STAGES), True),
    "blocks_per_stage": (_integer(1, MAX_BLOCKS), True),
    "channels": (_integer(1, MAX_CHANNELS), True),
    "conv": (_one_of(CONV_TYPES), False),
    "last_block": (_one_of(tuple(LAST_BLOCKS)), False),
    "dropout": (_number(0, 1, high_open=True), True),
    "pool": (_boolean, False),
    "head": (_one_of(HEAD_TYPES), False),
}
_GROWING: dict[str, tuple[Check, bool]] = {
    "stages": (_integer(1, MAX_STAGES), True),
    "blocks_per_stage": (_integer(1, MAX_BLOCKS), True),
    "width": (_integer(1, MAX_CHANNELS), True),
    "growth": (_number(1, 4), True),
    "max_channels": (_integer(1, MAX_CHANNELS), False),
    "conv": (_one_of(STAGE_CONVS), False),
    "last_block": (_one_of(tuple(LAST_BLOCKS)), False),
    "dropout": (_number(0, 1, high_open=True), True),
    "pool": (_boolean, False),
    "head": (_one_of(HEAD_TYPES), False),
}
_TRAINING: dict[str, tuple[Check, bool]] = {
    "epochs": (_integer(1, MAX_EPOCHS), False),  # a list, not a range: the scheduler needs the maximum
    "batch_size": (_integer(1, MAX_BATCH_SIZE), True),
    "optimizer": (_optimizer, False),
    "lr": (_number(0, MAX_LR, low_open=True), True),
    "weight_decay": (_number(0, 1), True),
    "schedule": (_one_of(SCHEDULES), False),
    "warmup": (_number(0, 1, high_open=True), True),
    "class_balance": (_one_of(CLASS_BALANCES), False),
    "image_size": (_integer(MIN_IMAGE_SIZE, MAX_IMAGE_SIZE), False),  # a list: the runner loads the data at each size
}
_ENHANCEMENTS: dict[str, tuple[Check, bool]] = {
    name: (_boolean, False) for name in ENHANCEMENTS
} | {"label_smoothing": (_number(0, 1, high_open=True), True), "mixup": (_number(0), True)}
_AUGMENTATIONS: dict[str, tuple[Check, bool]] = {name: (_boolean, False) for name in AUGMENTATIONS}
_TOP_KEYS = ("study", "seed_presets", "seed_nearest", "objectives", "latency", "constraints", "sampler", "budget", "data",
             "architecture", "training", "enhancements", "augmentations")


# ---------------------------------------------------------------------------
# Reading a document


class _Reader:
    """Validates one document; every error names ``source`` and the key path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> NoReturn:
        raise SpaceError(f"{self.source}: {path}: {message}" if path else f"{self.source}: {message}")

    @staticmethod
    def join(path: str, key: Any) -> str:
        key = _key_text(key)
        return f"{path}.{key}" if path else key

    def check(self, value: Any, path: str, check: Check) -> Any:
        try:
            return check(value)
        except ValueError as e:
            self.fail(path, str(e))

    def mapping(self, raw: Any, path: str, known: tuple[str, ...] | dict) -> dict:
        known = tuple(known)
        if not isinstance(raw, dict):
            self.fail(path, f"must be a mapping with keys {', '.join(known)}, {_got(raw)}")
        for key in raw:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.fail(self.join(path, key), f"unknown key (known keys: {', '.join(known)}){hint}")
        return raw

    def section(self, top: dict, name: str, known: tuple[str, ...] | dict) -> dict:
        raw = top.get(name)
        return self.mapping({} if raw is None else raw, name, known)  # an empty section is no section

    def get(self, section: dict, path: str, key: str, check: Check, default: Any) -> Any:
        return self.check(section[key], self.join(path, key), check) if key in section else default

    def param(self, raw: Any, path: str, check: Check, ranges: bool) -> Param:
        if isinstance(raw, list):
            if not raw:
                self.fail(path, "an empty list has nothing to choose from; give at least one choice")
            choices: list = []
            for i, value in enumerate(raw):
                value = self.check(value, f"{path}[{i}]", check)
                if value in choices:
                    self.fail(f"{path}[{i}]", f"choices must be distinct, got {value!r} twice")
                choices.append(value)
            return Choice(path, tuple(choices))
        if isinstance(raw, dict):
            if not ranges:
                self.fail(path, f"must be a value or a list of choices, not a range, {_got(raw)}")
            return self.range(raw, path, check)
        return Fixed(path, self.check(raw, path, check))

    def range(self, raw: dict, path: str, check: Check) -> Range:
        self.mapping(raw, path, ("low", "high", "log", "step"))
        missing = [key for key in ("low", "high") if key not in raw]
        if missing:
            self.fail(path, f"a range needs low and high, missing {', '.join(missing)}")
        low = self.check(raw["low"], f"{path}.low", check)
        high = self.check(raw["high"], f"{path}.high", check)
        is_int = isinstance(low, int)
        log = self.get(raw, path, "log", _boolean, False)
        step = self.get(raw, path, "step", _integer(1) if is_int else _number(0, low_open=True), None)
        if low > high:
            self.fail(path, f"low must be <= high, got low={low!r}, high={high!r}")
        if log and low <= 0:
            self.fail(path, f"a log range needs low > 0, got low={low!r}")
        if log and step is not None:
            self.fail(path, f"log and step cannot be used together, got log=true, step={step!r}")
        if step is not None and (high - low) / step > MAX_GRID_POINTS:
            self.fail(path, f"step is too fine: (high - low) / step must be at most {MAX_GRID_POINTS} points, "
                            f"got low={low!r}, high={high!r}, step={step!r}")
        if step is not None and not _on_grid(high, low, step):
            self.fail(path, f"high - low must be a multiple of step, got low={low!r}, high={high!r}, step={step!r}")
        return Range(path, low, high, log, step)

    def params(self, top: dict, name: str, table: dict[str, tuple[Check, bool]]) -> dict[str, Param]:
        section = self.section(top, name, table)
        return {key: self.param(section[key], f"{name}.{key}", check, ranges)
                for key, (check, ranges) in table.items() if key in section}


def _objectives(r: _Reader, top: dict) -> tuple[str, int, str]:
    """Check the objectives section; return the accuracy objective's metric, seeds and seeds_for."""
    section = r.section(top, "objectives", OBJECTIVES)
    if not section:
        return DEFAULT_METRIC, 1, SEEDS_FOR[0]
    metric, seeds, seeds_for = DEFAULT_METRIC, 1, SEEDS_FOR[0]
    for name, direction in OBJECTIVES.items():
        if name not in section:
            r.fail("objectives", f"must list all of {', '.join(OBJECTIVES)}, missing {name}")
        value = section[name]
        if name == "accuracy" and isinstance(value, dict):
            spec = r.mapping(value, "objectives.accuracy", ("metric", "direction", "seeds", "seeds_for"))
            metric = r.get(spec, "objectives.accuracy", "metric", _one_of(METRICS), DEFAULT_METRIC)
            seeds = r.get(spec, "objectives.accuracy", "seeds", _integer(1, MAX_SEEDS), 1)
            seeds_for = r.get(spec, "objectives.accuracy", "seeds_for", _one_of(SEEDS_FOR), SEEDS_FOR[0])
            if seeds_for != SEEDS_FOR[0] and seeds == 1:
                r.fail("objectives.accuracy.seeds_for", f"{seeds_for!r} retrains with the extra seeds, so it "
                       f"needs seeds of 2 or more (seeds is 1)")
            value = spec.get("direction", direction)
            name = "accuracy.direction" if "direction" in spec else name
        if value != direction:
            r.fail(f"objectives.{name}", f"must be {direction!r}, {_got(value)}")
    return metric, seeds, seeds_for


def _architecture(r: _Reader, top: dict) -> ArchitectureSpace | GrowingArchitecture:
    """The per-block form (``channels``: each block its own) or the growing form (``width``
    and ``growth``: stage widths that never shrink); a section mixes neither."""
    raw = top["architecture"]
    growing = isinstance(raw, dict) and "width" in raw
    table = _GROWING if growing else _ARCHITECTURE
    params = r.params(top, "architecture", table)
    optional = ("max_channels",)
    for key in table:
        if key not in params and key not in optional:
            form = "growing form (width, growth)" if growing else "per-block form (channels)"
            r.fail(f"architecture.{key}", f"required key is missing (the {form} needs every key of "
                                          f"{', '.join(k for k in table if k not in optional)})")
    if not growing:
        return ArchitectureSpace(**params)
    max_channels = params.pop("max_channels", None)
    if max_channels is not None and not isinstance(max_channels, Fixed):
        r.fail("architecture.max_channels", "must be one integer, not a choice")
    extra = {"max_channels": max_channels.value} if max_channels is not None else {}
    arch = GrowingArchitecture(**params, **extra)
    if _largest(arch.width) > arch.max_channels:
        r.fail("architecture.width", f"no stage may be wider than max_channels ({arch.max_channels}), but the "
                                     f"first stage's width can be {_largest(arch.width)}")
    return arch


def _smallest(param: Param) -> Any:
    return param.low if isinstance(param, Range) else min(param.values())


def _largest(param: Param) -> Any:
    return param.high if isinstance(param, Range) else max(param.values())


def _some_point_builds(r: _Reader, arch: ArchitectureSpace | GrowingArchitecture, image_size: int) -> None:
    """Refuse a space in which no point keeps a feature map, which a run would otherwise
    learn only by sampling invalid points until it gives up. The point that keeps the most
    pixels is exact to find: the fewest stages, each ending in a plain or dilated block and
    without a pool where the space allows, at ``image_size`` (the largest). (The growing form never
    downsamples a map away, by construction.)"""
    if isinstance(arch, GrowingArchitecture):
        return
    stride = min(LAST_BLOCKS[kind][0] for kind in arch.last_block.values())
    pools = False not in arch.pool.values()
    side = image_size
    stages = _smallest(arch.stages)
    for _ in range(stages):
        side = (side - 1) // stride + 1
        side //= 2 if pools else 1
    if side < 1:
        strided = "a stride-2 last block and " if stride == 2 else ""
        r.fail("architecture", f"no point of this space can be built: the one that downsamples least, {stages} "
                               f"stage(s) each with {strided}the 2x2 max-pool that pool: true requires, leaves "
                               f"no feature map at image_size {image_size}; allow pool: false, fewer stages or a "
                               f"larger image size")


def _sampler(r: _Reader, top: dict) -> SamplerConfig:
    section = r.section(top, "sampler", ("name", "seed", "population_size"))
    name = r.get(section, "sampler", "name", _one_of(SAMPLERS), "tpe")
    if name != "nsga2" and "population_size" in section:
        r.fail("sampler.population_size", f"only the nsga2 sampler has a population, got sampler {name!r}")
    return SamplerConfig(
        name=name,
        seed=r.get(section, "sampler", "seed", _optional(_integer(0, MAX_SEED)), None),
        population_size=r.get(section, "sampler", "population_size", _integer(2, MAX_POPULATION),
                              DEFAULT_POPULATION if name == "nsga2" else None),
    )


def _latency(r: _Reader, top: dict) -> str:
    section = r.section(top, "latency", ("runtime",))
    return r.get(section, "latency", "runtime", _one_of(RUNTIMES), DEFAULT_RUNTIME)


def _budget(r: _Reader, top: dict) -> Budget:
    if "budget" not in top:
        return Budget()
    section = r.section(top, "budget", ("trials", "timeout", "early_stopping"))
    budget = Budget(trials=r.get(section, "budget", "trials", _optional(_integer(1)), None),
                    timeout_s=r.get(section, "budget", "timeout", _optional(_duration), None),
                    early_stopping=r.get(section, "budget", "early_stopping", _one_of(EARLY_STOPPING), "preview"))
    if budget.trials is None and budget.timeout_s is None:
        r.fail("budget", "needs trials, timeout or both, got neither")
    return budget


def _constraints(r: _Reader, top: dict) -> tuple[Limits, RelativeLimit | None, str | None]:
    """The limits, the relative latency limit when max_latency_ms is written as one (then
    the limits' max_latency_ms is None until the run resolves it), and the accuracy floor
    when min_accuracy is written as ``presets`` (then the limits' min_accuracy is None)."""
    section = r.section(top, "constraints", ("max_latency_ms", "max_params", "min_accuracy"))
    floor = None
    if isinstance(section.get("min_accuracy"), str) and section["min_accuracy"] != ACCURACY_FLOOR:
        r.fail("constraints.min_accuracy", f"must be a number in (0, 1] or {ACCURACY_FLOOR} (the least "
                                           f"accurate preset's accuracy), {_got(section['min_accuracy'])}")
    if section.get("min_accuracy") == ACCURACY_FLOOR:
        if not r.get(top, "", "seed_presets", _boolean, True):
            r.fail("constraints.min_accuracy", f"{ACCURACY_FLOOR} needs the presets in the study (seed_presets: "
                                               f"true), or write a number in (0, 1]")
        floor = ACCURACY_FLOOR
        section = {k: v for k, v in section.items() if k != "min_accuracy"}
    positive = _optional(_number(0, low_open=True))
    relative = None
    latency = section.get("max_latency_ms")
    if isinstance(latency, dict):
        path = "constraints.max_latency_ms"
        spec = r.mapping(latency, path, ("relative_to", "factor"))
        if "relative_to" not in spec:
            r.fail(path, "a relative limit needs relative_to (one of the paper's networks)")
        relative = RelativeLimit(r.get(spec, path, "relative_to", _one_of(tuple(PRESETS)), None),
                                 r.get(spec, path, "factor", _number(0, low_open=True), 1.0))
        section = {k: v for k, v in section.items() if k != "max_latency_ms"}
    limits = Limits(
        max_latency_ms=r.get(section, "constraints", "max_latency_ms", positive, None),
        max_params=r.get(section, "constraints", "max_params", positive, None),
        min_accuracy=r.get(section, "constraints", "min_accuracy", _optional(_number(0, 1, low_open=True)), None),
    )
    return limits, relative, floor


def _data(r: _Reader, top: dict) -> DataSettings:
    checks = {
        "source": _text,
        "channels": _channels,
        "test_fraction": _number(0, 1, low_open=True, high_open=True),
        "val_fraction": _number(0, 1, low_open=True, high_open=True),
        "split_seed": _integer(0, MAX_SEED),
        "cache_dir": _optional(_text),
        "resize": _one_of(RESIZES),
    }
    section = r.section(top, "data", checks)
    return DataSettings(**{key: r.check(section[key], f"data.{key}", check)
                           for key, check in checks.items() if key in section})


def _parse(data: Any, source: str, path: str | None) -> SearchSpace:
    r = _Reader(source)
    if data is None:
        r.fail("", "the document is empty; a search space needs at least an architecture section")
    top = r.mapping(data, "", _TOP_KEYS)
    if "architecture" not in top:
        r.fail("architecture", "required section is missing (see spaces/paper.yaml)")
    architecture = _architecture(r, top)
    study = r.get(top, "", "study", _text, Path(path).stem if path else "castsearch")
    if not _STUDY_NAME.fullmatch(study):
        origin = "" if "study" in top else " (taken from the file name; set study: to choose one)"
        r.fail("study", f"a study name must match [A-Za-z0-9_.-]+, {_got(study)}{origin}")
    metric, seeds, seeds_for = _objectives(r, top)
    section = r.section(top, "training", (*_TRAINING, "recipe"))
    recipe = r.get(section, "training", "recipe", _one_of(tuple(RECIPES)), DEFAULT_RECIPE)
    base = TrainRecipe.named(recipe)
    training = {key: Fixed(f"training.{key}", getattr(base, key)) for key in _TRAINING}
    training |= r.params({"training": {k: v for k, v in section.items() if k != "recipe"}}, "training", _TRAINING)
    enhancements = {name: Fixed(f"enhancements.{name}", value) for name, value in _base_switches(base).items()}
    enhancements |= r.params(top, "enhancements", _ENHANCEMENTS)
    augmentations = {name: Fixed(f"augmentations.{name}", name in base.augmentations) for name in AUGMENTATIONS}
    augmentations |= r.params(top, "augmentations", _AUGMENTATIONS)
    _some_point_builds(r, architecture, _largest(training["image_size"]))
    constraints, relative_latency, accuracy_floor = _constraints(r, top)
    seed_nearest = r.get(top, "", "seed_nearest", _boolean, False)
    if seed_nearest and not isinstance(architecture, GrowingArchitecture):
        r.fail("seed_nearest", "needs the growing form of architecture (width, growth); the per-block form "
                               "expresses the presets themselves, which seed_presets queues")
    return SearchSpace(
        path=path,
        study=study,
        seed_presets=r.get(top, "", "seed_presets", _boolean, True),
        constraints=constraints,
        sampler=_sampler(r, top),
        budget=_budget(r, top),
        data=_data(r, top),
        architecture=architecture,
        training=training,
        enhancements=enhancements,
        augmentations=augmentations,
        recipe=recipe,
        metric=metric,
        seeds=seeds,
        seeds_for=seeds_for,
        latency_runtime=_latency(r, top),
        relative_latency=relative_latency,
        accuracy_floor=accuracy_floor,
        seed_nearest=seed_nearest,
    )


def _base_switches(recipe: TrainRecipe) -> dict[str, Any]:
    """The enhancement values of ``recipe`` as a space writes them: a bool per switch, the
    alpha (0 = off) for label_smoothing and mixup."""
    return {name: (getattr(recipe, ALPHA_FIELDS[name]) if name in recipe.enhancements else 0.0)
            if name in ALPHA_FIELDS else name in recipe.enhancements for name in ENHANCEMENTS}


# ---------------------------------------------------------------------------
# Reading the file


class _Refused(Exception):
    """What :class:`_SpaceLoader` refuses, at ``path`` (key path, "" for the document)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(reason)
        self.path, self.reason = path, reason


class _SpaceLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader (no python tags, so no code runs) that also refuses what
    safe_load lets through: nesting deeper than MAX_DEPTH (which would end in a RecursionError),
    counted through aliases, and an alias inside the node it names (an endless value); more
    than MAX_NODES nodes (slow to read, and no search space); a key written twice in one
    mapping (safe_load keeps the last silently); a scalar Python cannot make (a date like
    2024-13-45, an integer of thousands of digits). It knows the key path of the node it
    composes, so these errors name it."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.labels: list[int | str | None] = []  # the key path of the node being composed, a label a level
        self.heights: dict[yaml.Node, int] = {}  # levels of nesting of each composed node
        self.nodes = 0

    def path(self) -> str:
        path = ""
        for label in self.labels:  # None: the document, or a key (its mapping's path names it)
            if isinstance(label, int):
                path += f"[{label}]"
            elif label is not None:
                path = _Reader.join(path, label)
        return path

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        label = index.value if isinstance(index, yaml.ScalarNode) else index  # a list item's index or a value's key
        self.labels.append(label if isinstance(label, (int, str)) else None)
        try:
            return self._compose(parent, index)
        finally:
            self.labels.pop()

    def _compose(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        at = _at(self.peek_event().start_mark)
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Refused(self.path(), f"more than {MAX_NODES} nodes (keys, values and list items; at {at}); "
                                        f"a search space has a few hundred")
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            self._check_alias(node, at)
            return node
        if len(self.labels) > MAX_DEPTH:
            raise _Refused(self.path(), f"nested deeper than {MAX_DEPTH} levels (at {at})")
        node = super().compose_node(parent, index)
        self.heights[node] = 1 + max((self.heights[child] for child in _children(node)), default=0)
        if isinstance(node, yaml.MappingNode):
            self._refuse_duplicate_keys(node)
        return node

    def _check_alias(self, node: yaml.Node, at: str) -> None:
        """An alias brings in a node composed before, with all its levels of nesting."""
        if node not in self.heights:  # still being composed: the alias is inside it
            raise _Refused(self.path(), f"the alias at {at} is inside the node it names, which makes an "
                                        f"endless value")
        if len(self.labels) - 1 + self.heights[node] > MAX_DEPTH:
            raise _Refused(self.path(), f"nested deeper than {MAX_DEPTH} levels through the alias at {at}")

    def _refuse_duplicate_keys(self, node: yaml.MappingNode) -> None:
        first: dict[Any, str] = {}  # where each key was first written
        for key_node, _ in node.value:
            if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag.startswith("tag:yaml.org,2002:")
                    and key_node.tag not in _SPECIAL_KEYS):
                continue  # a merge (<<: *defaults) may restate keys; other keys the constructor checks
            key = self.construct_object(key_node)  # 1, 0x1 and 1.0 are one key
            if key in first:
                raise _Refused(_Reader.join(self.path(), key_node.value),
                               f"the key is written twice, at {first[key]} and at {_at(key_node.start_mark)}; "
                               f"write it once")
            first[key] = _at(key_node.start_mark)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as e:  # e.g. the date 2024-13-45, an int of 5000 digits
            reason = str(e).split("; ")[0]  # not Python's advice on sys.set_int_max_str_digits
            raise _Refused("", f"cannot read the value at {_at(node.start_mark)} ({reprlib.repr(node.value)}): "
                               f"{reason}") from None


_SPECIAL_KEYS = ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value")  # << and =


def _at(mark: yaml.Mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    return node.value if isinstance(node, yaml.SequenceNode) else []


def _read_text(path: str | Path, source: str) -> str:
    """The file's text; a file over MAX_FILE_BYTES is refused before it is parsed."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)  # no more: a larger file is refused unread
            size = max(len(raw), os.fstat(f.fileno()).st_size)
        text = raw.decode("utf-8") if size <= MAX_FILE_BYTES else None
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise SpaceError(f"{source}: cannot read the search-space file: {reason}") from None
    if text is None:
        raise SpaceError(f"{source}: the file is {size} bytes; a search-space file may have at most "
                         f"{MAX_FILE_BYTES} (1 MiB)")
    return text


def _read_yaml(text: str, source: str) -> Any:
    """The document in ``text``, read with :class:`_SpaceLoader`; every error is a SpaceError."""
    loader = None
    try:
        loader = _SpaceLoader(text)  # reading starts here: it may refuse a character
        return loader.get_single_data()
    except _Refused as e:
        _Reader(source).fail(e.path, e.reason)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpaceError(f"{source}: YAML syntax error{where}: {problem}") from None
    finally:
        if loader is not None:
            loader.dispose()


def space_from_dict(data: dict, source: str = "<dict>") -> SearchSpace:
    """Validate an already-parsed document; errors name ``source``."""
    return _parse(data, source, None)


def load_space(path: str | Path, overrides: dict[tuple[str, ...], Any] | None = None) -> SearchSpace:
    """Read and validate a search-space YAML file.

    ``overrides`` replace values before validation, keyed by their path, e.g.
    ``{("budget", "trials"): 10, ("data", "source"): "images/"}`` (the CLI's flags), so a
    bad override is reported like a bad value in the file.
    """
    source = str(path)
    data = _read_yaml(_read_text(path, source), source)
    for keys, value in (overrides or {}).items():
        node = data
        for key in keys[:-1]:
            if isinstance(node, dict) and node.get(key) is None:
                node[key] = {}  # an absent or empty section
            node = node[key] if isinstance(node, dict) else None
        if isinstance(node, dict):  # otherwise the validation reports what is wrong at that path
            node[keys[-1]] = value
    return _parse(data, source, source)


# ---------------------------------------------------------------------------
# The walk: params <-> Candidate

Pick = Callable[[str, Param], Any]


def _grown(arch: GrowingArchitecture, width: int, growth: float) -> int:
    """A stage's channels after one of ``width``: times ``growth``, a multiple of 8, never
    narrower, at most ``max_channels``."""
    return min(arch.max_channels, max(width, 8 * round(width * growth / 8)))


def _walk_growing(arch: GrowingArchitecture, pick: Pick, image_size: int) -> ArchSpec:
    """Stage widths from ``width`` times each stage's ``growth`` (rounded to a multiple of 8,
    at most ``max_channels``); a stage's last block may stride only while the map is at least
    4 px and its pool exists only while the map is at least 2 px, so every point builds."""
    layers: list[LayerSpec] = []
    side = image_size
    width = pick("width", arch.width)
    for i in range(1, pick("stages", arch.stages) + 1):
        if i > 1:
            width = _grown(arch, width, pick(f"s{i}_growth", arch.growth))
        conv = pick(f"s{i}_conv", arch.conv)
        blocks = pick(f"s{i}_blocks", arch.blocks_per_stage)
        last = pick(f"s{i}_last", arch.last_block) if side >= 4 else "plain"
        stride, dilation = LAST_BLOCKS[last]
        side = (side - 1) // stride + 1
        dropout = pick(f"s{i}_dropout", arch.dropout)
        pool = "max" if side >= 2 and pick(f"s{i}_pool", arch.pool) else None
        side //= 2 if pool else 1
        inner, closing = ("dwsep", "conv3x3") if conv == MIXED else (conv, conv)
        layers += [LayerSpec(inner, width) for _ in range(blocks - 1)]
        layers.append(LayerSpec(closing, width, stride=stride, dilation=dilation, dropout=dropout, pool=pool))
    return ArchSpec(tuple(layers), head=pick("head", arch.head))


def _walk_arch(arch: ArchitectureSpace, pick: Pick) -> ArchSpec:
    layers: list[LayerSpec] = []
    for i in range(1, pick("stages", arch.stages) + 1):
        blocks = [(pick(f"s{i}_b{j}_conv", arch.conv), pick(f"s{i}_b{j}_channels", arch.channels))
                  for j in range(1, pick(f"s{i}_blocks", arch.blocks_per_stage) + 1)]
        stride, dilation = LAST_BLOCKS[pick(f"s{i}_last", arch.last_block)]
        dropout = pick(f"s{i}_dropout", arch.dropout)
        pool = "max" if pick(f"s{i}_pool", arch.pool) else None
        layers += [LayerSpec(conv, channels) for conv, channels in blocks[:-1]]
        conv, channels = blocks[-1]
        layers.append(LayerSpec(conv, channels, stride=stride, dilation=dilation, dropout=dropout, pool=pool))
    return ArchSpec(tuple(layers), head=pick("head", arch.head))


def _recipe_params(space: SearchSpace) -> dict[str, Param]:
    """Every recipe parameter by its Optuna name."""
    augmentations = {f"aug_{name}": param for name, param in space.augmentations.items()}
    return {**space.training, **space.enhancements, **augmentations}


def _walk_recipe(space: SearchSpace, pick: Pick) -> TrainRecipe:
    v = {name: pick(name, param) for name, param in _recipe_params(space).items()}
    return TrainRecipe(
        **{key: v[key] for key in space.training},
        channels=space.input_channels,
        enhancements=tuple(name for name in ENHANCEMENTS if v[name]),
        augmentations=tuple(name for name in AUGMENTATIONS if v[f"aug_{name}"]),
        seed=0 if space.sampler.seed is None else space.sampler.seed,
        **{field: v[name] for name, field in ALPHA_FIELDS.items() if v[name]},
    )


def _walk(space: SearchSpace, pick: Pick, arch: ArchSpec | None = None) -> Candidate:
    if arch is None and isinstance(space.architecture, ArchitectureSpace):
        arch = _walk_arch(space.architecture, pick)  # the image size is checked below
    recipe = _walk_recipe(space, pick)  # the growing form's downsampling plan depends on its image size
    candidate = Candidate(arch or _walk_growing(space.architecture, pick, recipe.image_size), recipe)
    size = candidate.recipe.image_size
    if feature_size(candidate.arch, size) < 1:
        raise InvalidCandidate(
            f"{candidate.arch.code()} downsamples by {candidate.arch.downsampling}x, "
            f"which leaves no feature map at image_size {size}"
        )
    return candidate


def _outside(space: SearchSpace, param: Param) -> str:
    return f"{space.path or '<dict>'}: {param.key} is {param.describe()}"


def suggest(space: SearchSpace, trial: optuna.Trial, arch: ArchSpec | None = None) -> Candidate:
    """Sample a candidate (define-by-run); raises InvalidCandidate for a point that cannot be
    built. With ``arch`` (a fixed-architecture trial: a preset the space cannot express) only
    the recipe is sampled."""
    return _walk(space, lambda name, param: param.suggest(trial, name), arch)


def decode(space: SearchSpace, params: dict, arch: ArchSpec | None = None) -> Candidate:
    """The candidate that ``params`` (a trial's params) describe; the same walk as :func:`suggest`."""

    def pick(name: str, param: Param) -> Any:
        if isinstance(param, Fixed):
            return param.value
        if name not in params:
            raise ValueError(f"params lack {name!r}, which this space searches ({_outside(space, param)})")
        if not param.admits(params[name]):
            raise ValueError(f"param {name}={params[name]!r} is not in this space ({_outside(space, param)})")
        return params[name]

    return _walk(space, pick, arch)


def _stages(arch: ArchSpec) -> list[list[LayerSpec]]:
    """Split the layers into stages: a stage ends at a layer with dropout or a pool, and at the end."""
    stages: list[list[LayerSpec]] = [[]]
    for layer in arch.layers:
        stages[-1].append(layer)
        if layer.dropout or layer.pool:
            stages.append([])
    return [stage for stage in stages if stage]


def _arch_values(arch: ArchSpec) -> dict[str, Any]:
    """The value of every architecture parameter for ``arch``; ValueError if no point can have it."""
    stages = _stages(arch)
    values: dict[str, Any] = {"stages": len(stages), "head": arch.head}
    for i, blocks in enumerate(stages, 1):
        values[f"s{i}_blocks"] = len(blocks)
        for j, layer in enumerate(blocks, 1):
            if layer.squeeze_excite or layer.blurpool:
                raise ValueError(f"layer {layer.code()} sets squeeze-excite or blurpool, which are recipe "
                                 "enhancements here, not part of the architecture")
            if layer.pool == "avg":
                raise ValueError(f"layer {layer.code()} average-pools; the space's pool is a 2x2 max-pool")
            if j < len(blocks) and (layer.stride, layer.dilation) != (1, 1):
                raise ValueError(f"layer {layer.code()} has a stride or dilation but is not the last block "
                                 f"of stage {i}; only a stage's last block may")
            values[f"s{i}_b{j}_conv"] = layer.conv
            values[f"s{i}_b{j}_channels"] = layer.out_channels
        last = blocks[-1]
        kinds = [kind for kind, sd in LAST_BLOCKS.items() if sd == (last.stride, last.dilation)]
        if not kinds:
            raise ValueError(f"layer {last.code()} has stride {last.stride} and dilation {last.dilation}; "
                             f"a stage's last block is one of {', '.join(LAST_BLOCKS)}")
        values[f"s{i}_last"] = kinds[0]
        values[f"s{i}_dropout"] = last.dropout
        values[f"s{i}_pool"] = last.pool == "max"
    return values


def encode(space: SearchSpace, arch: ArchSpec, **recipe_values: Any) -> dict:
    """The Optuna params that decode to ``arch`` (its name aside) and the given recipe values
    (by parameter name: ``lr=1e-3``, ``blurpool=False``, ``aug_hflip=False``). Recipe
    parameters not given are left to the sampler. Raises ValueError saying why when
    ``arch`` or a value is not in this space."""
    label = arch.name or arch.code()
    if isinstance(space.architecture, GrowingArchitecture):
        raise ValueError(f"{label} is not in this space: the growing form (width, growth) has one width "
                         f"and one conv type per stage")
    try:
        wanted = _arch_values(arch)
    except ValueError as e:
        raise ValueError(f"{label} is not in this space: {e}") from None
    params: dict[str, Any] = {}
    admit = _admitter(space, label, params)
    _walk_arch(space.architecture, lambda name, param: admit(name, param, wanted[name]))
    _admit_recipe(space, admit, recipe_values)
    return params


def _admitter(space: SearchSpace, label: str, params: dict) -> Callable[[str, Param, Any], Any]:
    """A pick for the walk that checks each value against the space and records the searched
    ones in ``params``."""

    def admit(name: str, param: Param, value: Any) -> Any:
        if not param.admits(value):
            raise ValueError(f"{label} is not in this space: it needs {name}={value!r}, but {_outside(space, param)}")
        if not isinstance(param, Fixed):
            params[name] = value
        return value

    return admit


def _admit_recipe(space: SearchSpace, admit: Callable[[str, Param, Any], Any], values: dict[str, Any]) -> None:
    recipe_params = _recipe_params(space)
    for name, value in values.items():
        if name not in recipe_params:
            raise ValueError(f"unknown recipe parameter {name!r}; known: {', '.join(recipe_params)}")
        admit(name, recipe_params[name], value)


def _closest(param: Param, target: float, *, log_scale: bool = False) -> Any:
    """The value of a numeric ``param`` nearest ``target`` (by ratio with ``log_scale``)."""
    if isinstance(param, Range):
        value = min(max(target, param.low), param.high)
        if param.step is not None:
            value = param.low + round((value - param.low) / param.step) * param.step
            value = min(value, param.high)
        return round(value) if param.is_int else value
    distance = (lambda v: abs(math.log(v / target))) if log_scale else (lambda v: abs(v - target))
    return min(param.values(), key=distance)


def _first_admitted(param: Fixed | Choice, wanted: list) -> Any:
    """The first of ``wanted`` the (non-range) ``param`` admits, else its first value."""
    return next((value for value in wanted if param.admits(value)), param.values()[0])


def _stage_conv(blocks: list[LayerSpec], param: Param) -> str:
    """A stage's conv choice: its blocks' one type, mixed for depthwise blocks closed by a 3x3
    block, else the type most of its blocks have (the first where the space has no such choice)."""
    kinds = [layer.conv for layer in blocks]
    majority = max(CONV_TYPES, key=kinds.count)
    if len(set(kinds)) == 1:
        wanted = kinds[0]
    elif kinds[-1] == "conv3x3" and set(kinds[:-1]) == {"dwsep"}:
        wanted = MIXED
    else:
        wanted = majority
    return _first_admitted(param, [wanted, majority, *STAGE_CONVS])


def _growing_values(arch: GrowingArchitecture, spec: ArchSpec) -> dict[str, Any]:
    """Every growing-form parameter's value for the point nearest ``spec``: its stages (split
    where a block drops out or pools; the last ones merged when it has more than the space
    allows), each stage's block count, majority conv (or mixed), widest block (as the first
    width, then the growth that comes closest), largest dropout, any pool and its last
    block's stride or dilation."""
    stages = _stages(spec)
    most = _largest(arch.stages)
    if len(stages) < _smallest(arch.stages):
        raise ValueError(f"{spec.name or spec.code()} has {len(stages)} stage(s), fewer than the space's "
                         f"{_smallest(arch.stages)}")
    while len(stages) > most:
        stages[-2:] = [stages[-2] + stages[-1]]
    values: dict[str, Any] = {"stages": len(stages), "head": _first_admitted(arch.head, [spec.head])}
    width = 0
    for i, blocks in enumerate(stages, 1):
        target = max(layer.out_channels for layer in blocks)
        if i == 1:
            width = values["width"] = _closest(arch.width, target, log_scale=True)
        else:
            prev = width
            growth = (_closest(arch.growth, target / prev) if isinstance(arch.growth, Range) else
                      min(arch.growth.values(), key=lambda g: abs(math.log(_grown(arch, prev, g) / target))))
            values[f"s{i}_growth"], width = growth, _grown(arch, prev, growth)
        last = blocks[-1]
        kind = next((k for k, sd in LAST_BLOCKS.items() if sd == (last.stride, last.dilation)), "plain")
        values |= {f"s{i}_conv": _stage_conv(blocks, arch.conv),
                   f"s{i}_blocks": _closest(arch.blocks_per_stage, len(blocks)),
                   f"s{i}_last": _first_admitted(arch.last_block, [kind, "stride2" if last.stride > 1 else
                                                                   "dilation2" if last.dilation > 1 else "plain"]),
                   f"s{i}_dropout": _closest(arch.dropout, max(layer.dropout for layer in blocks)),
                   f"s{i}_pool": _first_admitted(arch.pool, [any(layer.pool for layer in blocks)])}
    return values


def nearest(space: SearchSpace, arch: ArchSpec, **recipe_values: Any) -> dict:
    """The params of the growing-form space's point nearest ``arch`` (see
    :func:`_growing_values`), with the given recipe values as :func:`encode` takes them
    (the image size too: the smallest the space allows when not given). The space's own walk
    checks every value, so the point is one it draws and builds; raises ValueError when the
    space is not the growing form or ``arch`` has fewer stages than it allows."""
    label = arch.name or arch.code()
    if not isinstance(space.architecture, GrowingArchitecture):
        raise ValueError(f"{space.path or '<dict>'}: nearest points are defined for the growing form only")
    wanted = _growing_values(space.architecture, arch)
    params: dict[str, Any] = {}
    admit = _admitter(space, label, params)
    size = recipe_values.get("image_size", min(space.image_sizes))  # the downsampling plan depends on it
    _admit_recipe(space, admit, {"image_size": size, **recipe_values})
    _walk_growing(space.architecture, lambda name, param: admit(name, param, wanted[name]), size)
    return params


@dataclass(frozen=True)
class PresetTrial:
    """How a paper preset joins a study: as a point of the space (``arch`` None: ``params``
    decode to it) or, where the space cannot express it, as a fixed-architecture trial
    (``params`` hold only the recipe's searched values, ``arch`` is the network)."""

    params: dict
    arch: ArchSpec | None = None


def _preset_recipe(space: SearchSpace) -> dict[str, Any]:
    """The space's named recipe as parameter values, where the space admits them."""
    recipe_params = _recipe_params(space)
    base = TrainRecipe.named(space.recipe)
    values = {key: getattr(base, key) for key in _TRAINING if key != "epochs"} | _base_switches(base)
    values |= {f"aug_{name}": name in base.augmentations for name in AUGMENTATIONS}
    return {name: value for name, value in values.items() if recipe_params[name].admits(value)}


def preset_trials(space: SearchSpace) -> dict[str, PresetTrial]:
    """Every castmodels preset, trained with the space's named recipe (``training.recipe``)
    where the space allows it, so the presets are trained as well as the recipe trains any
    candidate: as a point of the space where it can express the preset, otherwise as a
    fixed-architecture trial."""
    recipe = _preset_recipe(space)
    searched = {name: value for name, value in recipe.items() if not isinstance(_recipe_params(space)[name], Fixed)}
    out = {}
    for name, arch in PRESETS.items():
        try:
            out[name] = PresetTrial(encode(space, arch, **recipe))
        except ValueError as e:
            log.debug("preset %s joins as a fixed-architecture trial: %s", name, e)
            out[name] = PresetTrial(dict(searched), arch)
    return out


def nearest_trials(space: SearchSpace) -> dict[str, dict]:
    """Params of the point nearest each preset the space cannot express (:func:`nearest`),
    with the presets' recipe: where a search can start from the paper's designs as points it
    learns from. Presets whose nearest points coincide keep the first name (in PRESETS'
    order); a preset without one (too few stages) is left out with a warning."""
    recipe = _preset_recipe(space)
    out: dict[str, dict] = {}
    for name, p in preset_trials(space).items():
        if p.arch is None:
            continue
        try:
            params = nearest(space, p.arch, **recipe)
        except ValueError as e:
            log.warning("preset %s has no nearest point in this space: %s", name, e)
            continue
        if params not in out.values():
            out[name] = params
    return out


def preset_params(space: SearchSpace) -> dict[str, dict]:
    """Params of each castmodels preset this space can express (see :func:`preset_trials`);
    the others are left out with a warning."""
    recipe = _preset_recipe(space)
    out = {}
    for name, arch in PRESETS.items():
        try:
            out[name] = encode(space, arch, **recipe)
        except ValueError as e:
            log.warning("preset %s is not a point of this space: %s", name, e)
    return out

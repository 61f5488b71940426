"""A parsed search-space document validated into a :class:`~search.space.schema.SearchSpace`,
section by section (objectives, architecture, training, enhancements, augmentations,
constraints, sampler, budget, resources, data, latency): the check of each key and what an absent key
defaults to."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from castmodels import CONV_TYPES, HEAD_TYPES, PRESETS
from search.data.rules import MIN_IMAGE_SIZE, RESIZES
from search.space.checks import (
    MAX_BATCH_SIZE,
    MAX_BLOCKS,
    MAX_CHANNELS,
    MAX_EPOCHS,
    MAX_IMAGE_SIZE,
    MAX_LR,
    MAX_POPULATION,
    MAX_SEED,
    MAX_SEEDS,
    MAX_STAGES,
    Check,
    _boolean,
    _channels,
    _duration,
    _got,
    _integer,
    _number,
    _one_of,
    _optimizer,
    _optional,
    _text,
)
from search.space.reader import _Reader
from search.space.schema import (
    ACCURACY_FLOOR,
    ALPHA_FIELDS,
    DEFAULT_POPULATION,
    DEFAULT_RECIPE,
    DEFAULT_TIMEOUT_S,
    EARLY_STOPPING,
    LAST_BLOCKS,
    OBJECTIVES,
    SAMPLERS,
    SEEDS_FOR,
    STAGE_CONVS,
    ArchitectureSpace,
    Budget,
    DataSettings,
    GrowingArchitecture,
    SamplerConfig,
    SearchSpace,
)
from search.space.values import Fixed, _largest, _smallest
from search.study.record import (
    DEFAULT_METRIC,
    DEFAULT_RUNTIME,
    METRICS,
    RUNTIMES,
    Limits,
    RelativeLimit,
)
from search.training.recipe import (
    AUGMENTATIONS,
    CLASS_BALANCES,
    ENHANCEMENTS,
    PRECISIONS,
    RECIPES,
    SCHEDULES,
    TrainRecipe,
)

_STUDY_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def valid_study_name(name: str) -> bool:
    """A name that is one plain path component: artifacts and the database are named after it,
    so ``.`` and ``..`` (the folder itself, its parent) are refused."""
    return bool(_STUDY_NAME.fullmatch(name)) and name not in (".", "..")

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
    "precision": (_one_of(PRECISIONS), False),
    "image_size": (_integer(MIN_IMAGE_SIZE, MAX_IMAGE_SIZE), False),  # a list: the runner loads the data at each size
}
_ENHANCEMENTS: dict[str, tuple[Check, bool]] = {
    name: (_boolean, False) for name in ENHANCEMENTS
} | {"label_smoothing": (_number(0, 1, high_open=True), True), "mixup": (_number(0), True)}
_AUGMENTATIONS: dict[str, tuple[Check, bool]] = {name: (_boolean, False) for name in AUGMENTATIONS}
_TOP_KEYS = ("study", "seed_presets", "seed_nearest", "seed_from", "objectives", "latency", "constraints", "sampler", "budget",
             "resources", "data",
             "architecture", "training", "enhancements", "augmentations")


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


def _seed_from(r: _Reader, top: dict, study: str) -> tuple[str, ...]:
    """Check ``seed_from``: a list of distinct study names other than this space's own study."""
    raw = top.get("seed_from")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        r.fail("seed_from", f"must be a list of study names (earlier studies in the same storage), {_got(raw)}")
    names: list[str] = []
    for i, name in enumerate(raw):
        path = f"seed_from[{i}]"
        name = r.check(name, path, _text)
        if not valid_study_name(name):
            r.fail(path, f"a study name must match [A-Za-z0-9_.-]+ and not be . or .., {_got(name)}")
        if name == study:
            r.fail(path, f"{name!r} is this space's own study; name earlier studies to start from")
        if name in names:
            r.fail(path, f"study names must be distinct, got {name!r} twice")
        names.append(name)
    return tuple(names)


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


def _latency(r: _Reader, top: dict) -> tuple[str, bool]:
    """latency.runtime and latency.retime_front (the front re-timed in a quiet phase at the end)."""
    section = r.section(top, "latency", ("runtime", "retime_front"))
    return (r.get(section, "latency", "runtime", _one_of(RUNTIMES), DEFAULT_RUNTIME),
            r.get(section, "latency", "retime_front", _boolean, True))


def _resources(r: _Reader, top: dict) -> tuple[float, float]:
    """resources.cpus_per_trial and resources.gpus_per_trial: what each trial asks Ray for."""
    section = r.section(top, "resources", ("cpus_per_trial", "gpus_per_trial"))
    return (r.get(section, "resources", "cpus_per_trial", _number(0, low_open=True), 1.0),
            r.get(section, "resources", "gpus_per_trial", _number(0), 0.0))


def _budget(r: _Reader, top: dict) -> Budget:
    if "budget" not in top:
        return Budget()
    section = r.section(top, "budget", ("trials", "timeout", "early_stopping"))
    # neither key written: the default wall time; written as null, each is no limit
    timeout = DEFAULT_TIMEOUT_S if "trials" not in section and "timeout" not in section else None
    budget = Budget(trials=r.get(section, "budget", "trials", _optional(_integer(1)), None),
                    timeout_s=r.get(section, "budget", "timeout", _optional(_duration), timeout),
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
    if not valid_study_name(study):
        origin = "" if "study" in top else " (taken from the file name; set study: to choose one)"
        r.fail("study", f"a study name must match [A-Za-z0-9_.-]+ and not be . or .., {_got(study)}{origin}")
    metric, seeds, seeds_for = _objectives(r, top)
    section = r.section(top, "training", (*_TRAINING, "recipe"))
    recipe = r.get(section, "training", "recipe", _one_of(tuple(RECIPES)), DEFAULT_RECIPE)
    base = TrainRecipe.for_metric(recipe, metric)
    training = {key: Fixed(f"training.{key}", getattr(base, key)) for key in _TRAINING}
    training |= r.params({"training": {k: v for k, v in section.items() if k != "recipe"}}, "training", _TRAINING)
    enhancements = {name: Fixed(f"enhancements.{name}", value) for name, value in _base_switches(base).items()}
    enhancements |= r.params(top, "enhancements", _ENHANCEMENTS)
    augmentations = {name: Fixed(f"augmentations.{name}", name in base.augmentations) for name in AUGMENTATIONS}
    augmentations |= r.params(top, "augmentations", _AUGMENTATIONS)
    _some_point_builds(r, architecture, _largest(training["image_size"]))
    constraints, relative_latency, accuracy_floor = _constraints(r, top)
    seed_nearest = r.get(top, "", "seed_nearest", _boolean, False)
    runtime, retime_front = _latency(r, top)
    cpus_per_trial, gpus_per_trial = _resources(r, top)
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
        latency_runtime=runtime,
        retime_front=retime_front,
        cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial,
        relative_latency=relative_latency,
        accuracy_floor=accuracy_floor,
        seed_nearest=seed_nearest,
        seed_from=_seed_from(r, top, study),
    )


def _base_switches(recipe: TrainRecipe) -> dict[str, Any]:
    """The enhancement values of ``recipe`` as a space writes them: a bool per switch, the
    alpha (0 = off) for label_smoothing and mixup."""
    return {name: (getattr(recipe, ALPHA_FIELDS[name]) if name in recipe.enhancements else 0.0)
            if name in ALPHA_FIELDS else name in recipe.enhancements for name in ENHANCEMENTS}


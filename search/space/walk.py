"""The walk from Optuna parameters to a :class:`~search.space.schema.Candidate`:
:func:`suggest` asks an Optuna trial for each parameter (define-by-run), :func:`decode` reads
them from a stored trial's params; both take one walk, so a stored trial decodes to the
candidate it trained."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from castmodels import ArchSpec, LayerSpec, feature_size
from search.space.schema import (
    ALPHA_FIELDS,
    LAST_BLOCKS,
    MIXED,
    ArchitectureSpace,
    Candidate,
    GrowingArchitecture,
    SearchSpace,
)
from search.space.values import Fixed, InvalidCandidate, Param
from search.training.recipe import AUGMENTATIONS, ENHANCEMENTS, TrainRecipe

if TYPE_CHECKING:
    import optuna

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

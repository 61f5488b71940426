"""The paper's six networks (castmodels' PRESETS) in a study of this space: each as a point
of the space where it can express the preset, otherwise as a fixed-architecture trial
(:func:`preset_trials`), and the growing form's point nearest each preset it cannot express
(:func:`nearest_trials`), all trained with the space's named recipe; and any network as this
space's point (:func:`point_of`), how an earlier study's front joins a warm start."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from castmodels import PRESETS, ArchSpec
from search.space.encoding import encode, nearest
from search.space.schema import GrowingArchitecture, SearchSpace
from search.space.sections import _TRAINING, _base_switches
from search.space.values import Fixed
from search.space.walk import _recipe_params
from search.training.recipe import AUGMENTATIONS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PresetTrial:
    """How a paper preset joins a study: as a point of the space (``arch`` None: ``params``
    decode to it) or, where the space cannot express it, as a fixed-architecture trial
    (``params`` hold only the recipe's searched values, ``arch`` is the network). ``name`` is
    its castmodels name and ``image_size`` the size it trains at."""

    params: dict
    name: str
    image_size: int
    arch: ArchSpec | None = None


def _preset_recipe(space: SearchSpace) -> dict[str, Any]:
    """The space's named recipe as parameter values, where the space admits them."""
    recipe_params = _recipe_params(space)
    base = space.named_recipe
    values = {key: getattr(base, key) for key in _TRAINING if key != "epochs"} | _base_switches(base)
    values |= {f"aug_{name}": name in base.augmentations for name in AUGMENTATIONS}
    return {name: value for name, value in values.items() if recipe_params[name].admits(value)}


def preset_label(name: str, size: int, space: SearchSpace) -> str:
    """How a preset trained at ``size`` px is named in a study: its castmodels name, with the
    size added (``custom-140k-3x3@64px``) when the space searches several image sizes and
    the presets are trained at each."""
    return name if len(space.image_sizes) == 1 else f"{name}@{size}px"


def preset_trials(space: SearchSpace) -> dict[str, PresetTrial]:
    """Every castmodels preset, trained with the space's named recipe (``training.recipe``)
    where the space allows it, so the presets are trained as well as the recipe trains any
    candidate: as a point of the space where it can express the preset, otherwise as a
    fixed-architecture trial. A space that searches several image sizes has every preset
    trained once at each (named by :func:`preset_label`): a network is judged against the
    paper's at its own resolution, since resolution buys accuracy and costs latency."""
    return {preset_label(name, size, space): p for size in space.image_sizes
            for name, p in _presets_at(space, _preset_recipe(space) | {"image_size": size}).items()}


def _presets_at(space: SearchSpace, recipe: dict[str, Any]) -> dict[str, PresetTrial]:
    """:func:`preset_trials` with ``recipe``'s values, by castmodels name."""
    fixed = {name for name, values in _recipe_params(space).items() if isinstance(values, Fixed)}
    searched = {name: value for name, value in recipe.items() if name not in fixed}
    out = {}
    for name, arch in PRESETS.items():
        try:
            out[name] = PresetTrial(encode(space, arch, **recipe), name, recipe["image_size"])
        except ValueError as e:
            log.debug("preset %s joins as a fixed-architecture trial: %s", name, e)
            out[name] = PresetTrial(dict(searched), name, recipe["image_size"], arch)
    return out


def nearest_trials(space: SearchSpace) -> dict[str, dict]:
    """Params of the point nearest each preset the space cannot express (:func:`nearest`),
    with the presets' recipe (at the smallest image size where the space searches several):
    where a search can start from the paper's designs as points it learns from. Presets
    whose nearest points coincide keep the first name (in PRESETS' order); a preset without
    one (too few stages) is left out with a warning."""
    recipe = _preset_recipe(space)
    out: dict[str, dict] = {}
    for name, p in _presets_at(space, recipe).items():
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


def point_of(space: SearchSpace, arch: ArchSpec) -> dict:
    """Params of ``arch`` as a point of this space, trained with the presets' recipe: the
    network itself in the per-block form (:func:`encode`), the nearest point in the growing
    form (:func:`nearest`), as the presets' points are. Raises ValueError saying why when the
    space has no such point."""
    recipe = _preset_recipe(space)
    if isinstance(space.architecture, GrowingArchitecture):
        return nearest(space, arch, **recipe)
    return encode(space, arch, **recipe)


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

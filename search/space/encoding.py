"""The way back from a network to the space: :func:`encode` gives the Optuna params of an
``ArchSpec`` the per-block form expresses exactly, :func:`nearest` those of the growing
form's point nearest any ``ArchSpec``; both check every value with the space's own walk."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from castmodels import CONV_TYPES, ArchSpec, LayerSpec
from search.space.schema import LAST_BLOCKS, MIXED, STAGE_CONVS, GrowingArchitecture, SearchSpace
from search.space.values import Choice, Fixed, Param, Range, _largest, _smallest
from search.space.walk import _grown, _outside, _recipe_params, _walk_arch, _walk_growing


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

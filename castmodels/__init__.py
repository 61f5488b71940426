"""castmodels: everything that is a network in castsearch."""

from castmodels.baselines import (
    BASELINES,
    Baseline,
    BaselineNet,
    baseline_names,
    build_baseline,
    get_baseline,
)
from castmodels.builder import build_model, feature_size
from castmodels.presets import PRESETS, get_preset, preset_names
from castmodels.spec import CONV_TYPES, HEAD_TYPES, ArchSpec, LayerSpec

__all__ = [
    "ArchSpec",
    "BASELINES",
    "Baseline",
    "BaselineNet",
    "LayerSpec",
    "CONV_TYPES",
    "HEAD_TYPES",
    "PRESETS",
    "baseline_names",
    "build_baseline",
    "build_model",
    "feature_size",
    "get_baseline",
    "get_preset",
    "preset_names",
]

"""castmodels: everything that is a network in castsearch."""

from castmodels.builder import build_model, feature_size
from castmodels.presets import PRESETS, get_preset, preset_names
from castmodels.spec import CONV_TYPES, HEAD_TYPES, ArchSpec, LayerSpec

__all__ = [
    "ArchSpec",
    "LayerSpec",
    "CONV_TYPES",
    "HEAD_TYPES",
    "PRESETS",
    "build_model",
    "feature_size",
    "get_preset",
    "preset_names",
]

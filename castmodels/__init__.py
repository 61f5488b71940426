"""castmodels: everything that is a network in castsearch.

Names are imported lazily, so reading specs and presets (``ArchSpec``, ``PRESETS``,
``feature_size``) never pays for torch; building a network does.
"""

from __future__ import annotations

from castmodels.registry import lazy_exports

_EXPORTS = {  # module -> the names it exports
    "castmodels.spec": ("ArchSpec", "LayerSpec", "CONV_TYPES", "HEAD_TYPES", "feature_size"),
    "castmodels.presets": ("PRESETS", "get_preset", "preset_names"),
    "castmodels.builder": ("build_model",),
    "castmodels.baselines": ("BASELINES", "Baseline", "BaselineNet", "baseline_names", "build_baseline", "get_baseline"),
}

__all__ = sorted(name for names in _EXPORTS.values() for name in names)

__getattr__ = lazy_exports(__name__, _EXPORTS)

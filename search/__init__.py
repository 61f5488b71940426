"""search: everything that searches — data, training, measuring, the study, the runner, the CLI.

Names are imported lazily, so ``castsearch predict`` (onnxruntime only) and ``--help``
never pay for torch, composer or ray.
"""

from __future__ import annotations

from castmodels.registry import lazy_exports

_EXPORTS = {  # module -> the names it exports
    "search.data": ("DataConfig", "DataError", "Dataset", "load_dataset"),
    "search.recipe": ("TrainRecipe",),
    "search.train": ("EvalResult", "train", "evaluate"),
    "search.measure": ("Measurement", "measure", "machine_fingerprint"),
    "search.pipeline": ("run_candidate",),
    "search.record": ("Limits", "TrialRecord"),
    "search.export": ("export_trial", "ExportError"),
    "search.report": ("write_report",),
    "search.predict": ("Predictor", "PredictError"),
    "search.dashboard": ("dashboard_server",),
}

__all__ = sorted(name for names in _EXPORTS.values() for name in names)

__getattr__ = lazy_exports(__name__, _EXPORTS)

"""search: everything that searches — data, training, measuring, the study, the runner, the CLI.

Names are imported lazily, so ``castsearch predict`` (onnxruntime only) and ``--help``
never pay for torch, composer or ray.
"""

from __future__ import annotations

from castmodels.registry import lazy_exports

_EXPORTS = {  # module -> the names it exports
    "search.data": ("DataConfig", "DataError", "Dataset", "load_dataset"),
    "search.training.recipe": ("TrainRecipe",),
    "search.training.train": ("EvalResult", "train", "evaluate"),
    "search.latency.measure": ("Measurement", "measure", "machine_fingerprint"),
    "search.trial.pipeline": ("run_candidate",),
    "search.study.record": ("Limits", "TrialRecord"),
    "search.deploy.export": ("export_trial", "ExportError"),
    "search.view.report": ("write_report",),
    "search.deploy.predict": ("Predictor", "PredictError"),
    "search.view.dashboard": ("dashboard_server",),
}

__all__ = sorted(name for names in _EXPORTS.values() for name in names)

__getattr__ = lazy_exports(__name__, _EXPORTS)

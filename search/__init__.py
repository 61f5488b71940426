"""search: everything that searches — data, training, measuring, the study, the runner, the CLI.

Names are imported lazily, so ``castsearch predict`` (onnxruntime only) and ``--help``
never pay for torch, composer or ray.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DataConfig": "search.data",
    "DataError": "search.data",
    "Dataset": "search.data",
    "load_dataset": "search.data",
    "TrainRecipe": "search.train",
    "EvalResult": "search.train",
    "train": "search.train",
    "evaluate": "search.train",
    "Measurement": "search.measure",
    "measure": "search.measure",
    "machine_fingerprint": "search.measure",
    "run_candidate": "search.trial",
    "Limits": "search.trial",
    "export_trial": "search.export",
    "ExportError": "search.export",
    "write_report": "search.report",
    "Predictor": "search.predict",
    "PredictError": "search.predict",
    "dashboard_server": "search.dashboard",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'search' has no attribute {name!r}")

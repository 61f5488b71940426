"""Trials per hour of the shipped search with trials sharing a GPU, against the CPU.

    python bench/gpu_sharing.py [--data ../shared/datasets/x-sdd] [--minutes 10] [--sizes 32 64]
        [--shares 1 2 4 8] [--cpu-workers N] [--declare-gpus N]

For each image size, ``spaces/paper.yaml`` is searched for ``--minutes`` of wall time once with
every trial on the CPU (``--cpu-workers`` workers of one CPU each, default one per CPU), and
once for each number of trials ``k`` in ``--shares`` sharing each GPU (``--gpus-per-trial
1/k``, ``k`` workers per GPU). Every search starts from an empty cache (no training reused
from another), the presets first as shipped. The table gives, per search, the trials trained
(finished and stopped early; screened ones never reach a worker), trials per hour of wall
time, the median training seconds of a trial, and the device the trials recorded.

``--declare-gpus N`` runs the same searches on a machine without a GPU: Ray is told of ``N``
GPUs and the trials train on the CPU (``CASTSEARCH_TRIAL_DEVICE=cpu``, search.run.resources),
which checks the script and the scheduling, not a GPU's speed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import optuna  # noqa: E402
import ray  # noqa: E402

from bench.common import DATASETS, REPO, header, table  # noqa: E402
from search.data import load_sizes  # noqa: E402
from search.run.runner import RunOptions, run_search  # noqa: E402
from search.space import load_space  # noqa: E402
from search.study import storage as studylib  # noqa: E402
from search.study.record import TrialRecord  # noqa: E402


def search(args, size: int, share: int | None, storage: str) -> list:
    """One search at ``size`` px: on the CPU (``share`` None) or ``share`` trials per GPU. Its row."""
    name = f"gpu-{size}px-" + ("cpu" if share is None else f"{share}per-gpu")
    with tempfile.TemporaryDirectory() as cache:
        overrides = {("data", "source"): args.data, ("data", "cache_dir"): cache, ("study",): name,
                     ("training", "image_size"): [size]}
        if args.epochs:
            overrides[("training", "epochs")] = args.epochs
        space = load_space(args.space, overrides=overrides)
        datasets = load_sizes(space)
        gpus = args.declare_gpus or gpu_count()
        workers = args.cpu_workers if share is None else share * gpus
        opts = RunOptions(study_name=name, storage=storage, trials=None, timeout_s=args.minutes * 60,
                          workers=workers, gpus_per_trial=0.0 if share is None else 1 / share,
                          artifacts=Path(cache) / "artifacts")
        if args.declare_gpus:
            ray.init(address="local", num_cpus=max(os.cpu_count() or 1, workers), num_gpus=args.declare_gpus,
                     include_dashboard=False, log_to_driver=False, configure_logging=False)
        t0 = time.perf_counter()
        try:
            run_search(space, datasets, opts)
        finally:
            if ray.is_initialized():
                ray.shutdown()
        wall = time.perf_counter() - t0
    trained = [TrialRecord.read(t) for t in studylib.load_existing_study(name, storage).trials
               if t.user_attrs.get("train_seconds")]
    seconds = statistics.median(r.train_seconds for r in trained) if trained else float("nan")
    devices = sorted({r.train_device or "cpu" for r in trained})
    where = "CPU" if share is None else f"{share} per GPU (--gpus-per-trial {1 / share:g})"
    return [f"{size}", where, workers, len(trained), f"{len(trained) / wall * 3600:.0f}", f"{seconds:.0f}",
            ", ".join(devices)]


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--space", default=str(REPO / "spaces" / "paper.yaml"))
    p.add_argument("--data", default=str(DATASETS / "x-sdd"))
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--epochs", type=int, default=None, help="overrides training.epochs")
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    p.add_argument("--shares", type=int, nargs="+", default=[1, 2, 4, 8], help="trials sharing each GPU")
    p.add_argument("--cpu-workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--declare-gpus", type=int, default=0,
                   help="no GPU here: tell Ray of N GPUs and train on the CPU (checks the script only)")
    p.add_argument("--storage", default=None, help="default: a SQLite file in a temporary folder")
    args = p.parse_args()
    if args.declare_gpus:
        os.environ["CASTSEARCH_TRIAL_DEVICE"] = "cpu"
    elif gpu_count() == 0:
        p.error("no GPU here: run on a GPU machine, or pass --declare-gpus N to check the script on the CPU")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        storage = args.storage or f"sqlite:///{tmp}/gpu-sharing.db"
        rows = [search(args, size, share, storage) for size in args.sizes for share in (None, *args.shares)]
    print(header(f"Trials per hour with trials sharing a GPU, {args.minutes:g} minutes per search"))
    print(f"Data: {args.data}; space {args.space} as shipped (presets first), an empty cache per search. "
          f"{'GPUs declared to Ray, trials on the CPU: a check of the script, not a measurement. ' if args.declare_gpus else ''}"
          f"Trials trained: finished or stopped early by the search (screened ones never train).\n")
    print(table(["px", "trials on", "workers", "trials trained", "trials/hour", "median training s per trial",
                 "device"], rows))


if __name__ == "__main__":
    main()

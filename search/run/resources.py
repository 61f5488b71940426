"""What a trial asks Ray for, and the device it trains on.

A search's trials ask Ray for ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs
(``--cpus-per-trial`` / ``--gpus-per-trial``, or the space's ``resources`` section). A
fraction of a GPU lets trials share one: at 0.25 Ray runs at most four on each GPU and holds
the next trial until one ends, as it holds any trial whose resources are taken. A trial given a
GPU trains on it (``cuda``: Ray sets ``CUDA_VISIBLE_DEVICES`` to the GPU it chose, so the
trial sees it as device 0); a trial given none trains on its CPUs. Latency is never timed on a
GPU: the driver times the shipped runtime on its own CPU (:mod:`search.latency`).

On this machine, a run that starts its own Ray and asks for a GPU that torch cannot see is
refused before anything is written. A run that joins a cluster (``--address``) asks that
cluster: with no GPU there yet it says so and waits, as Ray waits for any resource a node
may bring later.

One test hook, read by :func:`trial_device` alone: ``CASTSEARCH_TRIAL_DEVICE=cpu`` makes a
trial train on the CPU whatever Ray gave it, so that a test can declare GPUs to a Ray cluster
on a machine without one and check how trials are scheduled on them.
"""

from __future__ import annotations

import logging
import math
import os

log = logging.getLogger(__name__)

__all__ = ["check_resources", "local_gpus", "trial_device", "trial_resources", "device_name"]


def check_resources(cpus_per_trial: float, gpus_per_trial: float) -> None:
    """Refuse a request Ray cannot schedule: CPUs must be positive, GPUs zero or positive, and
    more than one GPU only whole ones."""
    if not cpus_per_trial > 0:
        raise ValueError(f"--cpus-per-trial must be positive, not {cpus_per_trial}")
    if not gpus_per_trial >= 0 or math.isinf(gpus_per_trial):
        raise ValueError(f"--gpus-per-trial must be 0 or more, not {gpus_per_trial}")
    if gpus_per_trial > 1 and gpus_per_trial != int(gpus_per_trial):
        raise ValueError(f"--gpus-per-trial above 1 must be a whole number of GPUs, not {gpus_per_trial}"
                         " (a fraction shares one GPU: 0.5, 0.25, ...)")


def local_gpus(gpus_per_trial: float) -> int:
    """The GPUs a Ray of this run's own declares: those torch sees here. Asking for a GPU on a
    machine without one is an error that says so (not a run whose trials wait forever)."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus_per_trial > 0 and count == 0:
        raise ValueError(f"--gpus-per-trial {gpus_per_trial:g} asks for a GPU, but this machine has none that "
                         "torch can use (torch.cuda.is_available() is False); leave it at 0 to train on the CPUs, "
                         "or join a cluster with GPU nodes with --address")
    return count


def cluster_gpus(gpus_per_trial: float) -> float:
    """The GPUs the Ray cluster this run joined declares now; with none while trials ask for
    some, a warning that they wait until a GPU node joins."""
    import ray

    gpus = float(ray.cluster_resources().get("GPU", 0.0))
    if gpus_per_trial > 0 and gpus == 0:
        log.warning("--gpus-per-trial %g: the Ray cluster has no GPU yet; trials wait until a GPU node joins",
                    gpus_per_trial)
    return gpus


def trial_resources(cpus_per_trial: float, gpus_per_trial: float) -> dict[str, float]:
    """Ray's resource request for one trial."""
    return {"cpu": cpus_per_trial, **({"gpu": gpus_per_trial} if gpus_per_trial > 0 else {})}


def trial_device(gpus_per_trial: float) -> str:
    """The device a trial trains on: the GPU Ray gave it, or the CPU (see the module's test hook)."""
    forced = os.environ.get("CASTSEARCH_TRIAL_DEVICE")
    if forced:
        return forced
    return "cuda" if gpus_per_trial > 0 else "cpu"


def device_name(device: str) -> str:
    """What a trial records about where it trained: "cpu", or "cuda:0 <name>" with the GPU's ids
    as Ray gave them ("GPU 2 of the node")."""
    if device == "cpu":
        return "cpu"
    import torch

    ids = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    index = torch.cuda.current_device()
    return f"cuda:{index} {torch.cuda.get_device_name(index)}" + (f" (GPU {ids} of the node)" if ids else "")

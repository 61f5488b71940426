"""The arithmetic a training runs in: a recipe's ``precision`` (auto | fp32 | bf16) resolved on
its device, and the pieces :func:`search.training.train.train` wraps a network in for bf16.

In bf16 the network's forward pass runs under autocast (:class:`Autocast`); its weights, the
optimizer, the loss and every evaluation stay in float32, and depthwise convolutions are kept
in float32 (:class:`Float32Conv2d`), where bf16 made training slower. ``auto`` is bf16 only
where the device computes it natively.
"""

from __future__ import annotations

import torch
from torch import nn


def _cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 bf16 or AMX tiles); without, oneDNN emulates it slowly."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def training_precision(precision: str, device: str) -> str:
    """The arithmetic a recipe's ``precision`` trains in on ``device`` ("cpu" or "cuda"/"gpu"):
    ``auto`` is bf16 where the device computes it natively, else fp32; fp32 and bf16 are themselves."""
    if precision != "auto":
        return precision
    if device == "cpu":
        return "bf16" if _cpu_has_bf16() else "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp32"


class Autocast(nn.Module):
    """The network's forward pass under bf16 autocast, its logits handed back in float32 (so the
    loss, label smoothing and MixUp work in float32). Backward follows the same casts."""

    def __init__(self, module: nn.Module, device_type: str) -> None:
        super().__init__()
        self.module = module
        self.device_type = device_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.module(x).float()


class Float32Conv2d(nn.Conv2d):
    """A depthwise (grouped) convolution that stays in float32 under autocast. oneDNN's bf16
    kernels gain little on a depthwise convolution's few multiply-adds per value and pay for the
    casts around it: with them in bf16, networks of narrow depthwise blocks trained 0.7-0.9x as
    fast as in fp32; kept in fp32, every network measured trained 1.0-1.9x as fast as in fp32
    (bench/train_throughput.py, BENCHMARKS.md)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.float())


def keep_in_fp32(module: nn.Module) -> bool:
    """Whether bf16 training keeps ``module`` in float32 (as :class:`Float32Conv2d`)."""
    return type(module) is nn.Conv2d and module.groups > 1

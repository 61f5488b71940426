"""The building blocks of castsearch networks (plain torch, export-friendly)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from castmodels.spec import LayerSpec


class BlurPool2d(nn.Module):
    """Anti-aliased downsampling (Zhang, 2019): a fixed 3x3 binomial blur per channel.

    With ``stride=1`` it only low-pass filters; with ``stride=2`` it blurs and subsamples.
    """

    def __init__(self, channels: int, stride: int = 2) -> None:
        super().__init__()
        self.channels = channels
        self.stride = stride
        k = torch.tensor([1.0, 2.0, 1.0])
        kernel = (k[:, None] * k[None, :]) / 16.0
        self.register_buffer("kernel", kernel.expand(channels, 1, 3, 3).contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (1, 1, 1, 1), mode="reflect")
        return F.conv2d(x, self.kernel, stride=self.stride, groups=self.channels)


class SqueezeExcite(nn.Module):
    """Channel attention (Hu et al., 2018): global pool -> bottleneck MLP -> sigmoid gate."""

    def __init__(self, channels: int, reduction: int = 4, min_hidden: int = 8) -> None:
        super().__init__()
        hidden = max(min_hidden, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s


class DepthwiseSeparable(nn.Sequential):
    """Depthwise 3x3 conv (no activation) then pointwise 1x1 conv, both with bias (paper's D)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_ch, in_ch, 3, stride=stride, padding=dilation,
                                   dilation=dilation, groups=in_ch)
        self.pointwise = nn.Conv2d(in_ch, out_ch, 1)


def _conv(kind: str, in_ch: int, out_ch: int, stride: int, dilation: int) -> nn.Module:
    if kind == "dwsep":
        return DepthwiseSeparable(in_ch, out_ch, stride, dilation)
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=dilation, dilation=dilation)


def conv_block(layer: LayerSpec, in_ch: int) -> nn.Sequential:
    """conv -> ReLU -> BatchNorm [-> SE] [-> dropout] [-> 2x2 pool], as in the paper.

    ``blurpool`` anti-aliases this block's downsampling the way composer's BlurPool
    does: a blur before a strided conv, and max-pool(stride 1) + blur-subsample for a pool.
    """
    block = nn.Sequential()
    if layer.blurpool and layer.stride > 1:
        block.add_module("blur", BlurPool2d(in_ch, stride=1))
    block.add_module("conv", _conv(layer.conv, in_ch, layer.out_channels, layer.stride, layer.dilation))
    block.add_module("act", nn.ReLU(inplace=True))
    block.add_module("bn", nn.BatchNorm2d(layer.out_channels))
    if layer.squeeze_excite:
        block.add_module("se", SqueezeExcite(layer.out_channels))
    if layer.dropout:
        block.add_module("drop", nn.Dropout(layer.dropout))
    if layer.pool == "max" and layer.blurpool:
        block.add_module("pool", nn.Sequential(nn.MaxPool2d(2, stride=1),
                                               BlurPool2d(layer.out_channels, stride=2)))
    elif layer.pool == "max":
        block.add_module("pool", nn.MaxPool2d(2))
    elif layer.pool == "avg":
        block.add_module("pool", nn.AvgPool2d(2))
    return block

"""build_model: ArchSpec -> nn.Module, a pure function."""

from __future__ import annotations

from torch import nn

from castmodels.layers import conv_block
from castmodels.spec import ArchSpec, feature_size


def build_model(spec: ArchSpec, in_channels: int, num_classes: int, image_size: int = 32) -> nn.Module:
    """Build the network described by ``spec``.

    ``image_size`` matters only for the ``flatten`` head, whose classifier input is
    channels x side x side; the ``gap`` head works at any input size.
    """
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    side = feature_size(spec, image_size)
    if side < 1:
        raise ValueError(
            f"image_size {image_size} is too small for {spec.name or 'this network'}: "
            f"it downsamples by {spec.downsampling}x and the feature map vanishes"
        )
    features = nn.Sequential()
    ch = in_channels
    for i, layer in enumerate(spec.layers):
        features.add_module(str(i), conv_block(layer, ch))
        ch = layer.out_channels
    if spec.head == "gap":
        head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(ch, num_classes))
    else:
        head = nn.Sequential(nn.Flatten(), nn.Linear(ch * side * side, num_classes))
    return nn.Sequential(features, head)

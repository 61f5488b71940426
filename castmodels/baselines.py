"""Reference networks placed on the same Pareto front as the searched ones.

The paper compares its custom nets with CIFAR-style ResNets (20, 47, 65 layers),
MobileNetV2, InceptionV3 and a small ViT. ``BASELINES`` maps each name to a
:class:`Baseline` entry; :func:`build_baseline` builds one as a :class:`BaselineNet`,
which owns its input handling, so training, evaluation, latency measurement and
export all see one module taking ``uint8 / 255`` images with the dataset's channels:

- built for pretrained weights (``pretrained=True``), grey images are repeated to the
  3 channels the weights expect and normalised with ImageNet's mean and std inside
  ``forward``;
- trained from scratch, the images go in as they are; the CIFAR ResNets and the ViT
  then take the dataset's channels directly, while torchvision's ImageNet networks
  keep their 3-channel stems and get grey images repeated.

Building is pure (random initialisation); loading weights into a built network is
:meth:`BaselineNet.load_backbone`, which skips a classifier whose class count differs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from castmodels.registry import lookup

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------
# CIFAR-style ResNets (He et al. 2016, as in the Keras CIFAR-10 ResNet example the paper used)


def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)


class _BasicBlock(nn.Module):
    """ResNet v1: conv3x3-BN-ReLU, conv3x3-BN, plus the shortcut, then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(cin, cout, 3, stride), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                                  _conv(cout, cout, 3), nn.BatchNorm2d(cout))
        self.shortcut = _conv(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class _Bottleneck(nn.Module):
    """ResNet v2 (pre-activation): [BN-ReLU] conv1x1, BN-ReLU conv3x3, BN-ReLU conv1x1, plus the
    shortcut (a 1x1 projection of the block's raw input where the shape changes)."""

    def __init__(self, cin: int, width: int, cout: int, stride: int, preactivate: bool) -> None:
        super().__init__()
        pre = [nn.BatchNorm2d(cin), nn.ReLU(inplace=True)] if preactivate else []
        self.body = nn.Sequential(
            *pre, _conv(cin, width, 1, stride),
            nn.BatchNorm2d(width), nn.ReLU(inplace=True), _conv(width, width, 3),
            nn.BatchNorm2d(width), nn.ReLU(inplace=True), _conv(width, cout, 1),
        )
        self.shortcut = _conv(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


def cifar_resnet_v1(depth: int, in_channels: int, num_classes: int) -> nn.Module:
    """ResNet v1 of depth 6n+2: a 16-channel stem, three stages of n basic blocks
    (16, 32, 64 channels; the 2nd and 3rd start with stride 2), global average pool, linear."""
    if (depth - 2) % 6:
        raise ValueError(f"a ResNet v1 depth must be 6n+2, got {depth}")
    n = (depth - 2) // 6
    layers: list[nn.Module] = [_conv(in_channels, 16, 3), nn.BatchNorm2d(16), nn.ReLU(inplace=True)]
    cin = 16
    for stage, cout in enumerate((16, 32, 64)):
        for block in range(n):
            layers.append(_BasicBlock(cin, cout, 2 if stage and not block else 1))
            cin = cout
    return nn.Sequential(nn.Sequential(*layers),
                         nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)))


def cifar_resnet_v2(depth: int, in_channels: int, num_classes: int) -> nn.Module:
    """ResNet v2 of depth 9n+2: a 16-channel stem (conv-BN-ReLU), three stages of n bottleneck
    blocks of widths 16, 64, 128 and outputs 64, 128, 256 (the 2nd and 3rd start with stride 2),
    BN-ReLU, global average pool, linear."""
    if (depth - 2) % 9:
        raise ValueError(f"a ResNet v2 depth must be 9n+2, got {depth}")
    n = (depth - 2) // 9
    layers: list[nn.Module] = [_conv(in_channels, 16, 3), nn.BatchNorm2d(16), nn.ReLU(inplace=True)]
    cin = 16
    for stage, (width, cout) in enumerate(((16, 64), (64, 128), (128, 256))):
        for block in range(n):
            stride = 2 if stage and not block else 1
            # the stem's BN-ReLU already pre-activates the very first block
            layers.append(_Bottleneck(cin, width, cout, stride, preactivate=bool(stage or block)))
            cin = cout
    layers += [nn.BatchNorm2d(cin), nn.ReLU(inplace=True)]
    return nn.Sequential(nn.Sequential(*layers),
                         nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)))


# ---------------------------------------------------------------------------
# The paper's small ViT (the Keras ViT example: patches, 8 pre-norm encoder layers,
# then the flattened tokens through an MLP head)


class _EncoderLayer(nn.Module):
    """Pre-norm encoder layer of the Keras ViT example: LayerNorm, multi-head self-attention
    (``heads`` heads of ``dim`` each, attention dropout 0.1), residual; LayerNorm, a GELU MLP
    (2*dim, dim) with dropout 0.1, residual. Written out so that every product is visible to
    torch's FLOP counter (torch's fused encoder fast path is not)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * heads * dim)
        self.out = nn.Linear(heads * dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(2 * dim, dim), nn.GELU(), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, tokens, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(n, tokens, 3, self.heads, dim).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.out(attended.transpose(1, 2).reshape(n, tokens, self.heads * dim))
        return x + self.mlp(self.norm2(x))


class SmallViT(nn.Module):
    """Patch ``patch`` px, embedding ``dim``, ``depth`` encoder layers of ``heads`` heads, a final
    LayerNorm, then the flattened tokens -> MLP ``head_units`` (GELU, dropout 0.5) -> linear
    classifier. The flattened head ties the network to ``image_size`` (one token per whole patch)."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int, patch: int = 4, dim: int = 64,
                 depth: int = 8, heads: int = 4, head_units: tuple[int, ...] = (2048, 1024)) -> None:
        super().__init__()
        tokens = (image_size // patch) ** 2
        self.patches = nn.Conv2d(in_channels, dim, patch, stride=patch)  # linear projection of each patch
        self.position = nn.Parameter(torch.zeros(1, tokens, dim))
        nn.init.trunc_normal_(self.position, std=0.02)
        self.encoder = nn.Sequential(*(_EncoderLayer(dim, heads) for _ in range(depth)),
                                     nn.LayerNorm(dim, eps=1e-6))
        mlp: list[nn.Module] = [nn.Flatten(), nn.Dropout(0.5)]
        width = tokens * dim
        for units in head_units:
            mlp += [nn.Linear(width, units), nn.GELU(), nn.Dropout(0.5)]
            width = units
        self.mlp = nn.Sequential(*mlp)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patches(x).flatten(2).transpose(1, 2) + self.position
        return self.head(self.mlp(self.encoder(x)))


# ---------------------------------------------------------------------------
# Registry

# (stem channels, classes, image size, pretrained) -> the backbone
Builder = Callable[[int, int, int, bool], nn.Module]


@dataclass(frozen=True)
class Baseline:
    """One reference network: how to build it and what it needs."""

    build: Builder
    min_image_size: int  # smallest input side the network takes (its last map is then >= 1 px)
    classifier: str  # state-dict prefix of the layer sized by the class count
    imagenet_weights: str | None = None  # torchvision weights entry, e.g. "MobileNet_V2_Weights.DEFAULT"
    imagenet_stem: bool = False  # a fixed 3-channel ImageNet stem: grey images are always repeated


def _mobilenet_v2(stem: int, classes: int, size: int, pretrained: bool) -> nn.Module:
    # torchvision is imported here, not at the top: its import takes seconds
    from torchvision.models import mobilenet_v2

    return mobilenet_v2(weights=None, num_classes=classes)


def _inception_v3(stem: int, classes: int, size: int, pretrained: bool) -> nn.Module:
    # No auxiliary classifier (it only adds a training loss); ImageNet weights expect
    # ImageNet-normalised input, which torchvision converts with transform_input, as it
    # does whenever it loads them itself.
    from torchvision.models import inception_v3

    return inception_v3(weights=None, num_classes=classes, aux_logits=False, transform_input=pretrained,
                        init_weights=True)


BASELINES: dict[str, Baseline] = {
    # CIFAR ResNet v1, depth 6n+2 with n=3
    "resnet20": Baseline(lambda stem, classes, size, pre: cifar_resnet_v1(20, stem, classes), 4, "1.2"),
    # CIFAR ResNet v2 with bottlenecks, depth 9n+2 with n=5 and n=7
    "resnet47": Baseline(lambda stem, classes, size, pre: cifar_resnet_v2(47, stem, classes), 4, "1.2"),
    "resnet65": Baseline(lambda stem, classes, size, pre: cifar_resnet_v2(65, stem, classes), 4, "1.2"),
    "mobilenet_v2": Baseline(_mobilenet_v2, 32, "classifier.1", "MobileNet_V2_Weights.DEFAULT", imagenet_stem=True),
    "inception_v3": Baseline(_inception_v3, 75, "fc", "Inception_V3_Weights.DEFAULT", imagenet_stem=True),
    # the paper's ViT: patch 4, dim 64, 8 layers, 4 heads, MLP head 2048-1024
    "vit": Baseline(lambda stem, classes, size, pre: SmallViT(stem, classes, size), 4, "head"),
}


def baseline_names() -> list[str]:
    return list(BASELINES)


def get_baseline(name: str) -> Baseline:
    return lookup(BASELINES, name, "baseline")


# ---------------------------------------------------------------------------
# The module the rest of castsearch sees


@dataclass
class LoadReport:
    """What :meth:`BaselineNet.load_backbone` did with a state dict."""

    loaded: list[str]
    skipped: list[str]  # classifier tensors whose shape differs (another class count)
    unexpected: list[str]  # in the file, not in the network (e.g. InceptionV3's auxiliary head)


class BaselineNet(nn.Module):
    """A baseline's backbone (``self.net``) with its input handling in ``forward``."""

    def __init__(self, name: str, backbone: nn.Module, in_channels: int, stem_channels: int,
                 pretrained: bool) -> None:
        super().__init__()
        self.name = name
        self.net = backbone
        self.in_channels = in_channels
        self.stem_channels = stem_channels
        self.pretrained = pretrained
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stem_channels != self.in_channels:
            x = x.expand(-1, self.stem_channels, -1, -1)  # grey -> 3 identical channels
        if self.pretrained:
            x = (x - self.mean) / self.std
        return self.net(x)

    def load_backbone(self, state_dict: Mapping[str, torch.Tensor]) -> LoadReport:
        """Load ``state_dict`` (keys as the backbone names them, e.g. torchvision's files) into
        the backbone. Classifier tensors of another shape are skipped; any other shape
        difference, or a backbone tensor the file lacks, is a ValueError naming the keys."""
        classifier = get_baseline(self.name).classifier + "."
        own = self.net.state_dict()
        differ = [k for k in state_dict if k in own and own[k].shape != state_dict[k].shape]
        skipped = [k for k in differ if k.startswith(classifier)]
        wrong = [f"{k} {tuple(state_dict[k].shape)} (the network has {tuple(own[k].shape)})"
                 for k in differ if k not in skipped]
        if wrong:
            raise ValueError(f"does not fit {self.name} built for {self.stem_channels} input channels: "
                             f"{len(wrong)} tensor(s) differ in shape, e.g. {'; '.join(wrong[:3])}")
        result = self.net.load_state_dict({k: v for k, v in state_dict.items() if k not in skipped}, strict=False)
        missing = [k for k in result.missing_keys if not k.startswith(classifier)]
        if missing:
            raise ValueError(f"not a {self.name} state dict: it lacks {len(missing)} of the network's "
                             f"{len(own)} tensors, e.g. {', '.join(missing[:3])}")
        loaded = [k for k in state_dict if k in own and k not in skipped]
        return LoadReport(loaded=loaded, skipped=skipped, unexpected=list(result.unexpected_keys))


def build_baseline(name: str, in_channels: int, num_classes: int, image_size: int = 32,
                   pretrained: bool = False) -> BaselineNet:
    """Build baseline ``name`` (randomly initialised) for ``in_channels`` (1 or 3) input
    channels, ``num_classes`` classes and square ``image_size`` inputs. ``pretrained``: the
    module will receive pretrained (ImageNet-style) weights, so it takes 3-channel,
    ImageNet-normalised input inside (see the module docstring)."""
    entry = get_baseline(name)
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if image_size < entry.min_image_size:
        raise ValueError(f"{name} needs image_size >= {entry.min_image_size}, got {image_size}")
    stem = 3 if pretrained or entry.imagenet_stem else in_channels
    return BaselineNet(name, entry.build(stem, num_classes, image_size, pretrained), in_channels, stem, pretrained)

"""ArchSpec: a frozen, JSON-serialisable description of a custom CNN.

A network is an ordered list of conv layers followed by a head. Each layer is
one conv (plain 3x3 or depthwise-separable) -> ReLU -> BatchNorm, optionally
followed by squeeze-excite, dropout and a 2x2 pool, exactly the building block
of the source paper. The compact text form uses the paper's own codes, so a
spec reads like the paper's tables:

    C16 C16 X.06 P D32 C32 X.07 P D64 C64d2 X.07 P D128 D192 X.05 D260 A

- ``C64`` 3x3 conv to 64 channels; ``D64`` depthwise 3x3 + pointwise 1x1 to 64
- suffixes: ``s2`` stride 2, ``d2`` dilation 2, ``e`` squeeze-excite, ``b`` blurpool
- ``X.06`` dropout p=0.06 after the previous layer
- ``P`` 2x2 max-pool after the previous layer (``Q``: 2x2 average-pool)
- head, last: ``A`` global average pooling (the paper's ``A2``/``A3`` are
  accepted and mean the same thing), ``F`` flatten; then a linear classifier

:func:`feature_size` gives the side of the last feature map for a square input. This
module does not import torch.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields

CONV_TYPES = ("conv3x3", "dwsep")
POOL_TYPES = ("max", "avg")
HEAD_TYPES = ("gap", "flatten")

_CONV_CODE = {"conv3x3": "C", "dwsep": "D"}
_POOL_CODE = {"max": "P", "avg": "Q"}
_CONV_TOKEN = re.compile(r"^([CD])(\d+)(?:s(\d+))?(?:d(\d+))?(e?)(b?)$")
_DROPOUT_TOKEN = re.compile(r"^X(0?\.\d+)$")
_HEAD_TOKEN = re.compile(r"^(A\d*|F)$")


@dataclass(frozen=True)
class LayerSpec:
    """One conv block: conv -> ReLU -> BatchNorm [-> SE] [-> dropout] [-> pool]."""

    conv: str
    out_channels: int
    stride: int = 1
    dilation: int = 1
    squeeze_excite: bool = False
    blurpool: bool = False
    dropout: float = 0.0
    pool: str | None = None

    def __post_init__(self) -> None:
        if self.conv not in CONV_TYPES:
            raise ValueError(f"conv must be one of {list(CONV_TYPES)}, got {self.conv!r}")
        if not isinstance(self.out_channels, int) or self.out_channels < 1:
            raise ValueError(f"out_channels must be an integer >= 1, got {self.out_channels!r}")
        if self.stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {self.stride!r}")
        if not isinstance(self.dilation, int) or not 1 <= self.dilation <= 4:
            raise ValueError(f"dilation must be an integer in [1, 4], got {self.dilation!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.pool is not None and self.pool not in POOL_TYPES:
            raise ValueError(f"pool must be null or one of {list(POOL_TYPES)}, got {self.pool!r}")

    def code(self) -> str:
        text = f"{_CONV_CODE[self.conv]}{self.out_channels}"
        text += f"s{self.stride}" if self.stride != 1 else ""
        text += f"d{self.dilation}" if self.dilation != 1 else ""
        text += "e" if self.squeeze_excite else ""
        text += "b" if self.blurpool else ""
        parts = [text]
        if self.dropout:
            parts.append("X" + f"{self.dropout:g}".lstrip("0"))
        if self.pool:
            parts.append(_POOL_CODE[self.pool])
        return " ".join(parts)


@dataclass(frozen=True)
class ArchSpec:
    """A whole network: conv layers, then a head and a linear classifier."""

    layers: tuple[LayerSpec, ...]
    head: str = "gap"
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise ValueError("an ArchSpec needs at least one layer, got none")
        for layer in self.layers:
            if not isinstance(layer, LayerSpec):
                raise ValueError(f"layers must be LayerSpec objects, got {type(layer).__name__}")
        if self.head not in HEAD_TYPES:
            raise ValueError(f"head must be one of {list(HEAD_TYPES)}, got {self.head!r}")

    @property
    def downsampling(self) -> int:
        """Total spatial reduction factor of the conv stack (strides and pools)."""
        factor = 1
        for layer in self.layers:
            factor *= layer.stride * (2 if layer.pool else 1)
        return factor

    def code(self) -> str:
        """The compact paper-style text form (see the module docstring)."""
        head = "A" if self.head == "gap" else "F"
        return " ".join([layer.code() for layer in self.layers] + [head])

    def summary(self) -> str:
        """One line for humans: name, depth, conv mix and the layer codes."""
        n_dw = sum(layer.conv == "dwsep" for layer in self.layers)
        prefix = f"{self.name}: " if self.name else ""
        return f"{prefix}{len(self.layers)} conv ({n_dw} dwsep), {self.head} head | {self.code()}"

    @classmethod
    def from_code(cls, code: str, name: str = "") -> ArchSpec:
        """Parse the paper-style text form, e.g. ``"C16 X.06 P D32 C32s2 A"``."""
        tokens = code.split()
        if not tokens:
            raise ValueError("architecture code is empty")
        layers: list[dict] = []
        head = None
        for i, token in enumerate(tokens):
            if head is not None:
                raise ValueError(f"the head ({tokens[i - 1]}) must be the last token, found {token!r} after it in {code!r}")
            if m := _CONV_TOKEN.match(token):
                kind, ch, stride, dil, se, blur = m.groups()
                layers.append(
                    dict(conv="conv3x3" if kind == "C" else "dwsep", out_channels=int(ch),
                         stride=int(stride or 1), dilation=int(dil or 1),
                         squeeze_excite=bool(se), blurpool=bool(blur))
                )
                continue
            if not layers:
                raise ValueError(f"architecture code must start with a conv layer (C.. or D..), got {token!r} in {code!r}")
            if m := _DROPOUT_TOKEN.match(token):
                layers[-1]["dropout"] = float(m.group(1))
            elif token in ("P", "Q"):
                layers[-1]["pool"] = "max" if token == "P" else "avg"
            elif _HEAD_TOKEN.match(token):
                head = "flatten" if token == "F" else "gap"
            else:
                raise ValueError(f"unknown token {token!r} in architecture code {code!r}")
        return cls(layers=tuple(LayerSpec(**layer) for layer in layers), head=head or "gap", name=name)

    def to_dict(self) -> dict:
        return {"name": self.name, "head": self.head, "layers": [asdict(layer) for layer in self.layers]}

    @classmethod
    def from_dict(cls, data: dict) -> ArchSpec:
        if not isinstance(data, dict) or "layers" not in data:
            raise ValueError("an ArchSpec dict needs a 'layers' list")
        unknown = set(data) - {"name", "head", "layers"}
        if unknown:
            raise ValueError(f"unknown ArchSpec keys {sorted(unknown)}; known: ['head', 'layers', 'name']")
        known = {f.name for f in fields(LayerSpec)}
        layers = []
        for i, layer in enumerate(data["layers"]):
            extra = set(layer) - known
            if extra:
                raise ValueError(f"layers[{i}]: unknown keys {sorted(extra)}; known: {sorted(known)}")
            layers.append(LayerSpec(**layer))
        return cls(layers=tuple(layers), head=data.get("head", "gap"), name=data.get("name", ""))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ArchSpec:
        return cls.from_dict(json.loads(text))


def feature_size(spec: ArchSpec, image_size: int) -> int:
    """Side of the last feature map for a square input (padding keeps size; /2 per stride or pool)."""
    side = image_size
    for layer in spec.layers:
        side = (side - 1) // layer.stride + 1
        if layer.pool:
            side //= 2
    return side

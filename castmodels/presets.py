"""The source paper's six hand-designed networks, stored as data.

Layer lists are the paper's (see the paper's architecture tables); the paper's
``A2``/``A3`` valid average-pool that reduces the last map to 1x1 at 32x32 input is
expressed as global average pooling, which has the same parameters and also works at
other input sizes.
"""

from __future__ import annotations

from castmodels.registry import lookup
from castmodels.spec import ArchSpec

PRESET_CODES: dict[str, str] = {
    "custom-140k-3x3": "C16 C16 X.06 P C32 C32 X.07 P C64 C64s2 X.07 P C120 A2",
    "custom-140k-dw": "C16 C16 X.06 P D32 C32 X.07 P D64 C64d2 X.07 P D128 D192 X.05 D260 A3",
    "custom-340k-3x3": "C16 C32 X.06 P C64 C64 X.07 P C96 C96s2 X.07 P C160 A2",
    "custom-340k-dw": "C16 C32 X.06 P D64 C64 X.07 P D96 C96d2 X.07 P D128 D192 X.05 D210 D240 X.02 D280 A3",
    "custom-590k-3x3": "C16 C32 C32 X.06 P C64 C64 X.07 P C128 C128s2 X.07 P C256 A2",
    "custom-590k-dw": "C16 C32 X.03 D64 C64 X.03 P D96 C96d2 X.07 D128 D192 X.05 P D260 D320 X.02 P D370 D415 A3",
}

PRESETS: dict[str, ArchSpec] = {name: ArchSpec.from_code(code, name=name) for name, code in PRESET_CODES.items()}


def preset_names() -> list[str]:
    return list(PRESETS)


def get_preset(name: str) -> ArchSpec:
    return lookup(PRESETS, name, "preset")

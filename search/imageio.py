"""Decoding one image file into model input pixels, with Pillow and numpy only.

Shared by the dataset loader (:mod:`search.data`) and ``castsearch predict`` (which must
not import torch), so an exported model sees exactly the preprocessing it was trained on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# What Pillow raises for a file that is not a readable image.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def decode_image(path: str | Path, image_size: int, channels: int) -> np.ndarray:
    """Decode one image to uint8 ``[channels, image_size, image_size]`` (grey or RGB, antialiased resize)."""
    mode = "L" if channels == 1 else "RGB"
    with Image.open(path) as im:
        im.draft(mode, (image_size, image_size))  # JPEG: let libjpeg decode at a reduced scale
        if im.mode.startswith("I"):  # 16/32-bit integer grey: scale the 16-bit range to 8 bits
            grey = np.asarray(im, dtype=np.float64) * (255.0 / 65535.0)
            im = Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8), "L")
        im = im.convert(mode).resize((image_size, image_size), Image.BILINEAR, reducing_gap=2.0)
        array = np.asarray(im, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)

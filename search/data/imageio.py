"""Decoding one image file into model input pixels, with Pillow and numpy only.

Shared by the dataset loader (:mod:`search.data`) and ``castsearch predict`` (which must
not import torch), so an exported model sees exactly the preprocessing it was trained on.

Pixel depths other than 8 bits are scaled to 0-255, never clipped:

- 16-bit integer grey (and 32-bit integer grey within 0-65535, which is how Pillow reads
  some 16-bit files): the 16-bit range maps to 0-255;
- 32-bit float grey: values within [0, 1] are multiplied by 255; values within [0, 255]
  are kept; anything else is stretched from the image's own minimum and maximum to
  0-255 (per image, so absolute brightness is lost). So is integer data outside
  0-65535. Non-finite pixels take the image's minimum; an image with no finite pixel
  is refused.

An image counts as grey (:attr:`Decoded.grey`) when its file holds a grey mode, or when
its colour pixels have equal red, green and blue (within GREY_TOLERANCE; looked at after
resizing when three channels are wanted), as in grey images saved as RGB JPEGs. A colour
JPEG that libjpeg decodes straight to grey (one channel wanted) is not looked at (``None``).
When one channel is wanted the grey check resizes a colour copy as three channels would
(one extra resize), never the full-size image.

An image of more than :data:`MAX_PIXELS` pixels (as decoded: a JPEG is decoded at a reduced
scale when that still covers image_size) is refused before decoding (:class:`ImageTooLarge`,
one of :data:`DECODE_ERRORS`, so the loader and ``castsearch predict`` skip it as unreadable).

Three ways to make the image square (``resize``): ``squash`` (default: resize to
image_size x image_size, changing the aspect ratio), ``pad`` (fit the longer side, pad
the shorter one with black, centred), ``center-crop`` (fit the shorter side, cut the
longer one to the centre).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from search.data.rules import RESIZES

# The most pixels one image may decode to. Pillow's own limit (Image.MAX_IMAGE_PIXELS, about
# 89 megapixels, and an error only at twice that) lets a 300 KB PNG whose header says
# 10000x10000 cost seconds and about a gigabyte, on each of the loader's decoding threads.
# 36 megapixels still holds the largest frames of industrial inspection cameras (a 25-megapixel
# area sensor, 5120x5120; an 8K line-scan camera's 8192x4096 frames: 33.6 megapixels) and keeps
# one decode of an 8-bit RGB image near 110 MB.
MAX_PIXELS = 36_000_000


class ImageTooLarge(ValueError):
    """An image of more than :data:`MAX_PIXELS` pixels: ``path``, ``reason``; str(e) is
    "path: reason", the reason naming its size."""

    def __init__(self, path: str | Path, width: int, height: int, decoded: tuple[int, int]):
        scale = "" if decoded == (width, height) else f", {decoded[0]}x{decoded[1]} at the reduced scale"
        self.reason = (f"{width}x{height} pixels{scale} ({decoded[0] * decoded[1] / 1e6:.1f} megapixels, from a "
                       f"file of {_file_size(path)}) is over the {MAX_PIXELS / 1e6:g}-megapixel limit on images")
        super().__init__(f"{path}: {self.reason}")
        self.path, self.width, self.height = path, width, height


# What decode raises for a file that is not a readable image (Pillow's errors, ImageTooLarge).
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)
_GREY_BANDS = ("1", "L", "I", "F")  # first band of a grey mode: 1, L, LA, I, I;16..., F
GREY_TOLERANCE = 2  # red, green and blue this close everywhere: a grey image (JPEG rounding)


@dataclass(frozen=True)
class Decoded:
    """An image decoded to model input, and what the file held before decoding."""

    pixels: np.ndarray  # uint8 [channels, image_size, image_size]
    width: int  # the file's size in pixels
    height: int
    grey: bool | None  # grey pixels (module docstring); None: not looked at


def decode(path: str | Path, image_size: int, channels: int, resize: str = "squash") -> Decoded:
    """Decode one image to uint8 ``[channels, image_size, image_size]`` (grey or RGB, antialiased
    bilinear resize, made square as ``resize`` says: see the module docstring)."""
    if resize not in RESIZES:
        raise ValueError(f"resize must be one of {', '.join(RESIZES)}, got {resize!r}")
    mode = "L" if channels == 1 else "RGB"
    with Image.open(path) as im:
        width, height = im.size
        grey = True if im.getbands()[0] in _GREY_BANDS else None
        im.draft(mode, (image_size, image_size))  # JPEG: let libjpeg decode at a reduced scale
        if im.size[0] * im.size[1] > MAX_PIXELS:
            raise ImageTooLarge(path, width, height, im.size)
        im = _eight_bit(im)
        if grey is None and channels == 1 and im.mode != "L":
            colour = im if im.mode == "RGB" else im.convert("RGB")
            grey = _equal_channels(np.asarray(_square(colour, image_size, resize)))
        im = _square(im.convert(mode), image_size, resize)
        array = np.asarray(im, dtype=np.uint8)
    if grey is None and channels == 3:
        grey = _equal_channels(array)
    pixels = array[None] if channels == 1 else array.transpose(2, 0, 1)
    return Decoded(pixels, width, height, grey)


def grey_mode(path: str | Path) -> bool:
    """Whether the file holds a grey mode (1, L, LA, I, I;16, F...), read from its header
    alone: cheap enough to ask of every file before any is decoded."""
    with Image.open(path) as im:
        return im.getbands()[0] in _GREY_BANDS


def decode_image(path: str | Path, image_size: int, channels: int, resize: str = "squash") -> np.ndarray:
    """Only the pixels of :func:`decode`."""
    return decode(path, image_size, channels, resize).pixels


def _file_size(path: str | Path) -> str:
    try:
        size = Path(path).stat().st_size
    except OSError:
        return "unknown size"
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} KB" if size >= 1e3 else f"{size} B"


def _equal_channels(rgb: np.ndarray) -> bool:
    """Whether red, green and blue of ``[H, W, 3]`` pixels are within GREY_TOLERANCE everywhere."""
    return bool(np.abs(np.diff(rgb.astype(np.int16), axis=2)).max() <= GREY_TOLERANCE)


def _eight_bit(im: Image.Image) -> Image.Image:
    """Integer and float grey scaled to 8-bit grey (module docstring); 8-bit modes unchanged."""
    if im.mode == "F":
        values = np.asarray(im, dtype=np.float64)
        finite = np.isfinite(values)
        if not finite.any():
            raise ValueError("float image without a finite pixel value")
        low, high = values[finite].min(), values[finite].max()
        values = np.where(finite, values, low)
        if low >= 0 and high <= 1:
            values = values * 255.0
        elif not (low >= 0 and high <= 255):
            values = _stretch(values, low, high)
    elif im.mode.startswith("I"):
        values = np.asarray(im, dtype=np.float64)
        low, high = values.min(), values.max()
        if low >= 0 and high <= 65535:
            values = values * (255.0 / 65535.0)
        else:
            values = _stretch(values, low, high)
    else:
        return im
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))  # 8-bit grey


def _stretch(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``values`` from [low, high] to [0, 255] (all 0 when the image is flat)."""
    return (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)


def _square(im: Image.Image, size: int, resize: str) -> Image.Image:
    if resize == "pad":
        return ImageOps.pad(im, (size, size), Image.BILINEAR, color=0)
    if resize == "center-crop":
        return ImageOps.fit(im, (size, size), Image.BILINEAR)
    return im.resize((size, size), Image.BILINEAR, reducing_gap=2.0)

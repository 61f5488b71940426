"""Decoding a dataset's files: many at once on a few threads, each by
:func:`search.data.imageio.decode` (one decoder for training and predict), an unreadable file
kept as the reason it could not be read; and counting what decoding changed
(:func:`input_counts`, said by :meth:`search.data.Dataset.notices`).
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from search.data.config import DataConfig
from search.data.imageio import DECODE_ERRORS as _DECODE_ERRORS
from search.data.imageio import Decoded
from search.data.imageio import decode as _decode  # one decoder for training and predict

log = logging.getLogger(__name__)

ASPECT_TOLERANCE = 0.05  # an aspect ratio changed by more than this counts as squashed
RESHAPED = {"squash": "squashed", "pad": "padded", "center-crop": "cropped"}
_DECODE_THREADS = 4


def _try_decode(path: Path, cfg: DataConfig) -> Decoded | str:
    """The decoded image, or the reason it could not be decoded."""
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        return _decode(path, cfg.image_size, cfg.channels, cfg.resize)
    except _DECODE_ERRORS as e:
        return f"not a readable image ({type(e).__name__}: {e})"


def decode_all(files: list[Path], cfg: DataConfig) -> list[Decoded | str]:
    """:func:`_try_decode` over ``files`` on a few threads (Pillow releases the GIL while decoding)."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=min(_DECODE_THREADS, os.cpu_count() or 1)) as pool:
        results = list(pool.map(lambda f: _try_decode(f, cfg), files))
    log.info("decoded %d files in %.2f s", len(files), time.perf_counter() - start)
    return results


def input_counts(files: list[tuple[int, int, bool | None]], cfg: DataConfig) -> dict[str, int]:
    """How many images decoding changed in ways a user may not expect, from each file's
    (width, height, grey): upscaled (made larger in either direction), squashed / padded /
    cropped (aspect ratio off square by more than ASPECT_TOLERANCE), grey copied to three
    channels, colour made grey (:class:`search.data.imageio.Decoded`)."""
    counts = {"images": len(files), "upscaled": 0, RESHAPED[cfg.resize]: 0, "grey_to_rgb": 0, "colour_to_grey": 0}
    for width, height, grey in files:
        short, long = sorted((width, height))
        counts["upscaled"] += (long if cfg.resize == "pad" else short) < cfg.image_size
        counts[RESHAPED[cfg.resize]] += long > short * (1 + ASPECT_TOLERANCE)
        counts["grey_to_rgb"] += grey is True and cfg.channels == 3
        counts["colour_to_grey"] += grey is False and cfg.channels == 1
    return counts

"""Image folders for the data tests: grey images with a little noise, class folders of them,
and the split lists a load writes beside its cache. Used by test_data.py, test_data_split.py,
test_data_layout.py and test_cache.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def grey_image(value: int, size: tuple[int, int] = (20, 20), seed: int = 0) -> Image.Image:
    """A grey image of ``value`` with a little noise, so files differ."""
    noise = np.random.default_rng(seed).integers(-2, 3, (size[1], size[0]))
    return Image.fromarray(np.clip(value + noise, 0, 255).astype(np.uint8), "L")


def make_folder(root: Path, classes: dict[str, int], per_class: int = 5, ext: str = "png") -> Path:
    """``root/<class>/<i>.<ext>``: per_class images per class, class c at a grey level of its own."""
    for name, value in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            grey_image(value, (20 + i, 18), seed=i).save(root / name / f"{i:03d}.{ext}")
    return root


def split_file(cache: Path) -> dict:
    (path,) = cache.glob("*.split.json")
    return json.loads(path.read_text())

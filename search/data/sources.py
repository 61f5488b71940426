"""Loading a source: :func:`load_dataset` reads a folder (its layout, files, decoded images
and split) or generates the synthetic set, and keeps the result in the cache folder.

A load finds its tensors in the cache when the key matches (:mod:`search.data.store`);
otherwise it decodes (:mod:`search.data.decoding`), splits (:mod:`search.data.split`) and
writes them. The dataset's identity says what was loaded and how, and is what a study
records of its data.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from search.data.cache import default_cache_dir
from search.data.channels import choose_channels, with_choice
from search.data.config import DataConfig
from search.data.dataset import Dataset
from search.data.decoding import decode_all, input_counts
from search.data.layout import detect_layouts, image_files
from search.data.rules import AUTO, SYNTHETIC_CHANNELS, DataError
from search.data.split import split, split_params, split_supplied
from search.data.store import cache_key, cache_path, fingerprint, finish, read_cache, sha256_json
from search.data.synthetic import SYNTHETIC_VERSION, generate_synthetic

log = logging.getLogger(__name__)

SYNTHETIC_NATIVE_SIZE = 64
NORMALISATION = "x/255"


def load_dataset(cfg: DataConfig, cache_dir: str | Path | None = None) -> Dataset:
    """Load, split and cache the images that ``cfg.source`` names (see the :mod:`search.data` docstring)."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if cfg.source == "synthetic":
        return _load_synthetic(cfg, cache_dir)
    return _load_folder(cfg, cache_dir)


def _load_folder(cfg: DataConfig, cache_dir: Path) -> Dataset:
    source = Path(cfg.source).expanduser().resolve()
    layouts = detect_layouts(source)
    class_names = layouts[0].class_names
    split_folders = None
    if layouts[0].split:  # one layout per split folder, classes in the same order
        split_folders = {lay.split: lay.class_dirs[0].parent.name for lay in layouts}
    name = layouts[0].name if split_folders is None else "/".join(split_folders)  # e.g. "train/val/test"
    # one group of files per (split folder, class), in order
    groups = [(lay, c, d) for lay in layouts for c, d in enumerate(lay.class_dirs)]
    files_per_group = [image_files(d) for _, _, d in groups]
    files = [f for fs in files_per_group for f in fs]
    files_hash = fingerprint(source, files)
    cfg, choice, decoded_rgb = choose_channels(cfg, source, files, files_hash, cache_dir)
    key = cache_key(
        source=str(source),
        layout=name,
        split_folders=split_folders,
        files=files_hash,
        image_size=cfg.image_size,
        channels=cfg.channels,
        resize=cfg.resize,
        split=split_params(cfg),
    )
    cache_file = cache_path(cache_dir, source.name, cfg, key)
    cached = read_cache(cache_file)
    if cached is not None:
        return with_choice(cached, choice)

    results = decode_all(files, cfg) if decoded_rgb is None else decoded_rgb
    sizes = [len(fs) for fs in files_per_group]
    labels = np.repeat([c for _, c, _ in groups], sizes).astype(np.int64)
    supplied = np.repeat([lay.split or "" for lay, _, _ in groups], sizes)
    skipped = [
        {"path": str(f), "reason": r}
        for f, r in zip(files, results, strict=True)
        if isinstance(r, str)
    ]
    for s in skipped:
        log.warning("skipping %s: %s", s["path"], s["reason"])
    keep = [i for i, r in enumerate(results) if not isinstance(r, str)]
    labels, supplied = labels[keep], supplied[keep]
    names = [files[i].relative_to(source).as_posix() for i in keep]
    for lay, c, d in groups:
        if not np.any((labels == c) & (supplied == (lay.split or ""))):
            raise DataError(f"class {class_names[c]!r} has no readable images ({d})")
    decoded = [results[i] for i in keep]
    images = np.stack([d.pixels for d in decoded])

    if split_folders is None:
        splits = split(labels, cfg, [str(d) for d in layouts[0].class_dirs], class_names)
    else:
        train_dirs = [str(d) for d in layouts[0].class_dirs]
        splits = split_supplied(labels, supplied, cfg, train_dirs, class_names)
    split_lists = {s: [names[i] for i in idx] for s, idx in splits.items()}
    identity = {
        "source": str(source),
        "layout": name,
        "split_folders": split_folders,
        **_common_identity(cfg, class_names, labels, splits),
        "input": input_counts([(d.width, d.height, d.grey) for d in decoded], cfg),
        "split_hash": sha256_json(split_lists),
        "skipped": skipped,
    }
    return with_choice(finish(images, labels, splits, identity, split_lists, cache_file), choice)


def _load_synthetic(cfg: DataConfig, cache_dir: Path) -> Dataset:
    choice = None
    if cfg.channels == AUTO:  # the grey textures keep the channels they always had
        cfg = replace(cfg, channels=SYNTHETIC_CHANNELS)
        choice = f"synthetic data: auto keeps the {SYNTHETIC_CHANNELS} channels it always had; write 1 for grey input"
    key = cache_key(
        source="synthetic",
        generator=SYNTHETIC_VERSION,
        count=cfg.synthetic_count,
        seed=cfg.synthetic_seed,
        native_size=SYNTHETIC_NATIVE_SIZE,
        image_size=cfg.image_size,
        channels=cfg.channels,
        resize=cfg.resize,  # square images: every resize gives the same pixels
        split=split_params(cfg),
    )
    cache_file = cache_path(cache_dir, "synthetic", cfg, key)
    cached = read_cache(cache_file)
    if cached is not None:
        return with_choice(cached, choice)

    grey, labels, class_names = generate_synthetic(
        cfg.synthetic_count, SYNTHETIC_NATIVE_SIZE, cfg.synthetic_seed
    )
    images = torch.from_numpy(grey).unsqueeze(1)
    if cfg.image_size != SYNTHETIC_NATIVE_SIZE:
        resized = F.interpolate(
            images.float(),
            size=(cfg.image_size, cfg.image_size),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
        images = resized.round().clamp(0, 255).to(torch.uint8)
    images = images.repeat(1, cfg.channels, 1, 1).numpy()

    where = [
        f"synthetic class {name!r} (synthetic_count={cfg.synthetic_count})" for name in class_names
    ]
    splits = split(labels, cfg, where, class_names)
    split_lists = {s: idx.tolist() for s, idx in splits.items()}
    identity = {
        "source": "synthetic",
        "layout": "synthetic",
        "split_folders": None,
        **_common_identity(cfg, class_names, labels, splits),
        "input": input_counts([(SYNTHETIC_NATIVE_SIZE, SYNTHETIC_NATIVE_SIZE, True)] * len(labels), cfg),
        "synthetic_count": cfg.synthetic_count,
        "synthetic_seed": cfg.synthetic_seed,
        "split_hash": sha256_json({"synthetic_seed": cfg.synthetic_seed, **split_lists}),
        "skipped": [],
    }
    return with_choice(finish(images, labels, splits, identity, split_lists, cache_file), choice)


def _common_identity(
    cfg: DataConfig, class_names: list[str], labels: np.ndarray, splits: dict[str, np.ndarray]
) -> dict:
    return {
        "class_names": list(class_names),
        "image_size": cfg.image_size,
        "channels": cfg.channels,
        "resize": cfg.resize,
        "normalisation": NORMALISATION,
        "split_seed": cfg.split_seed,
        "test_fraction": cfg.test_fraction,
        "val_fraction": cfg.val_fraction,
        "counts": {s: int(len(idx)) for s, idx in splits.items()},
        "class_counts": {
            s: np.bincount(labels[idx], minlength=len(class_names)).tolist()
            for s, idx in splits.items()
        },
    }

"""Decoded datasets in the cache folder: the cache key, writing a :class:`Dataset` with its
per-split file lists, reading it back. File names, listing and clearing (torch-free) are in
:mod:`search.data.cache`.

A cache key is a sha256 over ``CACHE_VERSION`` and what decides the tensors (the source, its
layout, a fingerprint of its files, the image size, channels, resize and split). Files are
written through a temporary file and ``os.replace``, so a reader never sees half of one; a
file that cannot be read is reported and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from search.data.cache import tensors_file
from search.data.config import DataConfig
from search.data.dataset import Dataset
from search.data.split import SPLITS

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: float and 32-bit TIFFs scaled, resize, split folders, input counts


def sha256_json(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def cache_key(**parts: object) -> str:
    return sha256_json({"cache_version": CACHE_VERSION, **parts})


def fingerprint(root: Path, files: list[Path]) -> str:
    """sha256 over relative path, size and mtime of every file."""
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cache_path(cache_dir: Path, name: str, cfg: DataConfig, key: str) -> Path:
    """The decoded tensors' file (:func:`search.data.cache.tensors_file`)."""
    return tensors_file(cache_dir, name, cfg.image_size, cfg.channels, key)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write via a temporary file in the same folder and ``os.replace``, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def finish(
    images: np.ndarray,
    labels: np.ndarray,
    splits: dict[str, np.ndarray],
    identity: dict,
    split_lists: dict[str, list],
    cache_file: Path,
) -> Dataset:
    """Build the Dataset, write the cache and the split file lists beside it."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    y = torch.from_numpy(labels.astype(np.int64))
    tensors = {}
    for s, idx in splits.items():
        index = torch.from_numpy(idx)
        tensors[f"{s}_x"] = x[index].contiguous()
        tensors[f"{s}_y"] = y[index].contiguous()
    dataset = Dataset(class_names=list(identity["class_names"]), identity=identity, **tensors)

    split_file = cache_file.with_suffix(".split.json")
    record = {"split_hash": identity["split_hash"], "source": identity["source"], **split_lists}
    atomic_write(split_file, lambda p: p.write_text(json.dumps(record, indent=1)))
    atomic_write(
        cache_file,
        lambda p: torch.save({"cache_version": CACHE_VERSION, "identity": identity, **tensors}, p),
    )
    log.debug("cached %s (split lists: %s)", cache_file, split_file)
    dataset.cache_written = cache_file
    return dataset


def read_cache(cache_file: Path) -> Dataset | None:
    """The cached Dataset, or None when there is none; a corrupt cache is reported and ignored."""
    if not cache_file.is_file():
        return None
    try:
        blob = torch.load(cache_file, map_location="cpu", weights_only=True)
        if blob["cache_version"] != CACHE_VERSION:
            raise ValueError(f"cache_version {blob['cache_version']!r} != {CACHE_VERSION}")
        identity = blob["identity"]
        dataset = Dataset(
            class_names=list(identity["class_names"]),
            identity=identity,
            **{f"{s}_{t}": blob[f"{s}_{t}"] for s in SPLITS for t in "xy"},
        )
    except Exception as e:  # anything wrong with the file means: rebuild it
        log.warning(
            "ignoring unreadable cache %s (%s: %s); rebuilding", cache_file, type(e).__name__, e
        )
        return None
    log.info("loaded %s from cache %s", identity["source"], cache_file)
    return dataset

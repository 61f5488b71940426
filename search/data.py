"""Datasets: image folders, GC10-DET layouts, the built-in synthetic set, split, cache.

``load_dataset(DataConfig(...))`` turns a source into a :class:`Dataset` of
uint8 tensors ``[N, C, H, W]`` split into train / val / test. Models read
``x.float() / 255``; nothing is normalised further.

Sources:

- a folder of class sub-folders ``<root>/<class>/<image>`` (any image Pillow
  reads; class names are the sorted folder names);
- GC10-DET as distributed: folders ``1``..``10`` beside a ``lable/`` (or
  ``label/``) folder of VOC XML, which is ignored; the classes get GC10's
  names, ordered by folder number;
- the Kaggle copy of GC10-DET: ``<root>/images/images/<class>/`` (or
  ``<root>/images/<class>/`` when ``images/`` holds only class folders);
- ``"synthetic"``: grey steel-strip textures with drawn defects, generated
  with numpy (:func:`search.synthetic.generate_synthetic`), no files shipped.

The split is stratified and seeded (default: 10% test, then 10% of the rest
for validation, seed 555) and computed on sorted file lists, so it does not
depend on filesystem order. Decoded tensors are cached under ``cache_dir``
keyed by the source, a fingerprint of its files, the image size, channels and
split; the per-split file lists are written beside the cache as JSON.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from search.datarules import MIN_IMAGE_SIZE, DataError
from search.imageio import DECODE_ERRORS as _DECODE_ERRORS
from search.imageio import decode_image as _decode_image  # one decoder for training and predict
from search.synthetic import SYNTHETIC_VERSION, generate_synthetic

log = logging.getLogger(__name__)

SYNTHETIC_NATIVE_SIZE = 64
NORMALISATION = "x/255"
SPLITS = ("train", "val", "test")
CACHE_VERSION = 1
GC10_CLASSES = {
    1: "punching_hole",
    2: "welding_line",
    3: "crescent_gap",
    4: "water_spot",
    5: "oil_spot",
    6: "silk_spot",
    7: "inclusion",
    8: "rolled_pit",
    9: "crease",
    10: "waist_folding",
}
GC10_LABEL_FOLDERS = ("lable", "label")
_DECODE_THREADS = 4


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from, how they are decoded and how they are split."""

    source: str = "synthetic"  # "synthetic" or a folder path
    image_size: int = 32  # images resized to image_size x image_size
    channels: int = 3  # 1 (grey) or 3 (RGB)
    test_fraction: float = 0.1
    val_fraction: float = 0.2  # fraction of the non-test part; it ranks candidates (see spaces/paper.yaml)
    split_seed: int = 555
    synthetic_count: int = 2000  # only for source == "synthetic"
    synthetic_seed: int = 0  # only for source == "synthetic"

    @classmethod
    def from_identity(cls, identity: dict) -> DataConfig:
        """The config that loads the data a :attr:`Dataset.identity` describes."""
        synthetic = {k: identity[k] for k in ("synthetic_count", "synthetic_seed") if k in identity}
        return cls(source=identity["source"], image_size=identity["image_size"], channels=identity["channels"],
                   test_fraction=identity["test_fraction"], val_fraction=identity["val_fraction"],
                   split_seed=identity["split_seed"], **synthetic)

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source:
            raise DataError(
                f"source must be 'synthetic' or a folder path, got {self.source!r} (DataConfig.source)"
            )
        if not isinstance(self.image_size, int) or self.image_size < MIN_IMAGE_SIZE:
            raise DataError(
                f"image_size must be an integer >= {MIN_IMAGE_SIZE}, got {self.image_size!r} (DataConfig.image_size)"
            )
        if self.channels not in (1, 3):
            raise DataError(
                f"channels must be 1 (grey) or 3 (RGB), got {self.channels!r} (DataConfig.channels)"
            )
        for name in ("test_fraction", "val_fraction"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
                raise DataError(f"{name} must be in (0, 1), got {value!r} (DataConfig.{name})")
        if not isinstance(self.synthetic_count, int) or self.synthetic_count < 1:
            raise DataError(
                f"synthetic_count must be an integer >= 1, got {self.synthetic_count!r} (DataConfig.synthetic_count)"
            )


@dataclass
class Dataset:
    """Decoded uint8 images ``[N, C, H, W]`` and int64 labels per split, plus where they came from."""

    class_names: list[str]
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    identity: dict

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])


def default_cache_dir() -> Path:
    """``$CASTSEARCH_CACHE`` if set, else ``~/.cache/castsearch``."""
    env = os.environ.get("CASTSEARCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "castsearch"


def load_dataset(cfg: DataConfig, cache_dir: str | Path | None = None) -> Dataset:
    """Load, split and cache the images that ``cfg.source`` names (see the module docstring)."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if cfg.source == "synthetic":
        return _load_synthetic(cfg, cache_dir)
    return _load_folder(cfg, cache_dir)


# ---------------------------------------------------------------------------
# Folder sources


@dataclass(frozen=True)
class _Layout:
    name: str  # "folders" | "gc10" | "kaggle"
    class_dirs: list[Path]
    class_names: list[str]


def _visible(folder: Path) -> list[Path]:
    """Entries of ``folder`` whose names do not start with a dot, sorted by name."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _subdirs(folder: Path) -> list[Path]:
    return [p for p in _visible(folder) if p.is_dir()]


def _files(folder: Path) -> list[Path]:
    """Visible plain files (candidate images; unreadable ones are skipped when decoded)."""
    return [p for p in _visible(folder) if p.is_file()]


def _without_labels(dirs: list[Path]) -> list[Path]:
    return [d for d in dirs if d.name.lower() not in GC10_LABEL_FOLDERS]


def _detect_layout(source: Path) -> _Layout:
    """Find the class folders under ``source`` and which distribution layout they follow."""
    if not source.exists():
        raise DataError(f"data folder does not exist: {source}")
    if not source.is_dir():
        raise DataError(f"data source must be a folder of class sub-folders, got a file: {source}")
    images = source / "images"
    if (images / "images").is_dir():  # Kaggle: <root>/images/images/<class>/
        return _class_folders("kaggle", images / "images")
    if [d.name for d in _without_labels(_subdirs(source))] == ["images"] and not _files(images):
        return _class_folders("kaggle", images)  # Kaggle, one level down: <root>/images/<class>/
    dirs = _subdirs(source)
    numbered = _without_labels(dirs)
    if len(numbered) < len(dirs) and all(
        d.name.isdigit() and int(d.name) in GC10_CLASSES for d in numbered
    ):
        numbered.sort(key=lambda d: int(d.name))  # GC10-DET: 1..10 beside lable/ (VOC XML, ignored)
        return _checked(
            _Layout("gc10", numbered, [GC10_CLASSES[int(d.name)] for d in numbered]), source
        )
    return _class_folders("folders", source)


def _class_folders(name: str, root: Path) -> _Layout:
    dirs = _subdirs(root)
    if not dirs:
        raise DataError(
            f"no class sub-folders in {root}: expected <folder>/<class>/<image> "
            f"(found {len(_files(root))} files at the top level)"
        )
    return _checked(_Layout(name, dirs, [d.name for d in dirs]), root)


def _checked(layout: _Layout, root: Path) -> _Layout:
    """``layout`` if it has at least two classes and every class folder holds files."""
    if len(layout.class_dirs) < 2:
        found = ", ".join(d.name for d in layout.class_dirs)
        raise DataError(
            f"need at least 2 class sub-folders, found {len(layout.class_dirs)} ({found}) in {root}"
        )
    for d in layout.class_dirs:
        if not _files(d):
            raise DataError(f"class folder has no image files: {d}")
    return layout


def _try_decode(path: Path, image_size: int, channels: int) -> np.ndarray | str:
    """The decoded image, or the reason it could not be decoded."""
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        return _decode_image(path, image_size, channels)
    except _DECODE_ERRORS as e:
        return f"not a readable image ({type(e).__name__}: {e})"


def _decode_all(files: list[Path], image_size: int, channels: int) -> list[np.ndarray | str]:
    """:func:`_try_decode` over ``files`` on a few threads (Pillow releases the GIL while decoding)."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=min(_DECODE_THREADS, os.cpu_count() or 1)) as pool:
        results = list(pool.map(lambda f: _try_decode(f, image_size, channels), files))
    log.info("decoded %d files in %.2f s", len(files), time.perf_counter() - start)
    return results


def _fingerprint(root: Path, files: list[Path]) -> str:
    """sha256 over relative path, size and mtime of every file."""
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _load_folder(cfg: DataConfig, cache_dir: Path) -> Dataset:
    source = Path(cfg.source).expanduser().resolve()
    layout = _detect_layout(source)
    files_per_class = [_files(d) for d in layout.class_dirs]
    files = [f for fs in files_per_class for f in fs]
    key = _cache_key(
        source=str(source),
        layout=layout.name,
        files=_fingerprint(source, files),
        image_size=cfg.image_size,
        channels=cfg.channels,
        split=_split_params(cfg),
    )
    cache_file = _cache_file(cache_dir, source.name, cfg, key)
    cached = _read_cache(cache_file)
    if cached is not None:
        return cached

    results = _decode_all(files, cfg.image_size, cfg.channels)
    labels = np.repeat(np.arange(len(files_per_class)), [len(fs) for fs in files_per_class])
    skipped = [
        {"path": str(f), "reason": r}
        for f, r in zip(files, results, strict=True)
        if isinstance(r, str)
    ]
    for s in skipped:
        log.warning("skipping %s: %s", s["path"], s["reason"])
    keep = [i for i, r in enumerate(results) if not isinstance(r, str)]
    labels = labels[keep]
    names = [files[i].relative_to(source).as_posix() for i in keep]
    for c, d in enumerate(layout.class_dirs):
        if not np.any(labels == c):
            raise DataError(f"class {layout.class_names[c]!r} has no readable images ({d})")
    images = np.stack([results[i] for i in keep])

    splits = _split(labels, cfg, [str(d) for d in layout.class_dirs], layout.class_names)
    split_lists = {s: [names[i] for i in idx] for s, idx in splits.items()}
    identity = {
        "source": str(source),
        "layout": layout.name,
        **_common_identity(cfg, layout.class_names, labels, splits),
        "split_hash": _sha256_json(split_lists),
        "skipped": skipped,
    }
    return _finish(images, labels, splits, identity, split_lists, cache_file)


# ---------------------------------------------------------------------------
# Synthetic source


def _load_synthetic(cfg: DataConfig, cache_dir: Path) -> Dataset:
    key = _cache_key(
        source="synthetic",
        generator=SYNTHETIC_VERSION,
        count=cfg.synthetic_count,
        seed=cfg.synthetic_seed,
        native_size=SYNTHETIC_NATIVE_SIZE,
        image_size=cfg.image_size,
        channels=cfg.channels,
        split=_split_params(cfg),
    )
    cache_file = _cache_file(cache_dir, "synthetic", cfg, key)
    cached = _read_cache(cache_file)
    if cached is not None:
        return cached

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
    splits = _split(labels, cfg, where, class_names)
    split_lists = {s: idx.tolist() for s, idx in splits.items()}
    identity = {
        "source": "synthetic",
        "layout": "synthetic",
        **_common_identity(cfg, class_names, labels, splits),
        "synthetic_count": cfg.synthetic_count,
        "synthetic_seed": cfg.synthetic_seed,
        "split_hash": _sha256_json({"synthetic_seed": cfg.synthetic_seed, **split_lists}),
        "skipped": [],
    }
    return _finish(images, labels, splits, identity, split_lists, cache_file)


# ---------------------------------------------------------------------------
# Split


def _split_params(cfg: DataConfig) -> dict:
    return {
        "seed": cfg.split_seed,
        "test_fraction": cfg.test_fraction,
        "val_fraction": cfg.val_fraction,
    }


def _split_sizes(n: int, cfg: DataConfig) -> tuple[int, int, int]:
    """(train, val, test) sizes for a class of ``n`` images, rounded half up; test and val get at least one each."""
    n_test = max(1, int(n * cfg.test_fraction + 0.5))
    n_val = max(1, int((n - n_test) * cfg.val_fraction + 0.5))
    return n - n_test - n_val, n_val, n_test


def _min_class_size(cfg: DataConfig) -> int:
    n = 3
    while _split_sizes(n, cfg)[0] < 1:
        n += 1
    return n


def _split(
    labels: np.ndarray, cfg: DataConfig, where: list[str], class_names: list[str]
) -> dict[str, np.ndarray]:
    """Stratified seeded split of item indices (items already in sorted order) into train/val/test."""
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for c, name in enumerate(class_names):
        members = np.flatnonzero(labels == c)
        n_train, n_val, _ = _split_sizes(len(members), cfg)
        if n_train < 1:
            raise DataError(
                f"class {name!r} has {len(members)} usable images, the split needs at least "
                f"{_min_class_size(cfg)} (one each in train, val and test): {where[c]}"
            )
        shuffled = members[np.random.default_rng([cfg.split_seed, c]).permutation(len(members))]
        parts["train"].append(shuffled[:n_train])
        parts["val"].append(shuffled[n_train : n_train + n_val])
        parts["test"].append(shuffled[n_train + n_val :])
    return {s: np.sort(np.concatenate(p)) for s, p in parts.items()}


def _common_identity(
    cfg: DataConfig, class_names: list[str], labels: np.ndarray, splits: dict[str, np.ndarray]
) -> dict:
    return {
        "class_names": list(class_names),
        "image_size": cfg.image_size,
        "channels": cfg.channels,
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


# ---------------------------------------------------------------------------
# Cache


def _sha256_json(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _cache_key(**parts: object) -> str:
    return _sha256_json({"cache_version": CACHE_VERSION, **parts})


def _cache_file(cache_dir: Path, name: str, cfg: DataConfig, key: str) -> Path:
    """``<cache_dir>/<name>-<size>px-c<channels>-<key>.pt``: readable, unique per key."""
    slug = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name) or "data"
    return cache_dir / f"{slug}-{cfg.image_size}px-c{cfg.channels}-{key[:16]}.pt"


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
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


def _finish(
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
    _atomic_write(split_file, lambda p: p.write_text(json.dumps(record, indent=1)))
    _atomic_write(
        cache_file,
        lambda p: torch.save({"cache_version": CACHE_VERSION, "identity": identity, **tensors}, p),
    )
    log.info("cached %s (split lists: %s)", cache_file, split_file)
    return dataset


def _read_cache(cache_file: Path) -> Dataset | None:
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

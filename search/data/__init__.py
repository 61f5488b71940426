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
- split folders, as most public defect sets ship: ``<root>/train/<class>/``,
  ``<root>/test/<class>/`` and optionally ``<root>/val/<class>/`` (or ``valid``,
  ``validation``; any case), each with the same class folders and nothing but these
  folders under ``<root>``. The test split is the supplied one; so is the validation
  split when there is one, else it is split off ``train/`` as below;
- ``"synthetic"``: grey steel-strip textures with drawn defects, generated
  with numpy (:func:`search.data.synthetic.generate_synthetic`), no files shipped.

The split is stratified and seeded (default: 10% test, then 20% of the rest
for validation, seed 555) and computed on sorted file lists, so it does not
depend on filesystem order. Images are made square by ``resize``
(:mod:`search.data.imageio`: squash, pad or center-crop). Decoded tensors are cached
under ``cache_dir`` keyed by the source, its layout, a fingerprint of its files,
the image size, channels, resize and split; the per-split file lists are written
beside the cache as JSON (file names, listing and clearing: :mod:`search.data.cache`,
``castsearch cache``). The load that writes a cache file says where in its notices.

``channels`` is 1 (grey), 3 (RGB) or ``auto`` (the default): decided once per dataset
when it is loaded, 1 when every image is grey, otherwise 3. An image is grey when its
file holds a grey mode (1, L, LA, I, I;16, F: read from the header alone) or when its
red, green and blue are equal (within 2 levels, after resizing: :attr:`Decoded.grey`, which
decoding at 3 channels works out anyway), as in grey images saved as RGB JPEGs. Only
when some file holds a colour mode are the images decoded to decide; when they all turn
out grey they are decoded once more, as one channel. The decision is kept beside the cache
(keyed by the files' fingerprint, the size and resize), and the resolved count keys the
tensor cache and the identity exactly as the explicit value would, so ``auto`` that
resolved to 1 shares the ``channels: 1`` cache and never reads a 3-channel one. For the
synthetic set ``auto`` means 3, what it always gave (its textures are grey: write 1 to
train on one channel).

What decoding changed (images upscaled, squashed, grey copied to three channels or
colour made grey) is counted in ``identity["input"]``; what ``auto`` chose, and why, is
``identity["channels_auto"]``. :meth:`Dataset.notices` says these, the layout and the
classes too small to measure, in one line each.
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
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from search.data.cache import choice_file, default_cache_dir, human_bytes, tensors_file
from search.data.imageio import DECODE_ERRORS as _DECODE_ERRORS
from search.data.imageio import RESIZES, Decoded, grey_mode
from search.data.imageio import decode as _decode  # one decoder for training and predict
from search.data.rules import AUTO, MIN_IMAGE_SIZE, SYNTHETIC_CHANNELS, DataError, valid_channels
from search.data.synthetic import SYNTHETIC_VERSION, generate_synthetic

log = logging.getLogger(__name__)

SYNTHETIC_NATIVE_SIZE = 64
NORMALISATION = "x/255"
SPLITS = ("train", "val", "test")
CACHE_VERSION = 2  # 2: float and 32-bit TIFFs scaled, resize, split folders, input counts
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
SPLIT_FOLDERS = {"train": "train", "test": "test", "val": "val", "valid": "val", "validation": "val"}
ASPECT_TOLERANCE = 0.05  # an aspect ratio changed by more than this counts as squashed
MIN_MEASURABLE = 5  # fewer val or test images of a class than this: its accuracy is noise
RESHAPED = {"squash": "squashed", "pad": "padded", "center-crop": "cropped"}
LAYOUT_NAMES = {"folders": "class folders", "gc10": "GC10-DET numbered folders",
                "kaggle": "GC10-DET Kaggle folders", "synthetic": "synthetic images"}
_DECODE_THREADS = 4


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from, how they are decoded and how they are split."""

    source: str = "synthetic"  # "synthetic" or a folder path
    image_size: int = 32  # images resized to image_size x image_size
    channels: int | str = AUTO  # 1 (grey), 3 (RGB) or "auto": 1 when every image is grey (module docstring)
    test_fraction: float = 0.1
    val_fraction: float = 0.2  # fraction of the non-test part; it ranks candidates (see spaces/paper.yaml)
    split_seed: int = 555
    synthetic_count: int = 2000  # only for source == "synthetic"
    synthetic_seed: int = 0  # only for source == "synthetic"
    resize: str = "squash"  # how images are made square: squash | pad | center-crop

    @classmethod
    def from_identity(cls, identity: dict) -> DataConfig:
        """The config that loads the data a :attr:`Dataset.identity` describes."""
        synthetic = {k: identity[k] for k in ("synthetic_count", "synthetic_seed") if k in identity}
        return cls(source=identity["source"], image_size=identity["image_size"], channels=identity["channels"],
                   test_fraction=identity["test_fraction"], val_fraction=identity["val_fraction"],
                   split_seed=identity["split_seed"], resize=identity.get("resize", "squash"), **synthetic)

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source:
            raise DataError(
                f"source must be 'synthetic' or a folder path, got {self.source!r} (DataConfig.source)"
            )
        if not isinstance(self.image_size, int) or self.image_size < MIN_IMAGE_SIZE:
            raise DataError(
                f"image_size must be an integer >= {MIN_IMAGE_SIZE}, got {self.image_size!r} (DataConfig.image_size)"
            )
        if not valid_channels(self.channels):
            raise DataError(
                f"channels must be auto, 1 (grey) or 3 (RGB), got {self.channels!r} (DataConfig.channels)"
            )
        for name in ("test_fraction", "val_fraction"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
                raise DataError(f"{name} must be in (0, 1), got {value!r} (DataConfig.{name})")
        if self.resize not in RESIZES:
            raise DataError(
                f"resize must be one of {', '.join(RESIZES)}, got {self.resize!r} (DataConfig.resize)"
            )
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
    cache_written: Path | None = None  # the tensor file this load wrote; None when it read one or wrote none

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def layout(self) -> str:
        """How the source was laid out: folders, gc10, kaggle, synthetic, train/test or train/val/test."""
        return self.identity["layout"]

    def notices(self) -> list[str]:
        """One line each, for a command's header: how the data was split, what ``channels:
        auto`` chose, what decoding changed, where the decoded tensors were cached (by the load
        that wrote them), and the classes with too few val or test images to measure."""
        lines = [_describe_layout(self.identity), _describe_channels(self.identity), _describe_input(self.identity),
                 self._describe_cache(), _describe_small(self.identity)]
        return [line for line in lines if line]

    def _describe_cache(self) -> str | None:
        """Said once, by the load that wrote the decoded tensors: where they went and how to remove them."""
        if self.cache_written is None:
            return None
        try:
            size = human_bytes(self.cache_written.stat().st_size)
        except OSError:
            size = "size unknown"
        return (f"cache: decoded images saved for later runs in {self.cache_written} ({size}); "
                f"`castsearch cache` lists the cache, `castsearch cache --clear` empties it")


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
    name: str  # "folders" | "gc10" | "kaggle" (each split folder is "folders")
    class_dirs: list[Path]
    class_names: list[str]
    split: str | None = None  # the split a split folder supplies ("train", "val", "test")


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


def _detect_layouts(source: Path) -> list[_Layout]:
    """The class folders under ``source``: one layout, or one per split folder."""
    if not source.exists():
        raise DataError(f"data folder does not exist: {source}")
    if not source.is_dir():
        raise DataError(f"data source must be a folder of class sub-folders, got a file: {source}")
    split_dirs = _split_folders(source)
    if split_dirs is None:
        return [_detect_layout(source)]
    layouts = [
        _Layout("folders", found.class_dirs, found.class_names, split)
        for split, found in ((s, _class_folders("folders", d)) for s, d in split_dirs.items())
    ]
    every = set().union(*(layout.class_names for layout in layouts))
    lacking = [
        f"{d} has no {', '.join(sorted(every - set(layout.class_names)))}"
        for d, layout in zip(split_dirs.values(), layouts, strict=True)
        if set(layout.class_names) != every
    ]
    if lacking:
        raise DataError(f"the split folders of {source} must hold the same class folders: {'; '.join(lacking)}")
    return layouts


def _split_folders(source: Path) -> dict[str, Path] | None:
    """``{"train": ..., ["val": ...,] "test": ...}`` when ``source`` holds split folders and no other folder."""
    dirs = _subdirs(source)
    splits = [SPLIT_FOLDERS.get(d.name.lower()) for d in dirs]
    if None in splits or "train" not in splits or "test" not in splits:
        return None
    if len(set(splits)) < len(splits):
        raise DataError(f"two folders for the same split in {source}: {', '.join(d.name for d in dirs)}")
    by_split = dict(zip(splits, dirs, strict=True))
    return {s: by_split[s] for s in SPLITS if s in by_split}


def _detect_layout(source: Path) -> _Layout:
    """Find the class folders under ``source`` and which distribution layout they follow."""
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
    hint = ""
    if any(d.name.lower() in SPLIT_FOLDERS for d in layout.class_dirs):
        hint = (" (split folders are read as train/test only when the folder holds nothing but "
                "train, test and optionally val, valid or validation)")
    for d in layout.class_dirs:
        if not _files(d):
            raise DataError(f"class folder has no image files: {d}{hint}")
    return layout


def _try_decode(path: Path, cfg: DataConfig) -> Decoded | str:
    """The decoded image, or the reason it could not be decoded."""
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        return _decode(path, cfg.image_size, cfg.channels, cfg.resize)
    except _DECODE_ERRORS as e:
        return f"not a readable image ({type(e).__name__}: {e})"


def _decode_all(files: list[Path], cfg: DataConfig) -> list[Decoded | str]:
    """:func:`_try_decode` over ``files`` on a few threads (Pillow releases the GIL while decoding)."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=min(_DECODE_THREADS, os.cpu_count() or 1)) as pool:
        results = list(pool.map(lambda f: _try_decode(f, cfg), files))
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
    layouts = _detect_layouts(source)
    class_names = layouts[0].class_names
    split_folders = None
    if layouts[0].split:  # one layout per split folder, classes in the same order
        split_folders = {lay.split: lay.class_dirs[0].parent.name for lay in layouts}
    name = layouts[0].name if split_folders is None else "/".join(split_folders)  # e.g. "train/val/test"
    # one group of files per (split folder, class), in order
    groups = [(lay, c, d) for lay in layouts for c, d in enumerate(lay.class_dirs)]
    files_per_group = [_files(d) for _, _, d in groups]
    files = [f for fs in files_per_group for f in fs]
    fingerprint = _fingerprint(source, files)
    cfg, choice, decoded_rgb = _choose_channels(cfg, source, files, fingerprint, cache_dir)
    key = _cache_key(
        source=str(source),
        layout=name,
        split_folders=split_folders,
        files=fingerprint,
        image_size=cfg.image_size,
        channels=cfg.channels,
        resize=cfg.resize,
        split=_split_params(cfg),
    )
    cache_file = _cache_file(cache_dir, source.name, cfg, key)
    cached = _read_cache(cache_file)
    if cached is not None:
        return _with_choice(cached, choice)

    results = _decode_all(files, cfg) if decoded_rgb is None else decoded_rgb
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
        splits = _split(labels, cfg, [str(d) for d in layouts[0].class_dirs], class_names)
    else:
        train_dirs = [str(d) for d in layouts[0].class_dirs]
        splits = _split_supplied(labels, supplied, cfg, train_dirs, class_names)
    split_lists = {s: [names[i] for i in idx] for s, idx in splits.items()}
    identity = {
        "source": str(source),
        "layout": name,
        "split_folders": split_folders,
        **_common_identity(cfg, class_names, labels, splits),
        "input": _input_counts([(d.width, d.height, d.grey) for d in decoded], cfg),
        "split_hash": _sha256_json(split_lists),
        "skipped": skipped,
    }
    return _with_choice(_finish(images, labels, splits, identity, split_lists, cache_file), choice)


# ---------------------------------------------------------------------------
# channels: auto


def _choose_channels(
    cfg: DataConfig, source: Path, files: list[Path], fingerprint: str, cache_dir: Path
) -> tuple[DataConfig, str | None, list[Decoded | str] | None]:
    """``cfg`` with ``channels: auto`` decided (module docstring), why (None when the count
    was given), and the files decoded at 3 channels when deciding took that and the answer
    is 3 (decoding them again would give the same). The decision is kept in a small file
    beside the cache, so a cached dataset is not decoded again just to decide."""
    if cfg.channels != AUTO:
        return cfg, None, None
    key = _cache_key(choice="channels", source=str(source), files=fingerprint, image_size=cfg.image_size,
                     resize=cfg.resize)
    kept = _choice_file(cache_dir, source.name, cfg, key)
    known = _read_choice(kept)
    if known is not None:
        return replace(cfg, channels=known[0]), known[1], None
    channels, why, decoded = _decide_channels(files, cfg)
    _atomic_write(kept, lambda p: p.write_text(json.dumps({"channels": channels, "why": why})))
    return replace(cfg, channels=channels), why, decoded


def _decide_channels(files: list[Path], cfg: DataConfig) -> tuple[int, str, list[Decoded | str] | None]:
    """(channels, why, the images decoded at 3 channels when the answer is 3 and they were).
    File headers answer when no file holds a colour mode; otherwise every image is decoded
    at 3 channels, which says whether its red, green and blue are equal."""
    headers = [_header_grey(f) for f in files]
    saved_in_colour = headers.count(False)
    if not saved_in_colour:
        return 1, f"all {headers.count(True):,} images are grey", None
    decoded = _decode_all(files, replace(cfg, channels=3))
    grey = [d.grey for d in decoded if not isinstance(d, str)]
    colour = sum(g is not True for g in grey)
    if colour:
        return 3, f"{colour:,} of {len(grey):,} images {'is' if colour == 1 else 'are'} colour", decoded
    saved = "saved" if saved_in_colour == len(grey) else f"{saved_in_colour:,} of them saved"
    return 1, f"all {len(grey):,} images are grey, {saved} in colour with equal red, green and blue", None


def _header_grey(path: Path) -> bool | None:
    """Whether the file holds a grey mode; None when its header cannot be read (the file
    is then skipped when decoded, and says nothing about the dataset's colour)."""
    try:
        return grey_mode(path)
    except _DECODE_ERRORS:
        return None


def _choice_file(cache_dir: Path, name: str, cfg: DataConfig, key: str) -> Path:
    """What ``auto`` decided for these files (:func:`search.data.cache.choice_file`)."""
    return choice_file(cache_dir, name, cfg.image_size, key)


def _read_choice(path: Path) -> tuple[int, str] | None:
    """(channels, why) kept by :func:`_choose_channels`, or None when there is none or it is unreadable."""
    try:
        kept = json.loads(path.read_text())
        channels, why = kept["channels"], kept["why"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (channels, why) if channels in (1, 3) and isinstance(why, str) else None


def _with_choice(dataset: Dataset, why: str | None) -> Dataset:
    """``dataset`` with what ``auto`` chose said in its identity (``channels_auto``), or
    nothing said when the count was given. Set on every load, never cached: ``auto`` and
    the explicit count it resolved to share one cached tensor."""
    identity = {k: v for k, v in dataset.identity.items() if k != "channels_auto"}
    dataset.identity = identity if why is None else {**identity, "channels_auto": why}
    return dataset


# ---------------------------------------------------------------------------
# Synthetic source


def _load_synthetic(cfg: DataConfig, cache_dir: Path) -> Dataset:
    choice = None
    if cfg.channels == AUTO:  # the grey textures keep the channels they always had
        cfg = replace(cfg, channels=SYNTHETIC_CHANNELS)
        choice = f"synthetic data: auto keeps the {SYNTHETIC_CHANNELS} channels it always had; write 1 for grey input"
    key = _cache_key(
        source="synthetic",
        generator=SYNTHETIC_VERSION,
        count=cfg.synthetic_count,
        seed=cfg.synthetic_seed,
        native_size=SYNTHETIC_NATIVE_SIZE,
        image_size=cfg.image_size,
        channels=cfg.channels,
        resize=cfg.resize,  # square images: every resize gives the same pixels
        split=_split_params(cfg),
    )
    cache_file = _cache_file(cache_dir, "synthetic", cfg, key)
    cached = _read_cache(cache_file)
    if cached is not None:
        return _with_choice(cached, choice)

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
        "split_folders": None,
        **_common_identity(cfg, class_names, labels, splits),
        "input": _input_counts([(SYNTHETIC_NATIVE_SIZE, SYNTHETIC_NATIVE_SIZE, True)] * len(labels), cfg),
        "synthetic_count": cfg.synthetic_count,
        "synthetic_seed": cfg.synthetic_seed,
        "split_hash": _sha256_json({"synthetic_seed": cfg.synthetic_seed, **split_lists}),
        "skipped": [],
    }
    return _with_choice(_finish(images, labels, splits, identity, split_lists, cache_file), choice)


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


def _split_supplied(
    labels: np.ndarray, supplied: np.ndarray, cfg: DataConfig, train_dirs: list[str], class_names: list[str]
) -> dict[str, np.ndarray]:
    """The split the split folders give; without a val folder, validation is split off each
    train class (``val_fraction`` of it, rounded half up, at least one; seeded like :func:`_split`)."""
    splits = {s: np.flatnonzero(supplied == s) for s in SPLITS}
    if len(splits["val"]):
        return splits
    train, val = [], []
    for c, name in enumerate(class_names):
        members = np.flatnonzero((labels == c) & (supplied == "train"))
        n_val = max(1, int(len(members) * cfg.val_fraction + 0.5))
        if n_val >= len(members):
            raise DataError(
                f"class {name!r} has {len(members)} usable train images, splitting validation off "
                f"needs at least 2 (one each in train and val): {train_dirs[c]}"
            )
        shuffled = members[np.random.default_rng([cfg.split_seed, c]).permutation(len(members))]
        train.append(shuffled[: len(members) - n_val])
        val.append(shuffled[len(members) - n_val :])
    return {"train": np.sort(np.concatenate(train)), "val": np.sort(np.concatenate(val)), "test": splits["test"]}


def _input_counts(files: list[tuple[int, int, bool | None]], cfg: DataConfig) -> dict[str, int]:
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


# ---------------------------------------------------------------------------
# Notices (Dataset.notices)


def _percent(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def _describe_layout(identity: dict) -> str:
    seed = identity["split_seed"]
    folders = identity.get("split_folders")
    if not folders:
        name = LAYOUT_NAMES.get(identity["layout"], identity["layout"])
        return (f"layout: {name}; split here: {_percent(identity['test_fraction'])} test, then "
                f"{_percent(identity['val_fraction'])} of the rest val (seed {seed})")
    if "val" in folders:
        val = f"val = {folders['val']}/ as supplied"
    else:
        val = f"val = {_percent(identity['val_fraction'])} of {folders['train']}/ (seed {seed})"
    return f"layout: {identity['layout']} folders; test = {folders['test']}/ as supplied, {val}"


def _describe_channels(identity: dict) -> str | None:
    """E.g. ``channels: auto -> 1 (all 1,800 images are grey)``; None when the count was given."""
    why = identity.get("channels_auto")
    return f"channels: auto -> {identity['channels']} ({why})" if why else None


def _describe_input(identity: dict) -> str | None:
    counts = identity.get("input")
    if not counts:
        return None
    done = {
        "upscaled": f"upscaled to {identity['image_size']} px",
        "squashed": f"squashed to square (aspect ratio off by more than {_percent(ASPECT_TOLERANCE)})",
        "padded": "padded to square",
        "cropped": "center-cropped to square",
        "grey_to_rgb": "grey copied to 3 channels",
        "colour_to_grey": "colour made grey",
    }
    parts = [f"{counts[k]} {text}" for k, text in done.items() if counts.get(k)]
    if not parts:
        return None
    return f"input: of {counts['images']} images, {', '.join(parts)} (resize {identity['resize']})"


def _describe_small(identity: dict) -> str | None:
    names = identity["class_names"]
    small = []
    for split in ("val", "test"):
        few = [f"{name} {n}" for name, n in zip(names, identity["class_counts"][split], strict=True)
               if n < MIN_MEASURABLE]
        if few:
            small.append(f"{split} {', '.join(few)}")
    if not small:
        return None
    return (f"warning: too few images to measure these classes (fewer than {MIN_MEASURABLE}): "
            f"{'; '.join(small)}")


# ---------------------------------------------------------------------------
# Cache


def _sha256_json(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _cache_key(**parts: object) -> str:
    return _sha256_json({"cache_version": CACHE_VERSION, **parts})


def _cache_file(cache_dir: Path, name: str, cfg: DataConfig, key: str) -> Path:
    """The decoded tensors' file (:func:`search.data.cache.tensors_file`)."""
    return tensors_file(cache_dir, name, cfg.image_size, cfg.channels, key)


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
    log.debug("cached %s (split lists: %s)", cache_file, split_file)
    dataset.cache_written = cache_file
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

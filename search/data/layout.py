"""How a folder source is laid out: class folders, GC10-DET numbered or Kaggle folders, or
split folders (``train/``, ``test/``, optionally ``val/``) each holding the same class folders.

:func:`detect_layouts` finds the class folders (one :class:`Layout`, or one per split folder)
and refuses, naming the folder, what cannot be read as a dataset. The layouts themselves are
described in the :mod:`search.data` docstring.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from search.data.rules import DataError
from search.data.split import SPLITS

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
LAYOUT_NAMES = {"folders": "class folders", "gc10": "GC10-DET numbered folders",
                "kaggle": "GC10-DET Kaggle folders", "synthetic": "synthetic images"}


@dataclass(frozen=True)
class Layout:
    name: str  # "folders" | "gc10" | "kaggle" (each split folder is "folders")
    class_dirs: list[Path]
    class_names: list[str]
    split: str | None = None  # the split a split folder supplies ("train", "val", "test")


def _visible(folder: Path) -> list[Path]:
    """Entries of ``folder`` whose names do not start with a dot, sorted by name."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _subdirs(folder: Path) -> list[Path]:
    return [p for p in _visible(folder) if p.is_dir()]


def image_files(folder: Path) -> list[Path]:
    """Visible plain files (candidate images; unreadable ones are skipped when decoded)."""
    return [p for p in _visible(folder) if p.is_file()]


def _without_labels(dirs: list[Path]) -> list[Path]:
    return [d for d in dirs if d.name.lower() not in GC10_LABEL_FOLDERS]


def detect_layouts(source: Path) -> list[Layout]:
    """The class folders under ``source``: one layout, or one per split folder."""
    if not source.exists():
        raise DataError(f"data folder does not exist: {source}")
    if not source.is_dir():
        raise DataError(f"data source must be a folder of class sub-folders, got a file: {source}")
    split_dirs = _split_folders(source)
    if split_dirs is None:
        return [_detect_layout(source)]
    layouts = [
        Layout("folders", found.class_dirs, found.class_names, split)
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


def _detect_layout(source: Path) -> Layout:
    """Find the class folders under ``source`` and which distribution layout they follow."""
    images = source / "images"
    if (images / "images").is_dir():  # Kaggle: <root>/images/images/<class>/
        return _class_folders("kaggle", images / "images")
    if [d.name for d in _without_labels(_subdirs(source))] == ["images"] and not image_files(images):
        return _class_folders("kaggle", images)  # Kaggle, one level down: <root>/images/<class>/
    dirs = _subdirs(source)
    numbered = _without_labels(dirs)
    if len(numbered) < len(dirs) and all(
        d.name.isdigit() and int(d.name) in GC10_CLASSES for d in numbered
    ):
        numbered.sort(key=lambda d: int(d.name))  # GC10-DET: 1..10 beside lable/ (VOC XML, ignored)
        return _checked(
            Layout("gc10", numbered, [GC10_CLASSES[int(d.name)] for d in numbered]), source
        )
    return _class_folders("folders", source)


def _class_folders(name: str, root: Path) -> Layout:
    dirs = _subdirs(root)
    if not dirs:
        raise DataError(
            f"no class sub-folders in {root}: expected <folder>/<class>/<image> "
            f"(found {len(image_files(root))} files at the top level)"
        )
    return _checked(Layout(name, dirs, [d.name for d in dirs]), root)


def _checked(layout: Layout, root: Path) -> Layout:
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
        if not image_files(d):
            raise DataError(f"class folder has no image files: {d}{hint}")
    return layout

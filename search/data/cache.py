"""The folder of decoded datasets: where it is, what its files are called, what is in it.

:func:`search.data.load_dataset` decodes a source once per image size, channel count,
resize and split and keeps the uint8 tensors in ``<cache_dir>/<name>-<size>px-c<channels>-<key>.pt``
with the per-split file lists beside it (``.split.json``), plus one small
``<name>-<size>px-auto-<key>.json`` per dataset that ``channels: auto`` decided for.
``cache_dir`` is ``data.cache_dir`` of a space file, else ``$CASTSEARCH_CACHE``, else
``~/.cache/castsearch``.

``castsearch cache`` lists these files (:func:`scan`) and ``--clear`` removes them
(:func:`clear`): only files named as castsearch names them, so a cache folder pointed at a
folder that holds anything else loses nothing else. Torch-free, so the command is quick.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

_KEY = r"[0-9a-f]{16}"
TENSORS = re.compile(rf"^(?P<name>[A-Za-z0-9_-]+)-(?P<size>\d+)px-c(?P<channels>\d+)-(?P<key>{_KEY})\.pt$")
SPLIT_LISTS = re.compile(rf"^[A-Za-z0-9_-]+-\d+px-c\d+-{_KEY}\.split\.json$")
CHANNEL_CHOICE = re.compile(rf"^[A-Za-z0-9_-]+-\d+px-auto-{_KEY}\.json$")
# what an interrupted atomic write leaves: ".<final name>.<random>.tmp"
PARTIAL = re.compile(r"^\.(?P<final>.+)\.[^.]+\.tmp$")
ACTIVE_WRITE_S = 600  # clear leaves partial files younger than this: a run may be writing them


def default_cache_dir() -> Path:
    """``$CASTSEARCH_CACHE`` if set, else ``~/.cache/castsearch``."""
    env = os.environ.get("CASTSEARCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "castsearch"


def slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name) or "data"


def tensors_file(cache_dir: Path, name: str, image_size: int, channels: int, key: str) -> Path:
    """``<cache_dir>/<name>-<size>px-c<channels>-<key>.pt``: readable, unique per key."""
    return cache_dir / f"{slug(name)}-{image_size}px-c{channels}-{key[:16]}.pt"


def choice_file(cache_dir: Path, name: str, image_size: int, key: str) -> Path:
    """``<cache_dir>/<name>-<size>px-auto-<key>.json``: what ``channels: auto`` decided for these files."""
    return cache_dir / f"{slug(name)}-{image_size}px-auto-{key[:16]}.json"


def is_cache_file(name: str) -> bool:
    """Whether a file of this name is one castsearch writes in a cache folder (or a partial write of one)."""
    partial = PARTIAL.match(name)
    if partial:
        name = partial["final"]
    return any(p.match(name) for p in (TENSORS, SPLIT_LISTS, CHANNEL_CHOICE))


@dataclass(frozen=True)
class Entry:
    """One decoded dataset: its tensor file and what its name and split lists say."""

    path: Path
    name: str
    image_size: int
    channels: int
    source: str | None  # from the split lists; None when they are missing or unreadable
    nbytes: int  # tensors and split lists together
    modified: float


@dataclass
class Contents:
    """What a cache folder holds: decoded datasets, other castsearch files, and files it did not write."""

    folder: Path
    entries: list[Entry] = field(default_factory=list)
    other: list[Path] = field(default_factory=list)  # channel choices, orphaned split lists, partial writes
    foreign: list[Path] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self.entries) + sum(_size(p) for p in self.other)


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _source(split_lists: Path) -> str | None:
    try:
        source = json.loads(split_lists.read_text()).get("source")
    except (OSError, ValueError, AttributeError):
        return None
    return source if isinstance(source, str) else None


def scan(folder: Path) -> Contents:
    """The cache folder's files, sorted by name; an absent folder holds nothing."""
    contents = Contents(folder)
    if not folder.is_dir():
        return contents
    files = sorted(p for p in folder.iterdir() if p.is_file() or p.is_symlink())
    lists = {p.name for p in files if SPLIT_LISTS.match(p.name)}
    for path in files:
        m = TENSORS.match(path.name)
        if m:
            split_lists = path.with_suffix(".split.json")
            has_lists = split_lists.name in lists
            lists.discard(split_lists.name)
            try:
                modified = path.stat().st_mtime
            except OSError:  # removed while we looked
                continue
            contents.entries.append(Entry(
                path=path, name=m["name"], image_size=int(m["size"]), channels=int(m["channels"]),
                source=_source(split_lists) if has_lists else None,
                nbytes=_size(path) + (_size(split_lists) if has_lists else 0), modified=modified))
    for path in files:
        if TENSORS.match(path.name) or (SPLIT_LISTS.match(path.name) and path.name not in lists):
            continue  # counted with its entry
        (contents.other if is_cache_file(path.name) else contents.foreign).append(path)
    return contents


def clear(folder: Path) -> tuple[int, int, list[Path]]:
    """Remove every castsearch file from ``folder``, except partial writes younger than
    ``ACTIVE_WRITE_S`` (another run may be writing them): (files removed, bytes freed, files
    left because castsearch did not write them). The folder itself stays. A run that loads a
    dataset after this decodes its images again."""
    contents = scan(folder)
    writing = time.time() - ACTIVE_WRITE_S  # a partial file this fresh may be another process's write
    doomed = [p for e in contents.entries for p in (e.path, e.path.with_suffix(".split.json"))] + [
        p for p in contents.other if not (PARTIAL.match(p.name) and _modified(p) > writing)]
    removed = freed = 0
    for path in doomed:
        size = _size(path)
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed += 1
        freed += size
    return removed, freed, contents.foreign


def human_bytes(n: int) -> str:
    """``1.2 MB`` style, decimal units as file managers show them."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")

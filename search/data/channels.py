"""``channels: auto``: 1 when every image of a dataset is grey, otherwise 3, decided once per
dataset when it is loaded (the rule is in the :mod:`search.data` docstring).

File headers answer when no file holds a colour mode; otherwise the images are decoded at 3
channels to see whether their red, green and blue are equal. The decision is kept in a small
file beside the cache (:func:`search.data.cache.choice_file`), so a cached dataset is not
decoded again just to decide, and what was chosen and why is said in the dataset's identity
(``channels_auto``) on every load.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from search.data.cache import choice_file
from search.data.config import DataConfig
from search.data.dataset import Dataset
from search.data.decoding import decode_all
from search.data.imageio import DECODE_ERRORS as _DECODE_ERRORS
from search.data.imageio import Decoded, grey_mode
from search.data.rules import AUTO
from search.data.store import atomic_write, cache_key


def choose_channels(
    cfg: DataConfig, source: Path, files: list[Path], fingerprint: str, cache_dir: Path
) -> tuple[DataConfig, str | None, list[Decoded | str] | None]:
    """``cfg`` with ``channels: auto`` decided (module docstring), why (None when the count
    was given), and the files decoded at 3 channels when deciding took that and the answer
    is 3 (decoding them again would give the same). The decision is kept in a small file
    beside the cache, so a cached dataset is not decoded again just to decide."""
    if cfg.channels != AUTO:
        return cfg, None, None
    key = cache_key(choice="channels", source=str(source), files=fingerprint, image_size=cfg.image_size,
                    resize=cfg.resize)
    kept = _choice_file(cache_dir, source.name, cfg, key)
    known = _read_choice(kept)
    if known is not None:
        return replace(cfg, channels=known[0]), known[1], None
    channels, why, decoded = _decide_channels(files, cfg)
    atomic_write(kept, lambda p: p.write_text(json.dumps({"channels": channels, "why": why})))
    return replace(cfg, channels=channels), why, decoded


def _decide_channels(files: list[Path], cfg: DataConfig) -> tuple[int, str, list[Decoded | str] | None]:
    """(channels, why, the images decoded at 3 channels when the answer is 3 and they were).
    File headers answer when no file holds a colour mode; otherwise every image is decoded
    at 3 channels, which says whether its red, green and blue are equal."""
    headers = [_header_grey(f) for f in files]
    saved_in_colour = headers.count(False)
    if not saved_in_colour:
        return 1, f"all {headers.count(True):,} images are grey", None
    decoded = decode_all(files, replace(cfg, channels=3))
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
    """(channels, why) kept by :func:`choose_channels`, or None when there is none or it is unreadable."""
    try:
        kept = json.loads(path.read_text())
        channels, why = kept["channels"], kept["why"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (channels, why) if channels in (1, 3) and isinstance(why, str) else None


def with_choice(dataset: Dataset, why: str | None) -> Dataset:
    """``dataset`` with what ``auto`` chose said in its identity (``channels_auto``), or
    nothing said when the count was given. Set on every load, never cached: ``auto`` and
    the explicit count it resolved to share one cached tensor."""
    identity = {k: v for k, v in dataset.identity.items() if k != "channels_auto"}
    dataset.identity = identity if why is None else {**identity, "channels_auto": why}
    return dataset

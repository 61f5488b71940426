"""The train / val / test split: stratified and seeded, on item indices in sorted order.

:func:`split` computes all three splits per class (``test_fraction`` of it, then
``val_fraction`` of the rest, rounded half up, at least one each); :func:`split_supplied`
keeps the split that split folders give and splits validation off ``train/`` when there is
no val folder. Both seed each class with ``[split_seed, class index]``, so a split does not
depend on the other classes or on filesystem order.
"""

from __future__ import annotations

import numpy as np

from search.data.config import DataConfig
from search.data.rules import DataError

SPLITS = ("train", "val", "test")


def split_params(cfg: DataConfig) -> dict:
    """What of ``cfg`` decides the split (part of the cache key)."""
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


def split(
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


def split_supplied(
    labels: np.ndarray, supplied: np.ndarray, cfg: DataConfig, train_dirs: list[str], class_names: list[str]
) -> dict[str, np.ndarray]:
    """The split the split folders give; without a val folder, validation is split off each
    train class (``val_fraction`` of it, rounded half up, at least one; seeded like :func:`split`)."""
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

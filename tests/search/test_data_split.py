"""What a load of image data leaves and reuses: the split (stratified, disjoint, recorded,
deterministic for a seed), the tensor cache a second load reads without decoding (and rebuilds
when it is corrupt), the built-in synthetic set, and NEU-CLS in place where it is present.
Loading folders themselves is test_data.py's."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from search.data import DataConfig, DataError, decoding, load_dataset
from search.data.synthetic import generate_synthetic
from tests.search.data_helpers import make_folder, split_file

NEU_CLS = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "neu-cls"


# ---------------------------------------------------------------------------
# Split


def test_split_is_stratified_disjoint_and_recorded(tmp_path: Path, cache: Path) -> None:
    root = tmp_path / "d"
    make_folder(root, {"a": 20, "b": 120}, per_class=30)
    make_folder(root, {"c": 220}, per_class=7)
    ds = load_dataset(DataConfig(source=str(root), image_size=16), cache)
    counts = ds.identity["class_counts"]
    assert counts == {"train": [22, 22, 5], "val": [5, 5, 1], "test": [3, 3, 1]}
    assert ds.identity["counts"] == {"train": 49, "val": 11, "test": 7}
    for split in ("train", "val", "test"):
        y = getattr(ds, f"{split}_y")
        assert np.bincount(y.numpy(), minlength=3).tolist() == counts[split]
    lists = split_file(cache)
    assert lists["split_hash"] == ds.identity["split_hash"]
    files = [set(lists[s]) for s in ("train", "val", "test")]
    assert not (files[0] & files[1] or files[0] & files[2] or files[1] & files[2])
    assert set().union(*files) == {p.relative_to(root).as_posix() for p in root.glob("*/*.png")}
    json.dumps(ds.identity)  # JSON-serialisable


def test_split_is_deterministic_and_depends_on_seed(tmp_path: Path) -> None:
    # the same files in two folders, created in opposite orders: same split (paths are relative, sorted)
    first = make_folder(tmp_path / "first", {"a": 20, "b": 120}, per_class=20)
    second = tmp_path / "second"
    for path in sorted(first.glob("*/*.png"), reverse=True):
        (second / path.parent.name).mkdir(parents=True, exist_ok=True)
        (second / path.parent.name / path.name).write_bytes(path.read_bytes())
    one = load_dataset(DataConfig(source=str(first), image_size=16), tmp_path / "c1")
    two = load_dataset(DataConfig(source=str(second), image_size=16), tmp_path / "c2")
    assert one.identity["split_hash"] == two.identity["split_hash"]
    assert split_file(tmp_path / "c1")["test"] == split_file(tmp_path / "c2")["test"]
    assert torch.equal(one.test_x, two.test_x)
    other = load_dataset(
        DataConfig(source=str(first), image_size=16, split_seed=1), tmp_path / "c3"
    )
    assert other.identity["split_hash"] != one.identity["split_hash"]


# ---------------------------------------------------------------------------
# Cache


def test_second_load_reads_the_cache_without_decoding(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_folder(tmp_path / "d", {"a": 20, "b": 120})
    cfg = DataConfig(source=str(root), image_size=16)
    first = load_dataset(cfg, cache)
    assert len(list(cache.glob("*.pt"))) == 1

    def no_decode(*args: object) -> np.ndarray:
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(decoding, "_decode", no_decode)
    second = load_dataset(cfg, cache)
    assert second.identity == first.identity
    assert torch.equal(second.train_x, first.train_x) and torch.equal(second.test_y, first.test_y)

    # a changed file, another size or another split is a different cache entry
    changed = root / "a" / "000.png"
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    for other in (
        cfg,
        DataConfig(source=str(root), image_size=20),
        DataConfig(source=str(root), split_seed=7),
        DataConfig(source=str(root), image_size=16, resize="pad"),
    ):
        with pytest.raises(AssertionError, match="decoded although"):
            load_dataset(other, cache)


def test_corrupt_cache_is_rebuilt_with_a_warning(
    tmp_path: Path, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_folder(tmp_path / "d", {"a": 20, "b": 120})
    cfg = DataConfig(source=str(root), image_size=16)
    first = load_dataset(cfg, cache)
    (cache_file,) = cache.glob("*.pt")
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    with caplog.at_level(logging.WARNING, logger="search.data"):
        second = load_dataset(cfg, cache)
    assert "ignoring unreadable cache" in caplog.text and str(cache_file) in caplog.text
    assert torch.equal(second.train_x, first.train_x)
    said_on_each_load = {"channels_auto"}  # what channels: auto chose is not cached
    assert torch.load(cache_file, weights_only=True)["identity"] == {
        k: v for k, v in first.identity.items() if k not in said_on_each_load}
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------------------
# Synthetic


def test_generate_synthetic_is_deterministic_balanced_and_fast() -> None:
    start = time.perf_counter()
    images, labels, names = generate_synthetic(2000, 64, seed=3)
    elapsed = time.perf_counter() - start
    assert elapsed < 15, f"generating 2000 images of 64x64 took {elapsed:.1f} s"
    assert images.shape == (2000, 64, 64) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and len(names) >= 8 and len(set(names)) == len(names)
    counts = np.bincount(labels, minlength=len(names))
    assert counts.max() - counts.min() <= 1
    first, first_labels, _ = generate_synthetic(200, 32, seed=3)
    second, second_labels, _ = generate_synthetic(200, 32, seed=3)
    assert np.array_equal(first, second) and np.array_equal(first_labels, second_labels)
    assert not np.array_equal(generate_synthetic(200, 32, seed=4)[0], first)
    assert 60 < images.mean() < 200 and images.std() > 10  # grey steel, not blank


def test_load_synthetic(cache: Path) -> None:
    cfg = DataConfig(image_size=16, channels=3, synthetic_count=300, synthetic_seed=1)
    ds = load_dataset(cfg, cache)
    names = generate_synthetic(9, 64)[2]
    assert ds.class_names == names
    assert ds.train_x.shape[1:] == (3, 16, 16)
    assert torch.equal(ds.train_x[:, 0], ds.train_x[:, 2])  # grey repeated
    assert sum(ds.identity["counts"].values()) == 300
    assert ds.identity["layout"] == "synthetic" and ds.identity["source"] == "synthetic"
    assert ds.identity["normalisation"] == "x/255"
    assert ds.identity["input"]["grey_to_rgb"] == 300 and ds.identity["input"]["upscaled"] == 0
    assert all(min(c) >= 1 for c in ds.identity["class_counts"].values())
    assert load_dataset(cfg, cache).identity["split_hash"] == ds.identity["split_hash"]
    other = load_dataset(DataConfig(image_size=16, synthetic_count=300, synthetic_seed=2), cache)
    assert other.identity["split_hash"] != ds.identity["split_hash"]
    with pytest.raises(DataError, match=r"has 2 usable images.*synthetic_count=20"):
        load_dataset(DataConfig(synthetic_count=20), cache)


def test_small_cnn_learns_synthetic_but_not_perfectly(cache: Path) -> None:
    """Four conv layers, Adam 1e-3, 5 epochs at 32 px: about 0.8 test accuracy (about 0.9 after 30 epochs)."""
    ds = load_dataset(DataConfig(image_size=32, channels=1), cache)

    def block(c_in: int, c_out: int) -> list[torch.nn.Module]:
        return [
            torch.nn.Conv2d(c_in, c_out, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.BatchNorm2d(c_out),
        ]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    try:
        model = torch.nn.Sequential(
            *block(1, 16),
            torch.nn.MaxPool2d(2),
            *block(16, 32),
            torch.nn.MaxPool2d(2),
            *block(32, 64),
            torch.nn.MaxPool2d(2),
            *block(64, 64),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(64, ds.num_classes),
        )
        optimiser = torch.optim.Adam(model.parameters(), 1e-3)
        x = ds.train_x.float() / 255
        for _ in range(5):
            for batch in torch.randperm(len(x)).split(64):
                optimiser.zero_grad()
                torch.nn.functional.cross_entropy(model(x[batch]), ds.train_y[batch]).backward()
                optimiser.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(ds.test_x.float() / 255).argmax(1) == ds.test_y).float().mean().item()
    finally:
        torch.set_num_threads(threads)
    assert 1 / ds.num_classes + 0.4 < accuracy < 0.97


# ---------------------------------------------------------------------------
# Real data


@pytest.mark.skipif(not NEU_CLS.is_dir(), reason=f"{NEU_CLS} not present")
def test_neu_cls_in_place(cache: Path) -> None:
    ds = load_dataset(DataConfig(source=str(NEU_CLS), image_size=16, channels=1), cache)
    assert ds.class_names == [
        "crazing",
        "inclusion",
        "patches",
        "pitted_surface",
        "rolled-in_scale",
        "scratches",
    ]
    assert ds.identity["counts"] == {"train": 1296, "val": 324, "test": 180}
    assert ds.identity["skipped"] == []
    assert ds.train_x.shape[1:] == (1, 16, 16)

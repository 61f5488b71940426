"""Split folders: ``<root>/train/<class>/``, ``<root>/test/<class>/`` and optionally a val folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from search.data import DataConfig, DataError, load_dataset
from search.data.imageio import decode_image
from tests.search.data_helpers import grey_image, split_file


def make_split(root: Path, classes: dict[str, int], per_class: int) -> list[str]:
    """``root/<class>/<i>.png``, class c at a grey level of its own; the files, relative to root's parent."""
    files = []
    for name, value in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            path = root / name / f"{root.name}-{i:03d}.png"
            grey_image(value, (20 + i, 18), seed=i + len(root.name)).save(path)
            files.append(path.relative_to(root.parent).as_posix())
    return files


def split_file_for(cache: Path, split_hash: str) -> dict:
    for path in cache.glob("*.split.json"):
        lists = json.loads(path.read_text())
        if lists["split_hash"] == split_hash:
            return lists
    raise AssertionError(f"no split file with hash {split_hash}")


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def test_train_test_folders_use_the_supplied_test_split(tmp_path: Path, cache: Path) -> None:
    root = tmp_path / "defects"
    make_split(root / "train", {"crack": 40, "pit": 200}, per_class=10)
    test_files = make_split(root / "test", {"crack": 40, "pit": 200}, per_class=3)
    (root / "README.txt").write_text("a top-level file is not a folder")
    ds = load_dataset(DataConfig(source=str(root), image_size=16, channels=1), cache)

    assert ds.layout == "train/test" and ds.identity["layout"] == "train/test"
    assert ds.identity["split_folders"] == {"train": "train", "test": "test"}
    assert ds.class_names == ["crack", "pit"]
    lists = split_file(cache)
    assert sorted(lists["test"]) == sorted(test_files)  # exactly the supplied test images
    assert all(f.startswith("train/") for f in lists["train"] + lists["val"])
    # val is split off train: 20% of each class's 10, seeded
    assert ds.identity["class_counts"] == {"train": [8, 8], "val": [2, 2], "test": [3, 3]}
    expected = np.stack([decode_image(root / f, 16, 1) for f in sorted(test_files)])
    assert torch.equal(ds.test_x, torch.from_numpy(expected))
    assert ds.notices()[0] == "layout: train/test folders; test = test/ as supplied, val = 20% of train/ (seed 555)"

    other_seed = load_dataset(DataConfig(source=str(root), image_size=16, channels=1, split_seed=1), cache)
    assert split_file_for(cache, other_seed.identity["split_hash"])["test"] == lists["test"]
    assert other_seed.identity["split_hash"] != ds.identity["split_hash"]

    # the train folder alone is a plain class-folder set, with an identity of its own
    plain = load_dataset(DataConfig(source=str(root / "train"), image_size=16, channels=1), cache)
    assert plain.layout == "folders" and plain.identity["split_folders"] is None
    assert sum(plain.identity["counts"].values()) == 20
    assert plain.identity["split_hash"] != ds.identity["split_hash"]
    assert plain.notices()[0] == "layout: class folders; split here: 10% test, then 20% of the rest val (seed 555)"


@pytest.mark.parametrize("val_name", ["val", "valid", "Validation"])
def test_train_val_test_folders_use_the_supplied_val_split(tmp_path: Path, cache: Path, val_name: str) -> None:
    root = tmp_path / "defects"
    train_files = make_split(root / "Train", {"crack": 40, "pit": 200}, per_class=6)
    val_files = make_split(root / val_name, {"crack": 40, "pit": 200}, per_class=2)
    test_files = make_split(root / "TEST", {"crack": 40, "pit": 200}, per_class=5)
    ds = load_dataset(DataConfig(source=str(root), image_size=16), cache)
    assert ds.layout == "train/val/test"
    assert ds.identity["split_folders"] == {"train": "Train", "val": val_name, "test": "TEST"}
    lists = split_file(cache)
    assert (sorted(lists["train"]), sorted(lists["val"]), sorted(lists["test"])) == (
        sorted(train_files), sorted(val_files), sorted(test_files))
    assert ds.identity["counts"] == {"train": 12, "val": 4, "test": 10}
    notices = ds.notices()
    assert notices[0] == f"layout: train/val/test folders; test = TEST/ as supplied, val = {val_name}/ as supplied"
    assert notices[-1] == ("warning: too few images to measure these classes (fewer than 5): "
                           "val crack 2, pit 2")


def test_split_folders_with_different_classes_are_refused(tmp_path: Path, cache: Path) -> None:
    root = tmp_path / "defects"
    make_split(root / "train", {"crack": 40, "pit": 120, "scale": 200}, per_class=4)
    make_split(root / "val", {"crack": 40, "pit": 120, "scale": 200, "stain": 90}, per_class=2)
    make_split(root / "test", {"crack": 40, "pit": 120}, per_class=2)
    with pytest.raises(DataError) as e:
        load_dataset(DataConfig(source=str(root), image_size=16), cache)
    message = str(e.value)
    assert "must hold the same class folders" in message
    assert f"{root / 'train'} has no stain" in message
    assert f"{root / 'test'} has no scale, stain" in message
    assert str(root / "val") not in message


def test_split_folder_problems_name_the_folder(tmp_path: Path, cache: Path) -> None:
    root = tmp_path / "defects"
    make_split(root / "train", {"crack": 40, "pit": 200}, per_class=4)
    (root / "test").mkdir()
    grey_image(40).save(root / "test" / "loose.png")  # images straight in test/, no class folders
    with pytest.raises(DataError, match="no class sub-folders") as e:
        load_dataset(DataConfig(source=str(root), image_size=16), cache)
    assert str(root / "test") in str(e.value)

    # a class with one train image cannot give up one to validation
    root = tmp_path / "tiny"
    make_split(root / "train", {"crack": 40}, per_class=1)
    make_split(root / "train", {"pit": 200}, per_class=4)
    make_split(root / "test", {"crack": 40, "pit": 200}, per_class=2)
    with pytest.raises(DataError, match="class 'crack' has 1 usable train images") as e:
        load_dataset(DataConfig(source=str(root), image_size=16), cache)
    assert str(root / "train" / "crack") in str(e.value)

    # another folder beside train/ and test/: not the split layout, and the error says why
    root = tmp_path / "extra"
    make_split(root / "train", {"crack": 40, "pit": 200}, per_class=4)
    make_split(root / "test", {"crack": 40, "pit": 200}, per_class=2)
    (root / "masks").mkdir()
    with pytest.raises(DataError, match="class folder has no image files") as e:
        load_dataset(DataConfig(source=str(root), image_size=16), cache)
    assert "nothing but train, test and optionally val" in str(e.value)


def test_train_header_says_the_layout_the_input_changes_and_small_splits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from search.cli import main

    monkeypatch.setenv("CASTSEARCH_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "defects"
    make_split(root / "train", {"crack": 40, "pit": 200}, per_class=6)
    make_split(root / "test", {"crack": 40, "pit": 200}, per_class=2)
    code = main(["train", "C4 P A", "--data", str(root), "--image-size", "16", "--epochs", "1",
                 "--resize", "pad", "--channels", "3", "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 0, err
    header = out.split("\ncustom: ")[0].splitlines()  # grey images, 3 channels asked for: copied
    cache_line = header.pop(2)  # the first load decodes and says where the tensors went
    assert cache_line.startswith(f"  cache: decoded images saved for later runs in {tmp_path / 'cache'}/defects-16px-")
    assert header == [
        "  layout: train/test folders; test = test/ as supplied, val = 20% of train/ (seed 555)",
        "  input: of 16 images, 16 padded to square, 16 grey copied to 3 channels (resize pad)",
        "  warning: too few images to measure these classes (fewer than 5): val crack 1, pit 1; "
        "test crack 2, pit 2",
    ]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["data"]["layout"] == "train/test" and metrics["data"]["resize"] == "pad"

"""Loading an image folder: the DataConfig checks, the folder layouts recognised (class
folders, GC10's numbered folders, Kaggle's archive), what decoding does with pixel depths,
sizes and aspect ratios, and bad input refused by name. The split, the cache, the synthetic set
and real data are test_data_split.py's; split folders test_data_layout.py's."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from search.data import (
    DataConfig,
    DataError,
    Dataset,
    default_cache_dir,
    load_dataset,
)
from search.data.imageio import decode_image
from tests.search.data_helpers import grey_image, make_folder


def all_x(ds: Dataset) -> torch.Tensor:
    return torch.cat([ds.train_x, ds.val_x, ds.test_x])


def all_y(ds: Dataset) -> torch.Tensor:
    return torch.cat([ds.train_y, ds.val_y, ds.test_y])


# ---------------------------------------------------------------------------
# Config


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("image_size", 4, "image_size must be an integer >= 8, got 4"),
        ("channels", 2, "channels must be auto, 1 (grey) or 3 (RGB), got 2"),
        ("test_fraction", 0.0, "test_fraction must be in (0, 1), got 0.0"),
        ("val_fraction", 1.0, "val_fraction must be in (0, 1), got 1.0"),
        ("synthetic_count", 0, "synthetic_count must be an integer >= 1, got 0"),
        ("source", "", "source must be 'synthetic' or a folder path"),
        ("resize", "stretch", "resize must be one of squash, pad, center-crop, got 'stretch'"),
    ],
)
def test_bad_config_values_raise(field: str, value: object, rule: str) -> None:
    with pytest.raises(DataError) as e:
        DataConfig(**{field: value})
    assert rule in str(e.value)
    assert f"DataConfig.{field}" in str(e.value)


def test_default_cache_dir_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CASTSEARCH_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("CASTSEARCH_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "castsearch"


# ---------------------------------------------------------------------------
# Folder layouts


def test_class_folders_with_mixed_formats_modes_and_sizes(tmp_path: Path, cache: Path) -> None:
    root = tmp_path / "mixed"
    (root / "grey128").mkdir(parents=True)
    (root / "grey60").mkdir()
    target = root / "grey128"
    grey_image(128, (20, 20)).save(target / "l.png")
    grey_image(128, (31, 17)).convert("RGB").save(target / "rgb.jpg", quality=95)
    rgba = grey_image(128, (24, 24)).convert("RGBA")
    rgba.save(target / "rgba.png")
    Image.fromarray(np.full((19, 23), 128 * 257, dtype=np.uint16)).save(
        target / "sixteen.png"
    )  # 16-bit grey
    palette = Image.new("P", (22, 22), 0)
    palette.putpalette([128, 128, 128] + [0] * 765)
    palette.save(target / "palette.gif")
    grey_image(128, (40, 12)).convert("RGB").save(target / "rgb.bmp")
    grey_image(128, (16, 16)).save(target / "tiny.tiff")
    for i in range(5):
        grey_image(60, (20 + 3 * i, 20), seed=i).save(root / "grey60" / f"{i}.png")
    assert Image.open(target / "sixteen.png").mode.startswith("I")

    for channels in (1, 3):
        ds = load_dataset(DataConfig(source=str(root), image_size=16, channels=channels), cache)
        assert ds.class_names == ["grey128", "grey60"]
        assert ds.num_classes == 2 and ds.in_channels == channels
        x, y = all_x(ds), all_y(ds)
        assert x.dtype == torch.uint8 and y.dtype == torch.int64
        assert x.shape == (12, channels, 16, 16)
        # every mode decodes to the same grey level: 16-bit is scaled (not clipped to 255), palette is looked up
        assert (x[y == 0].int() - 128).abs().max() <= 4
        assert (x[y == 1].int() - 60).abs().max() <= 4
        assert ds.identity["layout"] == "folders"
        assert ds.identity["skipped"] == []


def test_gc10_numbered_layout_ignores_label_folder(tmp_path: Path, cache: Path) -> None:
    root = make_folder(tmp_path / "gc10", {"1": 30, "2": 90, "10": 150}, ext="jpg")
    (root / "lable").mkdir()
    (root / "lable" / "img_01.xml").write_text(
        "<annotation><object><name>1_chongkong</name></object></annotation>"
    )
    ds = load_dataset(DataConfig(source=str(root), image_size=16, channels=1), cache)
    assert ds.class_names == ["punching_hole", "welding_line", "waist_folding"]
    assert ds.identity["layout"] == "gc10"
    assert ds.identity["skipped"] == []
    x, y = all_x(ds), all_y(ds)
    for label, level in enumerate((30, 90, 150)):  # ordered by folder number, not by name
        assert (x[y == label].float().mean() - level).abs() < 4


@pytest.mark.parametrize("inner", ["images/images", "images"])
def test_kaggle_layout(tmp_path: Path, cache: Path, inner: str) -> None:
    root = tmp_path / "archive"
    make_folder(root / inner, {"crease": 40, "oil_spot": 200}, ext="jpg")
    (root / "label" / "label").mkdir(parents=True)
    (root / "label" / "label" / "a.xml").write_text("<annotation/>")
    ds = load_dataset(DataConfig(source=str(root), image_size=16), cache)
    assert ds.class_names == ["crease", "oil_spot"]
    assert ds.identity["layout"] == "kaggle"
    assert ds.identity["source"] == str(root.resolve())


def test_hidden_files_and_folders_are_ignored(tmp_path: Path, cache: Path) -> None:
    root = make_folder(tmp_path / "d", {"a": 50, "b": 150})
    (root / ".thumbnails").mkdir()
    grey_image(0).save(root / ".thumbnails" / "x.png")
    (root / "a" / ".DS_Store").write_bytes(b"\0\1junk")
    ds = load_dataset(DataConfig(source=str(root), image_size=16), cache)
    assert ds.class_names == ["a", "b"]
    assert ds.identity["skipped"] == []
    assert sum(ds.identity["counts"].values()) == 10


def test_unreadable_files_are_skipped_and_reported(
    tmp_path: Path, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_folder(tmp_path / "d", {"a": 50, "b": 150}, ext="jpg")
    bad = {
        root / "a" / "notes.txt": b"not an image",
        root / "a" / "empty.png": b"",
        root / "b" / "boxes.xml": b"<annotation/>",
        root / "b" / "truncated.jpg": (root / "b" / "000.jpg").read_bytes()[:300],
    }
    for path, content in bad.items():
        path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="search.data"):
        ds = load_dataset(DataConfig(source=str(root), image_size=16), cache)
    skipped = {s["path"]: s["reason"] for s in ds.identity["skipped"]}
    assert set(skipped) == {str(p.resolve()) for p in bad}
    assert "empty file" in skipped[str((root / "a" / "empty.png").resolve())]
    for path in bad:
        assert str(path.resolve()) in caplog.text
    assert sum(ds.identity["counts"].values()) == 10


# ---------------------------------------------------------------------------
# Pixel depths, resizing and what decoding changed


def save_array(values: np.ndarray, path: Path) -> Path:
    Image.fromarray(values).save(path)
    return path


def test_float_and_16_bit_tiffs_are_scaled(tmp_path: Path) -> None:
    for name, values, expected in [
        ("unit", np.full((12, 20), 0.5, np.float32), 128),  # float in [0, 1]: times 255
        ("bytes", np.full((12, 20), 60.0, np.float32), 60),  # float in [0, 255]: as is
        ("sixteen", np.full((12, 20), 128 * 257, np.uint16), 128),  # 16-bit: the 16-bit range scaled
    ]:
        path = save_array(values, tmp_path / f"{name}.tiff")
        assert (decode_image(path, 16, 1) == expected).all(), name
        assert (decode_image(path, 16, 3) == expected).all(), name


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_values_outside_the_known_ranges_are_stretched_not_clipped(tmp_path: Path, dtype: type) -> None:
    values = np.tile(np.linspace(-1000, 1_000_000, 16), (16, 1)).astype(dtype)
    pixels = decode_image(save_array(values, tmp_path / "wide.tiff"), 16, 1)[0]
    assert pixels.min() == 0 and pixels.max() == 255
    assert (np.diff(pixels[8].astype(int)) > 0).all()  # every column of its own, in order


def test_float_tiffs_train_and_a_blank_one_is_refused_by_name(tmp_path: Path, cache: Path) -> None:
    root = make_folder(tmp_path / "d", {"png": 200})
    (root / "float").mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        save_array((0.25 + rng.uniform(0, 0.01, (20, 20))).astype(np.float32), root / "float" / f"{i}.tif")
    blank = save_array(np.full((20, 20), np.nan, np.float32), root / "float" / "nan.tif")
    ds = load_dataset(DataConfig(source=str(root), image_size=16, channels=1), cache)
    x, y = all_x(ds), all_y(ds)
    assert (x[y == ds.class_names.index("float")].int() - 65).abs().max() <= 2  # 0.25..0.26 of 255
    ((path, reason),) = [(s["path"], s["reason"]) for s in ds.identity["skipped"]]
    assert path == str(blank.resolve()) and "without a finite pixel value" in reason


def test_what_decoding_changed_is_counted_and_said(tmp_path: Path, cache: Path) -> None:
    root = tmp_path / "d"
    for name in ("small", "square", "wide"):
        (root / name).mkdir(parents=True)
    tint = np.array([200, 100, 50], np.uint8)
    for i in range(5):
        grey_image(50, (10, 10), seed=i).save(root / "small" / f"{i}.png")  # upscaled to 16
        # 21x20: within 5% of square; grey pixels in an RGB JPEG, as NEU-CLS ships them
        grey_image(120, (20 + (i == 0), 20), seed=i).convert("RGB").save(root / "square" / f"{i}.jpg")
        save_array(np.tile(tint, (20, 40, 1)) + np.uint8(i), root / "wide" / f"{i}.png")  # squashed, colour
    ds = load_dataset(DataConfig(source=str(root), image_size=16, channels=3), cache)
    assert ds.identity["input"] == {"images": 15, "upscaled": 5, "squashed": 5, "grey_to_rgb": 10,
                                    "colour_to_grey": 0}
    assert ("input: of 15 images, 5 upscaled to 16 px, 5 squashed to square (aspect ratio off by more "
            "than 5%), 10 grey copied to 3 channels (resize squash)") in ds.notices()
    grey = load_dataset(DataConfig(source=str(root), image_size=16, channels=1), cache)
    assert grey.identity["input"]["colour_to_grey"] == 5 and grey.identity["input"]["grey_to_rgb"] == 0
    padded = load_dataset(DataConfig(source=str(root), image_size=16, channels=3, resize="pad"), cache)
    assert padded.identity["input"] == {"images": 15, "upscaled": 5, "padded": 5, "grey_to_rgb": 10,
                                        "colour_to_grey": 0}
    assert "5 padded to square" in padded.notices()[1]
    cropped = load_dataset(DataConfig(source=str(root), image_size=20, channels=3, resize="center-crop"), cache)
    assert cropped.identity["input"]["upscaled"] == 5 and cropped.identity["input"]["cropped"] == 5
    assert DataConfig.from_identity(cropped.identity).resize == "center-crop"
    # 32 px: everything is upscaled
    assert load_dataset(DataConfig(source=str(root), image_size=32, channels=3), cache).identity["input"]["upscaled"] == 15


def test_pad_and_center_crop_keep_the_aspect_ratio(tmp_path: Path, cache: Path) -> None:
    root = tmp_path / "d"
    band = np.zeros((20, 40), np.uint8)
    band[:, 10:30] = 200  # a bright 20x20 square in the middle of a black 40x20 image
    for name, level in (("a", 200), ("b", 100)):
        (root / name).mkdir(parents=True)
        for i in range(5):
            save_array((band * (level / 200)).astype(np.uint8), root / name / f"{i}.png")
    x = all_x(load_dataset(DataConfig(source=str(root), image_size=16, channels=3, resize="pad"), cache))
    assert x.shape == (10, 3, 16, 16)
    assert (x[:, :, :4] == 0).all() and (x[:, :, 12:] == 0).all()  # black above and below
    assert (x[:, :, 4:12, 5:11] > 0).all()  # the image in the middle rows, 8 px high
    x = all_x(load_dataset(DataConfig(source=str(root), image_size=16, channels=3, resize="center-crop"), cache))
    assert x.shape == (10, 3, 16, 16)
    assert (x[:, :, :, 1:15] >= 100).all()  # only the bright centre is left
    x = all_x(load_dataset(DataConfig(source=str(root), image_size=16, channels=1), cache))
    assert x.shape == (10, 1, 16, 16) and (x[:, :, :, 0] == 0).all()  # squash keeps the black sides


def test_too_small_val_or_test_classes_are_warned_about(tmp_path: Path, cache: Path) -> None:
    root = make_folder(tmp_path / "d", {"common": 50}, per_class=60)
    make_folder(root, {"rare": 150}, per_class=6)
    ds = load_dataset(DataConfig(source=str(root), image_size=16), cache)
    assert ds.identity["class_counts"]["test"] == [6, 1]
    assert ds.notices()[-1] == ("warning: too few images to measure these classes (fewer than 5): "
                                "val rare 1; test rare 1")
    enough = load_dataset(DataConfig(source=str(root), image_size=16, test_fraction=0.5, val_fraction=0.5), cache)
    assert enough.identity["class_counts"]["test"] == [30, 3]
    assert enough.notices()[-1].endswith("val rare 2; test rare 3")
    make_folder(root, {"more": 250}, per_class=60)
    (root / "rare").rename(root / ".rare")  # hidden: left out
    fine = load_dataset(DataConfig(source=str(root), image_size=16), cache)
    assert fine.class_names == ["common", "more"]
    assert not [line for line in fine.notices() if line.startswith("warning")]


# ---------------------------------------------------------------------------
# Bad input


def test_missing_path(tmp_path: Path, cache: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="does not exist") as e:
        load_dataset(DataConfig(source=str(missing)), cache)
    assert str(missing) in str(e.value)


def test_file_instead_of_folder(tmp_path: Path, cache: Path) -> None:
    path = tmp_path / "one.png"
    grey_image(10).save(path)
    with pytest.raises(DataError, match="got a file") as e:
        load_dataset(DataConfig(source=str(path)), cache)
    assert str(path) in str(e.value)


def test_folder_without_class_subfolders(tmp_path: Path, cache: Path) -> None:
    root = tmp_path / "flat"
    root.mkdir()
    for i in range(3):
        grey_image(10, seed=i).save(root / f"{i}.png")
    with pytest.raises(DataError, match="no class sub-folders") as e:
        load_dataset(DataConfig(source=str(root)), cache)
    assert str(root) in str(e.value) and "found 3 files" in str(e.value)


def test_single_class(tmp_path: Path, cache: Path) -> None:
    root = make_folder(tmp_path / "one", {"only": 10})
    with pytest.raises(DataError, match="at least 2 class sub-folders, found 1") as e:
        load_dataset(DataConfig(source=str(root)), cache)
    assert str(root) in str(e.value)


def test_empty_class_folder(tmp_path: Path, cache: Path) -> None:
    root = make_folder(tmp_path / "d", {"a": 10, "b": 200})
    (root / "empty").mkdir()
    with pytest.raises(DataError, match="no image files") as e:
        load_dataset(DataConfig(source=str(root)), cache)
    assert str(root / "empty") in str(e.value)


def test_class_with_only_unreadable_files(tmp_path: Path, cache: Path) -> None:
    root = make_folder(tmp_path / "d", {"a": 10, "b": 200})
    (root / "c").mkdir()
    (root / "c" / "x.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match="class 'c' has no readable images") as e:
        load_dataset(DataConfig(source=str(root)), cache)
    assert str(root / "c") in str(e.value)


def test_class_too_small_for_the_split(tmp_path: Path, cache: Path) -> None:
    root = make_folder(tmp_path / "d", {"a": 10, "b": 200})
    (root / "c").mkdir()
    for i in range(2):
        grey_image(99, seed=i).save(root / "c" / f"{i}.png")
    with pytest.raises(
        DataError, match="class 'c' has 2 usable images, the split needs at least 3"
    ) as e:
        load_dataset(DataConfig(source=str(root)), cache)
    assert str(root / "c") in str(e.value)
    # larger fractions need larger classes, and the message says how many
    grey_image(99, seed=2).save(root / "c" / "2.png")
    with pytest.raises(
        DataError, match="class 'c' has 3 usable images, the split needs at least 4"
    ):
        load_dataset(DataConfig(source=str(root), test_fraction=0.5, val_fraction=0.5), cache)

"""channels: auto: decided once from the images, said in the notices, keyed in the cache like
an explicit count, and carried to the network, the model card and castsearch predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from castmodels import ArchSpec
from search.cli import load_sizes, main
from search.data import DataConfig, DataError, load_dataset
from search.deploy.predict import Predictor
from search.space import SpaceError, decode, preset_params, space_from_dict
from search.study import storage as studylib
from search.study.record import Limits, TrialRecord
from search.training.recipe import TrainRecipe
from search.trial.pipeline import build_candidate, run_candidate
from tests.search.space_helpers import PAPER_DICT

CLASSES = ("dent", "scratch")


def _folder(root: Path, colour: int = 0, saved_as_rgb: bool = False, per_class: int = 6) -> Path:
    """Two classes of small grey PNGs (mode L, or RGB with equal channels), the first ``colour``
    of class ``dent`` replaced by colour images."""
    rng = np.random.default_rng(0)
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            image = Image.fromarray(rng.integers(0, 256, (12, 14), dtype=np.uint8))
            (image.convert("RGB") if saved_as_rgb else image).save(root / name / f"{i}.png")
    for i in range(colour):
        _colour_png(root / CLASSES[0] / f"{i}.png", rng)
    return root


def _colour_png(path: Path, rng: np.random.Generator, size: int = 12) -> None:
    Image.fromarray(rng.integers(0, 256, (size, size + 2, 3), dtype=np.uint8)).save(path)


def test_auto_on_grey_images_is_one_channel(tmp_path):
    data = load_dataset(DataConfig(source=str(_folder(tmp_path / "d")), image_size=8), tmp_path / "cache")
    assert data.in_channels == 1 and data.identity["channels"] == 1
    assert "channels: auto -> 1 (all 12 images are grey)" in data.notices()


def test_auto_on_grey_saved_as_rgb_is_one_channel_decoded_as_an_explicit_one(tmp_path):
    """Grey images saved as RGB (as NEU-CLS ships) count as grey; the pixels are the ones
    ``channels: 1`` gives, not the three-channel decode converted afterwards."""
    root = str(_folder(tmp_path / "d", saved_as_rgb=True))
    auto = load_dataset(DataConfig(source=root, image_size=8, channels="auto"), tmp_path / "a")
    one = load_dataset(DataConfig(source=root, image_size=8, channels=1), tmp_path / "b")
    assert auto.in_channels == 1 and torch.equal(auto.train_x, one.train_x)
    assert ("channels: auto -> 1 (all 12 images are grey, saved in colour with equal red, green and blue)"
            in auto.notices())


def test_one_colour_image_makes_auto_three_channels(tmp_path):
    root = str(_folder(tmp_path / "d", colour=1))
    data = load_dataset(DataConfig(source=root, image_size=8, channels="auto"), tmp_path / "cache")
    assert data.in_channels == 3 and data.identity["channels"] == 3
    assert "channels: auto -> 3 (1 of 12 images is colour)" in data.notices()


def test_explicit_counts_are_kept_and_say_nothing_about_auto(tmp_path):
    root = str(_folder(tmp_path / "d", colour=1))
    for channels in (1, 3):
        data = load_dataset(DataConfig(source=root, image_size=8, channels=channels), tmp_path / "cache")
        assert data.in_channels == channels and "channels_auto" not in data.identity
        assert not [line for line in data.notices() if line.startswith("channels:")]


def test_synthetic_auto_keeps_three_channels(tmp_path):
    data = load_dataset(DataConfig(image_size=8, synthetic_count=90, channels="auto"), tmp_path / "cache")
    assert data.in_channels == 3
    assert any(line.startswith("channels: auto -> 3 (synthetic data") for line in data.notices())


def test_the_cache_is_keyed_by_the_resolved_count(tmp_path):
    """auto that resolved to 1 shares the channels: 1 cache, never the 3-channel one; once a
    colour image joins, auto gives 3 channels, not the cached grey tensor."""
    root = _folder(tmp_path / "d")
    cache = tmp_path / "cache"

    def tensors() -> set[str]:
        return {p.name for p in cache.glob("*.pt")}

    load_dataset(DataConfig(source=str(root), image_size=8, channels="auto"), cache)
    (grey,) = tensors()
    assert "-8px-c1-" in grey
    assert load_dataset(DataConfig(source=str(root), image_size=8, channels=1), cache).in_channels == 1
    assert tensors() == {grey}  # the same key as the explicit 1
    assert load_dataset(DataConfig(source=str(root), image_size=8, channels=3), cache).in_channels == 3
    (rgb,) = tensors() - {grey}
    assert "-8px-c3-" in rgb

    _colour_png(root / CLASSES[1] / "colour.png", np.random.default_rng(1))
    data = load_dataset(DataConfig(source=str(root), image_size=8, channels="auto"), cache)
    assert data.in_channels == 3 and data.train_x.shape[1] == 3
    assert "channels: auto -> 3 (1 of 13 images is colour)" in data.notices()


def test_train_builds_a_one_channel_network_for_grey_images_and_says_why(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CASTSEARCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    rc = main(["train", "C8 A", "--data", str(_folder(tmp_path / "d")), "--image-size", "8", "--epochs", "1",
               "--channels", "auto", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "channels: auto -> 1 (all 12 images are grey)" in captured.err  # --json: notices on stderr
    weights = torch.load(out / "model.pt", weights_only=True)
    first_conv = next(w for name, w in weights.items() if w.ndim == 4)
    assert first_conv.shape[1] == 1
    assert json.loads((out / "recipe.json").read_text())["channels"] == 1


def test_a_space_with_auto_builds_candidates_for_the_loaded_channels(tmp_path):
    from search.run.runner import loaded_channels  # imports Ray

    root = _folder(tmp_path / "d")
    space = space_from_dict({**PAPER_DICT, "data": {"source": str(root), "channels": "auto",
                                                    "cache_dir": str(tmp_path / "cache")}})
    with pytest.raises(ValueError, match="data.channels is auto"):  # unknown until the images are loaded
        _ = space.input_channels
    datasets = load_sizes(space)
    space = loaded_channels(space, datasets)
    assert space.data.channels == 1 and space.input_channels == 1
    candidate = decode(space, preset_params(space)["custom-140k-3x3"])
    assert candidate.recipe.channels == 1
    model = build_candidate(candidate.arch, candidate.recipe, datasets[32].num_classes)
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == 1


@pytest.mark.parametrize("value", [2, "grey", True, 1.0])
def test_a_bad_channels_value_is_a_clear_error(value):
    with pytest.raises(DataError, match=r"channels must be auto, 1 \(grey\) or 3 \(RGB\), got .*"
                                        r"\(DataConfig.channels\)"):
        DataConfig(channels=value)
    with pytest.raises(SpaceError, match=r"<dict>: data.channels: must be auto, 1 \(grey\) or 3 \(RGB\), got "):
        space_from_dict({**PAPER_DICT, "data": {"channels": value}})


def test_train_refuses_a_bad_channels_flag(capsys):
    with pytest.raises(SystemExit):
        main(["train", "C8 A", "--channels", "2"])
    assert "argument --channels: invalid choice: 2 (choose from 'auto', 1, 3)" in capsys.readouterr().err


def test_predict_converts_rgb_files_for_an_auto_grey_model(tmp_path, capsys, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("CASTSEARCH_CACHE", str(cache))
    data = load_dataset(DataConfig(source=str(_folder(tmp_path / "d")), image_size=8), cache)
    arch = ArchSpec.from_code("C8 A")
    recipe = TrainRecipe.named("paper", epochs=1, batch_size=8, image_size=8, channels=data.in_channels)
    outcome = run_candidate(arch, recipe, data, out_dir=tmp_path / "trial", limits=Limits())
    storage = f"sqlite:///{tmp_path}/grey.db"
    study = studylib.open_study("grey", storage)
    record = TrialRecord(run_id="test", arch=arch.to_dict(), arch_code=arch.code(), recipe=recipe.to_dict(),
                         enhancements="none")
    studylib.tell_outcome(study, study.ask(), record, outcome.provenance(data), Limits())
    out = tmp_path / "export"
    assert main(["export", "--trial", "0", "--study", "grey", "--storage", storage, "--out", str(out),
                 "--format", "onnx"]) == 0
    prep = json.loads((out / "card.json").read_text())["preprocessing"]
    assert (prep["channels"], prep["colour"]) == (1, "grey")
    assert prep["channels_chosen"] == "chosen by channels: auto: all 12 images are grey"
    capsys.readouterr()

    rng = np.random.default_rng(2)
    files = [tmp_path / f"part{i}.png" for i in range(3)]
    for path in files:
        _colour_png(path, rng, size=20)
    assert main(["predict", str(out), *map(str, files), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in result] == list(map(str, files))
    assert all(r["class"] in CLASSES for r in result)
    assert Predictor(out).preprocess(files).shape == (3, 1, 8, 8)

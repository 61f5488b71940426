"""castsearch baselines: weights resolution, a local weights file, storage beside a study, front."""

import json
import logging
from pathlib import Path
from urllib.error import URLError

import numpy as np
import optuna
import pytest
import torch
from PIL import Image

from castmodels import build_baseline
from search.cli import main
from search.data import DataConfig, load_dataset
from search.run import references
from search.space import load_space
from search.study import storage as studylib
from search.study.record import CONSTRAINT_NAMES
from search.training.recipe import TrainRecipe

SPACE = """
study: tiny
constraints: {max_latency_ms: null, max_params: null}
sampler: {seed: 7}
data: {source: synthetic, cache_dir: %s}
architecture:
  stages: 2
  blocks_per_stage: 1
  channels: 16
  conv: conv3x3
  last_block: plain
  dropout: 0.0
  pool: true
  head: gap
training:
  epochs: 3
  batch_size: [16, 32]
  image_size: [16, 32]
"""


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    root = tmp_path_factory.mktemp("baselines")
    path = root / "tiny.yaml"
    path.write_text(SPACE % (root / "cache"))
    return load_space(path)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Three classes of 12 small PNGs, told apart by brightness."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for k, name in enumerate(("dark", "mid", "bright")):
        (root / name).mkdir()
        for i in range(12):
            pixels = np.clip(rng.normal(40 + 80 * k, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_recipe_takes_the_spaces_fixed_values_and_the_flags(space):
    recipe = references.baseline_recipe(space)
    assert (recipe.epochs, recipe.image_size, recipe.batch_size, recipe.seed) == (3, 16, 32, 7)
    default = TrainRecipe.named("default")  # the space names no recipe: the presets' and baselines' is the default
    assert (recipe.enhancements, recipe.augmentations) == (default.enhancements, default.augmentations)
    assert (recipe.optimizer, recipe.schedule) == (default.optimizer, default.schedule)
    assert references.baseline_recipe(space, epochs=1, image_size=24).image_size == 24
    assert recipe.class_balance == default.class_balance == "weighted_loss"


def test_ranked_by_plain_accuracy_the_baselines_train_unweighted(tmp_path):
    path = tmp_path / "plain.yaml"
    path.write_text(SPACE % (tmp_path / "cache")
                    + "objectives: {accuracy: {metric: accuracy}, latency_ms: minimize, params: minimize}\n")
    assert references.baseline_recipe(load_space(path)).class_balance == "none"  # as the presets do


def test_selection_leaves_out_or_refuses_what_the_image_size_cannot_take():
    run, left_out = references.select_baselines((), 32)
    assert "inception_v3" not in run and left_out == ["inception_v3"]
    assert references.select_baselines(("resnet20",), 32) == (["resnet20"], [])
    with pytest.raises(ValueError, match="--image-size 32 is too small: inception_v3 needs >= 75"):
        references.select_baselines(("resnet20", "inception_v3"), 32)
    with pytest.raises(ValueError, match="unknown baseline 'resnet18'; known baselines: resnet20"):
        references.select_baselines(("resnet18",), 32)


def test_weights_resolution_without_a_network(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty torch hub cache
    assert not references.resolve_weights("mobilenet_v2", "none").pretrained
    with caplog.at_level(logging.INFO, logger="search.run.references"):
        assert not references.resolve_weights("mobilenet_v2", "auto").pretrained  # not cached: no download
        assert not references.resolve_weights("resnet20", "auto").pretrained
    assert "not in the torch hub cache" in caplog.text and "no ImageNet weights exist" in caplog.text
    with pytest.raises(ValueError, match="no ImageNet weights for vit; baselines that have them: mobilenet_v2, inception_v3"):
        references.resolve_weights("vit", "imagenet")


def test_a_failed_imagenet_download_is_one_clear_line(tmp_path, monkeypatch):
    from torchvision.models import MobileNet_V2_Weights

    def offline(*args, **kwargs):
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(MobileNet_V2_Weights, "get_state_dict", offline)
    with pytest.raises(ValueError) as e:
        references.resolve_weights("mobilenet_v2", "imagenet")
    message = str(e.value)
    assert "\n" not in message and "offline" in message and "--weights none" in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in message


def test_bad_weights_files_are_errors_naming_the_file(images, tmp_path):
    with pytest.raises(ValueError, match=f"weights file not found: {tmp_path / 'none.pt'}"):
        references.resolve_weights("resnet20", str(tmp_path / "none.pt"))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=f"{garbage}: not a loadable state dict"):
        references.resolve_weights("resnet20", str(garbage))
    other = tmp_path / "resnet47.pt"
    torch.save(build_baseline("resnet47", 3, 10, pretrained=True).net.state_dict(), other)
    data = load_dataset(DataConfig(source=str(images), image_size=16), cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match=f"{other}: .*resnet20"):
        references.run_baseline("resnet20", references.resolve_weights("resnet20", str(other)),
                               TrainRecipe.named("paper", epochs=1, image_size=16), data)


def test_fine_tuning_from_a_local_weights_file(space, images, tmp_path, caplog):
    """A state dict saved here (10 classes) starts a 3-class resnet20; the trial records it."""
    weights = tmp_path / "resnet20-10-classes.pt"
    torch.save(build_baseline("resnet20", 3, 10, pretrained=True).net.state_dict(), weights)
    data = load_dataset(DataConfig(source=str(images), image_size=16), cache_dir=tmp_path / "cache")
    recipe = references.baseline_recipe(space, epochs=1)
    storage = f"sqlite:///{tmp_path}/b.db"
    with caplog.at_level(logging.INFO, logger="search.run.references"):
        [result] = references.run_baselines(space, data, ["resnet20"], str(weights), recipe, storage,
                                           tmp_path / "artifacts")
    assert "skipped (another class count): 1.2.weight, 1.2.bias" in caplog.text
    assert result.pretrained and result.pretrained_from == str(weights)
    [trial] = optuna.load_study(study_name="tiny-baselines", storage=storage).trials
    assert trial.user_attrs["pretrained"] is True and trial.user_attrs["pretrained_from"] == str(weights)
    spec = json.loads((Path(trial.user_attrs["weights_path"]).parent / "spec.json").read_text())
    assert spec == {"baseline": "resnet20", "pretrained": True, "pretrained_from": str(weights)}
    with pytest.raises(ValueError, match="one file for one baseline"):
        references.run_baselines(space, data, ["resnet20", "vit"], str(weights), recipe, storage, tmp_path)


def test_command_stores_references_and_front_shows_them(space, images, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    storage = f"sqlite:///{tmp_path}/b.db"
    argv = ["baselines", str(space.path), "--data", str(images), "--only", "resnet20,mobilenet_v2",
            "--epochs", "1", "--image-size", "32", "--study", "t", "--storage", storage,
            "--artifacts", str(tmp_path / "artifacts")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "study 't-baselines'" in out and "resnet20" in out and "mobilenet_v2" in out
    trials = optuna.load_study(study_name="t-baselines", storage=storage).trials
    assert [t.user_attrs["baseline"] for t in trials] == ["resnet20", "mobilenet_v2"]
    for t in trials:
        assert t.state == optuna.trial.TrialState.COMPLETE and len(t.values) == 3
        assert t.user_attrs["pretrained"] is False and t.user_attrs["arch"] == {"baseline": t.user_attrs["baseline"]}
        for attr in ("recipe", "macro_f1", "per_class_recall", "confusion", "macs", "latency_iqr_ms",
                     "batch_latency_ms", "data", "machine", "versions", "weights_path"):
            assert attr in t.user_attrs, attr

    # the main study: one net better than both references on every objective, one that is not
    main_study = studylib.open_study("t", storage)
    for values in ([1.0, 0.001, 10], [1.0, 0.0005, 1e9]):  # trial 1: faster than trial 0, far bigger
        t = main_study.ask()
        for name in CONSTRAINT_NAMES:
            t.set_constraint(name, 0.0)
        main_study.tell(t, values=values)
    assert main(["front", "--study", "t", "--storage", storage, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["trial"]: sorted(r["dominates"]) for r in rows} == {0: ["mobilenet_v2", "resnet20"], 1: []}
    assert all({"trial", "objective", r["objective"], "latency_ms", "params"} <= set(r) for r in rows)
    assert main(["front", "--study", "t", "--storage", storage, "--references", "--json"]) == 0
    refs = json.loads(capsys.readouterr().out)
    assert sorted(r["baseline"] for r in refs) == ["mobilenet_v2", "resnet20"]
    assert all(r["reference"] and r["pretrained"] is False and r["image_size"] == 32 for r in refs)
    assert main(["front", "--study", "t", "--storage", storage]) == 0
    text = capsys.readouterr().out
    assert "references (castsearch baselines, not searched)" in text
    assert "trial 0: " in text and "x faster" in text

"""Training precision: ``auto`` resolves to bf16 only where the device computes it natively,
bf16 training autocasts the forward pass but keeps depthwise convolutions, the
weights and the returned network in float32, and the training store tells the two apart."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import search.training.precision as precision_module
from search.space import SpaceError, decode, preset_params, space_from_dict
from search.training.precision import training_precision
from search.training.recipe import TrainRecipe
from search.training.train import train
from search.trial.reuse import Trainings
from tests.search.space_helpers import PAPER_DICT, with_changes
from tests.search.test_train import _data, _recipe


def test_auto_is_bf16_only_where_the_device_computes_it(monkeypatch):
    monkeypatch.setattr(precision_module, "_cpu_has_bf16", lambda: True)
    assert training_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(precision_module, "_cpu_has_bf16", lambda: False)
    assert training_precision("auto", "cpu") == "fp32"
    assert training_precision("bf16", "cpu") == "bf16"  # asked for by name: emulated, but as asked
    assert training_precision("fp32", "cpu") == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert training_precision("auto", "cuda") == "fp32"


def test_a_recipe_names_a_known_precision_and_an_old_one_trained_in_fp32():
    with pytest.raises(ValueError, match="unknown precision 'fp16'; known: auto, fp32, bf16"):
        TrainRecipe(precision="fp16")
    assert TrainRecipe().precision == "auto"
    old = {k: v for k, v in TrainRecipe().to_dict().items() if k != "precision"}
    assert TrainRecipe.from_dict(old).precision == "fp32"


def _dilated_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.BatchNorm2d(16), nn.ReLU(),  # depthwise
        nn.Conv2d(16, 16, 3, padding=2, dilation=2, groups=16), nn.BatchNorm2d(16), nn.ReLU(),  # depthwise, dilated
        nn.Conv2d(16, 32, 3, padding=2, dilation=2), nn.BatchNorm2d(32), nn.ReLU(),  # dense, dilated
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4),
    )


def test_bf16_training_autocasts_all_but_depthwise_convs_and_hands_back_fp32():
    net = _dilated_net()
    seen: dict[str, list[torch.dtype]] = {"dense": [], "depthwise": [], "depthwise dilated": [], "dilated": []}
    for name, index in (("dense", 0), ("depthwise", 3), ("depthwise dilated", 6), ("dilated", 9), ("linear", 13)):
        net[index].register_forward_hook(
            lambda m, i, out, name=name: seen.setdefault(name, []).append(out.dtype) if m.training else None)
    result = train(net, _data(), _recipe(epochs=3, lr=3e-3, precision="bf16"), device="cpu")
    assert result.precision == "bf16"
    assert {seen[n][0] for n in ("dense", "dilated", "linear")} == {torch.bfloat16}
    assert set(seen["depthwise"]) == set(seen["depthwise dilated"]) == {torch.float32}
    assert type(result.model[3]) is type(result.model[6]) is nn.Conv2d  # the float32 stand-ins are gone once trained
    assert all(p.dtype == torch.float32 for p in result.model.parameters())
    assert result.val_scores[-1] >= 0.9  # four easy classes: bf16 still learns them


def test_bf16_and_fp32_learn_alike():
    data = _data()
    scores = {p: train(_dilated_net(), data, _recipe(epochs=3, lr=3e-3, precision=p), device="cpu").val_scores[-1]
              for p in ("fp32", "bf16")}
    assert abs(scores["fp32"] - scores["bf16"]) <= 4 / 64, scores


def test_the_store_keeps_bf16_and_fp32_trainings_apart(tmp_path, monkeypatch):
    data = _data()
    store, spec = Trainings(tmp_path), {"layers": [], "head": "gap"}
    keys = {p: store.key(spec, _recipe(precision=p), data, "cpu") for p in ("auto", "fp32", "bf16")}
    assert keys["fp32"] != keys["bf16"]
    monkeypatch.setattr(precision_module, "_cpu_has_bf16", lambda: True)
    assert store.key(spec, _recipe(precision="auto"), data, "cpu") == keys["bf16"]
    monkeypatch.setattr(precision_module, "_cpu_has_bf16", lambda: False)
    assert store.key(spec, _recipe(precision="auto"), data, "cpu") == keys["fp32"]



def test_a_space_file_sets_the_precision():
    assert PAPER_DICT["training"]["precision"] == "auto"  # paper.yaml states it
    space = space_from_dict(with_changes((("training", "precision"), "fp32")), "fp32.yaml")
    params = preset_params(space)["custom-590k-dw"]
    assert "precision" not in params  # fixed: never an Optuna parameter
    assert decode(space, params).recipe.precision == "fp32"
    with pytest.raises(SpaceError, match="precision"):
        space_from_dict(with_changes((("training", "precision"), "fp16")), "bad.yaml")

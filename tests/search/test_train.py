"""search.training.train, search.training.recipe, search.training.augment: recipe, composer training, enhancements,
augmentations, evaluation."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from composer import Callback
from composer.algorithms.blurpool import BlurConv2d, BlurMaxPool2d
from composer.algorithms.squeeze_excite import SqueezeExcite2d
from torch import nn

from search.training.augment import AUGMENTATION_FUNCTIONS
from search.training.recipe import AUGMENTATIONS, ENHANCEMENTS, OPTIMIZERS, TrainRecipe
from search.training.train import (
    ALGORITHMS,
    OPTIMIZER_FACTORIES,
    SURGERY,
    evaluate,
    prepare_model,
    train,
)

CLASSES = ["horizontal", "vertical", "checker", "plain"]
SIDE = 16


def _patterns(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Four easy classes of 16x16 RGB stripes/checks over noise; pixel values 40..250, never 0."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, len(CLASSES), (n,), generator=g)
    i = torch.arange(SIDE)
    shapes = torch.stack([
        (i.view(SIDE, 1) % 4 < 2).float().expand(SIDE, SIDE),
        (i.view(1, SIDE) % 4 < 2).float().expand(SIDE, SIDE),
        ((i.view(SIDE, 1) + i.view(1, SIDE)) % 2).float(),
        torch.zeros(SIDE, SIDE),
    ])
    x = 40 + 60 * torch.rand(n, 3, SIDE, SIDE, generator=g) + 150 * shapes[y].unsqueeze(1)
    return x.round().to(torch.uint8), y


def _data() -> SimpleNamespace:
    (train_x, train_y), (val_x, val_y) = _patterns(256, 1), _patterns(64, 2)
    test_x, test_y = _patterns(64, 3)
    return SimpleNamespace(class_names=CLASSES, train_x=train_x, train_y=train_y, val_x=val_x,
                           val_y=val_y, test_x=test_x, test_y=test_y, identity={})


def _net() -> nn.Module:
    """Tiny CNN with what the surgery needs: a max-pool, a strided conv, a 128->128 conv."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(16), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(), nn.BatchNorm2d(32),
        nn.Conv2d(32, 128, 1), nn.ReLU(), nn.Conv2d(128, 128, 1), nn.ReLU(), nn.BatchNorm2d(128),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, len(CLASSES)),
    )


def _nearest(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance from each image in ``a`` to the closest in ``b`` (exact, not via matmul)."""
    distances = torch.cdist(a.flatten(1), b.flatten(1), compute_mode="donot_use_mm_for_euclid_dist")
    return distances.min(dim=1).values


def _recipe(**kw) -> TrainRecipe:
    return TrainRecipe.named("paper", **{"epochs": 1, "image_size": SIDE, **kw})


class Recorder(Callback):
    """Copies what composer hands the model: the loaded batch (after CutOut), the forward
    input (after MixUp), the loss targets (after LabelSmoothing/MixUp), weights after each step."""

    def __init__(self) -> None:
        self.loaded, self.labels, self.inputs, self.targets, self.weights = [], [], [], [], []

    def after_dataloader(self, state, logger) -> None:
        self.loaded.append(state.batch[0].clone())
        self.labels.append(state.batch[1].clone())

    def before_forward(self, state, logger) -> None:
        self.inputs.append(state.batch[0].clone())

    def before_loss(self, state, logger) -> None:
        self.targets.append(state.batch[1].clone())

    def batch_end(self, state, logger) -> None:
        self.weights.append([p.detach().clone() for p in state.model.module.parameters()])


# ---------------------------------------------------------------------------
# Recipe


def test_recipe_round_trips_through_json():
    recipe = TrainRecipe(epochs=3, optimizer="sgd", enhancements=("swa", "mixup"), augmentations=("hflip",))
    assert TrainRecipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe
    assert TrainRecipe(enhancements=["cutout"]).enhancements == ("cutout",)


@pytest.mark.parametrize("fields, message", [
    ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'; known: adam, adamw, sgd"),
    ({"enhancements": ("blur",)}, "known: blurpool, squeeze_excite, swa"),
    ({"augmentations": ("flip",)}, "known: hflip, vflip"),
    ({"augmentations": ("hflip", "hflip")}, "must not repeat"),
    ({"epochs": 0}, "epochs must be >= 1, got 0"),
    ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
    ({"lr": 0.0}, "lr must be > 0, got 0.0"),
    ({"cutout_length": 1.0}, "cutout_length must be in (0, 1), got 1.0"),
    ({"epoch": 3}, "unknown recipe field(s) ['epoch']"),
])
def test_recipe_rejects_bad_values(fields, message):
    with pytest.raises(ValueError) as err:
        TrainRecipe.from_dict(fields)
    assert message in str(err.value)


def test_registries_cover_the_public_names():
    assert ENHANCEMENTS == ("blurpool", "squeeze_excite", "swa", "label_smoothing", "mixup", "cutout")
    assert AUGMENTATIONS == ("hflip", "vflip", "rotate", "gaussian_blur", "shift_scale_rotate",
                             "random_crop", "brightness_contrast")


def test_recipe_names_match_the_registries():
    """search.training.recipe lists the names without torch; the registries hold the code for each.
    The order matters too: a decoded candidate lists its enhancements and augmentations
    in the order of these names."""
    assert set(AUGMENTATIONS) == set(AUGMENTATION_FUNCTIONS)
    assert AUGMENTATIONS == tuple(AUGMENTATION_FUNCTIONS)
    assert set(ENHANCEMENTS) == set(SURGERY) | set(ALGORITHMS)
    assert ENHANCEMENTS == (*SURGERY, *ALGORITHMS)
    assert OPTIMIZERS == tuple(OPTIMIZER_FACTORIES)


# ---------------------------------------------------------------------------
# Training


def test_train_learns_reports_each_epoch_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = _data()
    calls = []
    result = train(_net(), data, _recipe(epochs=2), on_epoch=lambda e, acc: calls.append((e, acc)))
    assert calls == list(enumerate(result.val_scores, start=1))
    assert result.epochs_run == 2 and not result.stopped_early
    assert result.train_seconds > 0 and result.images_per_second > 0
    assert not result.model.training
    assert all(p.device.type == "cpu" for p in result.model.parameters())
    assert evaluate(result.model, data.test_x, data.test_y, CLASSES).accuracy > 0.6  # chance: 0.25
    assert list(tmp_path.iterdir()) == []


def test_channels_last_training_learns_what_the_default_layout_learns(monkeypatch):
    """On CPU the network trains in channels-last layout and comes back in the default one;
    the layout changes the arithmetic's order, not what the network learns (in fp32: bf16's
    rounding would hide what the layout does)."""
    import search.training.train as train_module

    data, recorder = _data(), Recorder()
    recipe = _recipe(epochs=2, enhancements=("squeeze_excite",), precision="fp32")
    fast = train(_net(), data, recipe, callbacks=[recorder], device="cpu")
    assert all(x.is_contiguous(memory_format=torch.channels_last) for x in recorder.loaded)
    assert all(p.is_contiguous() for p in fast.model.parameters())
    monkeypatch.setattr(train_module, "CPU_MEMORY_FORMAT", torch.contiguous_format)
    plain = train(_net(), data, recipe, device="cpu")
    for a, b in zip(fast.model.state_dict().values(), plain.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)
    # At most one of the 64 validation images may fall on the other side of a decision boundary.
    assert all(abs(a - b) <= 1 / 64 + 1e-9 for a, b in zip(fast.val_scores, plain.val_scores, strict=True))


def test_on_epoch_returning_true_stops_training():
    result = train(_net(), _data(), _recipe(epochs=5), on_epoch=lambda e, acc: e == 2)
    assert result.epochs_run == 2 and len(result.val_scores) == 2 and result.stopped_early


def test_a_lone_last_image_does_not_reach_batchnorm():
    data = _data()
    data.train_x, data.train_y = data.train_x[:33], data.train_y[:33]  # batches of 32 and 1
    pooled = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8), nn.Flatten(),
                           nn.Linear(8, len(CLASSES)))  # BatchNorm over 1x1 maps
    assert train(pooled, data, _recipe()).epochs_run == 1


def test_train_rejects_mismatched_data_and_unknown_device():
    with pytest.raises(ValueError, match=r"train_x must be uint8 \[N, 3, 32, 32\]"):
        train(_net(), _data(), _recipe(image_size=32))
    with pytest.raises(ValueError, match="unknown device 'tpu'; known: cpu, cuda, gpu"):
        train(_net(), _data(), _recipe(), device="tpu")


# ---------------------------------------------------------------------------
# Enhancements


def test_surgery_inserts_blur_and_se_layers_and_rebuilds_trained_model():
    recipe = _recipe(enhancements=("blurpool", "squeeze_excite"))
    trained = train(_net(), _data(), recipe).model
    kinds = {type(m) for m in trained.modules()}
    assert {BlurConv2d, BlurMaxPool2d, SqueezeExcite2d} <= kinds
    rebuilt = prepare_model(_net(), recipe)
    rebuilt.load_state_dict(trained.state_dict())  # strict: same layers, same shapes
    again = prepare_model(rebuilt, recipe)  # idempotent
    assert [type(m) for m in again.modules()] == [type(m) for m in trained.modules()]
    assert prepare_model(_net(), _recipe()).state_dict().keys() == _net().state_dict().keys()


def test_swa_ends_with_averaged_weights_and_fresh_batchnorm_statistics():
    data, recorder = _data(), Recorder()
    model = train(_net(), data, _recipe(epochs=2, enhancements=("swa",)), callbacks=[recorder]).model
    steps_per_epoch = math.ceil(len(data.train_y) / 32)
    assert len(recorder.weights) == 2 * steps_per_epoch
    # 2 epochs: SWA averages the weights at the end of epoch 1 and of epoch 2.
    end_1, end_2 = recorder.weights[steps_per_epoch - 1], recorder.weights[-1]
    for p, a, b in zip(model.parameters(), end_1, end_2, strict=True):
        torch.testing.assert_close(p.detach(), (a + b) / 2)
    assert not all(torch.equal(p, b) for p, b in zip(model.parameters(), end_2, strict=True))
    # BatchNorm statistics recomputed for the averaged weights (one pass over the 256 images).
    features = model[:2](data.train_x.float() / 255).detach()
    torch.testing.assert_close(model[2].running_mean, features.mean(dim=(0, 2, 3)), atol=1e-5, rtol=1e-4)


def test_swa_in_one_epoch_averages_the_last_batches():
    data, plain = _data(), Recorder()
    train(_net(), data, _recipe(epochs=1), callbacks=[plain])  # the same run without SWA
    model = train(_net(), data, _recipe(epochs=1, enhancements=("swa",))).model
    steps = len(plain.weights)
    final = [p.detach() for p in model.parameters()]
    # The result is the mean of the weights after each of the last k batches, k covering the
    # last ~30% of the epoch (averaging starts at 0.7 of the run).
    matches = [k for k in range(1, steps + 1)
               if all(torch.allclose(p, torch.stack(ws).mean(0), atol=1e-6)
                      for p, ws in zip(final, zip(*plain.weights[-k:], strict=True), strict=True))]
    assert len(matches) == 1 and 2 <= matches[0] and 0.2 * steps <= matches[0] <= 0.4 * steps + 1


def test_label_smoothing_smooths_the_loss_targets():
    recorder = Recorder()
    recipe = _recipe(enhancements=("label_smoothing",), label_smoothing=0.2)
    train(_net(), _data(), recipe, callbacks=[recorder])
    for labels, targets in zip(recorder.labels, recorder.targets, strict=True):
        expected = F.one_hot(labels, len(CLASSES)).float() * 0.8 + 0.2 / len(CLASSES)
        torch.testing.assert_close(targets, expected)


def test_mixup_mixes_inputs_and_targets_with_one_coefficient():
    recorder = Recorder()
    train(_net(), _data(), _recipe(enhancements=("mixup",), mixup_alpha=1.0), callbacks=[recorder])
    checked = 0
    for x, labels, mixed_x, targets in zip(recorder.loaded, recorder.labels, recorder.inputs,
                                           recorder.targets, strict=True):
        torch.testing.assert_close(targets.sum(dim=1), torch.ones(len(x)))
        own = targets.gather(1, labels.view(-1, 1)).squeeze(1)
        mixing = 1 - own.min()  # the weight of the partner image, <= 0.5
        assert torch.all(own >= 0.5 - 1e-6)
        if mixing < 0.05:
            continue
        # each input is (1 - m) * itself + m * some image of the same batch
        partner = (mixed_x - (1 - mixing) * x) / mixing
        assert _nearest(partner, x).max() < 1e-4
        checked += 1
    assert checked > 0


def test_cutout_zeroes_one_square_shared_by_the_batch():
    recorder = Recorder()
    train(_net(), _data(), _recipe(enhancements=("cutout",), cutout_length=0.5), callbacks=[recorder])
    for batch in recorder.loaded:  # the training images have no zero pixels of their own
        hole = batch == 0
        assert hole.any()
        assert torch.equal(hole, hole[:1, :1].expand_as(hole))  # same place in every image and channel
        rows, cols = hole[0, 0].any(dim=1).nonzero(), hole[0, 0].any(dim=0).nonzero()
        assert hole[0, 0, rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()  # a filled rectangle
        assert rows.numel() <= SIDE // 2 and cols.numel() <= SIDE // 2


# ---------------------------------------------------------------------------
# Augmentations


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_augmentation_changes_a_random_subset_of_samples(name):
    image = torch.rand(1, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(0))
    batch = image.expand(64, -1, -1, -1).clone()
    out = AUGMENTATION_FUNCTIONS[name](batch, torch.Generator().manual_seed(1))
    assert out.shape == batch.shape and out.dtype == batch.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(batch, image.expand_as(batch))  # input left alone
    changed = (out - batch).flatten(1).abs().amax(dim=1) > 1e-6
    assert 0 < changed.sum() < len(batch)  # per sample: some transformed, some not
    if name not in ("hflip", "vflip"):  # per sample parameters: changed samples differ from each other
        assert len(torch.unique(out[changed].flatten(1), dim=0)) > 1
    again = AUGMENTATION_FUNCTIONS[name](batch, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)  # seeded


def test_augmentations_apply_to_training_batches():
    data, recorder = _data(), Recorder()
    train(_net(), data, _recipe(augmentations=("vflip",)), callbacks=[recorder])
    images, seen = data.train_x.float() / 255, torch.cat(recorder.loaded)
    as_is, flipped = _nearest(seen, images) < 1e-6, _nearest(seen.flip(-2), images) < 1e-6
    assert torch.all(as_is | flipped) and 0 < flipped.sum() < len(seen)


# ---------------------------------------------------------------------------
# Evaluation


class _Oracle(nn.Module):
    """Predicts the class written in the first pixel."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.one_hot((x[:, 0, 0, 0] * 255).round().long(), self.num_classes).float()


def test_evaluate_matches_hand_computed_metrics():
    y = torch.tensor([0, 0, 0, 1, 1, 2])
    predicted = torch.tensor([0, 0, 1, 1, 2, 2])
    x = predicted.to(torch.uint8).view(-1, 1, 1, 1)
    result = evaluate(_Oracle(3), x, y, ["a", "b", "c"], batch_size=4)
    assert result.confusion == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert result.accuracy == pytest.approx(4 / 6)
    assert result.per_class_recall == pytest.approx({"a": 2 / 3, "b": 1 / 2, "c": 1.0})
    f1 = [0.8, 0.5, 2 / 3]  # 2PR/(P+R): a P=1 R=2/3, b P=1/2 R=1/2, c P=1/2 R=1
    assert result.macro_f1 == pytest.approx(sum(f1) / 3)
    assert result.balanced_accuracy == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    # a class with no images and no predictions counts as F1 0 and recall 0
    four = evaluate(_Oracle(4), x, y, ["a", "b", "c", "d"])
    assert four.macro_f1 == pytest.approx(sum(f1) / 4)
    assert four.per_class_recall["d"] == 0.0
    assert four.balanced_accuracy == pytest.approx(result.balanced_accuracy)  # "d" has no images
    assert json.loads(json.dumps(four.to_dict()))["confusion"][3] == [0, 0, 0, 0]


# ---------------------------------------------------------------------------
# Learning-rate schedules and class balance


class LrRecorder(Callback):
    """The learning rate each optimizer step uses."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def before_train_batch(self, state, logger) -> None:
        self.lrs.append(state.optimizers[0].param_groups[0]["lr"])


def _lrs(**recipe) -> list[float]:
    recorder = LrRecorder()
    train(_net(), _data(), _recipe(epochs=2, **recipe), callbacks=[recorder])
    return recorder.lrs


def test_constant_schedule_keeps_the_learning_rate():
    assert _lrs(lr=2e-3) == [2e-3] * 16  # 256 images / batch 32 = 8 steps per epoch


def test_onecycle_warms_up_linearly_then_decays_linearly_to_zero():
    lrs = _lrs(optimizer="adamw", lr=4e-3, schedule="onecycle", warmup=0.25)
    assert len(lrs) == 16
    # warm-up over 4 of 16 steps from 0 to the peak, then linear decay to 0 at step 16;
    # composer applies each step's value one step late (see search.training.train.SCHEDULERS)
    schedule = [4e-3 * i / 4 for i in range(4)] + [4e-3 * (1 - (i - 4) / 12) for i in range(4, 16)]
    assert lrs == pytest.approx([schedule[max(i - 1, 0)] for i in range(16)])
    assert max(lrs) == pytest.approx(4e-3) and lrs[0] == 0.0 and lrs[-1] == pytest.approx(4e-3 * 2 / 12)


def test_cosine_warms_up_then_follows_a_half_cosine_to_zero():
    lrs = _lrs(optimizer="sgd", lr=0.1, schedule="cosine", warmup=0.25)
    schedule = [0.1 * i / 4 for i in range(4)] + [0.1 * (1 + math.cos(math.pi * (i - 4) / 12)) / 2
                                                  for i in range(4, 16)]
    assert lrs == pytest.approx([schedule[max(i - 1, 0)] for i in range(16)])
    assert max(lrs) == pytest.approx(0.1) and lrs[11] == pytest.approx(0.05)  # half-way: half the peak


def test_schedules_without_warmup_start_at_the_peak():
    assert _lrs(lr=1e-3, schedule="onecycle")[:3] == pytest.approx([1e-3, 1e-3, 1e-3 * 15 / 16])
    assert _lrs(lr=1e-3, schedule="cosine")[0] == pytest.approx(1e-3)


def test_optimizers_are_what_the_recipe_names():
    params = [nn.Parameter(torch.zeros(2))]
    adamw = OPTIMIZER_FACTORIES["adamw"](params, _recipe(optimizer="adamw", weight_decay=0.01))
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["weight_decay"] == 0.01
    sgd = OPTIMIZER_FACTORIES["sgd"](params, _recipe(optimizer="sgd"))
    assert sgd.param_groups[0]["nesterov"] and sgd.param_groups[0]["momentum"] == 0.9


def test_named_recipes():
    paper = TrainRecipe.named("paper")
    assert (paper.optimizer, paper.lr, paper.schedule, paper.weight_decay, paper.batch_size) == (
        "adam", 1e-3, "constant", 0.0, 32)
    assert paper.enhancements == () and paper.augmentations == ()
    assert TrainRecipe.named("default", epochs=3).epochs == 3
    assert TrainRecipe() == TrainRecipe.named("default")  # one default: the dataclass's is the named one
    assert (TrainRecipe().optimizer, TrainRecipe().schedule) == ("adamw", "onecycle")
    # the objective weighs every class alike, so the default loss does too; the paper's did not
    assert (TrainRecipe().class_balance, paper.class_balance) == ("weighted_loss", "none")
    # ... and for plain accuracy, which weighs every image alike, it trains unweighted
    assert TrainRecipe.for_metric("default", "balanced_accuracy") == TrainRecipe.named("default")
    assert TrainRecipe.for_metric("default", "accuracy", epochs=3) == TrainRecipe.named(
        "default", epochs=3, class_balance="none")
    assert TrainRecipe.for_metric("default", "accuracy", class_balance="sampler").class_balance == "sampler"


def test_a_stored_recipe_without_a_field_reads_as_it_was_trained():
    """Recipes stored before the optimiser fields existed trained with the paper's values (the
    defaults then): reading one gives the paper recipe, not today's default."""
    old = {"epochs": 5, "batch_size": 16, "image_size": 32, "channels": 3, "enhancements": [], "augmentations": [],
           "label_smoothing": 0.1, "mixup_alpha": 0.2, "cutout_length": 0.25, "seed": 2}
    assert TrainRecipe.from_dict(old) == TrainRecipe.named("paper", **old, precision="fp32")
    assert TrainRecipe.from_dict({**old, "optimizer": "sgd"}).optimizer == "sgd"
    default = TrainRecipe(epochs=2).to_dict()
    assert TrainRecipe.from_dict(default) == TrainRecipe(epochs=2)  # a complete dict is read as written
    with pytest.raises(ValueError, match="unknown recipe 'fast'; known recipes: paper, default"):
        TrainRecipe.named("fast")
    with pytest.raises(ValueError, match="unknown schedule 'step'; known: constant, onecycle, cosine"):
        TrainRecipe(schedule="step")


def test_class_weights_are_inverse_frequency_averaging_one():
    from search.training.train import class_weights

    y = torch.tensor([0] * 6 + [1] * 2 + [2] * 0 + [3] * 4)
    w = class_weights(y, 4)
    torch.testing.assert_close(w, torch.tensor([12 / 18, 12 / 6, 0.0, 12 / 12]))  # n / (3 classes x count)
    assert float(w[y].mean()) == pytest.approx(1.0)


def _imbalanced() -> SimpleNamespace:
    data = _data()
    keep = (data.train_y != 0) | (torch.arange(len(data.train_y)) % 8 == 0)  # class 0 made rare
    data.train_x, data.train_y = data.train_x[keep], data.train_y[keep]
    return data


def test_class_balanced_sampler_draws_every_class_about_equally():
    data = _imbalanced()
    recorder = Recorder()
    train(_net(), data, _recipe(epochs=2, class_balance="sampler"), callbacks=[recorder])
    seen = torch.bincount(torch.cat(recorder.labels), minlength=len(CLASSES)).float()
    natural = torch.bincount(data.train_y, minlength=len(CLASSES)).float()
    assert natural[0] < natural[1:].min() / 4  # the rare class is rare in the data ...
    assert seen.sum() == 2 * len(data.train_y)  # ... as many draws as images per epoch ...
    assert (seen / seen.sum() - 0.25).abs().max() < 0.08  # ... and about a quarter of the draws


def test_weighted_loss_weights_the_rare_class_up():
    data = _imbalanced()
    recorder = Recorder()
    recipe = _recipe(class_balance="weighted_loss")
    model = train(_net(), data, recipe, callbacks=[recorder]).model
    assert recorder.labels  # it trained; the loss itself is checked through the weights above
    from search.training.train import class_weights

    weights = class_weights(data.train_y, len(CLASSES))
    assert weights[0] > 3 * weights[1:].max()
    assert evaluate(model, data.val_x, data.val_y, CLASSES).accuracy > 0

"""Training with composer's Trainer and algorithms, from a :class:`TrainRecipe`; evaluation metrics.

The only module that imports composer. composer's import costs several seconds, so it
is imported inside the functions that need it: importing this module stays cheap.

Recipe names map to code through registries:

- ``SURGERY``: model-surgery enhancements (``blurpool``, ``squeeze_excite``), applied by
  :func:`prepare_model` with ``composer.functional`` -- the same calls composer's
  ``BlurPool`` / ``SqueezeExcite`` algorithms make at ``Event.INIT``. Doing it outside the
  Trainer gives one code path for training and for rebuilding a trained network from
  spec + recipe + state dict (export).
- ``ALGORITHMS``: training-time composer algorithms (``swa``, ``label_smoothing``,
  ``mixup``, ``cutout``), one factory per name taking the recipe.
- ``OPTIMIZER_FACTORIES``: the torch optimizer for each optimizer name.
- ``AUGMENTATION_FUNCTIONS`` (:mod:`search.training.augment`): the paper's baseline augmentations
  as per-sample random, vectorised transforms of float batches, applied to training
  batches only.

:func:`train` never changes torch's thread count; the caller decides (a Ray worker
sets one thread, the CLI leaves torch's default).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
    WeightedRandomSampler,
)

from search.training.augment import AUGMENTATION_FUNCTIONS
from search.training.precision import Autocast, Float32Conv2d, keep_in_fp32, training_precision
from search.training.recipe import TrainRecipe

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------
# Enhancements


def _blurpool(model: nn.Module) -> None:
    from composer.functional import apply_blurpool

    apply_blurpool(model)  # composer's BlurPool defaults: strided convs (>= 16 in-channels), max-pools


def _squeeze_excite(model: nn.Module) -> None:
    from composer.functional import apply_squeeze_excite

    apply_squeeze_excite(model)  # composer's SqueezeExcite defaults: convs with in and out >= 128


SURGERY: dict[str, Callable[[nn.Module], None]] = {
    "blurpool": _blurpool,
    "squeeze_excite": _squeeze_excite,
}


def _not_about_swa_batchnorm(record: logging.LogRecord) -> bool:
    """Drop composer's warning that the swapped-in SWA weights keep stale BatchNorm
    statistics: :func:`train` recomputes them."""
    return "batch norm statistics" not in record.getMessage().lower()


def _swa(recipe: TrainRecipe) -> Any:
    """Average the weights over the last ~30% of training and end with that average.

    With 2+ epochs: the epoch-end weights from epoch max(1, floor(0.7 * epochs)) to the last.
    With 1 epoch: the weights after every batch of the last 30% of the epoch. The averaged
    weights replace the model's at the very end, and :func:`train` then recomputes the
    BatchNorm statistics for them. (composer's alternative, swapping earlier and training
    on, leaves a model that is no longer the average.)
    """
    from composer.algorithms import SWA

    logging.getLogger("composer.algorithms.swa.swa").addFilter(_not_about_swa_batchnorm)
    with warnings.catch_warnings():  # a note about resuming multi-GPU checkpoints; neither applies
        warnings.filterwarnings("ignore", message="SWA has known issues")
        warnings.filterwarnings("ignore", message=".*swa_end.*")  # BN statistics: train() recomputes them
        if recipe.epochs == 1:
            return SWA(swa_start="0.7dur", swa_end="1dur", update_interval="1ba")
        start = max(1, math.floor(0.7 * recipe.epochs))
        return SWA(swa_start=f"{start}ep", swa_end=f"{recipe.epochs}ep", update_interval="1ep")


def _label_smoothing(recipe: TrainRecipe) -> Any:
    from composer.algorithms import LabelSmoothing

    return LabelSmoothing(smoothing=recipe.label_smoothing)


def _mixup(recipe: TrainRecipe) -> Any:
    from composer.algorithms import MixUp

    return MixUp(alpha=recipe.mixup_alpha)


def _cutout(recipe: TrainRecipe) -> Any:
    from composer.algorithms import CutOut

    return CutOut(length=recipe.cutout_length)


ALGORITHMS: dict[str, Callable[[TrainRecipe], Any]] = {
    "swa": _swa,
    "label_smoothing": _label_smoothing,
    "mixup": _mixup,
    "cutout": _cutout,
}

OPTIMIZER_FACTORIES: dict[str, Callable[[Any, TrainRecipe], torch.optim.Optimizer]] = {
    "adam": lambda params, r: torch.optim.Adam(params, lr=r.lr, weight_decay=r.weight_decay),
    "adamw": lambda params, r: torch.optim.AdamW(params, lr=r.lr, weight_decay=r.weight_decay),
    "sgd": lambda params, r: torch.optim.SGD(params, lr=r.lr, momentum=0.9, nesterov=True,
                                             weight_decay=r.weight_decay),
}


def _warmup_batches(recipe: TrainRecipe, total_batches: int) -> int:
    return round(recipe.warmup * total_batches)


def _constant(recipe: TrainRecipe, total_batches: int) -> Any:
    from composer.optim import ConstantScheduler

    return ConstantScheduler(alpha=1.0)


def _onecycle(recipe: TrainRecipe, total_batches: int) -> Any:
    """Linear warm-up from 0 to ``lr`` over the warm-up fraction, then linear decay to 0."""
    from composer.optim import LinearScheduler, LinearWithWarmupScheduler

    warmup = _warmup_batches(recipe, total_batches)
    if warmup == 0:
        return LinearScheduler(alpha_i=1.0, alpha_f=0.0)
    return LinearWithWarmupScheduler(t_warmup=f"{warmup}ba", alpha_i=1.0, alpha_f=0.0)


def _cosine(recipe: TrainRecipe, total_batches: int) -> Any:
    """Linear warm-up from 0 to ``lr`` over the warm-up fraction, then cosine decay to 0."""
    from composer.optim import CosineAnnealingScheduler, CosineAnnealingWithWarmupScheduler

    warmup = _warmup_batches(recipe, total_batches)
    if warmup == 0:
        return CosineAnnealingScheduler(alpha_f=0.0)
    return CosineAnnealingWithWarmupScheduler(t_warmup=f"{warmup}ba", alpha_f=0.0)


# composer schedulers, stepped after every batch: the learning rate is lr x the factor they give.
# composer steps them at the end of a batch from the batch count before it, so step i trains
# with the factor of step i - 1 (and the first two steps with that of step 0).
SCHEDULERS: dict[str, Callable[[TrainRecipe, int], Any]] = {
    "constant": _constant,
    "onecycle": _onecycle,
    "cosine": _cosine,
}


def class_weights(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse class frequency, scaled so that the weights average 1 over the training images
    (a balanced set gets all ones). A class with no images gets weight 0."""
    counts = torch.bincount(y.long(), minlength=num_classes).double()
    present = int((counts > 0).sum())
    weights = torch.where(counts > 0, len(y) / (present * counts.clamp(min=1)), 0.0)
    return weights.float()

# ---------------------------------------------------------------------------
# Results


@dataclass
class EvalResult:
    accuracy: float  # fraction 0..1
    balanced_accuracy: float  # mean per-class recall over the classes with images
    macro_f1: float
    per_class_recall: dict[str, float]
    confusion: list[list[int]]  # rows = true class, columns = predicted class

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    model: nn.Module  # trained (SWA-averaged with swa), eval mode, on CPU
    val_scores: list[float]  # the validation value of the metric train() was given, one per epoch run
    epochs_run: int
    stopped_early: bool  # True when on_epoch asked to stop
    train_seconds: float  # wall time of the whole train() call
    images_per_second: float  # training images / training time (excluding per-epoch validation)
    precision: str = "fp32"  # what the recipe's precision resolved to on the device: fp32 | bf16


# ---------------------------------------------------------------------------
# Training


def default_device() -> str:
    """"cuda" when torch sees a GPU, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"


_COMPOSER_DEVICES = {"cpu": "cpu", "cuda": "gpu", "gpu": "gpu"}

# On CPU the network trains in channels-last (NHWC) layout: oneDNN's convolutions, the
# depthwise ones most, train 1.2-1.5x faster in it than in the default NCHW layout (BENCHMARKS.md,
# "Training throughput in channels-last layout at 32x32"). train() hands the network back in the
# default layout, so evaluation, export, latency and the saved weights see no difference.
CPU_MEMORY_FORMAT = torch.channels_last


def prepare_model(model: nn.Module, recipe: TrainRecipe) -> nn.Module:
    """Apply the recipe's model surgery (blurpool, squeeze_excite) in place and return the model.

    A network rebuilt as ``prepare_model(build_model(spec, ...), recipe)`` takes the trained
    state dict. Applying it again changes nothing (composer marks the layers it replaced).
    """
    for name in recipe.enhancements:
        if name in SURGERY:
            SURGERY[name](model)
    return model


def _batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator | None,
             augmentations: tuple[str, ...] = (), balanced: bool = False,
             memory_format: torch.memory_format = torch.contiguous_format) -> DataLoader:
    """Batches of (float images in [0, 1], labels): shuffled with ``generator`` (in order
    without), converted from uint8 and augmented one batch at a time, in ``memory_format``.
    ``balanced``: draw images with replacement, each class equally often (as many draws as
    images)."""
    if balanced:  # drawn on the CPU with ``generator``, wherever the images are
        per_image = class_weights(y.cpu(), int(y.max()) + 1)[y.long().cpu()].double()
        sampler = WeightedRandomSampler(per_image, num_samples=len(x), replacement=True, generator=generator)
    elif generator is not None:
        sampler = RandomSampler(x, generator=generator)
    else:
        sampler = SequentialSampler(x)
    functions = [AUGMENTATION_FUNCTIONS[name] for name in augmentations]

    def to_float(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = batch
        images = images.float().div_(255)
        for fn in functions:
            images = fn(images, generator)
        return images.contiguous(memory_format=memory_format), labels

    # The dataset is indexed with a whole batch of indices at once (batch_size=None). A lone
    # last image is dropped: BatchNorm in training mode fails on one value per channel.
    batches = BatchSampler(sampler, batch_size, drop_last=len(x) % batch_size == 1)
    return DataLoader(TensorDataset(x, y), sampler=batches, batch_size=None, collate_fn=to_float,
                      num_workers=0)


def _weighted_cross_entropy(weight: torch.Tensor) -> Callable[..., torch.Tensor]:
    """Cross-entropy with per-class ``weight`` on whichever device the logits are."""

    def loss(outputs: torch.Tensor, targets: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return F.cross_entropy(outputs, targets, *args, weight=weight.to(outputs.device), **kwargs)

    return loss


def _check_data(data: Any, recipe: TrainRecipe) -> None:
    expected = (recipe.channels, recipe.image_size, recipe.image_size)
    for split in ("train", "val"):
        x, y = getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
        if x.dtype != torch.uint8 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"{split}_x must be uint8 [N, {expected[0]}, {expected[1]}, {expected[2]}] "
                             f"for this recipe, got {x.dtype} {list(x.shape)}")
        if len(y) != len(x) or len(x) == 0:
            raise ValueError(f"{split}_x and {split}_y must be non-empty and of equal length, "
                             f"got {len(x)} and {len(y)}")


@dataclass
class _EpochEnd:
    """Runs at composer's EPOCH_END, after the algorithms: fixes SWA's BatchNorm statistics
    once the averaged weights are in, measures the validation ``metric``, asks ``on_epoch``."""

    model: nn.Module
    data: Any
    bn_batches: DataLoader
    swa: Any
    on_epoch: Callable[[int, float], bool | None] | None
    metric: str = "accuracy"
    epochs: int = 0
    images_per_epoch: int = 0
    val_scores: list[float] = dataclasses.field(default_factory=list)
    stopped_early: bool = False
    eval_seconds: float = 0.0
    started: float = dataclasses.field(default_factory=time.perf_counter)
    loss_sum: Any = 0.0  # a tensor once a batch has ended: read once per epoch, no sync per batch
    loss_batches: int = 0

    def batch_end(self, state: Any) -> None:
        """Adds the batch's training loss to the epoch's mean."""
        loss = state.loss
        if isinstance(loss, dict):
            loss = sum(loss.values())
        self.loss_sum = self.loss_sum + loss.detach()
        self.loss_batches += 1

    def progress(self, score: float) -> None:
        """One line per epoch: the mean training loss, the validation score, the training
        speed (evaluation excluded) and the time left at this epoch's pace."""
        epoch = len(self.val_scores)
        elapsed = time.perf_counter() - self.started
        rate = epoch * self.images_per_epoch / max(elapsed - self.eval_seconds, 1e-9)
        left = elapsed / epoch * (self.epochs - epoch)
        loss = float(self.loss_sum) / max(self.loss_batches, 1)
        log.info("epoch %d/%d: train loss %.4f · val %s %.4f · %.0f images/s · %.0f s left", epoch,
                 self.epochs, loss, self.metric.replace("_", " "), score, rate, left)
        self.loss_sum, self.loss_batches = 0.0, 0

    def __call__(self, state: Any) -> None:
        start = time.perf_counter()
        if self.swa is not None and self.swa.swa_completed:
            device = next(self.model.parameters()).device
            torch.optim.swa_utils.update_bn(self.bn_batches, self.model, device=device)
        result = evaluate(self.model, self.data.val_x, self.data.val_y, self.data.class_names)
        score = getattr(result, self.metric)
        self.eval_seconds += time.perf_counter() - start
        self.val_scores.append(score)
        self.progress(score)
        if self.on_epoch is not None and self.on_epoch(len(self.val_scores), score):
            self.stopped_early = True
            state.stop_training()


def _callback(fn: _EpochEnd) -> Any:
    from composer import Callback

    class EpochEndCallback(Callback):
        def batch_end(self, state: Any, logger: Any) -> None:
            fn.batch_end(state)

        def epoch_end(self, state: Any, logger: Any) -> None:
            fn(state)

    return EpochEndCallback()


def train(model: nn.Module, data: Any, recipe: TrainRecipe,
          on_epoch: Callable[[int, float], bool | None] | None = None, device: str | None = None,
          callbacks: Sequence[Any] = (), metric: str = "accuracy") -> TrainResult:
    """Train ``model`` (in place, after :func:`prepare_model`) on ``data`` with composer's Trainer.

    ``data`` needs ``train_x``/``val_x`` (uint8 ``[N, C, H, W]`` matching the recipe's
    channels and image size), ``train_y``/``val_y`` (int64 ``[N]``) and ``class_names``.
    Inputs are the images / 255. After every epoch the validation accuracy is measured and
    ``on_epoch(epoch, score)`` (epoch counted from 1; ``score`` is the validation value of
    ``metric``, an :class:`EvalResult` field such as ``balanced_accuracy``) is called; returning True stops
    training (SWA then does not average). ``device``: "cpu", "cuda"/"gpu", None = the GPU
    when there is one. ``callbacks``: extra composer callbacks (diagnostics, tests).
    composer seeds the global Python/numpy/torch generators with ``recipe.seed`` (MixUp
    and CutOut draw from them); shuffling and augmentations use their own generator.
    Nothing is written to disk; torch's thread count is left to the caller.
    """
    from composer import Trainer
    from composer.models import ComposerClassifier
    from torchmetrics import MetricCollection

    device = device or default_device()
    if device not in _COMPOSER_DEVICES:
        raise ValueError(f"unknown device {device!r}; known: {', '.join(_COMPOSER_DEVICES)}")
    _check_data(data, recipe)
    start = time.perf_counter()

    memory_format = CPU_MEMORY_FORMAT if device == "cpu" else torch.contiguous_format
    model = prepare_model(model, recipe).to(memory_format=memory_format)
    precision = training_precision(recipe.precision, device)
    kept_fp32 = [m for m in model.modules() if keep_in_fp32(m)] if precision == "bf16" and device == "cpu" else []
    for conv in kept_fp32:
        conv.__class__ = Float32Conv2d
    net = Autocast(model, "cpu" if device == "cpu" else "cuda") if precision == "bf16" else model
    algorithms = {name: ALGORITHMS[name](recipe) for name in recipe.enhancements if name in ALGORITHMS}
    train_batches = _batches(data.train_x, data.train_y, recipe.batch_size,
                             torch.Generator().manual_seed(recipe.seed), recipe.augmentations,
                             balanced=recipe.class_balance == "sampler", memory_format=memory_format)
    bn_batches = _batches(data.train_x, data.train_y, 256, None, memory_format=memory_format)
    epoch_end = _EpochEnd(model, data, bn_batches, algorithms.get("swa"), on_epoch, metric,
                          epochs=recipe.epochs, images_per_epoch=len(data.train_y))
    # Empty metric collections: no per-batch torchmetrics work during training. torch's
    # cross-entropy takes class indices and the class probabilities LabelSmoothing/MixUp make.
    loss_fn = F.cross_entropy
    if recipe.class_balance == "weighted_loss":
        loss_fn = _weighted_cross_entropy(class_weights(data.train_y, len(data.class_names)))
    composer_model = ComposerClassifier(net, train_metrics=MetricCollection([]),
                                        val_metrics=MetricCollection([]), loss_fn=loss_fn)
    total_batches = recipe.epochs * len(train_batches)
    trainer = Trainer(
        model=composer_model,
        train_dataloader=train_batches,
        # In batches, so that fractions of the run ("0.7dur") advance within an epoch too.
        max_duration=f"{total_batches}ba",
        device_train_microbatch_size=recipe.batch_size,  # the loader has no batch_size attribute
        optimizers=OPTIMIZER_FACTORIES[recipe.optimizer](model.parameters(), recipe),
        schedulers=SCHEDULERS[recipe.schedule](recipe, total_batches),
        step_schedulers_every_batch=True,
        algorithms=list(algorithms.values()),
        callbacks=[_callback(epoch_end), *callbacks],
        device=_COMPOSER_DEVICES[device],
        seed=recipe.seed,
        loggers=[],
        progress_bar=False,
        log_to_console=False,
        save_folder=None,
    )
    fit_start = time.perf_counter()
    try:
        with warnings.catch_warnings():  # composer's note that a short last batch is not split
            warnings.filterwarnings("ignore", message="Cannot split tensor")
            trainer.fit()
    finally:
        trainer.close()
        for conv in kept_fp32:
            conv.__class__ = nn.Conv2d
    fit_seconds = time.perf_counter() - fit_start
    images = int(trainer.state.timestamp.sample)

    model = model.cpu().eval().to(memory_format=torch.contiguous_format)
    train_seconds = time.perf_counter() - start
    log.info("trained %d epoch%s in %.1f s (%d images in %s, fit %.1f s)", len(epoch_end.val_scores),
             "" if len(epoch_end.val_scores) == 1 else "s", train_seconds, images, precision, fit_seconds)
    return TrainResult(
        model=model,
        val_scores=epoch_end.val_scores,
        epochs_run=len(epoch_end.val_scores),
        stopped_early=epoch_end.stopped_early,
        train_seconds=train_seconds,
        images_per_second=images / max(fit_seconds - epoch_end.eval_seconds, 1e-9),
        precision=precision,
    )


# ---------------------------------------------------------------------------
# Evaluation


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, class_names: list[str],
             batch_size: int = 256) -> EvalResult:
    """Accuracy, balanced accuracy, macro-F1, per-class recall and the confusion matrix of
    ``model`` on uint8 images ``x`` (scaled by 1/255) with labels ``y``.

    Balanced accuracy is the mean recall over the classes that have images in ``y``
    (sklearn's balanced_accuracy_score): always answering one class scores 1 / classes.

    F1 per class is 2 TP / (2 TP + FP + FN); macro-F1 is its mean over all classes. A class
    with no images and no predictions has F1 0 and recall 0 (sklearn's zero_division=0).
    The model runs in eval mode on its own device; its training mode is restored after.
    """
    k = len(class_names)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y must be non-empty and of equal length, got {len(x)} and {len(y)}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    predictions = []
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            batch = x[i:i + batch_size].to(device).float().div_(255)
            predictions.append(model(batch).argmax(dim=1).cpu())
    model.train(was_training)
    predicted, y = torch.cat(predictions), y.cpu()
    confusion = torch.bincount(y.long() * k + predicted, minlength=k * k).view(k, k)
    tp = confusion.diag().double()
    support = confusion.sum(dim=1).double()
    predicted_count = confusion.sum(dim=0).double()
    recall = torch.where(support > 0, tp / support.clamp(min=1), 0.0)
    f1_denominator = support + predicted_count  # 2 TP + FN + FP
    f1 = torch.where(f1_denominator > 0, 2 * tp / f1_denominator.clamp(min=1), 0.0)
    return EvalResult(
        accuracy=float(tp.sum() / len(y)),
        balanced_accuracy=float(recall[support > 0].mean()),
        macro_f1=float(f1.mean()),
        per_class_recall={name: float(r) for name, r in zip(class_names, recall, strict=True)},
        confusion=confusion.tolist(),
    )

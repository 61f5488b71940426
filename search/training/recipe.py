"""TrainRecipe: how to train one candidate, validated against the known names, without torch.

The name lists are what a recipe (and a search-space file) may name; the code for each
name lives in registries that must list the same names in the same order:
``ENHANCEMENTS`` is ``search.training.train.SURGERY`` then ``search.training.train.ALGORITHMS``,
``AUGMENTATIONS`` is ``search.training.augment.AUGMENTATION_FUNCTIONS`` and ``OPTIMIZERS`` is
``search.training.train.OPTIMIZER_FACTORIES`` (tests check this). Keeping them here lets
:mod:`search.space` validate a space file without importing torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

ENHANCEMENTS: tuple[str, ...] = (
    "blurpool", "squeeze_excite", "swa", "label_smoothing", "mixup", "cutout",
)
AUGMENTATIONS: tuple[str, ...] = (
    "hflip", "vflip", "rotate", "gaussian_blur", "shift_scale_rotate", "random_crop",
    "brightness_contrast",
)
OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "sgd")
SCHEDULES: tuple[str, ...] = ("constant", "onecycle", "cosine")
CLASS_BALANCES: tuple[str, ...] = ("none", "weighted_loss", "sampler")
# auto: bf16 autocast where the device computes bf16 natively (on a CPU: AVX-512 bf16 or AMX),
# else fp32. On CPU it trained 1.0-1.9x as fast as fp32 at equal validation accuracy (3 seeds,
# X-SDD, NEU-CLS and ELPV; bench/train_throughput.py, BENCHMARKS.md).
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")


# The default recipe, TrainRecipe's defaults: chosen on validation balanced accuracy only
# (bench/recipe_choice.py, BENCHMARKS.md): AdamW with a one-cycle schedule beat the paper's recipe
# by 17 points on average over NEU-CLS and X-SDD; label smoothing + horizontal flips added nothing
# measurable on top, so they stay off. The loss is weighted by inverse class frequency because
# the objective weighs every class alike (balanced accuracy): on a balanced set the weights are
# all one and nothing changes (NEU-CLS); on ELPV it lifted all six presets by 4-8 points, 3 seeds
# each; on X-SDD the presets moved within their seed spread (bench/resolution.py --class-balance).
DEFAULT_RECIPE: dict = {"optimizer": "adamw", "lr": 3e-3, "batch_size": 32, "weight_decay": 5e-4,
                        "schedule": "onecycle", "warmup": 0.25, "class_balance": "weighted_loss"}
# The paper's published recipe: Adam at a constant 1e-3, batch 32, an unweighted loss, nothing
# else. These were TrainRecipe's defaults before the default recipe, so a recipe stored without
# one of these fields (an older study's) trained with the paper's value: :meth:`TrainRecipe.from_dict`
# reads it so.
PAPER_RECIPE: dict = {"optimizer": "adam", "lr": 1e-3, "batch_size": 32, "weight_decay": 0.0,
                      "schedule": "constant", "warmup": 0.0, "class_balance": "none"}


def _check_names(field: str, names: tuple[str, ...], known: Sequence[str]) -> None:
    for name in names:
        if name not in known:
            raise ValueError(f"unknown {field} {name!r}; known: {', '.join(known)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{field} must not repeat a name, got {list(names)}")


@dataclass(frozen=True)
class TrainRecipe:
    """How to train one candidate. JSON round trip via :meth:`to_dict` / :meth:`from_dict`."""

    epochs: int = 10
    # the optimisation fields default to the named default recipe (DEFAULT_RECIPE, RECIPES["default"])
    batch_size: int = DEFAULT_RECIPE["batch_size"]
    optimizer: str = DEFAULT_RECIPE["optimizer"]  # adam | adamw (decoupled weight decay) | sgd (Nesterov momentum 0.9)
    lr: float = DEFAULT_RECIPE["lr"]  # the peak learning rate of the schedule
    weight_decay: float = DEFAULT_RECIPE["weight_decay"]
    # constant | onecycle (linear warm-up, linear decay to 0) | cosine (warm-up, cosine to 0)
    schedule: str = DEFAULT_RECIPE["schedule"]
    warmup: float = DEFAULT_RECIPE["warmup"]  # fraction of training spent warming up (onecycle and cosine; constant ignores it)
    # none | weighted_loss (inverse class frequency) | sampler (class-balanced batches)
    class_balance: str = DEFAULT_RECIPE["class_balance"]
    precision: str = "auto"  # auto | fp32 | bf16: the forward pass's arithmetic while training (evaluation is fp32)
    image_size: int = 32
    channels: int = 3
    enhancements: tuple[str, ...] = ()
    augmentations: tuple[str, ...] = ()
    label_smoothing: float = 0.1  # alpha, used when "label_smoothing" is enabled
    mixup_alpha: float = 0.2
    cutout_length: float = 0.25  # side of the cut square as a fraction of the image side
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "enhancements", tuple(self.enhancements))
        object.__setattr__(self, "augmentations", tuple(self.augmentations))
        for field, value, known in (("optimizer", self.optimizer, OPTIMIZERS),
                                    ("schedule", self.schedule, SCHEDULES),
                                    ("class_balance", self.class_balance, CLASS_BALANCES),
                                    ("precision", self.precision, PRECISIONS)):
            if value not in known:
                raise ValueError(f"unknown {field} {value!r}; known: {', '.join(known)}")
        _check_names("enhancement", self.enhancements, ENHANCEMENTS)
        _check_names("augmentation", self.augmentations, AUGMENTATIONS)
        rules = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (0 <= self.warmup < 1, f"warmup must be in [0, 1), got {self.warmup}"),
            (self.image_size >= 1, f"image_size must be >= 1, got {self.image_size}"),
            (self.channels in (1, 3), f"channels must be 1 or 3, got {self.channels}"),
            (0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.mixup_alpha > 0, f"mixup_alpha must be > 0, got {self.mixup_alpha}"),
            (0 < self.cutout_length < 1, f"cutout_length must be in (0, 1), got {self.cutout_length}"),
        ]
        for ok, message in rules:
            if not ok:
                raise ValueError(message)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["enhancements"] = list(self.enhancements)
        d["augmentations"] = list(self.augmentations)
        return d

    @classmethod
    def named(cls, name: str, **overrides) -> TrainRecipe:
        """The named recipe ``name`` (:data:`RECIPES`) with ``overrides``."""
        if name not in RECIPES:
            raise ValueError(f"unknown recipe {name!r}; known recipes: {', '.join(RECIPES)}")
        return cls._checked({**RECIPES[name], **overrides})

    @classmethod
    def for_metric(cls, name: str, metric: str, **overrides) -> TrainRecipe:
        """The named recipe ``name`` as it trains for the accuracy objective's ``metric``. A
        recipe that balances the classes (the default weights the loss) does so because
        balanced accuracy and macro-F1 weigh every class alike; plain ``accuracy`` weighs every
        image alike, so for it the recipe trains unweighted. A ``class_balance`` in
        ``overrides`` (a value the space fixes) wins."""
        recipe = cls.named(name, **overrides)
        if metric == "accuracy" and "class_balance" not in overrides and recipe.class_balance != "none":
            return dataclasses.replace(recipe, class_balance="none")
        return recipe

    @classmethod
    def _checked(cls, d: dict) -> TrainRecipe:
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown recipe field(s) {unknown}; known: {', '.join(known)}")
        return cls(**d)

    @classmethod
    def from_dict(cls, d: dict) -> TrainRecipe:
        """The recipe a stored dict (:meth:`to_dict`) describes. A dict written before a field of
        :data:`PAPER_RECIPE` existed trained with the paper's value of it (the defaults then):
        an absent one reads as that, not as today's default; an absent precision trained in fp32."""
        return cls._checked({**PAPER_RECIPE, "precision": "fp32", **d})


# Named recipes: the training values each fixes (the rest are TrainRecipe's defaults).
# ``paper`` is the published recipe: Adam at a constant 1e-3, batch 32, nothing else.
# ``default`` is TrainRecipe's own defaults (DEFAULT_RECIPE, defined once above the class).
RECIPES: dict[str, dict] = {
    "paper": PAPER_RECIPE,
    "default": DEFAULT_RECIPE,
}

"""``castsearch baselines``: train the reference networks and store them as reference points.

Each baseline network (``castmodels.baselines``) goes through the search's own pipeline,
:func:`search.trial.pipeline.run_model` (measured with the same harness, trained with the same
recipe machinery, evaluated on the same test split, saved), and is told to the study
``<study>-baselines`` in the same database with :func:`search.study.storage.tell_outcome`, so it
has the same objectives and trial record as a search trial, plus ``baseline`` (its name),
``pretrained`` and ``pretrained_from``. The search's sampler never sees these trials.

Starting weights (``--weights``):

- ``none``: random initialisation;
- ``imagenet``: torchvision's ImageNet weights through its weights API (downloaded into
  the torch hub cache when missing); only some baselines have them;
- ``auto``: those weights when they are already in the torch hub cache (no download is
  attempted), otherwise training from scratch;
- a file: a state dict (``torch.load(weights_only=True)``) loaded into the backbone, its
  classifier skipped when the class count differs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from castmodels.baselines import BASELINES, build_baseline, get_baseline
from search.latency.timer import Timer
from search.space import Fixed, SearchSpace
from search.study import storage as studylib
from search.study.record import DEFAULT_METRIC, DEFAULT_RUNTIME, TrialRecord
from search.training.recipe import TrainRecipe
from search.trial.pipeline import TrialOutcome, run_model

log = logging.getLogger(__name__)

WEIGHT_CHOICES = ("auto", "imagenet", "none")


@dataclass
class InitialWeights:
    """What a baseline starts from: a state dict and where it came from, or nothing (scratch)."""

    state_dict: dict[str, torch.Tensor] | None = None
    source: str | None = None  # a torchvision weights name or a file path

    @property
    def pretrained(self) -> bool:
        return self.state_dict is not None


@dataclass
class BaselineResult:
    name: str
    pretrained: bool
    pretrained_from: str | None
    outcome: TrialOutcome
    trial_number: int  # in the <study>-baselines study


def imagenet_baselines() -> list[str]:
    """The baselines for which torchvision has ImageNet weights."""
    return [name for name, b in BASELINES.items() if b.imagenet_weights]


def hub_cache_file(url: str) -> Path:
    """Where torch hub keeps the download of ``url`` (what ``load_state_dict_from_url`` reads)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a local file; a missing, unreadable or non-state-dict file is a
    ValueError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"weights file not found: {path} "
                         f"(--weights takes {', '.join(WEIGHT_CHOICES)} or a state-dict file)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors alike: the user needs the file and the reason
        raise ValueError(f"{path}: not a loadable state dict ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: not a state dict (expected a mapping of tensor names to tensors)")
    return state


def _imagenet_state_dict(name: str, weights) -> dict[str, torch.Tensor]:
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError) as e:  # URLError is an OSError; a bad download fails its hash check
        raise ValueError(
            f"cannot get {weights} for {name} from {weights.url} ({str(e).splitlines()[0]}); is this "
            f"machine offline? Use --weights none, or --weights PATH with a local copy of the file "
            f"(torch hub caches downloads in {hub_cache_file(weights.url).parent})") from None


def resolve_weights(name: str, choice: str) -> InitialWeights:
    """The starting weights of baseline ``name`` for ``--weights choice`` (see the module docstring)."""
    if choice == "none":
        return InitialWeights()
    if choice not in WEIGHT_CHOICES:
        return InitialWeights(read_state_dict(choice), str(Path(choice).resolve()))
    entry = get_baseline(name)
    if entry.imagenet_weights is None:
        if choice == "imagenet":
            raise ValueError(f"torchvision has no ImageNet weights for {name}; baselines that have them: "
                             f"{', '.join(imagenet_baselines())} (use --weights auto or none for {name})")
        log.info("%s: no ImageNet weights exist for it; training from scratch", name)
        return InitialWeights()
    from torchvision.models import get_weight

    weights = get_weight(entry.imagenet_weights)
    cached = hub_cache_file(weights.url)
    if choice == "auto" and not cached.is_file():
        log.info("%s: ImageNet weights are not in the torch hub cache (%s); training from scratch "
                 "(--weights imagenet downloads them)", name, cached)
        return InitialWeights()
    return InitialWeights(_imagenet_state_dict(name, weights), str(weights))


def select_baselines(only: Sequence[str], image_size: int) -> tuple[list[str], list[str]]:
    """(baselines to run, baselines left out). Named baselines (``only``) must take
    ``image_size``; without names, every baseline that takes it runs and the rest are left out."""
    if not only:
        fits = [n for n, b in BASELINES.items() if image_size >= b.min_image_size]
        return fits, [n for n in BASELINES if n not in fits]
    small = [f"{n} needs >= {get_baseline(n).min_image_size}" for n in only
             if image_size < get_baseline(n).min_image_size]  # an unknown name lists the known ones
    if small:
        raise ValueError(f"--image-size {image_size} is too small: {'; '.join(small)}")
    return list(only), []


def baseline_recipe(space: SearchSpace, epochs: int | None = None, image_size: int | None = None) -> TrainRecipe:
    """The recipe every baseline trains with: the space's named recipe (``training.recipe``,
    with its enhancements and augmentations, as the presets get) overridden by the training
    values ``space`` fixes; ``epochs`` defaults to the space's maximum, ``image_size`` to its
    first size."""
    fixed = {key: p.value for key, p in space.training.items() if isinstance(p, Fixed)}
    fixed.update(epochs=epochs or space.max_epochs, image_size=image_size or space.image_sizes[0])
    return TrainRecipe.for_metric(space.recipe, space.metric, **fixed, channels=space.input_channels,
                             seed=0 if space.sampler.seed is None else space.sampler.seed)


def run_baseline(name: str, weights: InitialWeights, recipe: TrainRecipe, data,
                 out_dir: str | Path | None = None, metric: str = DEFAULT_METRIC,
                 runtime: str = DEFAULT_RUNTIME) -> TrialOutcome:
    """Build baseline ``name`` for ``data``, load ``weights`` into it, then measure, train,
    evaluate and (with ``out_dir``) save it exactly as a search trial is."""
    torch.manual_seed(recipe.seed)
    model = build_baseline(name, recipe.channels, data.num_classes, recipe.image_size, pretrained=weights.pretrained)
    if weights.state_dict is not None:
        try:
            report = model.load_backbone(weights.state_dict)
        except ValueError as e:
            raise ValueError(f"{weights.source}: {e}") from None
        log.info("%s: loaded %d tensors from %s%s%s", name, len(report.loaded), weights.source,
                 f"; skipped (another class count): {', '.join(report.skipped)}" if report.skipped else "",
                 f"; not in the network, ignored: {', '.join(report.unexpected)}" if report.unexpected else "")
    return run_model(model, name, {"baseline": name, "pretrained": weights.pretrained,
                                   "pretrained_from": weights.source},
                     recipe, data, out_dir=out_dir, metric=metric, timer=Timer(runtime))


def store_baseline(study, name: str, weights: InitialWeights, recipe: TrainRecipe, outcome: TrialOutcome,
                   data, space: SearchSpace) -> int:
    """Tell ``study`` one COMPLETE baseline trial, with a search trial's user attrs; return its number."""
    ot = study.ask()
    record = TrialRecord(arch={"baseline": name}, recipe=recipe.to_dict(), baseline=name,
                         pretrained=weights.pretrained, pretrained_from=weights.source)
    studylib.tell_outcome(study, ot, record, outcome.provenance(data), space.constraints)
    return ot.number


def run_baselines(space: SearchSpace, data, names: Sequence[str], weights: str, recipe: TrainRecipe,
                  storage: str, artifacts: Path,
                  on_result: Callable[[BaselineResult], None] | None = None) -> list[BaselineResult]:
    """Train, measure and store each of ``names`` (see the module docstring); weights files
    and downloads are checked for every baseline before any of them trains."""
    if weights not in WEIGHT_CHOICES and len(names) != 1:
        raise ValueError(f"--weights {weights} is one file for one baseline; choose it with --only "
                         f"(got {len(names)} baselines: {', '.join(names)})")
    initial = {name: resolve_weights(name, weights) for name in names}
    study = studylib.open_study(studylib.baselines_study_name(space.study), storage, metric=space.metric)
    results = []
    for name in names:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        start_weights = initial.pop(name)  # popped: each state dict is freed after its baseline
        outcome = run_baseline(name, start_weights, recipe, data, out_dir=artifacts / f"{name}-{stamp}",
                               metric=space.metric, runtime=space.latency_runtime)
        number = store_baseline(study, name, start_weights, recipe, outcome, data, space)
        result = BaselineResult(name, start_weights.pretrained, start_weights.source, outcome, number)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results

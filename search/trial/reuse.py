"""Trainings done once: finished full trainings kept by what decides them, and reused.

A training is decided by the network (the :class:`castmodels.ArchSpec` dict, its name left out,
and the recipe's model surgery), the whole recipe (optimizer, learning rate, schedule, batch
size, epochs, augmentations, enhancements, seed, ...) and the data (the dataset's identity:
split, image size, channels, resize, classes, and a digest of its decoded images and labels,
so the same files give the same key wherever they lie). :func:`training_key` is the sha256 of
these as canonical JSON. Every study on the same data and recipe trains the paper's presets,
and ``castsearch confirm`` the same further seeds: with the store they train once.

:class:`Trainings` is the store, ``<cache>/trainings/`` beside the decoded tensors
(:func:`search.data.cache.default_cache_dir`, or a space's ``data.cache_dir``): per key a
``<key>.json`` (:class:`StoredTraining`: the validation and test figures, the epochs trained,
its seconds, the study it was trained in and the weights' file name) and the weights,
``<key>.pt``, a copy of their own, so a study deleted later takes nothing from the store. Both
are written through a temporary file and ``os.replace``, the weights first, so an entry whose
JSON reads is whole. Only trainings that ran all their epochs are stored: a preview or a
training stopped early is not the training its key names. An entry that cannot be read, or
whose weights are gone or do not fit the network, is reported and trained again, never an
error. ``castsearch cache --clear`` empties the store with the tensors (:func:`clear`).

Torch-free to import, so listing and clearing the cache stay quick; writing the weights
imports it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.data.cache import ACTIVE_WRITE_S, PARTIAL, default_cache_dir, human_bytes

log = logging.getLogger(__name__)

__all__ = ["FOLDER", "FORMAT", "StoredTraining", "Trainings", "clear", "data_identity", "scan",
           "training_key"]

FORMAT = 1  # in every key: raised when a change to training makes the stored ones stale
FOLDER = "trainings"  # under the cache folder
ENTRY = re.compile(r"^(?P<key>[0-9a-f]{64})\.(?P<kind>json|pt)$")
# identity keys that say where the data lies or how it was described, not what it is
DESCRIPTIVE = ("source", "channels_auto", "skipped", "input")
SPLITS = ("train", "val", "test")


def canonical(obj: Any) -> str:
    """``obj`` as JSON with sorted keys and no spaces: one text per value."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def training_key(spec: dict, recipe: dict, data: dict) -> str:
    """The sha256 naming a training of the network ``spec`` (ArchSpec dict; its ``name`` is a
    label and left out) with ``recipe`` (TrainRecipe dict: the model surgery, every training
    value, the seed and the epochs) on ``data`` (:func:`data_identity`)."""
    arch = {k: v for k, v in spec.items() if k != "name"}
    return hashlib.sha256(canonical({"format": FORMAT, "arch": arch, "recipe": recipe, "data": data,
                                     "seed": recipe["seed"], "epochs": recipe["epochs"]}).encode()).hexdigest()


def content_digest(data) -> str:
    """sha256 over the decoded images and labels of each split of a Dataset, worked out once
    and kept on the object: the copies Ray hands its workers carry it, so no worker hashes the
    images again (the driver works it out before dispatch, :func:`search.run.runner.run_search`)."""
    known = getattr(data, "_content_digest", None)
    if known is not None:
        return known
    h = hashlib.sha256()
    for split in SPLITS:
        for part in ("x", "y"):
            tensor = getattr(data, f"{split}_{part}").contiguous()
            h.update(f"{split}_{part}:{tuple(tensor.shape)}:{tensor.dtype}\n".encode())
            h.update(tensor.numpy())
    data._content_digest = digest = h.hexdigest()
    return digest


def data_identity(data) -> dict:
    """What of a Dataset decides a training: its identity without where it lies and how it was
    described, and the digest of its tensors (:func:`content_digest`)."""
    return {**{k: v for k, v in data.identity.items() if k not in DESCRIPTIVE}, "content": content_digest(data)}


@dataclass(frozen=True)
class StoredTraining:
    """One finished full training as the store keeps it."""

    key: str
    validation: dict  # EvalResult.to_dict() on the validation split
    test: dict  # EvalResult.to_dict() on the test split
    metric: str  # the validation figure val_scores holds
    val_scores: list[float]  # the validation ``metric`` after each epoch
    epochs: int  # epochs trained: all of the recipe's
    train_seconds: float
    images_per_second: float
    study: str | None  # the study it was trained in (None: trained outside a study)
    weights: Path  # the state dict, in the store
    written: float  # time.time() when stored

    def to_dict(self) -> dict:
        return {"format": FORMAT, "key": self.key, "validation": self.validation, "test": self.test,
                "metric": self.metric, "val_scores": list(self.val_scores), "epochs": self.epochs,
                "train_seconds": self.train_seconds, "images_per_second": self.images_per_second,
                "study": self.study, "weights": self.weights.name, "written": self.written}

    @classmethod
    def from_dict(cls, d: dict, folder: Path) -> StoredTraining:
        """The entry ``d`` read from ``folder``; KeyError, TypeError or ValueError when it is
        not one."""
        if d.get("format") != FORMAT:
            raise ValueError(f"format {d.get('format')!r}, not {FORMAT}")
        for name in ("validation", "test"):
            if not isinstance(d[name], dict):
                raise ValueError(f"{name} is not an evaluation")
        return cls(key=str(d["key"]), validation=d["validation"], test=d["test"], metric=str(d["metric"]),
                   val_scores=[float(v) for v in d["val_scores"]], epochs=int(d["epochs"]),
                   train_seconds=float(d["train_seconds"]), images_per_second=float(d["images_per_second"]),
                   study=d["study"], weights=folder / Path(str(d["weights"])).name, written=float(d["written"]))


@dataclass(frozen=True)
class Trainings:
    """The store in ``folder``; what this process trains is credited to ``study``."""

    folder: Path
    study: str | None = None

    @classmethod
    def in_cache(cls, cache_dir: str | Path | None = None, study: str | None = None) -> Trainings:
        """The store under ``cache_dir`` (default :func:`search.data.cache.default_cache_dir`)."""
        root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        return cls(root / FOLDER, study)

    def key(self, spec: dict, recipe, data, device: str | None = None) -> str:
        """:func:`training_key` of ``spec`` trained with the TrainRecipe ``recipe`` on the Dataset
        ``data`` on ``device`` (None: the GPU when there is one). The recipe's precision enters as
        what it resolves to there: an fp32 training is not taken for a bf16 one."""
        from search.training.precision import training_precision
        from search.training.train import default_device

        resolved = {**recipe.to_dict(), "precision": training_precision(recipe.precision, device or default_device())}
        return training_key(spec, resolved, data_identity(data))

    def entry(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def get(self, key: str) -> StoredTraining | None:
        """The stored training ``key``; None when there is none, or (with a warning) when its
        entry cannot be read or its weights are gone."""
        path = self.entry(key)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as e:
            return self.damaged(path, e.strerror or str(e))
        try:
            stored = StoredTraining.from_dict(json.loads(text), self.folder)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            return self.damaged(path, f"{type(e).__name__}: {e}")
        if stored.key != key:
            return self.damaged(path, f"it names key {stored.key[:12]}")
        if not stored.weights.is_file():
            return self.damaged(path, f"its weights {stored.weights.name} are gone")
        return stored

    def damaged(self, path: Path, why: str) -> None:
        """Say that the entry at ``path`` cannot be used (it is trained again and overwritten)."""
        log.warning("stored training %s cannot be used (%s): training it again", path, why)
        return None

    def put(self, key: str, state_dict: dict, *, validation: dict, test: dict, metric: str,
            val_scores: list[float], epochs: int, train_seconds: float, images_per_second: float) -> StoredTraining:
        """Store a finished full training: its weights ``state_dict`` (copied) and figures."""
        import torch

        from search.data.store import atomic_write

        stored = StoredTraining(key=key, validation=validation, test=test, metric=metric,
                                val_scores=list(val_scores), epochs=epochs, train_seconds=train_seconds,
                                images_per_second=images_per_second, study=self.study,
                                weights=self.folder / f"{key}.pt", written=time.time())
        atomic_write(stored.weights, lambda p: torch.save(state_dict, p))
        atomic_write(self.entry(key), lambda p: p.write_text(json.dumps(stored.to_dict(), indent=1) + "\n"))
        return stored


def is_store_file(name: str) -> bool:
    """Whether a file of this name is one the store writes (or a partial write of one)."""
    partial = PARTIAL.match(name)
    return ENTRY.match(partial["final"] if partial else name) is not None


def scan(folder: Path) -> tuple[int, int]:
    """(trainings stored, bytes of the store's files) in the store ``folder``; none when absent."""
    if not folder.is_dir():
        return 0, 0
    count = size = 0
    for path in folder.iterdir():
        if not is_store_file(path.name):
            continue
        count += ENTRY.match(path.name) is not None and path.suffix == ".json"
        try:
            size += path.stat().st_size
        except OSError:
            continue
    return count, size


def clear(folder: Path) -> tuple[int, int]:
    """Remove the store's files from ``folder`` (not partial writes younger than
    :data:`search.data.cache.ACTIVE_WRITE_S`: a run may be writing them): (files removed,
    bytes freed). Files the store did not write stay."""
    if not folder.is_dir():
        return 0, 0
    writing = time.time() - ACTIVE_WRITE_S
    removed = freed = 0
    for path in sorted(folder.iterdir()):
        if not is_store_file(path.name):
            continue
        try:
            st = path.stat()
            if PARTIAL.match(path.name) and st.st_mtime > writing:
                continue
            path.unlink()
        except OSError:
            continue
        removed += 1
        freed += st.st_size
    return removed, freed


def describe(folder: Path) -> str | None:
    """One line for ``castsearch cache``: what the store in ``folder`` holds; None when empty."""
    count, size = scan(folder)
    if not count:
        return None
    return (f"  and {count} finished training(s) kept for reuse, {human_bytes(size)}, in {folder} "
            "(`castsearch cache --clear` removes them too)")

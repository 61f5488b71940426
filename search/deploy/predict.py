"""Classify image files with an exported model, through onnxruntime alone.

This path never imports torch: only numpy, Pillow (via :mod:`search.data.imageio`, the decoder
the training data went through), onnxruntime and json. A model folder is what
``castsearch export`` writes; ``model.onnx`` is the network and ``card.json`` says how its
input is made (image size, channels, normalisation) and what its outputs mean (classes).

A file that cannot be decoded does not stop the others: ``castsearch predict`` classifies
the readable ones, names each unreadable one on stderr, and exits with
:data:`UNREADABLE_STATUS` (1). Its exit statuses: 0 every image classified; 1 some could
not be read; 2 bad input (no model, no such file or folder), nothing classified; 141 the
reader of its output went away (``castsearch predict ... | head -1``), the status a shell
reports for a Unix tool that SIGPIPE stopped, with nothing printed.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from search.data.imageio import DECODE_ERRORS, RESIZES, decode_image

MODEL_FILE = "model.onnx"
CARD_FILE = "card.json"
NORMALISATIONS = {"x/255": lambda x: x.astype(np.float32) / 255.0}
BATCH = 64
UNREADABLE_STATUS = 1  # castsearch predict's exit status when some files could not be read


class PredictError(ValueError):
    """Bad input to predict; str(e) is one line naming the path and what is wrong."""


class UnreadableImage(PredictError):
    """An image file that cannot be decoded: ``path``, ``reason``; str(e) is "path: reason"."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


@dataclass(frozen=True)
class Prediction:
    image: str
    label: str  # the predicted class name
    probability: float
    probabilities: dict[str, float]

    def to_dict(self) -> dict:
        return {"image": self.image, "class": self.label, "probability": self.probability,
                "probabilities": self.probabilities}


def _image_suffixes() -> set[str]:
    Image.init()
    return {ext.lower() for ext in Image.registered_extensions()}


def image_files(inputs: list[str | Path]) -> list[Path]:
    """The files named, and the image files under the folders named (recursively, sorted,
    skipping hidden entries and files whose extension Pillow does not know)."""
    suffixes = _image_suffixes()
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_file():
            files.append(item)
        elif item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in suffixes
                           and not any(part.startswith(".") for part in p.relative_to(item).parts))
            if not found:
                raise PredictError(f"no image files in folder {item}")
            files += found
        else:
            raise PredictError(f"{item}: no such file or folder")
    return files


class Predictor:
    """An exported model folder, loaded: the ONNX Runtime session and its card."""

    def __init__(self, model_dir: str | Path):
        folder = Path(model_dir)
        if not folder.is_dir():
            raise PredictError(f"model folder {folder} does not exist (castsearch export writes one)")
        model, card = folder / MODEL_FILE, folder / CARD_FILE
        for path in (model, card):
            if not path.is_file():
                raise PredictError(f"{folder} holds no exported model: {path.name} is missing "
                                   f"(castsearch export writes it)")
        try:
            self.card = json.loads(card.read_text())
            prep = self.card["preprocessing"]
            self.classes: list[str] = list(self.card["classes"])
            self.image_size, self.channels = int(prep["image_size"]), int(prep["channels"])
            self.square = prep.get("square", "squash")  # cards from before the choice: squash
            normalisation = prep["normalisation"]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise PredictError(f"{card}: not a castsearch model card ({type(e).__name__}: {e})") from None
        if normalisation not in NORMALISATIONS:
            raise PredictError(f"{card}: unknown normalisation {normalisation!r}; known: "
                               f"{', '.join(NORMALISATIONS)}")
        self.normalise = NORMALISATIONS[normalisation]
        if self.square not in RESIZES:
            raise PredictError(f"{card}: unknown preprocessing.square {self.square!r}; known: {', '.join(RESIZES)}")
        try:
            self.session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for unreadable models
            raise PredictError(f"{model}: not a loadable ONNX model ({str(e).splitlines()[0]})") from None
        self.input_name = self.session.get_inputs()[0].name

    def decode(self, path: Path) -> np.ndarray:
        """uint8 ``[C, H, W]`` exactly as the training data was decoded; a file that cannot be
        is an :class:`UnreadableImage`."""
        try:
            return decode_image(path, self.image_size, self.channels, self.square)
        except DECODE_ERRORS as e:
            raise UnreadableImage(path, _why(path, e)) from None

    def preprocess(self, paths: list[Path]) -> np.ndarray:
        """uint8 ``[N, C, H, W]`` exactly as the training data was decoded."""
        return np.stack([self.decode(path) for path in paths])

    def predict(self, paths: list[Path], unreadable: list[UnreadableImage] | None = None) -> list[Prediction]:
        """One prediction per image, in order. A file that cannot be decoded raises its
        :class:`UnreadableImage`, or, when ``unreadable`` is given, is appended to it and left out."""
        out: list[Prediction] = []
        for i in range(0, len(paths), BATCH):
            chunk, images = [], []
            for path in paths[i:i + BATCH]:
                try:
                    images.append(self.decode(path))
                    chunk.append(path)
                except UnreadableImage as e:
                    if unreadable is None:
                        raise
                    unreadable.append(e)
            if not chunk:
                continue
            logits = self.session.run(None, {self.input_name: self.normalise(np.stack(images))})[0]
            shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs = shifted / shifted.sum(axis=1, keepdims=True)
            for path, p in zip(chunk, probs, strict=True):
                k = int(p.argmax())
                out.append(Prediction(image=str(path), label=self.classes[k], probability=float(p[k]),
                                      probabilities={c: float(v) for c, v in zip(self.classes, p, strict=True)}))
        return out


def _why(path: Path, e: BaseException) -> str:
    """Why ``path`` could not be decoded, in a few words."""
    if isinstance(e, OSError) and e.strerror:  # the file itself: permission denied, a folder, gone
        return e.strerror.lower()
    with contextlib.suppress(OSError):
        if path.stat().st_size == 0:
            return "empty file"
    return f"not an image Pillow can read ({type(e).__name__})"

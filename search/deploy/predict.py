"""Classify image files with an exported model, through onnxruntime alone.

This path never imports torch: only numpy, Pillow (via :mod:`search.data.imageio`, the decoder
the training data went through), onnxruntime and json. A model folder is what
``castsearch export`` writes; ``model.onnx`` is the network and ``card.json`` says how its
input is made (image size, channels, normalisation) and what its outputs mean (classes).
The card is checked when the model loads, against the model's own input and output shapes:
a damaged or hand-edited card is a :class:`PredictError` naming the file and the key, not a
traceback (or every image blamed) at the first batch.

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

from search.data.imageio import DECODE_ERRORS, RESIZES, ImageTooLarge, decode_image
from search.data.rules import MIN_IMAGE_SIZE

MODEL_FILE = "model.onnx"
CARD_FILE = "card.json"
NORMALISATIONS = {"x/255": lambda x: x.astype(np.float32) / 255.0}
BATCH = 64
UNREADABLE_STATUS = 1  # castsearch predict's exit status when some files could not be read
# The largest image_size a model whose input size is not fixed may be fed (castsearch exports
# fix it): the search space's largest (search.space.MAX_IMAGE_SIZE).
MAX_IMAGE_SIZE = 1024


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
        self.card_path = card
        for path in (model, card):
            if not path.is_file():
                raise PredictError(f"{folder} holds no exported model: {path.name} is missing "
                                   f"(castsearch export writes it)")
        try:
            self.card = json.loads(card.read_text())
            prep = self.card["preprocessing"]
            self.classes: list[str] = self.card["classes"]
            self.image_size, self.channels = prep["image_size"], prep["channels"]
            self.square = prep.get("square", "squash")  # cards from before the choice: squash
            normalisation = prep["normalisation"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as e:
            raise PredictError(f"{card}: not a castsearch model card ({type(e).__name__}: {e})") from None
        _check_card(card, self.classes, self.image_size, self.channels, normalisation, self.square)
        self.normalise = NORMALISATIONS[normalisation]
        try:
            self.session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for unreadable models
            raise PredictError(f"{model}: not a loadable ONNX model ({str(e).splitlines()[0]})") from None
        self._check_model(card, model)
        self.input_name = self.session.get_inputs()[0].name

    def _check_model(self, card: Path, model: Path) -> None:
        """The card's image_size, channels and classes against the model's input
        ``[batch, channels, height, width]`` and output ``[batch, classes]``; a dimension the
        model leaves open (a name, not a number) is taken on trust, image_size up to
        MAX_IMAGE_SIZE."""
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or not outputs or len(outputs[0].shape) != 2:
            raise PredictError(f"{model}: not an image classifier: inputs {[i.shape for i in inputs]}, outputs "
                               f"{[o.shape for o in outputs]}, not one [batch, channels, height, width] and "
                               f"[batch, classes]")
        channels, height, width = inputs[0].shape[1:]
        if isinstance(channels, int) and channels != self.channels:
            raise PredictError(f"{card}: preprocessing.channels is {self.channels}, but {model.name} takes "
                               f"{channels}-channel images")
        fixed = [d for d in (height, width) if isinstance(d, int)]
        if fixed and fixed != [self.image_size] * len(fixed):
            raise PredictError(f"{card}: preprocessing.image_size is {self.image_size}, but {model.name} takes "
                               f"{height}x{width} images")
        if len(fixed) < 2 and self.image_size > MAX_IMAGE_SIZE:
            raise PredictError(f"{card}: preprocessing.image_size must be at most {MAX_IMAGE_SIZE} for a model "
                               f"without a fixed input size, got {self.image_size}")
        n_outputs = outputs[0].shape[1]
        if isinstance(n_outputs, int) and n_outputs != len(self.classes):
            raise PredictError(f"{card}: classes lists {len(self.classes)} names, but {model.name} has "
                               f"{n_outputs} outputs")

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
            if logits.ndim != 2 or logits.shape[1] != len(self.classes):  # an output size left open
                raise PredictError(f"{self.card_path}: classes lists {len(self.classes)} names, but the model "
                                   f"gave {logits.shape[1:]} outputs per image")
            shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs = shifted / shifted.sum(axis=1, keepdims=True)
            for path, p in zip(chunk, probs, strict=True):
                k = int(p.argmax())
                out.append(Prediction(image=str(path), label=self.classes[k], probability=float(p[k]),
                                      probabilities={c: float(v) for c, v in zip(self.classes, p, strict=True)}))
        return out


def _check_card(card: Path, classes: object, image_size: object, channels: object, normalisation: object,
                square: object) -> None:
    """The card's values predict uses, each of the type and range it needs (one-line PredictError)."""
    def integer(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)
            and len(set(classes)) == len(classes)):
        raise PredictError(f"{card}: classes must be a list of distinct class names, got {classes!r:.80}")
    if not integer(image_size) or image_size < MIN_IMAGE_SIZE:
        raise PredictError(f"{card}: preprocessing.image_size must be an integer >= {MIN_IMAGE_SIZE}, "
                           f"got {image_size!r:.80}")
    if not integer(channels) or channels not in (1, 3):
        raise PredictError(f"{card}: preprocessing.channels must be 1 (grey) or 3 (RGB), got {channels!r:.80}")
    if not isinstance(normalisation, str) or normalisation not in NORMALISATIONS:
        raise PredictError(f"{card}: unknown preprocessing.normalisation {normalisation!r:.80}; known: "
                           f"{', '.join(NORMALISATIONS)}")
    if not isinstance(square, str) or square not in RESIZES:
        raise PredictError(f"{card}: unknown preprocessing.square {square!r:.80}; known: {', '.join(RESIZES)}")


def _why(path: Path, e: BaseException) -> str:
    """Why ``path`` could not be decoded, in a few words."""
    if isinstance(e, ImageTooLarge):
        return e.reason
    if isinstance(e, OSError) and e.strerror:  # the file itself: permission denied, a folder, gone
        return e.strerror.lower()
    with contextlib.suppress(OSError):
        if path.stat().st_size == 0:
            return "empty file"
    return f"not an image Pillow can read ({type(e).__name__})"

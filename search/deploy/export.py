"""Ship a trial: rebuild it from its stored spec and weights, export, check, re-time, describe.

``export_trial(study, number, out_dir)`` writes into ``out_dir``:

- ``model.onnx``: ONNX (torch's dynamo exporter, dynamic batch axis), input ``image``
  float32 ``[N, C, H, W]`` = uint8 pixels / 255, output ``logits`` ``[N, classes]``;
- ``model.torchscript.pt``: the same network traced to TorchScript;
- ``model.int8.onnx`` with ``quantize="int8"`` (see :func:`quantize_int8`);
- ``model.pt`` (the trial's state dict), ``spec.json`` (ArchSpec), ``recipe.json``;
- ``card.json`` and ``MODEL_CARD.md``: metrics, classes, preprocessing, latency, data
  identity, checks, machine and library versions. ``castsearch predict`` reads ``card.json``.

Both exports must reproduce PyTorch's logits on sample inputs within :data:`TOLERANCE`.
The ONNX model is re-timed with ONNX Runtime on one thread as the search times its objective
(:meth:`search.latency.timer.Timer.time_onnx`): ``latency_ms`` is the lowest of the
single-image timings listed in ``latency_timings_ms`` (each the median of many runs), beside
the batch of 50; the result goes into the card and into the study as the user attr
``onnx:<trial number>`` (:func:`search.study.storage.exported`).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from torch import nn

from search.data import Dataset, load_dataset
from search.latency.measure import library_versions, machine_fingerprint
from search.latency.onnxrt import (
    INPUT_NAME,
    OUTPUT_NAME,
    UnexportableNetwork,
    export_onnx,
    ort_session,
    runtime_version,
)
from search.latency.timer import BATCH_SIZE, Timer
from search.study import storage as studylib
from search.study.record import TrialRecord

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
QUANTIZATIONS = ("int8",)
TOLERANCE = 1e-4  # max |exported - PyTorch| over the logits of the check inputs
CHECK_BATCH = 8  # check inputs: this many random images, and the first one alone
CALIBRATION_IMAGES = 256  # training images int8 calibration sees
QUANTIZED_OPS = ["Conv", "MatMul", "Gemm"]
EVAL_BATCH = 256

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
TORCHSCRIPT_FILE = "model.torchscript.pt"
WEIGHTS_FILE = "model.pt"
SPEC_FILE = "spec.json"
RECIPE_FILE = "recipe.json"
CARD_JSON = "card.json"
CARD_MD = "MODEL_CARD.md"


class ExportError(ValueError):
    """A trial that cannot be exported, or an export that failed its checks (one-line message)."""


@dataclass
class ExportResult:
    out_dir: Path
    files: list[str]
    max_abs_diff: dict[str, float]  # format -> max |exported - PyTorch|
    latency: dict[str, dict] = field(default_factory=dict)  # "onnx" / "int8" -> ONNX Runtime timings
    accuracy: dict[str, float] = field(default_factory=dict)  # test accuracy: "study", "onnx", "int8"


# ---------------------------------------------------------------------------------------
# The trial and its network


def exportable_trial(study: optuna.Study, number: int) -> FrozenTrial:
    """Trial ``number`` if it completed, was trained and its weights file is still there."""
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        span = f"trials 0-{max(trials)}" if trials else "no trials"
        raise ExportError(f"no trial {number} in study {study.study_name!r} ({span})")
    t = trials[number]
    record = TrialRecord.read(t)
    if t.state != TrialState.COMPLETE:
        reason = (record.error or record.invalid or "").splitlines()
        detail = f" ({reason[0]})" if reason else ""
        raise ExportError(f"trial {number} is {t.state.name.lower()}, not complete: it has no trained "
                          f"weights to export{detail}")
    if record.weights_path is None:
        raise ExportError(f"trial {number} was never trained (it broke an architecture limit): "
                          f"nothing to export")
    if not Path(record.weights_path).is_file():
        raise ExportError(f"trial {number}'s weights file is gone: {record.weights_path}")
    return t


def rebuild(record: TrialRecord) -> nn.Module:
    """The trial's network in eval mode, built from its stored spec and recipe, with its weights."""
    try:
        return record.load_network()
    except ValueError as e:
        raise ExportError(str(e)) from None


def trial_data(record: TrialRecord, cache_dir: str | Path | None = None) -> Dataset:
    """The dataset the trial was trained and tested on, checked against its stored identity."""
    data = load_dataset(record.data_config(), cache_dir=cache_dir)
    expected = record.data["split_hash"]
    if data.identity["split_hash"] != expected:
        raise ExportError(f"the data at {record.data['source']} is not what trial {record.number} was tested on "
                          f"(split hash {data.identity['split_hash'][:12]}, expected {expected[:12]})")
    return data


# ---------------------------------------------------------------------------------------
# Exporting and checking


def export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():  # shape checks inside composer's blur layers are traced as constants
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, example)
    traced.save(str(path))


def max_abs_diff(run: Callable[[np.ndarray], np.ndarray], x: torch.Tensor, reference: np.ndarray) -> float:
    """Largest |run(x) - reference| over the batch ``x`` and over its first image alone
    (which exercises the dynamic batch axis)."""
    whole = np.abs(run(x.numpy()) - reference).max()
    first = np.abs(run(x[:1].numpy()) - reference[:1]).max()
    return float(max(whole, first))


def _checked(fmt: str, diff: float) -> float:
    log.debug("%s vs PyTorch: max abs difference %.3g", fmt, diff)
    if not diff <= TOLERANCE:
        raise ExportError(f"{fmt} output differs from PyTorch by {diff:.3g} on the check inputs "
                          f"(tolerance {TOLERANCE:g})")
    return diff


# ---------------------------------------------------------------------------------------
# ONNX Runtime: timing, accuracy, int8


def time_model(path: Path, shape: tuple[int, int, int], timer: Timer | None = None) -> dict:
    """Single-image and batch-of-50 ONNX Runtime latency on one thread, keyed like the study's
    re-timings and the same statistic as the search's objective (:meth:`Timer.time_onnx`):
    ``latency_ms`` is the lowest of the single-image timings in ``latency_timings_ms``,
    ``preempted`` says whether a timing fell back to CPU time."""
    single, batch = (timer or Timer()).time_onnx(path, shape, BATCH_SIZE)
    return {"latency_ms": single.robust_ms, "latency_iqr_ms": single.iqr_ms,
            "latency_timings_ms": single.spread_ms, "preempted": single.preempted or batch.preempted,
            "batch_latency_ms": batch.robust_ms, "batch_latency_iqr_ms": batch.iqr_ms,
            "batch_size": BATCH_SIZE, "threads": single.threads, "runtime": runtime_version()}


def ort_accuracy(path: Path, x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy of the ONNX model on uint8 images ``x`` (scaled by 1/255) with labels ``y``."""
    session = ort_session(path)
    name = session.get_inputs()[0].name
    correct = 0
    for i in range(0, len(x), EVAL_BATCH):
        batch = x[i:i + EVAL_BATCH].numpy().astype(np.float32) / 255.0
        predicted = session.run(None, {name: batch})[0].argmax(axis=1)
        correct += int((predicted == y[i:i + EVAL_BATCH].numpy()).sum())
    return correct / len(y)


class _Calibration:
    """onnxruntime's CalibrationDataReader over a seeded sample of training images."""

    def __init__(self, x: torch.Tensor, name: str, batch_size: int = 32, seed: int = 0):
        pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:CALIBRATION_IMAGES]
        images = x[pick].numpy().astype(np.float32) / 255.0
        self.batches: Iterator[dict] = iter(
            {name: images[i:i + batch_size]} for i in range(0, len(images), batch_size))

    def get_next(self) -> dict | None:
        return next(self.batches, None)


def quantize_int8(float_path: Path, int8_path: Path, train_x: torch.Tensor) -> None:
    """Static int8 quantization (QDQ) calibrated on training images.

    Static rather than dynamic: dynamic quantization computes activation ranges at run
    time and targets MatMul-heavy models; static fixes them from calibration images, which
    is what convolutions need. QDQ format, activations uint8 and weights int8 per channel
    (depthwise filters' ranges differ a lot between channels), MinMax calibration, as
    onnxruntime recommends for x86 CPUs. Only Conv/MatMul/Gemm are quantized: these
    blocks put BatchNorm after the ReLU, so it is not folded into the conv and stays float.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared))
        name = ort_session(prepared).get_inputs()[0].name
        quantize_static(str(prepared), str(int8_path), _Calibration(train_x, name),
                        quant_format=QuantFormat.QDQ, per_channel=True, op_types_to_quantize=QUANTIZED_OPS,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)


# ---------------------------------------------------------------------------------------
# The export


def export_trial(study: optuna.Study, number: int, out_dir: str | Path, formats: tuple[str, ...] = FORMATS,
                 quantize: str | None = None, cache_dir: str | Path | None = None) -> ExportResult:
    """Rebuild trial ``number`` of ``study`` and write its export to ``out_dir`` (module docstring)."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ExportError(f"unknown export format(s) {unknown or list(formats)}; known: {', '.join(FORMATS)}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ExportError(f"unknown quantization {quantize!r}; known: {', '.join(QUANTIZATIONS)}")
    if quantize and "onnx" not in formats:
        raise ExportError(f"--quantize {quantize} quantizes the ONNX model: add onnx to the formats")
    trial = exportable_trial(study, number)
    record = TrialRecord.read(trial)
    model = rebuild(record)
    shape = record.input_shape()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    shutil.copyfile(record.weights_path, out / WEIGHTS_FILE)
    (out / SPEC_FILE).write_text(json.dumps(record.arch, indent=2) + "\n")
    (out / RECIPE_FILE).write_text(json.dumps(record.recipe, indent=2) + "\n")
    files = [WEIGHTS_FILE, SPEC_FILE, RECIPE_FILE]

    x = torch.rand((CHECK_BATCH, *shape), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        reference = model(x).numpy()
    result = ExportResult(out_dir=out, files=files, max_abs_diff={},
                          accuracy={"study": float(record.test_score)})
    if "onnx" in formats:
        try:
            export_onnx(model, x[:2], out / ONNX_FILE)
        except UnexportableNetwork as e:
            raise ExportError(f"trial {number}: {e}") from None
        session = ort_session(out / ONNX_FILE)
        result.max_abs_diff["onnx"] = _checked("ONNX Runtime", max_abs_diff(
            lambda a: session.run(None, {INPUT_NAME: a})[0], x, reference))
        files.append(ONNX_FILE)
        result.latency["onnx"] = time_model(out / ONNX_FILE, shape)
    if "torchscript" in formats:
        export_torchscript(model, x[:1], out / TORCHSCRIPT_FILE)
        scripted = torch.jit.load(str(out / TORCHSCRIPT_FILE))
        with torch.inference_mode():
            result.max_abs_diff["torchscript"] = _checked("TorchScript", max_abs_diff(
                lambda a: scripted(torch.from_numpy(a)).numpy(), x, reference))
        files.append(TORCHSCRIPT_FILE)
    if quantize == "int8":
        data = trial_data(record, cache_dir)
        quantize_int8(out / ONNX_FILE, out / INT8_FILE, data.train_x)
        files.append(INT8_FILE)
        result.accuracy["onnx"] = ort_accuracy(out / ONNX_FILE, data.test_x, data.test_y)
        result.accuracy["int8"] = ort_accuracy(out / INT8_FILE, data.test_x, data.test_y)
        result.latency["int8"] = time_model(out / INT8_FILE, shape)
    if result.latency:
        timings = {**result.latency, "accuracy": result.accuracy, "out_dir": str(out.resolve()), "at": time.time()}
        study.set_user_attr(f"{studylib.EXPORTED}{number}", timings)

    card = model_card(study, record, result)
    (out / CARD_JSON).write_text(json.dumps(card, indent=2) + "\n")
    (out / CARD_MD).write_text(card_markdown(card))
    files += [CARD_JSON, CARD_MD]
    return result


# ---------------------------------------------------------------------------------------
# The model card


def _channels_chosen(ident: dict) -> str:
    """Who chose the channel count: the data's ``channels: auto`` (and why) or the user."""
    why = ident.get("channels_auto")
    return f"chosen by channels: auto: {why}" if why else "as configured"


def model_card(study: optuna.Study, record: TrialRecord, result: ExportResult) -> dict:
    """Everything a user of the exported model needs, as JSON (``castsearch predict`` reads it)."""
    ident = record.data
    arch = record.arch_spec()
    versions = record.versions or {}
    runtime = f"{record.runtime} {versions.get(record.runtime, '?')}"
    quiet = studylib.retimed(study, record.number)
    if quiet is not None:  # the run's quiet re-timing: search.latency.measure.measure, batch of 50
        quiet = {"batch_size": BATCH_SIZE, **quiet, "runtime": runtime}
    search_latency = {"latency_ms": record.latency_ms, "latency_iqr_ms": record.latency_iqr_ms,
                      "batch_latency_ms": record.batch_latency_ms, "batch_size": record.batch_size,
                      "threads": record.threads, "runtime": runtime,
                      "eager_torch_latency_ms": record.eager_latency_ms,
                      "paces": record.latency_paces}  # search.latency.timer.Pacer: each timing over its pace
    return {
        "study": study.study_name,
        "trial": record.number,
        "preset": record.preset,
        "architecture": {"summary": arch.summary(), "code": arch.code(), "spec": record.arch},
        "recipe": record.recipe,
        "enhancements": record.enhancements,
        "classes": list(ident["class_names"]),
        "preprocessing": {
            "image_size": ident["image_size"],
            "channels": ident["channels"],
            "colour": "grey" if ident["channels"] == 1 else "RGB",
            "channels_chosen": _channels_chosen(ident),
            "square": ident.get("resize", "squash"),  # squash, pad or center-crop: search.data.imageio.decode
            "resize": f"made square by {ident.get('resize', 'squash')}, then Pillow bilinear, antialiased, to "
                      f"image_size x image_size (search.data.imageio.decode_image)",
            "normalisation": ident["normalisation"],
            "input": {"name": INPUT_NAME, "layout": "NCHW", "dtype": "float32"},
            "output": {"name": OUTPUT_NAME, "meaning": "logits; softmax gives class probabilities"},
        },
        "metrics": _card_metrics(study, record, result),
        "params": int(record.params),
        "macs": record.macs,
        "latency": {"during_search": search_latency, "quiet": quiet,
                    **{f"onnxruntime_{k}": v for k, v in result.latency.items()}},
        "checks": {"max_abs_diff": result.max_abs_diff, "tolerance": TOLERANCE, "check_inputs":
                   f"{CHECK_BATCH} random images in [0, 1) (seed 0), and the first alone"},
        "data": {k: v for k, v in ident.items() if k != "skipped"} | {"skipped_files": len(ident.get("skipped", []))},
        "machine": machine_fingerprint(),
        "trained_on": record.machine,
        "versions": library_versions(),
        "files": list(result.files) + [CARD_JSON, CARD_MD],
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _card_metrics(study: optuna.Study, record: TrialRecord, result: ExportResult) -> dict:
    """The card's figures, each named by its split as everywhere in castsearch: ``val_<metric>``
    (the validation split, where ``objective`` names the one the search ranked by) and
    ``test_<metric>`` (computed after training, chose nothing)."""
    from search.study.front import figure_name

    objective = figure_name(*record.objective)
    confirmed = studylib.confirmed(study, record.number)  # castsearch confirm: other seeds
    if confirmed is not None:
        confirmed = {"seeds": confirmed["seeds"], "objective": objective, objective: confirmed["objective"],
                     "test_accuracy": confirmed["test_accuracy"],
                     "test_worst_class_recall": confirmed.get("test_worst_class_recall")}
    return {
        "objective": {"name": objective, "metric": record.objective[0], "split": record.objective[1],
                      "value": record.accuracy},
        **{f"val_{k}": v for k, v in (record.validation or {}).items()},
        objective: record.accuracy,  # the objective itself (the mean over seeds where the search averaged)
        "test_accuracy": record.test_score,
        "test_balanced_accuracy": record.test_balanced_accuracy,
        "test_macro_f1": record.macro_f1,
        "test_per_class_recall": record.per_class_recall,
        "test_confusion": record.confusion,
        "test_accuracy_by_runtime": result.accuracy,
        "confirmed": confirmed,
    }


def _ms(timing: dict | None) -> str:
    if not timing:
        return "-"
    iqr = f" (IQR {timing['latency_iqr_ms']:.3f})" if timing.get("latency_iqr_ms") is not None else ""
    batch = (f"; {timing['batch_latency_ms']:.2f} ms per batch of {timing['batch_size']}"
             if timing.get("batch_latency_ms") is not None else "")
    return f"{timing['latency_ms']:.3f} ms{iqr} per image{batch}"


def _named_figures(metrics: dict) -> dict:
    """A card's metrics with every figure under its split's name: cards written before castsearch
    named them so (``macro_f1``, ``per_class_recall``, ``accuracy_by_runtime``; the objective and
    the confirmed figures without names) read as a card written today."""
    from search.study.front import figure_name

    if "name" in metrics["objective"]:
        return metrics
    m = dict(metrics)
    objective = figure_name(m["objective"]["metric"], m["objective"]["split"])
    m["objective"] = {**m["objective"], "name": objective}
    for old in ("macro_f1", "per_class_recall", "confusion", "accuracy_by_runtime"):
        if old in m:
            m[f"test_{old}"] = m.pop(old)
    m.update({f"val_{k}": v for k, v in (m.pop("validation", None) or {}).items()})
    if m.get("confirmed") and "test_accuracy" in m["confirmed"] and objective not in m["confirmed"]:
        m["confirmed"] = {**m["confirmed"], "objective": objective, objective: m["confirmed"]["objective"]}
    return m


def _md_text(value: object) -> str:
    """``value`` as one markdown table cell or list item, shown as written: backslashes and
    ``|`` escaped (a ``|`` would end the cell), line breaks as spaces (one would end the
    row), ``&``, ``<`` and ``>`` as entities (markdown viewers render HTML)."""
    text = str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("\\", "\\\\").replace("|", "\\|")
    return " ".join(text.splitlines())


def card_markdown(card: dict) -> str:
    """The card as markdown, for people. Text the study stored (class names, the data's
    identity, the enhancements, figure names) goes through :func:`_md_text`, or stands in a
    code span."""
    m, p, d = _named_figures(card["metrics"]), card["preprocessing"], card["data"]
    t = _md_text
    lines = [
        f"# Model card: trial {card['trial']} of study `{card['study']}`",
        "",
        f"- Architecture: {card['architecture']['summary']}" + (f" (paper preset `{card['preset']}`)" if card["preset"] else ""),
        f"- Enhancements: {t(card['enhancements'])}",
        f"- Parameters: {card['params']:,}; MACs per image: {card['macs']:,}",
        "",
        "## Metrics",
        "",
        f"- Chosen on: {t(m['objective']['name'])} {m['objective']['value']:.4f}",
        "",
        "Test split (computed after training; it chose nothing):",
        "",
        f"- test_accuracy: {m['test_accuracy']:.4f}"
        + "".join(f"; {k}: {m[k]:.4f}" for k in ("test_balanced_accuracy", "test_macro_f1") if m.get(k) is not None),
    ]
    lines += [f"- test_accuracy with {k}: {v:.4f}" for k, v in m["test_accuracy_by_runtime"].items() if k != "study"]
    if m["confirmed"]:
        c = m["confirmed"]
        lines += ["", f"Trained again with seeds {', '.join(map(str, c['seeds']))} (castsearch confirm), "
                      "mean ± sd [95% interval]:", ""]
        lines += [f"- {t(name)}: {s['mean']:.4f} ± {s['std']:.4f} [{s['ci95'][0]:.4f}, {s['ci95'][1]:.4f}]"
                  for name, s in ((c["objective"], c[c["objective"]]), ("test_accuracy", c["test_accuracy"]))]
    if m["test_per_class_recall"]:
        lines += ["", "| class | test recall |", "|---|---|"]
        lines += [f"| {t(c)} | {r:.3f} |" for c, r in m["test_per_class_recall"].items()]
    lines += ["", "## Classes (output index: name)", ""]
    lines += [f"{i}. {t(name)}" for i, name in enumerate(card["classes"])]
    lines += [
        "", "## Preprocessing", "",
        f"- Image size: {t(p['image_size'])} x {t(p['image_size'])}, channels: {t(p['channels'])} "
        f"({t(p['colour'])}; {t(p['channels_chosen'])})",
        f"- Resize: {t(p['resize'])}",
        f"- Normalisation: `{p['normalisation']}` (uint8 pixels divided by 255, nothing else)",
        f"- Input `{p['input']['name']}`: {p['input']['dtype']} {p['input']['layout']}; "
        f"output `{p['output']['name']}`: {p['output']['meaning']}",
        "", "## Latency (CPU, median)", "",
    ]
    lines += [f"- {name.replace('_', ' ')}: {_ms(t)}" for name, t in card["latency"].items()]
    lines += ["", "## Checks", ""]
    lines += [f"- {fmt} vs PyTorch: max abs difference {diff:.3g} (tolerance {card['checks']['tolerance']:g}; "
              f"{card['checks']['check_inputs']})" for fmt, diff in card["checks"]["max_abs_diff"].items()]
    lines += [
        "", "## Data", "",
        f"- Source: {t(d['source'])} (layout {t(d['layout'])}), split seed {t(d['split_seed'])}, "
        f"test fraction {t(d['test_fraction'])}, val fraction {t(d['val_fraction'])}",
        f"- Images per split: {t(d['counts'])}; split hash `{d['split_hash']}`",
        "", "## Machine and libraries", "",
        f"- Timed on: {card['machine']['cpu_model']} ({card['machine']['usable_cores']} usable cores), "
        f"{card['machine']['platform']}, Python {card['machine']['python']}",
        "- Libraries: " + ", ".join(f"{k} {v}" for k, v in card["versions"].items()),
        "- Files: " + ", ".join(f"`{f}`" for f in card["files"]),
        f"- Exported: {card['exported']}",
        "",
    ]
    return "\n".join(lines)

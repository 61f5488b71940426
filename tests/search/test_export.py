"""castsearch export: files, parity checks, re-timing recorded in card and study, bad input."""

from __future__ import annotations

import argparse
import json
import pickle
import re
import shutil

import numpy as np
import onnxruntime as ort
import optuna
import pytest
import torch

from search.cli import main
from search.deploy import export as exportlib
from search.study import storage as studylib


def test_export_writes_every_file_and_passes_its_checks(tiny_study, exported):
    out, printed = exported
    for name in ("model.onnx", "model.int8.onnx", "model.torchscript.pt", "model.pt", "spec.json",
                 "recipe.json", "card.json", "MODEL_CARD.md"):
        assert (out / name).is_file(), name
    assert "onnx         max abs difference to PyTorch" in printed
    assert "torchscript  max abs difference to PyTorch" in printed
    assert "int8" in printed and "test_accuracy: study" in printed

    card = json.loads((out / "card.json").read_text())
    assert card["classes"] == tiny_study.data.class_names
    prep = card["preprocessing"]
    assert (prep["image_size"], prep["channels"], prep["normalisation"]) == (16, 3, "x/255")
    assert card["data"]["split_hash"] == tiny_study.data.identity["split_hash"]
    assert all(d <= exportlib.TOLERANCE for d in card["checks"]["max_abs_diff"].values())
    assert card["latency"]["onnxruntime_onnx"]["latency_ms"] > 0
    assert card["latency"]["onnxruntime_int8"]["threads"] == 1
    assert 0.0 <= card["metrics"]["test_accuracy_by_runtime"]["int8"] <= 1.0
    text = (out / "MODEL_CARD.md").read_text()
    for heading in ("## Metrics", "## Classes", "## Preprocessing", "## Latency", "## Data"):
        assert heading in text
    assert "x/255" in text and "crazing" in text

    # the re-timing went back into the study
    study = tiny_study.load()
    record = studylib.exported(study, 0)
    assert record["onnx"]["latency_ms"] == card["latency"]["onnxruntime_onnx"]["latency_ms"]
    assert record["int8"]["latency_ms"] > 0 and "int8" in record["accuracy"]


def test_the_card_names_each_figure_by_its_split_and_reads_older_cards(exported):
    """card.json says val_<metric> or test_<metric> for every figure, as front and train do; a
    card written before (macro_f1, per_class_recall, accuracy_by_runtime, validation, an
    unnamed objective) gives the same MODEL_CARD.md."""
    out, _ = exported
    card = json.loads((out / "card.json").read_text())
    m = card["metrics"]
    assert m["objective"]["name"] == "val_balanced_accuracy" and m["val_balanced_accuracy"] == m["objective"]["value"]
    figures = set(m) - {"objective", "confirmed"}
    assert figures and all(k.startswith(("val_", "test_")) for k in figures), figures
    assert {"val_accuracy", "test_accuracy", "test_macro_f1", "test_per_class_recall"} <= figures
    old = {"objective": {k: v for k, v in m["objective"].items() if k != "name"}, "confirmed": m["confirmed"],
           "validation": {k.removeprefix("val_"): v for k, v in m.items() if k.startswith("val_")},
           "test_accuracy": m["test_accuracy"], "test_balanced_accuracy": m["test_balanced_accuracy"],
           "macro_f1": m["test_macro_f1"], "per_class_recall": m["test_per_class_recall"],
           "confusion": m["test_confusion"], "accuracy_by_runtime": m["test_accuracy_by_runtime"]}
    assert exportlib.card_markdown({**card, "metrics": old}) == (out / "MODEL_CARD.md").read_text()
    assert "test_accuracy with onnx" in (out / "MODEL_CARD.md").read_text()


def test_exported_models_reproduce_the_trial(tiny_study, exported):
    """ONNX and TorchScript give the trial's test accuracy on the real test images."""
    out, _ = exported
    study = tiny_study.load()
    x = tiny_study.data.test_x.float() / 255
    y = tiny_study.data.test_y.numpy()
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(None, {"image": x.numpy()})[0]
    scripted = torch.jit.load(str(out / "model.torchscript.pt"))
    with torch.inference_mode():
        ts_logits = scripted(x).numpy()
    np.testing.assert_allclose(onnx_logits, ts_logits, atol=exportlib.TOLERANCE)
    assert float((onnx_logits.argmax(1) == y).mean()) == pytest.approx(study.trials[0].values[0])


def test_formats_can_be_chosen(tiny_study, tmp_path, capsys):
    assert main(["export", "--trial", "1", *tiny_study.args(), "--out", str(tmp_path), "--format", "torchscript"]) == 0
    assert (tmp_path / "model.torchscript.pt").is_file() and not (tmp_path / "model.onnx").exists()
    assert "torchscript" in capsys.readouterr().out


@pytest.mark.parametrize(("trial", "message"), [
    (99, "no trial 99 in study 'tiny' (trials 0-4)"),
    (2, "trial 2 is pruned, not complete"),
    (3, "trial 3 is fail, not complete: it has no trained weights to export (RuntimeError: injected"),
    (4, "trial 4 was never trained"),
])
def test_trials_that_cannot_be_exported(tiny_study, tmp_path, trial, message, cli_error):
    line = cli_error(["export", "--trial", str(trial), *tiny_study.args(), "--out", str(tmp_path)])
    assert message in line


def test_missing_study_and_database(tiny_study, tmp_path, cli_error):
    line = cli_error(["export", "--trial", "0", "--study", "nope", "--storage", tiny_study.storage])
    assert "no study 'nope'" in line and "tiny" in line
    line = cli_error(["export", "--trial", "0", "--study", "nope", "--storage", f"sqlite:///{tmp_path}/x.db"])
    assert "does not exist" in line and not (tmp_path / "x.db").exists()


def _study_with_weights(tiny_study, tmp_path, weights) -> list[str]:
    """A study "w" whose trial 0 is tiny's trial 0 with its weights at ``weights`` (a copy of
    the trained file): the CLI arguments that export it."""
    source = tiny_study.load().trials[0]
    weights.parent.mkdir(exist_ok=True)
    shutil.copy(source.user_attrs["weights_path"], weights)
    url = f"sqlite:///{tmp_path}/w.db"
    study = studylib.open_study("w", url)
    study.add_trial(optuna.trial.create_trial(values=source.values,
                                              user_attrs={**source.user_attrs, "weights_path": str(weights)}))
    return ["export", "--trial", "0", "--study", "w", "--storage", url, "--out", str(tmp_path / "o")]


def test_weights_file_gone(tiny_study, tmp_path, cli_error):
    weights = tmp_path / "gone" / "model.pt"
    argv = _study_with_weights(tiny_study, tmp_path, weights)
    weights.unlink()
    line = cli_error(argv)
    assert f"trial 0's weights file is gone: {weights}" in line


@pytest.mark.parametrize("damage", ["truncated", "pickle"])
def test_unreadable_weights_file(tiny_study, tmp_path, damage, cli_error):
    """A truncated model.pt, or a pickle of some object (which loading it safely refuses): one
    line naming the file, and no advice to load it unsafely."""
    weights = tmp_path / "trial" / "model.pt"
    argv = _study_with_weights(tiny_study, tmp_path, weights)
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:weights.stat().st_size // 2])
    else:
        weights.write_bytes(pickle.dumps(argparse.Namespace(note="not a state dict")))
    line = cli_error(argv)
    assert line == (f"castsearch: error: cannot read trained weights {weights}: "
                    f"file is truncated or not a castsearch checkpoint")
    assert "weights_only" not in line


def test_a_failed_parity_check_is_an_error(tiny_study, tmp_path, monkeypatch, cli_error):
    monkeypatch.setattr(exportlib, "TOLERANCE", -1.0)
    line = cli_error(["export", "--trial", "1", *tiny_study.args(), "--out", str(tmp_path),
                           "--format", "torchscript"])
    assert "TorchScript output differs from PyTorch by" in line


def test_quantize_needs_onnx(tiny_study, tmp_path, cli_error):
    line = cli_error(["export", "--trial", "1", *tiny_study.args(), "--out", str(tmp_path),
                           "--format", "torchscript", "--quantize", "int8"])
    assert "add onnx to the formats" in line
    line = cli_error(["export", "--trial", "1", *tiny_study.args(), "--format", "tflite"])
    assert "unknown export format(s) ['tflite']" in line


def _cells(row: str) -> list[str]:
    """A markdown table row's cells, split as GitHub's markdown does: at each ``|`` that a
    backslash does not escape (``\\\\`` is an escaped backslash)."""
    cells, cell = [], ""
    for token in re.findall(r"\\.|[^\\|]+|\||\\", row):
        if token == "|":
            cells.append(cell)
            cell = ""
        else:
            cell += token
    return [c.strip() for c in [*cells, cell][1:-1]]


def test_the_card_shows_what_a_crafted_study_stores_as_text(hostile_study, tmp_path):
    """Class names with HTML, a ``|``, a line break or math markup, and a data identity full of
    HTML: MODEL_CARD.md's table keeps its two columns and one row per class, and no stored
    string reaches the card as HTML."""
    from tests.search.conftest import HOSTILE

    assert main(["export", "--trial", "0", *hostile_study.args(), "--out", str(tmp_path), "--format",
                 "torchscript"]) == 0
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["classes"][:len(HOSTILE)] == list(HOSTILE)  # card.json keeps them as they are
    text = (tmp_path / "MODEL_CARD.md").read_text()
    lines = text.splitlines()
    start = lines.index("| class | test recall |")
    rows = lines[start:start + 2 + len(card["classes"])]
    assert rows[1] == "|---|---|" and lines[start + 2 + len(card["classes"])] == ""
    assert all(len(_cells(row)) == 2 for row in rows), rows
    shown = [_cells(row)[0] for row in rows[2:]]
    assert shown[:len(HOSTILE)] == ["&lt;script&gt;alert(1)&lt;/script&gt;", "a\\|b", "$\\\\frac{a}{$", "a$b$c",
                                    "two lines"]
    classes = lines[lines.index("## Classes (output index: name)") + 2:][:len(card["classes"]) + 1]
    assert classes[-1] == "" and [c.split(". ", 1)[1] for c in classes[:-1]] == shown
    prose = re.sub(r"`[^`]*`", "", text)  # a code span shows its text as written, HTML too
    assert "<script>" not in prose and "&lt;script&gt;alert(2)&lt;/script&gt;" in prose
    assert "`tiny-preset<script>alert(2)</script>" in text  # the preset's name, in a code span

"""castsearch predict: onnxruntime only, the training preprocessing, text and JSON output, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from search.cli import main
from search.data import DataConfig, load_dataset
from search.predict import Predictor

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def images(tiny_study, tmp_path_factory) -> list[Path]:
    """Five test-split images written as PNG files (16 px: decoding them is lossless)."""
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for i, image in enumerate(tiny_study.data.test_x[:5].numpy()):
        path = folder / f"img{i}.png"
        Image.fromarray(image.transpose(1, 2, 0)).save(path)
        paths.append(path)
    return paths


def test_predict_prints_one_line_per_image(tiny_study, exported, images, capsys):
    out, _ = exported
    assert main(["predict", str(out), *map(str, images)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5
    for line, path in zip(lines, images, strict=True):
        name, label, probability = line.split()
        assert name == str(path) and label in tiny_study.data.class_names and 0 < float(probability) <= 1


def test_predict_json_matches_the_model_on_the_cached_tensors(tiny_study, exported, images, capsys):
    out, _ = exported
    assert main(["predict", str(out), str(images[0].parent), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in result] == [str(p) for p in images]  # the folder, sorted
    x = tiny_study.data.test_x[:5].numpy().astype(np.float32) / 255
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"image": x})[0].argmax(1)
    names = tiny_study.data.class_names
    assert [r["class"] for r in result] == [names[k] for k in expected]
    for r in result:
        assert r["probability"] == pytest.approx(max(r["probabilities"].values()))
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_preprocessing_is_the_training_decode(exported, tmp_path):
    """Large JPEG/PNG files: predict's pixels equal the dataset loader's, bit for bit."""
    out, _ = exported
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "d" / cls / f"{i}.{'jpg' if i % 2 else 'png'}")
    data = load_dataset(DataConfig(source=str(tmp_path / "d"), image_size=16), cache_dir=tmp_path / "cache")
    split = json.loads(next((tmp_path / "cache").glob("*.split.json")).read_text())
    files = [tmp_path / "d" / name for name in split["test"]]
    pixels = Predictor(out).preprocess(files)
    assert pixels.dtype == np.uint8 and np.array_equal(pixels, data.test_x.numpy())


def test_predict_does_not_import_torch(exported, images):
    out, _ = exported
    code = ("import sys; from search.cli import main; rc = main(['predict', sys.argv[1], sys.argv[2]]); "
            "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)")
    run = subprocess.run([sys.executable, "-c", code, str(out), str(images[0])], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert str(images[0]) in run.stdout


def test_bad_model_dirs(exported, images, tmp_path, cli_error):
    line = cli_error(["predict", str(tmp_path / "nowhere"), str(images[0])])
    assert "model folder" in line and "does not exist" in line
    line = cli_error(["predict", str(tmp_path), str(images[0])])
    assert "holds no exported model: model.onnx is missing" in line
    (tmp_path / "model.onnx").write_text("not onnx")
    (tmp_path / "card.json").write_text((exported[0] / "card.json").read_text())
    line = cli_error(["predict", str(tmp_path), str(images[0])])
    assert "not a loadable ONNX model" in line


def test_bad_images(exported, images, tmp_path, cli_error):
    out, _ = exported
    fake = tmp_path / "fake.png"
    fake.write_text("this is text, not a picture")
    line = cli_error(["predict", str(out), str(images[0]), str(fake)])
    assert f"{fake}: not an image" in line
    line = cli_error(["predict", str(out), str(tmp_path / "missing.jpg")])
    assert "missing.jpg: no such file or folder" in line
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    line = cli_error(["predict", str(out), str(tmp_path / "empty")])
    assert "no image files in folder" in line

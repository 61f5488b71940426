"""castsearch predict: onnxruntime only, the training preprocessing, text and JSON output, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from search.cli import main
from search.data import DataConfig, load_dataset
from search.deploy.predict import UNREADABLE_STATUS, Predictor, UnreadableImage
from tests.search.infra_helpers import castsearch, env

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
    line = cli_error(["predict", str(out), str(tmp_path / "missing.jpg")])
    assert "missing.jpg: no such file or folder" in line
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    line = cli_error(["predict", str(out), str(tmp_path / "empty")])
    assert "no image files in folder" in line


@pytest.fixture
def mixed(images, tmp_path) -> tuple[Path, list[Path], list[Path]]:
    """A folder of the five good images, a text file named .png and a zero-byte .jpg:
    (the folder, the good files, the bad files), each sorted."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = [Path(shutil.copy(p, folder / p.name)) for p in images]
    fake, empty = folder / "fake.png", folder / "empty.jpg"
    fake.write_text("this is text, not a picture")
    empty.write_bytes(b"")
    return folder, good, [empty, fake]


def test_unreadable_files_do_not_stop_the_others(exported, mixed, capsys):
    out, _ = exported
    folder, good, (empty, fake) = mixed
    assert main(["predict", str(out), str(folder)]) == UNREADABLE_STATUS == 1
    captured = capsys.readouterr()
    assert [line.split()[0] for line in captured.out.splitlines()] == [str(p) for p in good]
    assert captured.err.splitlines() == [
        f"castsearch: skipped {empty}: empty file",
        f"castsearch: skipped {fake}: not an image Pillow can read (UnidentifiedImageError)",
    ]

    assert main(["predict", str(out), str(folder), "--json"]) == 1
    captured = capsys.readouterr()
    assert [r["image"] for r in json.loads(captured.out)] == [str(p) for p in good]
    assert len(captured.err.splitlines()) == 2

    assert main(["predict", str(out), str(fake)]) == 1  # nothing readable: nothing printed
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.splitlines() == [
        f"castsearch: skipped {fake}: not an image Pillow can read (UnidentifiedImageError)"]


def test_the_library_still_raises_on_an_unreadable_file(exported, mixed):
    folder, good, (empty, _) = mixed
    with pytest.raises(UnreadableImage, match=f"{empty}: empty file"):
        Predictor(exported[0]).predict([*good, empty])


@pytest.mark.parametrize("args", [["--json"], []])
def test_a_closed_output_pipe_ends_quietly(exported, images, args):
    """castsearch predict ... | head -1: more output than a pipe holds, a reader that closes
    after the first line; predict stops with status 141 and nothing on stderr."""
    out, _ = exported
    paths = [str(images[0])] * 1500  # text: about 100 KB; JSON: about 500 KB
    with subprocess.Popen(castsearch("predict", str(out), *paths, *args), cwd=REPO, env=env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as run:
        first = run.stdout.readline()
        run.stdout.close()
        err = run.stderr.read()
        rc = run.wait(timeout=120)
    assert first == "[\n" if args else first.startswith(f"{images[0]}  ")
    assert "Traceback" not in err and err == ""
    assert rc == 141


@pytest.mark.parametrize("square", ["pad", "center-crop"])
def test_predict_makes_images_square_as_the_training_data_was(exported, tmp_path, square):
    """A model trained on padded or centre-cropped images is fed padded or centre-cropped
    images: the card says which, and predict's pixels equal the loader's."""
    out, _ = exported
    model = tmp_path / "model"
    shutil.copytree(out, model)
    card = json.loads((model / "card.json").read_text())
    card["preprocessing"]["square"] = square
    (model / "card.json").write_text(json.dumps(card))
    rng = np.random.default_rng(1)
    for cls in ("a", "b"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (40, 90, 3), dtype=np.uint8)).save(tmp_path / "d" / cls / f"{i}.png")
    data = load_dataset(DataConfig(source=str(tmp_path / "d"), image_size=card["preprocessing"]["image_size"],
                                   channels=card["preprocessing"]["channels"], resize=square),
                        cache_dir=tmp_path / "cache")
    split = json.loads(next((tmp_path / "cache").glob("*.split.json")).read_text())
    files = [tmp_path / "d" / name for name in split["test"]]
    assert np.array_equal(Predictor(model).preprocess(files), data.test_x.numpy())
    squashed = Predictor(out).preprocess(files)
    assert not np.array_equal(squashed, data.test_x.numpy())  # the choice matters for these images


def _damaged(exported: Path, tmp_path: Path, edit) -> Path:
    """A copy of the exported model folder whose card.json ``edit(card)`` changed."""
    model = tmp_path / "damaged"
    shutil.copytree(exported, model)
    card = json.loads((model / "card.json").read_text())
    edit(card)
    (model / "card.json").write_text(json.dumps(card))
    return model


def _set(key: str, value):
    def edit(card: dict) -> None:
        target = card["preprocessing"] if key != "classes" else card
        target[key] = value(target[key]) if callable(value) else value
    return edit


@pytest.mark.parametrize(("edit", "message"), [
    (_set("image_size", 0), "preprocessing.image_size must be an integer >= 8, got 0"),
    (_set("image_size", -16), "preprocessing.image_size must be an integer >= 8, got -16"),
    (_set("image_size", "16"), "preprocessing.image_size must be an integer >= 8, got '16'"),
    (_set("image_size", 16.0), "preprocessing.image_size must be an integer >= 8, got 16.0"),
    (_set("image_size", True), "preprocessing.image_size must be an integer >= 8, got True"),
    (_set("image_size", 60000), "preprocessing.image_size is 60000, but model.onnx takes 16x16 images"),
    (_set("image_size", 32), "preprocessing.image_size is 32, but model.onnx takes 16x16 images"),
    (_set("channels", 1), "preprocessing.channels is 1, but model.onnx takes 3-channel images"),
    (_set("channels", 2), "preprocessing.channels must be 1 (grey) or 3 (RGB), got 2"),
    (_set("channels", None), "preprocessing.channels must be 1 (grey) or 3 (RGB), got None"),
    (_set("classes", lambda c: c[:-1]), "classes lists {n-1} names, but model.onnx has {n} outputs"),
    (_set("classes", lambda c: [*c, "extra"]), "classes lists {n+1} names, but model.onnx has {n} outputs"),
    (_set("classes", lambda c: [c[0]] * len(c)), "classes must be a list of distinct class names"),
    (_set("classes", lambda c: "".join(c)), "classes must be a list of distinct class names"),
    (_set("classes", []), "classes must be a list of distinct class names, got []"),
    (_set("normalisation", ["x/255"]), "unknown preprocessing.normalisation ['x/255']; known: x/255"),
    (_set("normalisation", "x/127.5-1"), "unknown preprocessing.normalisation 'x/127.5-1'; known: x/255"),
    (_set("square", {"pad": 1}), "unknown preprocessing.square {'pad': 1}; known: squash, pad, center-crop"),
    (lambda card: card.update(preprocessing=[16, 3]), "not a castsearch model card (TypeError:"),
    (lambda card: card.pop("classes"), "not a castsearch model card (KeyError: 'classes')"),
])
def test_a_damaged_card_is_one_line_naming_the_file_and_key(exported, images, tmp_path, cli_error, edit, message):
    """A damaged or hand-edited card.json is refused when the model loads, checked against the
    model's input and output shapes: before, image_size 0 was a ZeroDivisionError, 60000 a
    MemoryError, a negative one blamed every image, a class too few an IndexError."""
    out, _ = exported
    n = len(json.loads((out / "card.json").read_text())["classes"])
    model = _damaged(out, tmp_path, edit)
    line = cli_error(["predict", str(model), str(images[0])])
    expected = message.replace("{n-1}", str(n - 1)).replace("{n+1}", str(n + 1)).replace("{n}", str(n))
    assert line.startswith(f"castsearch: error: {model / 'card.json'}: {expected}"), line


def test_an_image_over_the_pixel_limit_is_skipped_by_name_and_size(exported, images, tmp_path, capsys):
    from tests.search.test_imageio import huge_png

    out, _ = exported
    huge = huge_png(tmp_path / "huge.png", 7000, 7000)
    assert main(["predict", str(out), str(images[0]), str(huge)]) == UNREADABLE_STATUS
    captured = capsys.readouterr()
    assert [line.split()[0] for line in captured.out.splitlines()] == [str(images[0])]
    assert captured.err.splitlines() == [
        f"castsearch: skipped {huge}: 7000x7000 pixels (49.0 megapixels, from a file of 143 KB) is over the "
        f"36-megapixel limit on images"]

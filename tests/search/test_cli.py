"""The castsearch command line: output formats and clean one-line errors for bad input."""

import json

import pytest
from PIL import Image

from castmodels import PRESETS
from search.cli import main

PAPER_PARAMS = [143_218, 143_406, 340_010, 344_508, 590_378, 599_913]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_json_lists_the_six_presets(capsys):
    code, out, _ = run(capsys, "models", "--json")
    rows = json.loads(out)
    assert code == 0
    assert [r["name"] for r in rows] == list(PRESETS)
    assert [r["params"] for r in rows] == PAPER_PARAMS
    assert all(r["macs"] > 0 and r["summary"] for r in rows)


def test_models_table(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0 and "custom-590k-dw" in out and "599,913" in out


def test_train_json_writes_artifacts(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CASTSEARCH_CACHE", str(tmp_path / "cache"))
    out_dir = tmp_path / "out"
    code, out, err = run(capsys, "train", "C8 P C16 P A", "--data", "synthetic", "--image-size", "16",
                         "--epochs", "1", "--out", str(out_dir), "--json")
    assert code == 0, err
    result = json.loads(out)
    for key in ("val_accuracy", "val_balanced_accuracy", "val_macro_f1", "test_accuracy", "test_balanced_accuracy",
                "test_macro_f1", "test_per_class_recall", "params", "macs", "latency_ms", "batch_latency_ms"):
        assert key in result
    assert not {"accuracy", "macro_f1", "balanced_accuracy", "per_class_recall"} & set(result)  # each names its split
    assert 0.0 <= result["test_accuracy"] <= 1.0
    assert {p.name for p in out_dir.iterdir()} >= {"model.pt", "spec.json", "recipe.json", "metrics.json"}
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["evaluation"]["accuracy"] == result["test_accuracy"]
    assert metrics["validation"]["accuracy"] == result["val_accuracy"]
    assert metrics["data"]["class_names"]


def _one_class_folder(tmp_path):
    root = tmp_path / "one"
    (root / "scratch").mkdir(parents=True)
    Image.new("L", (8, 8)).save(root / "scratch" / "a.png")
    return root


@pytest.mark.parametrize("argv, needle", [
    (["train", "custom-140k-dw", "--data", "/no/such/folder"], "/no/such/folder"),
    (["train", "resnet-9000"], "unknown preset 'resnet-9000'"),
    (["train", "missing.json"], "missing.json"),
    (["train", "C8 Z9 A"], "unknown token 'Z9'"),
    (["train", "custom-140k-dw", "--enhance", "turbo"], "turbo"),
    (["train", "custom-140k-dw", "--augment", "hflop"], "hflop"),
    (["run", "no-such-space.yaml"], "no-such-space.yaml"),
    (["front", "--study", "nothing-here", "--storage", "sqlite:///{tmp}/x.db"], "nothing-here"),
])
def test_bad_input_is_one_clean_line(capsys, tmp_path, monkeypatch, argv, needle):
    monkeypatch.setenv("CASTSEARCH_CACHE", str(tmp_path / "cache"))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, _, err = run(capsys, *argv)
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("castsearch: error:")]
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err


def test_too_few_classes_names_the_folder(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CASTSEARCH_CACHE", str(tmp_path / "cache"))
    root = _one_class_folder(tmp_path)
    code, _, err = run(capsys, "train", "custom-140k-dw", "--data", str(root))
    assert code == 2 and str(root) in err and "Traceback" not in err


def test_bad_space_value_names_file_and_key(capsys, tmp_path):
    space = tmp_path / "bad.yaml"
    space.write_text("architecture:\n  stages: {low: 4, high: 2}\n")
    code, _, err = run(capsys, "run", str(space))
    assert code == 2 and "bad.yaml" in err and "architecture" in err


def test_training_progress_is_one_live_line_on_a_terminal_and_lines_in_a_log():
    import io
    import logging

    from search.cli import live_epoch_line

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    log = logging.getLogger("search.training.train")
    log.setLevel(logging.INFO)
    screen = Terminal()
    with live_epoch_line(screen):
        log.info("epoch 1/2: train loss 1.0000")
        log.info("epoch 2/2: train loss 0.5000")
        log.info("trained 2 epochs in 1.0 s")
    out = screen.getvalue()
    assert out.count("\r\x1b[K") == 2 and out.count("\n") == 2  # the live line, then the summary line
    assert out.endswith("search.training.train: trained 2 epochs in 1.0 s\n")
    assert log.propagate and not [h for h in log.handlers if type(h).__name__ == "_LiveLine"]

    piped = io.StringIO()
    with live_epoch_line(piped):
        pass
    assert piped.getvalue() == ""  # not a terminal: the usual handlers print one line per epoch


def test_a_guessed_study_is_named_and_several_are_an_error(tmp_path, monkeypatch, capsys, cli_error):
    """Without --study a command takes the only database under studies/ and says so; with
    several it refuses and lists them rather than open one of them."""
    from search.study import storage as studylib

    monkeypatch.chdir(tmp_path)
    studylib.open_study("line3", studylib.default_storage("line3"))
    assert main(["front"]) == 0
    out, err = capsys.readouterr()
    assert f"study 'line3': the only study database in {tmp_path / 'studies'}/" in err
    assert "the front is empty" in out

    studylib.open_study("demo", studylib.default_storage("demo"))
    for argv in (["front"], ["export", "--trial", "0"], ["report"]):
        line = cli_error(argv)
        assert "say which study with --study NAME" in line and "demo, line3" in line


def _commands():
    import argparse

    from search.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return parser, sub


def test_every_command_says_what_it_does_and_every_flag_has_help():
    import argparse

    parser, sub = _commands()
    assert {c.dest for c in sub._choices_actions} == set(sub.choices)  # each listed with a summary
    assert all(c.help for c in sub._choices_actions)
    for name, command in [("castsearch", parser), *sub.choices.items()]:
        assert command.description, f"{name}: no description"
        for action in command._actions:
            if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                assert action.help, f"{name} {'/'.join(action.option_strings) or action.dest}: no help"


def test_the_command_reference_is_what_the_parser_generates():
    """docs/cli.md is generated from the parser: a flag added, renamed or reworded without
    regenerating it (python -m search.cli.reference) fails here."""
    from search.cli import reference

    _, sub = _commands()
    text = reference.markdown()
    assert reference.DOC.read_text() == text, "docs/cli.md is out of date: run python -m search.cli.reference"
    for name, command in sub.choices.items():
        assert f"## castsearch {name}\n" in text
        assert all(option in text for a in command._actions for option in a.option_strings if option != "-h")
    assert reference.main(["--check"]) == 0


def test_the_reference_check_fails_on_a_stale_file(tmp_path, capsys):
    from search.cli import reference

    stale = tmp_path / "cli.md"
    stale.write_text(reference.markdown().replace("--seeds SEEDS", "--seed-count N"))
    assert reference.main(["--check", "--out", str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert reference.main(["--out", str(stale)]) == 0 and reference.main(["--check", "--out", str(stale)]) == 0


def test_the_storage_can_come_from_the_environment_and_a_password_is_warned_about(
        tmp_path, monkeypatch, capsys, caplog, cli_error):
    """$CASTSEARCH_STORAGE keeps a database URL (and its password) off the command line;
    a password given with --storage is named as visible to other users."""
    from search.study import storage as studylib

    url = f"sqlite:///{tmp_path}/env.db"
    studylib.open_study("kept", url)
    monkeypatch.chdir(tmp_path)  # no studies/ here: the URL must come from the environment
    monkeypatch.setenv("CASTSEARCH_STORAGE", url)
    assert main(["front", "--study", "kept"]) == 0
    assert "the front is empty" in capsys.readouterr().out
    assert "$CASTSEARCH_STORAGE needs --study NAME too" in cli_error(["front"])

    monkeypatch.delenv("CASTSEARCH_STORAGE")
    with caplog.at_level("WARNING", logger="castsearch"):
        assert main(["front", "--study", "kept", "--storage", "postgresql://u:SECRET@127.0.0.1:1/db"]) != 0
    shown = caplog.text + "".join(capsys.readouterr())
    assert "--storage carries a password" in shown and "SECRET" not in shown


@pytest.mark.parametrize("name", ["..", ".", "a/b"])
def test_a_study_name_that_is_not_one_path_component_is_refused(name, cli_error):
    line = cli_error(["front", "--study", name])
    assert "--study: a study name must match" in line and repr(name) in line

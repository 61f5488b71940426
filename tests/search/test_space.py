import copy
import json
import logging
import re
import subprocess
import sys
import warnings
from pathlib import Path

import optuna
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from castmodels import PRESETS, ArchSpec
from search.space import (
    Budget,
    Candidate,
    GrowingArchitecture,
    InvalidCandidate,
    SpaceError,
    decode,
    encode,
    load_space,
    nearest,
    nearest_trials,
    parse_duration,
    point_of,
    preset_params,
    preset_trials,
    space_from_dict,
    suggest,
)
from search.training.recipe import TrainRecipe

PAPER = Path(__file__).resolve().parents[2] / "spaces" / "paper.yaml"
# paper.yaml with its architecture in the per-block form, which expresses all six presets
# (paper.yaml itself uses the growing form; see the tests of that form below)
PER_BLOCK = {
    "stages": {"low": 3, "high": 6},
    "blocks_per_stage": {"low": 1, "high": 3},
    "channels": {"low": 16, "high": 512, "log": True},
    "conv": ["conv3x3", "dwsep"],
    "last_block": ["plain", "stride2", "dilation2"],
    "dropout": {"low": 0.0, "high": 0.1, "step": 0.01},
    "pool": [True, False],
    "head": ["gap", "flatten"],
}
# ... and every enhancement and augmentation searched (paper.yaml fixes most of them)
EVERY_SWITCH = {
    "enhancements": {"blurpool": [False, True], "squeeze_excite": [False, True], "swa": [False, True],
                     "label_smoothing": [0.0, 0.1], "mixup": [0.0, 0.2], "cutout": [False, True]},
    "augmentations": {name: [False, True] for name in ("hflip", "vflip", "rotate", "gaussian_blur",
                                                       "shift_scale_rotate", "random_crop", "brightness_contrast")},
}
PAPER_DICT = {**yaml.safe_load(PAPER.read_text()), "architecture": PER_BLOCK, "seed_nearest": False, **EVERY_SWITCH}

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def space():
    return space_from_dict(PAPER_DICT, "paper-per-block.yaml")


@pytest.fixture(scope="module")
def paper():
    return load_space(PAPER)


def with_changes(*changes):
    """A copy of paper.yaml's dict; each change is (key path, value), value DELETE removes the key."""
    doc = copy.deepcopy(PAPER_DICT)
    for path, value in changes:
        node = doc
        for key in path[:-1]:
            node = node.setdefault(key, {})
        if value is DELETE:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return doc


DELETE = object()


def same_network(a: ArchSpec, b: ArchSpec) -> bool:
    return a.layers == b.layers and a.head == b.head


def random_study():
    return optuna.create_study(directions=["maximize", "minimize", "minimize"],
                               sampler=optuna.samplers.RandomSampler(seed=0))


# ---------------------------------------------------------------------------
# paper.yaml and the presets


def test_paper_space_loads(paper):
    space = paper
    assert space.path == str(PAPER)
    assert space.study == "paper"
    assert space.seed_presets is True
    assert space.objective_names == ["accuracy", "latency_ms", "params"]
    assert space.directions == ["maximize", "minimize", "minimize"]
    assert (space.sampler.name, space.sampler.seed, space.sampler.population_size) == ("tpe", 555, None)
    assert (space.budget.trials, space.budget.timeout_s) == (None, 1800.0)  # 30 minutes of wall time
    assert space.constraints.max_params == 1_000_000
    assert space.constraints.max_latency_ms is None  # relative: resolved on the machine that runs it
    assert (space.relative_latency.relative_to, space.relative_latency.factor) == ("custom-590k-dw", 1.0)
    assert (space.data.source, space.data.channels, space.data.split_seed) == ("synthetic", "auto", 555)
    assert space.input_channels == 3  # auto on the synthetic set
    assert space.image_sizes == [32]
    assert space.max_epochs == 10
    assert space.recipe == "default"


def test_loading_a_space_does_not_import_torch():
    """Validating a space file stays light: a fresh interpreter loads paper.yaml without
    importing torch."""
    check = ("import sys; from search.space import load_space; load_space('spaces/paper.yaml'); "
             "assert 'torch' not in sys.modules, [m for m in sys.modules if m.startswith('torch')]")
    done = subprocess.run([sys.executable, "-c", check], cwd=PAPER.parents[1], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_every_preset_encodes_and_decodes_back(space):
    params = preset_params(space)
    assert sorted(params) == sorted(PRESETS)
    for name, arch in PRESETS.items():
        assert same_network(decode(space, {**params[name]}).arch, arch), name
        arch_only = encode(space, arch)
        assert set(arch_only) <= set(params[name])
        assert not {"lr", "blurpool", "aug_hflip"} & set(arch_only)


def test_preset_params_train_with_the_spaces_recipe(space):
    candidate = decode(space, preset_params(space)["custom-590k-dw"])
    r = candidate.recipe
    default = TrainRecipe.named("default")
    assert (r.optimizer, r.lr, r.batch_size, r.schedule, r.warmup, r.weight_decay) == (
        default.optimizer, default.lr, default.batch_size, default.schedule, default.warmup, default.weight_decay)
    assert (r.image_size, r.epochs, r.class_balance) == (32, 10, "none")
    assert r.enhancements == default.enhancements and r.augmentations == default.augmentations
    assert r.seed == 555 and r.channels == 3


def test_the_paper_recipe_trains_presets_the_paper_way(tmp_path):
    file = tmp_path / "paper-recipe.yaml"
    file.write_text(yaml.safe_dump({"architecture": PAPER_DICT["architecture"], "training": {"recipe": "paper"}}))
    r = decode(load_space(file), preset_params(load_space(file))["custom-590k-dw"]).recipe
    assert (r.optimizer, r.lr, r.batch_size, r.schedule, r.weight_decay) == ("adam", 1e-3, 32, "constant", 0.0)
    assert r.enhancements == () and r.augmentations == ()


def test_enqueued_presets_come_back_from_optuna(space):
    study = random_study()
    params = preset_params(space)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an out-of-range fixed param would warn
        for p in params.values():
            study.enqueue_trial(p)
        for name, p in params.items():
            trial = study.ask()
            candidate = suggest(space, trial)
            assert same_network(candidate.arch, PRESETS[name]), name
            assert trial.params == p


def test_preset_params_skip_what_the_space_cannot_express(caplog):
    space = space_from_dict(with_changes((("architecture", "stages"), {"low": 3, "high": 4})))
    with caplog.at_level(logging.WARNING, logger="search.space"):
        params = preset_params(space)
    assert sorted(params) == ["custom-140k-3x3", "custom-340k-3x3", "custom-590k-3x3"]
    assert "custom-340k-dw is not in this space: it needs stages=6" in caplog.text
    assert "architecture.stages is range [3, 4]" in caplog.text


def test_preset_params_leave_to_the_sampler_what_cannot_be_off():
    space = space_from_dict(with_changes(
        (("training", "lr"), {"low": 0.01, "high": 0.1}), (("enhancements", "swa"), True),
        (("enhancements", "mixup"), {"low": 0.1, "high": 0.4}), (("augmentations", "hflip"), True),
    ))
    p = preset_params(space)["custom-140k-3x3"]
    assert not {"lr", "swa", "mixup", "aug_hflip"} & set(p)
    assert p["blurpool"] is False and p["batch_size"] == 32


# ---------------------------------------------------------------------------
# encode / decode


@pytest.mark.parametrize(("code", "why"), [
    ("C16 C16 X.06 P C600 P C32 A", "needs s2_b1_channels=600, but <dict>: architecture.channels is range [16, 512]"),
    ("C16e X.1 P C16 P C16 A", "squeeze-excite or blurpool"),
    ("C16b X.1 P C16 P C16 A", "squeeze-excite or blurpool"),
    ("C16 Q C16 P C16 A", "average-pools"),
    ("C16s2 C16 P C16 P C16 A", "not the last block of stage 1"),
    ("C16s2d2 P C16 P C16 A", "stride 2 and dilation 2"),
    ("C16 C16 C16 C16 P C16 P C16 A", "needs s1_blocks=4"),
    ("C16 P C16 P C16 P C16 P C16 P C16 P C16 A", "needs stages=7"),
    ("C16 X.5 C16 P C16 A", "needs s1_dropout=0.5"),
])
def test_encode_says_why_an_arch_is_not_in_the_space(code, why):
    space = space_from_dict(PAPER_DICT)
    with pytest.raises(ValueError, match=re.escape(why)):
        encode(space, ArchSpec.from_code(code))


def test_encode_checks_recipe_values(space):
    arch = PRESETS["custom-140k-3x3"]
    assert encode(space, arch, lr=2e-3, weight_decay=5e-4)["lr"] == 2e-3  # weight_decay is fixed: no param
    with pytest.raises(ValueError, match="needs lr=0.1, but .*training.lr is range"):
        encode(space, arch, lr=0.1)
    with pytest.raises(ValueError, match="weight_decay=0.1, but .*fixed at 0.0005"):
        encode(space, arch, weight_decay=0.1)
    with pytest.raises(ValueError, match="unknown recipe parameter 'hflip'; known: .*aug_hflip"):
        encode(space, arch, hflip=True)


def test_decode_names_missing_and_out_of_space_params(space):
    params = preset_params(space)["custom-140k-dw"]
    missing = {k: v for k, v in params.items() if k != "s2_b1_channels"}
    with pytest.raises(ValueError, match="params lack 's2_b1_channels'.*architecture.channels"):
        decode(space, missing)
    with pytest.raises(ValueError, match=r"param s1_dropout=0.5 is not in this space .*architecture.dropout"):
        decode(space, {**params, "s1_dropout": 0.5})
    with pytest.raises(ValueError, match=r"param s1_b1_conv='conv5x5'"):
        decode(space, {**params, "s1_b1_conv": "conv5x5"})


def test_too_much_downsampling_is_an_invalid_candidate(space):
    six_pools = ArchSpec.from_code("C16 P C16 P C16 P C16 P C16 P C16 P A")
    params = {**preset_params(space)["custom-140k-3x3"], **encode(space, six_pools)}
    with pytest.raises(InvalidCandidate, match="downsamples by 64x.*image_size 32"):
        decode(space, params)


def test_random_points_are_candidates_or_invalid(space):
    study = random_study()
    seen = {"valid": 0, "invalid": 0}
    for _ in range(50):
        trial = study.ask()
        try:
            candidate = suggest(space, trial)
        except InvalidCandidate:
            seen["invalid"] += 1
            with pytest.raises(InvalidCandidate):
                decode(space, trial.params)
            continue
        seen["valid"] += 1
        assert decode(space, trial.params) == candidate
        stages = trial.params["stages"]
        expected = {"stages", "head"}
        for i in range(1, stages + 1):
            expected |= {f"s{i}_{k}" for k in ("blocks", "last", "dropout", "pool")}
            expected |= {f"s{i}_b{j}_{k}" for j in range(1, trial.params[f"s{i}_blocks"] + 1)
                         for k in ("conv", "channels")}
        arch_params = {k for k in trial.params if re.match(r"s\d+_|stages$|head$", k)}
        assert arch_params == expected
        assert "epochs" not in trial.params and "weight_decay" not in trial.params  # fixed in the file
        try:
            again = encode(space, candidate.arch)  # not every point has one: stages can merge
        except ValueError:
            continue
        assert same_network(decode(space, {**trial.params, **again}).arch, candidate.arch)
    assert seen["valid"] > 10 and seen["invalid"] > 0


def test_recipe_follows_the_params(space):
    params = {**preset_params(space)["custom-140k-3x3"], "swa": True, "label_smoothing": 0.1,
              "mixup": 0.2, "aug_hflip": True, "aug_rotate": True, "batch_size": 50}
    candidate = decode(space, params)
    r = candidate.recipe
    assert r.enhancements == ("swa", "label_smoothing", "mixup")
    assert (r.label_smoothing, r.mixup_alpha, r.batch_size) == (0.1, 0.2, 50)
    assert r.augmentations == ("hflip", "rotate")
    assert candidate.enhancements_summary() == "swa+ls0.1+mixup0.2 aug:hflip+rotate"


def test_candidate_json_round_trip(space):
    params = {**preset_params(space)["custom-140k-dw"], "blurpool": True, "mixup": 0.2, "aug_vflip": True}
    candidate = decode(space, params)
    again = Candidate.from_dict(json.loads(json.dumps(candidate.to_dict())))
    assert again == candidate
    assert isinstance(again.recipe, TrainRecipe)


# ---------------------------------------------------------------------------
# validation: every error names the file and the key path


@pytest.mark.parametrize(("changes", "path", "fragment"), [
    ([(("sampl",), {})], "sampl", "unknown key"),
    ([(("architecture", "chanels"), 3)], "architecture.chanels", "did you mean 'channels'"),
    ([(("architecture", "channels", "lo"), 3)], "architecture.channels.lo", "known keys: low, high, log, step"),
    ([(("architecture", "stages"), "three")], "architecture.stages", "must be an integer in [1, 16], got 'three'"),
    ([(("architecture", "stages"), True)], "architecture.stages", "got True"),
    ([(("architecture", "stages"), 40)], "architecture.stages", "got 40"),
    ([(("architecture", "channels", "low"), 16.5)], "architecture.channels.low", "must be an integer"),
    ([(("architecture", "conv"), [])], "architecture.conv", "empty list"),
    ([(("training", "batch_size"), [32, 32])], "training.batch_size[1]", "distinct, got 32 twice"),
    ([(("architecture", "channels"), {"low": 64, "high": 32})], "architecture.channels",
     "low must be <= high, got low=64, high=32"),
    ([(("architecture", "dropout"), {"low": 0.0, "high": 0.1, "log": True})], "architecture.dropout",
     "log range needs low > 0"),
    ([(("training", "lr"), {"low": 0.001, "high": 0.01, "log": True, "step": 0.001})], "training.lr",
     "log and step cannot be used together"),
    ([(("architecture", "channels"), {"low": 16, "high": 100, "step": 16})], "architecture.channels",
     "multiple of step"),
    ([(("architecture", "channels"), {"low": 16})], "architecture.channels", "missing high"),
    ([(("architecture", "conv"), {"low": 1, "high": 2})], "architecture.conv", "not a range"),
    ([(("training", "epochs"), {"low": 5, "high": 30})], "training.epochs", "not a range"),
    ([(("architecture", "dropout"), float("nan"))], "architecture.dropout", "number in [0, 1)"),
    ([(("training", "lr"), "3e-4")], "training.lr", "write 3.0e-4"),
    ([(("enhancements", "blur_pool"), True)], "enhancements.blur_pool", "did you mean 'blurpool'"),
    ([(("enhancements", "mixup"), [False, True])], "enhancements.mixup[0]", "must be a number >= 0"),
    ([(("augmentations", "flip"), True)], "augmentations.flip", "known keys: hflip"),
    ([(("sampler", "name"), "cmaes")], "sampler.name", "must be one of nsga2, tpe, gp, random, got 'cmaes'"),
    ([(("sampler", "population_size"), 12)], "sampler.population_size", "only the nsga2 sampler"),
    ([(("architecture", "conv"), ["conv3x3", "conv5x5"])], "architecture.conv[1]",
     "must be one of conv3x3, dwsep, got 'conv5x5'"),
    ([(("architecture", "head"), ["gap", "dense"])], "architecture.head[1]", "gap, flatten"),
    ([(("architecture", "last_block"), "stride3")], "architecture.last_block", "plain, stride2, dilation2"),
    ([(("training", "optimizer"), ["adam", "adm"])], "training.optimizer[1]", "unknown optimizer 'adm'"),
    ([(("budget", "timeout"), "2 hours")], "budget.timeout", "'90s', '30m'"),
    ([(("budget", "early_stopping"), "asha")], "budget.early_stopping", "must be one of preview, pareto, none, got 'asha'"),
    ([(("budget", "trials"), 0)], "budget.trials", "integer >= 1"),
    ([(("budget",), {"trials": None, "timeout": None})], "budget", "needs trials, timeout or both"),
    ([(("objectives", "accuracy"), "minimize")], "objectives.accuracy", "must be 'maximize'"),
    ([(("objectives", "params"), DELETE)], "objectives", "missing params"),
    ([(("objectives", "f1"), "maximize")], "objectives.f1", "unknown key"),
    ([(("architecture",), DELETE)], "architecture", "required section"),
    ([(("architecture", "head"), DELETE)], "architecture.head", "required key"),
    ([(("architecture",), [1, 2])], "architecture", "must be a mapping"),
    ([(("constraints", "min_accuracy"), 1.5)], "constraints.min_accuracy", "(0, 1]"),
    ([(("constraints", "min_accuracy"), "preset")], "constraints.min_accuracy", "(0, 1] or presets"),
    ([(("constraints", "min_accuracy"), "presets"), (("seed_presets",), False)], "constraints.min_accuracy",
     "needs the presets in the study"),
    ([(("constraints", "max_params"), -5)], "constraints.max_params", "> 0"),
    ([(("data", "channels"), 2)], "data.channels", "must be auto, 1 (grey) or 3 (RGB), got 2"),
    ([(("data", "test_fraction"), 1.0)], "data.test_fraction", "(0, 1)"),
    ([(("data", "image_size"), 32)], "data.image_size", "unknown key"),
    ([(("training", "image_size"), [32, 4])], "training.image_size[1]", "integer in [8, 1024]"),
    ([(("study",), "my study")], "study", "[A-Za-z0-9_.-]+"),
    ([(("study",), "..")], "study", "not be . or .., got '..'"),
    ([(("study",), ".")], "study", "not be . or .., got '.'"),
    ([(("seed_presets",), "yes please")], "seed_presets", "true or false"),
])
def test_validation_errors_name_file_and_key_path(tmp_path, changes, path, fragment):
    file = tmp_path / "bad.yaml"
    file.write_text(yaml.safe_dump(with_changes(*changes)))
    with pytest.raises(SpaceError) as info:
        load_space(file)
    message = str(info.value)
    assert message.startswith(f"{file}: {path}"), message
    assert fragment in message, message
    assert "\n" not in message


@pytest.mark.parametrize(("text", "fragment"), [
    ("architecture: [unclosed\n", "YAML syntax error at line 2"),
    ("architecture:\n  stages: 3\n    blocks: 2\n", "YAML syntax error at line 3"),
    ("", "the document is empty"),
    ("- 1\n- 2\n", "must be a mapping"),
])
def test_broken_documents(tmp_path, text, fragment):
    file = tmp_path / "broken.yaml"
    file.write_text(text)
    with pytest.raises(SpaceError, match=re.escape(fragment)) as info:
        load_space(file)
    assert str(info.value).startswith(f"{file}: ")


def test_missing_file(tmp_path):
    with pytest.raises(SpaceError, match=r"nothere.yaml: cannot read the search-space file: No such file"):
        load_space(tmp_path / "nothere.yaml")


def test_defaults_for_a_minimal_space(tmp_path):
    file = tmp_path / "tiny-space.yaml"
    file.write_text(yaml.safe_dump({"architecture": PAPER_DICT["architecture"]}))
    space = load_space(file)
    assert space.study == "tiny-space"
    assert (space.budget.trials, space.budget.timeout_s) == (None, 1800.0)
    assert (space.sampler.name, space.sampler.seed, space.sampler.population_size) == ("tpe", None, None)
    assert space.data.source == "synthetic" and space.data.cache_dir is None
    assert space.image_sizes == [32] and space.max_epochs == TrainRecipe().epochs
    candidate = decode(space, preset_params(space)["custom-140k-3x3"])
    assert candidate.recipe == TrainRecipe.named("default", seed=0)  # absent keys: the default recipe


def test_overrides_apply_before_validation(tmp_path):
    space = load_space(PAPER, overrides={("budget", "trials"): 5, ("training", "epochs"): 3,
                                         ("data", "source"): "images/", ("study",): "other"})
    assert (space.budget.trials, space.max_epochs, space.data.source, space.study) == (5, 3, "images/", "other")
    file = tmp_path / "nobudget.yaml"
    file.write_text(yaml.safe_dump(with_changes((("budget",), DELETE))))
    space = load_space(file, overrides={("budget", "timeout"): "30m"})
    assert (space.budget.trials, space.budget.timeout_s) == (None, 1800.0)
    with pytest.raises(SpaceError, match=r"nobudget.yaml: budget.timeout: .*got 'soon'"):
        load_space(file, overrides={("budget", "timeout"): "soon"})


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("45", 45), (45, 45), (1.5, 1.5),
    ("1d", 86400), (" 2H ", 7200), ("1.5h", 5400), ("1h0m30s", 3630),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "2 hours", "-5", "1m30h", "h", 0, -1, True, None, float("inf")])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match="a duration must be seconds > 0 or text like"):
        parse_duration(text)


# ---------------------------------------------------------------------------
# the reader and the bounds: a bad file is a one-line SpaceError before any study exists


def refused(tmp_path, text: str) -> str:
    """Load ``text`` as a space file; the SpaceError's message, after the file's name."""
    file = tmp_path / "bad.yaml"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(SpaceError) as info:
        load_space(file)
    message = str(info.value)
    assert message.startswith(f"{file}: ") and len(message.splitlines()) == 1, message
    return message.removeprefix(f"{file}: ")


def paper_text(old: str, new: str) -> str:
    """paper.yaml's text with ``old``, which it holds once, replaced by ``new``."""
    text = PAPER.read_text()
    assert text.count(old) == 1, old
    return text.replace(old, new)


@pytest.mark.parametrize(("value", "fragment"), [
    ("[" * 1200 + "]" * 1200, "study" + "[0]" * 31 + ": nested deeper than 32 levels (at line 17, column"),
    ("{a: " * 1200 + "1" + "}" * 1200, "study" + ".a" * 30 + ": nested deeper than 32 levels (at line 17, column"),
    ("[" * 32 + "]" * 32, "study" + "[0]" * 31 + ": nested deeper than 32 levels"),
    ("[" * 31 + "]" * 31, "study: must be a non-empty string"),  # 32 levels: read, then checked
])
def test_deep_nesting_is_refused(tmp_path, value, fragment):
    assert refused(tmp_path, paper_text("study: paper ", f"study: {value} ")).startswith(fragment)


def test_aliases_cannot_nest_deeper_or_endlessly(tmp_path):
    chain = ", ".join(["&a0 [1]"] + [f"&a{i} [*a{i - 1}]" for i in range(1, 40)])
    assert refused(tmp_path, f"study: [{chain}]\n").startswith(
        "study[29][0]: nested deeper than 32 levels through the alias at line 1, column")
    assert refused(tmp_path, "study: &loop [*loop]\n").startswith(
        "study[0]: the alias at line 1, column 15 is inside the node it names")
    # an alias bomb (9**10 strings if expanded) stays a few nodes and fails its check at once
    bomb = ", ".join(["&l0 [x, x, x, x, x, x, x, x, x]"] + [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]"
                                                            for i in range(1, 10)])
    assert refused(tmp_path, paper_text("study: paper ", f"study: [{bomb}] ")).startswith(
        "study: must be a non-empty string")


@pytest.mark.parametrize(("old", "new", "fragment"), [
    ("\n  dropout: {low: 0.0, high: 0.1, step: 0.01}", "\n  dropout: {low: 0.0, high: 0.5, step: 1.0e-300}",
     "architecture.dropout: step is too fine: (high - low) / step must be at most 1000000 points, "
     "got low=0.0, high=0.5, step=1e-300"),
    ("lr: {low: 1.0e-3, high: 5.0e-3, log: true}", "lr: {low: 1.0e-3, high: 5.0e-3, step: 1.0e-12}",
     "training.lr: step is too fine"),
    ("\n  dropout: {low: 0.0, high: 0.1, step: 0.01}", "\n  dropout: {low: 0.0, high: 0.1, step: 0.0}",
     "architecture.dropout.step: must be a number > 0, got 0.0"),
    ("\n  dropout: {low: 0.0, high: 0.1, step: 0.01}", "\n  dropout: {low: 0.0, high: 0.1, step: -0.01}",
     "architecture.dropout.step: must be a number > 0"),
    ("\n  dropout: {low: 0.0, high: 0.1, step: 0.01}", "\n  dropout: {low: 0.0, high: 0.1, step: .inf}",
     "architecture.dropout.step: must be a number > 0, got inf"),
])
def test_a_range_step_must_be_positive_finite_and_not_too_fine(tmp_path, old, new, fragment):
    assert refused(tmp_path, paper_text(old, new)).startswith(fragment)


def test_a_fine_step_within_the_limit_samples(tmp_path):
    """500,000 points load, and Optuna steps them (1e-300 failed only once a trial was sampled)."""
    file = tmp_path / "fine.yaml"
    file.write_text(paper_text("\n  dropout: {low: 0.0, high: 0.1, step: 0.01}",
                               "\n  dropout: {low: 0.0, high: 0.5, step: 1.0e-6}"))
    space = load_space(file)
    study = random_study()
    for _ in range(5):
        dropouts = [layer.dropout for layer in suggest(space, study.ask()).arch.layers if layer.dropout]
        assert all(0 <= d <= 0.5 for d in dropouts)


@pytest.mark.parametrize(("old", "new", "where"), [
    ("  trials: null ", "  trials: 40\n  trials: 50 ", "budget.trials"),
    ("study: paper ", "study: paper\nstudy: other ", "study"),
    ("stages: {low: 2, high: 5}", "stages: {low: 2, high: 5, low: 3}", "architecture.stages.low"),
    ("  hflip: [false, true]\n", "  hflip: [false, true]\n  hflip: false\n", "augmentations.hflip"),
    ("  hflip: [false, true]\n", "  hflip: [false, true]\n  1: a\n  0x1: b\n", "augmentations.0x1"),  # one key
])
def test_a_key_written_twice_is_refused(tmp_path, old, new, where):
    message = refused(tmp_path, paper_text(old, new))
    assert re.fullmatch(rf"{re.escape(where)}: the key is written twice, at line \d+, column \d+ and at "
                        rf"line \d+, column \d+; write it once", message), message


def test_a_key_written_twice_names_both_lines(tmp_path):
    text = paper_text("  trials: null ", "  trials: 40\n  trials: 50 ")
    first = text.splitlines().index("  trials: 40") + 1
    assert refused(tmp_path, text) == (f"budget.trials: the key is written twice, at line {first}, column 3 "
                                       f"and at line {first + 1}, column 3; write it once")


def test_a_merge_may_still_restate_keys(tmp_path):
    file = tmp_path / "merge.yaml"
    file.write_text(paper_text("  recipe: default\n", "  <<: {recipe: paper, epochs: 5}\n"))
    space = load_space(file)
    assert (space.recipe, space.max_epochs) == ("paper", 10)  # the section's own epochs: 10 wins


@pytest.mark.parametrize("seed", ["4294967296", "100000000000000000000000", "1.0e+23", "1e23", "-1", "true",
                                  "5.5", ".nan"])
def test_seeds_must_be_32_bit_integers(tmp_path, seed):
    for old, path in (("seed: 555 ", "sampler.seed"), ("split_seed: 555\n", "data.split_seed")):
        new = old.replace("555", seed)
        assert refused(tmp_path, paper_text(old, new)).startswith(
            f"{path}: must be an integer in [0, 4294967295], got ")
    file = tmp_path / "largest.yaml"
    file.write_text(paper_text("seed: 555 ", "seed: 4294967295 "))
    assert load_space(file).sampler.seed == 2**32 - 1


@pytest.mark.parametrize(("old", "new", "message"), [
    ("max_channels: 256", "max_channels: 100000",
     "architecture.max_channels: must be an integer in [1, 4096], got 100000"),
    ("width: [16, 24, 32, 48]", "width: [16, 8192]", "architecture.width[1]: must be an integer in [1, 4096], got 8192"),
    ("width: [16, 24, 32, 48]", "width: [16, 512]",
     "architecture.width: no stage may be wider than max_channels (256), but the first stage's width can be 512"),
    ("stages: {low: 2, high: 5}", "stages: {low: 2, high: 17}",
     "architecture.stages.high: must be an integer in [1, 16], got 17"),
    ("blocks_per_stage: {low: 1, high: 3}", "blocks_per_stage: {low: 1, high: 100}",
     "architecture.blocks_per_stage.high: must be an integer in [1, 16], got 100"),
    ("image_size: [32]", "image_size: [32, 100000]", "training.image_size[1]: must be an integer in [8, 1024], got 100000"),
    ("batch_size: [32, 50]", "batch_size: [32, 1000000]",
     "training.batch_size[1]: must be an integer in [1, 4096], got 1000000"),
    ("epochs: 10 ", "epochs: 1000000 ", "training.epochs: must be an integer in [1, 10000], got 1000000"),
    ("lr: {low: 1.0e-3, high: 5.0e-3, log: true}", "lr: {low: 1.0e-3, high: 1.0e+300, log: true}",
     "training.lr.high: must be a number in (0, 10], got 1e+300"),
    ("weight_decay: 5.0e-4", "weight_decay: 5.0", "training.weight_decay: must be a number in [0, 1], got 5.0"),
    ("name: tpe ", "population_size: 100000000\n  name: nsga2 ",
     "sampler.population_size: must be an integer in [2, 10000], got 100000000"),
    ("timeout: 30m", "timeout: 100000d", "budget.timeout: a duration must be at most 365d (3.1536e+07 s), got '100000d'"),
])
def test_user_numbers_have_upper_bounds(tmp_path, old, new, message):
    assert refused(tmp_path, paper_text(old, new)) == message


def test_per_block_channels_have_an_upper_bound():
    doc = with_changes((("architecture", "channels"), {"low": 16, "high": 100000, "log": True}))
    with pytest.raises(SpaceError, match=re.escape("x.yaml: architecture.channels.high: must be an integer in "
                                                   "[1, 4096], got 100000")):
        space_from_dict(doc, "x.yaml")


@pytest.mark.parametrize("number", [".nan", ".inf", "-.inf", "1" + "0" * 400])  # an int too large for a float
@pytest.mark.parametrize(("old", "new", "path"), [
    ("weight_decay: 5.0e-4", "weight_decay: NUM", "training.weight_decay"),
    ("lr: {low: 1.0e-3, high: 5.0e-3, log: true}", "lr: {low: NUM, high: 5.0e-3}", "training.lr.low"),
    ("\n  dropout: {low: 0.0, high: 0.1, step: 0.01}", "\n  dropout: {low: 0.0, high: 0.1, step: NUM}", "architecture.dropout.step"),
    ("growth: [1.0, 1.5, 2.0]", "growth: [1.0, NUM]", "architecture.growth[1]"),
    ("max_channels: 256", "max_channels: NUM", "architecture.max_channels"),
    ("mixup: [0.0, 0.2]", "mixup: [0.0, NUM]", "enhancements.mixup[1]"),
    ("timeout: 30m", "timeout: NUM", "budget.timeout"),
    ("max_params: 1000000", "max_params: NUM", "constraints.max_params"),
    ("factor: 1.0}  # single", "factor: NUM}  # single", "constraints.max_latency_ms.factor"),
    ("test_fraction: 0.1", "test_fraction: NUM", "data.test_fraction"),
    ("seed: 555 ", "seed: NUM ", "sampler.seed"),
])
def test_nan_inf_and_huge_ints_are_refused_where_a_number_is_expected(tmp_path, old, new, path, number):
    assert refused(tmp_path, paper_text(old, new.replace("NUM", number))).startswith(f"{path}: ")


def test_a_file_over_1_mib_is_refused_unparsed(tmp_path):
    text = PAPER.read_text() + ("# " + "x" * 78 + "\n") * 13_000
    size = len(text.encode())
    assert refused(tmp_path, text) == (f"the file is {size} bytes; a search-space file may have at most "
                                       f"1048576 (1 MiB)")


def test_a_document_of_too_many_nodes_is_refused(tmp_path):
    message = refused(tmp_path, "study: [" + "0, " * 20_000 + "]\n")
    assert message.startswith("study[9997]: more than 10000 nodes (keys, values and list items; at line 1, ")


@pytest.mark.parametrize(("value", "fragment"), [
    ("2024-13-45", "cannot read the value at line LINE, column 11 ('2024-13-45'): month must be in 1..12"),
    ("9" * 5000, "cannot read the value at line LINE, column 11 ('999999999999...9999999999999'): Exceeds the "
                 "limit (4300 digits) for integer string conversion: value has 5000 digits"),
])
def test_a_value_python_cannot_make_is_refused(tmp_path, value, fragment):
    line = next(i for i, text in enumerate(PAPER.read_text().splitlines(), 1) if text.startswith("  trials: null "))
    assert refused(tmp_path, paper_text("  trials: null ", f"  trials: {value} ")) == \
        fragment.replace("LINE", str(line))


@pytest.mark.parametrize(("changes", "fragment"), [
    ([(("architecture", "pool"), True), (("architecture", "stages"), {"low": 4, "high": 6}),
      (("training", "image_size"), [8, 12])],
     "the one that downsamples least, 4 stage(s) each with the 2x2 max-pool that pool: true requires, "
     "leaves no feature map at image_size 12"),
    ([(("architecture", "pool"), [True]), (("architecture", "last_block"), ["stride2"]),
      (("architecture", "stages"), 3), (("training", "image_size"), [16])],
     "3 stage(s) each with a stride-2 last block and the 2x2 max-pool that pool: true requires, "
     "leaves no feature map at image_size 16"),
])
def test_a_space_without_a_point_that_builds_is_refused(changes, fragment):
    with pytest.raises(SpaceError) as info:
        space_from_dict(with_changes(*changes), "nopoint.yaml")
    assert str(info.value).startswith("nopoint.yaml: architecture: no point of this space can be built: ")
    assert fragment in str(info.value)


def test_a_space_whose_least_downsampling_point_builds_loads():
    """Five stages with a pool each leave 1 px of 32 when no stage strides: the space loads,
    though most of its points (those with a stride) cannot be built."""
    space = space_from_dict(with_changes((("architecture", "pool"), True), (("architecture", "stages"), 5),
                                         (("training", "image_size"), [32])))
    study, built = random_study(), 0
    for _ in range(60):
        try:
            built += bool(suggest(space, study.ask()))
        except InvalidCandidate:
            pass
    assert built > 0


# ---------------------------------------------------------------------------
# properties: a mutated document loads or raises SpaceError, and what loads samples cleanly

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 600), st.floats(), st.text(max_size=6),
    st.sampled_from(["conv3x3", "dwsep", "gap", "plain", "stride2", "adam", "2h", "tpe", "random"]),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["low", "high", "log", "step", "x"]) | st.text(max_size=4), inner, max_size=4),
    max_leaves=8,
)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, prefix + (i,))


def _mutate(doc, data):
    path = data.draw(st.sampled_from(list(_paths(doc))))
    if not path:
        return data.draw(_values)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    action = data.draw(st.sampled_from(["replace", "delete", "add"]))
    if action == "replace":
        parent[path[-1]] = data.draw(_values)
    elif action == "delete":
        del parent[path[-1]]
    elif isinstance(parent[path[-1]], dict):
        key = data.draw(st.text(max_size=6) | st.sampled_from(["low", "high", "step", "log", "budget", "stages"]))
        parent[path[-1]][key] = data.draw(_values)
    elif isinstance(parent[path[-1]], list):
        parent[path[-1]].append(data.draw(_values))
    return doc


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_documents_load_or_raise_space_error(data):
    doc = copy.deepcopy(PAPER_DICT)
    for _ in range(data.draw(st.integers(1, 3))):
        doc = _mutate(doc, data)
    try:
        space = space_from_dict(doc, source="mutated.yaml")
    except SpaceError as e:
        assert str(e).startswith("mutated.yaml: ") and "\n" not in str(e)
        return
    study = random_study()
    for _ in range(3):
        try:
            suggest(space, study.ask())
        except InvalidCandidate:
            pass


@settings(max_examples=50, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_text_loads_or_raises_space_error(tmp_path, data):
    text = PAPER.read_text()
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(text)))
        if data.draw(st.booleans()):
            text = text[:at] + text[at + data.draw(st.integers(1, 20)):]
        else:
            insert = data.draw(st.sampled_from([":", "- ", "[", "{", "}", " ", "\n", "x", "0", "'", "&a ", "*a",
                                                "!!python/object:os.system ", "\t", "null", "[]", "{}"]))
            text = text[:at] + insert + text[at:]
    file = tmp_path / "fuzzed.yaml"
    file.write_text(text)
    try:
        load_space(file)
    except SpaceError as e:
        assert str(e).startswith(f"{file}: ") and "\n" not in str(e)


# ---------------------------------------------------------------------------
# The growing form (paper.yaml)


def test_paper_space_uses_the_growing_form(paper):
    arch = paper.architecture
    assert isinstance(arch, GrowingArchitecture) and arch.max_channels == 256
    assert arch.width.values() == [16, 24, 32, 48] and arch.growth.values() == [1.0, 1.5, 2.0]


@pytest.mark.parametrize("image_size", [8, 16, 32, 64])
def test_every_point_of_the_growing_form_builds_and_widths_never_shrink(paper, image_size):
    """Drawn at random, no point is invalid at any image size, and stage widths never shrink."""
    from castmodels import feature_size

    space = space_from_dict(with_paper_arch((("training", "image_size"), [image_size])))
    study = random_study()
    for _ in range(300):
        candidate = suggest(space, study.ask())  # InvalidCandidate would fail the test
        widths = [layer.out_channels for layer in candidate.arch.layers]
        assert widths == sorted(widths) and max(widths) <= 256
        assert feature_size(candidate.arch, image_size) >= 1


def test_presets_join_a_growing_space_as_fixed_architecture_trials(paper):
    trials = preset_trials(paper)
    assert sorted(trials) == sorted(PRESETS)
    for name, trial in trials.items():
        assert trial.arch == PRESETS[name]
        candidate = decode(paper, trial.params, trial.arch)  # the recipe params alone, and the fixed network
        assert same_network(candidate.arch, PRESETS[name])
        assert candidate.recipe.lr == TrainRecipe.named("default").lr  # trained with the space's recipe
    # a per-block space expresses them: they are points of it
    assert all(t.arch is None for t in preset_trials(space_from_dict(PAPER_DICT)).values())


def test_a_mixed_stage_is_depthwise_blocks_closed_by_a_3x3_block(paper):
    def point(blocks):
        return {"width": 32, "stages": 2, "s1_conv": "mixed", "s1_blocks": blocks, "s1_last": "dilation2",
                "s1_dropout": 0.05, "s1_pool": True, "s2_growth": 2.0, "s2_conv": "dwsep", "s2_blocks": 1,
                "s2_last": "plain", "s2_dropout": 0.0, "s2_pool": False, "head": "gap"}

    recipe = {"batch_size": 32, "lr": 3.0e-3, "class_balance": "none", "image_size": 32, "squeeze_excite": False,
              "mixup": 0.0, "aug_hflip": False, "optimizer": "adamw"}
    assert decode(paper, point(3) | recipe).arch.code() == "D32 D32 C32d2 X.05 P D64 A"
    assert decode(paper, point(1) | recipe).arch.code() == "C32d2 X.05 P D64 A"  # one block: the 3x3 block


NEAREST_CODES = {  # the point of paper.yaml nearest each preset, stage by stage
    "custom-140k-3x3": "C16 C16 X.06 P C32 C32 X.07 P C64 C64s2 X.07 P C128 A",
    "custom-140k-dw": "C16 C16 X.06 P D32 C32 X.07 P D64 C64d2 X.07 P D128 D128 X.05 D256 A",
    "custom-340k-3x3": "C32 C32 X.06 P C64 C64 X.07 P C96 C96s2 X.07 P C144 A",
    "custom-340k-dw": "C32 C32 X.06 P D64 C64 X.07 P D96 C96d2 X.07 P D192 D192 X.05 D256 D256 D256 X.02 A",
    "custom-590k-3x3": "C32 C32 C32 X.06 P C64 C64 X.07 P C128 C128s2 X.07 P C256 A",
    "custom-590k-dw": "C32 C32 X.03 D64 C64 X.03 P D96 C96d2 X.07 D192 D192 X.05 P D256 D256 D256 X.02 P A",
}


def test_each_presets_nearest_point_is_a_point_of_the_space_trained_with_the_presets_recipe(paper):
    trials = nearest_trials(paper)
    assert sorted(trials) == sorted(PRESETS)
    for name, params in trials.items():
        candidate = decode(paper, params)  # every searched value given, each admitted by the space
        assert candidate.arch.code() == NEAREST_CODES[name], name
        assert candidate.recipe.lr == TrainRecipe.named("default").lr
        # the stage plan of the preset: the same pools, so the same map sizes
        assert candidate.arch.downsampling == PRESETS[name].downsampling


def test_a_space_of_several_image_sizes_trains_every_preset_at_each(paper):
    space = space_from_dict(with_paper_arch((("training", "image_size"), [64, 32])))
    trials = preset_trials(space)
    assert sorted(trials) == sorted(f"{name}@{size}px" for name in PRESETS for size in (32, 64))
    for label, trial in trials.items():
        name, size = label.rsplit("@", 1)
        candidate = decode(space, trial.params, trial.arch)
        assert same_network(candidate.arch, PRESETS[name]) and f"{candidate.recipe.image_size}px" == size
    # the points nearest the presets are queued once, at the smallest size, under the presets' names
    nearest_points = nearest_trials(space)
    assert sorted(nearest_points) == sorted(PRESETS)
    assert {decode(space, p).recipe.image_size for p in nearest_points.values()} == {32}
    assert all(decode(space, p).arch.code() == NEAREST_CODES[n] for n, p in nearest_points.items())
    # one size: the presets keep their names, and train at that size even where it is not the recipe's
    assert sorted(preset_trials(paper)) == sorted(PRESETS)
    at64 = space_from_dict(with_paper_arch((("training", "image_size"), [64])))
    assert {decode(at64, t.params, t.arch).recipe.image_size for t in preset_trials(at64).values()} == {64}


def test_nearest_points_follow_what_the_space_offers(paper):
    # no mixed: a D32 C32 stage takes the first conv type of a tie; three stages at most: the
    # last three merge (majority depthwise, three blocks, any pool, the largest dropout); no
    # stage wider than max_channels
    doc = with_paper_arch((("architecture", "conv"), ["conv3x3", "dwsep"]),
                          (("architecture", "max_channels"), 48), (("architecture", "stages"), {"low": 2, "high": 3}))
    space = space_from_dict(doc)
    params = nearest(space, PRESETS["custom-140k-dw"])
    assert _decoded_arch(space, params).code() == "C16 C16 X.06 P C32 C32 X.07 P D48 D48 D48 X.07 P A"
    # a network with fewer stages than the space's least has no nearest point
    with pytest.raises(ValueError, match="fewer than the space's 2"):
        nearest(space, ArchSpec.from_code("C16 C16 A"))
    with pytest.raises(ValueError, match="growing form only"):
        nearest(space_from_dict(PAPER_DICT), PRESETS["custom-140k-3x3"])


def _decoded_arch(space, params):
    """The network ``params`` describe, with the sampler's share of the recipe filled in."""
    study = random_study()
    study.enqueue_trial(params)
    return suggest(space, study.ask()).arch


def test_seed_nearest_needs_the_growing_form():
    doc = copy.deepcopy(PAPER_DICT) | {"seed_nearest": True}  # the per-block form
    with pytest.raises(SpaceError, match="seed_nearest: needs the growing form"):
        space_from_dict(doc)
    assert load_space(PAPER).seed_nearest and not space_from_dict(PAPER_DICT).seed_nearest


@pytest.mark.parametrize(("architecture", "fragment"), [
    ({"channels": {"low": 16, "high": 64}}, r"architecture.channels: unknown key"),
    ({"growth": DELETE}, r"architecture.growth: required key is missing \(the growing form"),
    ({"growth": {"low": 0.5, "high": 2.0}}, r"architecture.growth.low: must be a number in \[1, 4\]"),
    ({"max_channels": [128, 256]}, r"architecture.max_channels: must be one integer, not a choice"),
])
def test_growing_form_errors_name_the_key(architecture, fragment):
    doc = yaml.safe_load(PAPER.read_text())
    for key, value in architecture.items():
        if value is DELETE:
            del doc["architecture"][key]
        else:
            doc["architecture"][key] = value
    with pytest.raises(SpaceError, match=fragment):
        space_from_dict(doc)


def with_paper_arch(*changes):
    """with_changes, on paper.yaml as it is (the growing form)."""
    doc = yaml.safe_load(PAPER.read_text())
    for path, value in changes:
        node = doc
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return doc


def test_data_resize_reaches_the_loader_and_is_checked(tmp_path):
    path = tmp_path / "s.yaml"
    text = PAPER.read_text().replace("resize: squash", "resize: pad")
    path.write_text(text)
    assert load_space(path).data.config(32).resize == "pad"
    path.write_text(text.replace("resize: pad", "resize: stretch"))
    with pytest.raises(SpaceError, match="data.resize"):
        load_space(path)


def test_the_demo_space_is_the_paper_space_cut_short():
    """spaces/demo.yaml (make demo) sets the keys paper.yaml sets, on the built-in data, with the
    presets as reference points, every later trial drawn by the sampler and a budget of minutes."""
    demo_file = PAPER.parent / "demo.yaml"
    assert set(yaml.safe_load(demo_file.read_text())) == set(yaml.safe_load(PAPER.read_text()))
    demo, paper = load_space(demo_file), load_space(PAPER)
    assert demo.data.source == "synthetic" and demo.seed_presets and not demo.seed_nearest
    assert demo.seeds == 1 and demo.max_epochs <= 2 and demo.budget.timeout_s <= 180
    assert demo.latency_runtime == paper.latency_runtime and demo.metric == paper.metric


def test_the_default_budget_is_thirty_minutes_of_wall_time(tmp_path):
    """No budget section, or one that gives neither trials nor timeout: 30 minutes, no trial
    count; paper.yaml states the same; a trial count only where one is given."""
    assert (Budget().trials, Budget().timeout_s) == (None, 1800.0)
    file = tmp_path / "stopping.yaml"
    file.write_text(yaml.safe_dump(with_changes((("budget",), {"early_stopping": "none"}))))
    space = load_space(file)
    assert (space.budget.trials, space.budget.timeout_s, space.budget.early_stopping) == (None, 1800.0, "none")
    paper = load_space(PAPER, overrides={("budget", "trials"): 40})
    assert (paper.budget.trials, paper.budget.timeout_s) == (40, 1800.0)
    assert load_space(PAPER, overrides={("budget", "timeout"): "35m"}).budget.timeout_s == 2100.0


def test_latency_retime_front_is_read_and_checked(tmp_path):
    assert load_space(PAPER).retime_front is True
    assert load_space(PAPER.parent / "demo.yaml").retime_front is False
    file = tmp_path / "bad.yaml"
    file.write_text(PAPER.read_text().replace("  retime_front: true ", "  retime_front: sometimes "))
    with pytest.raises(SpaceError, match=r"latency.retime_front: .*true or false"):
        load_space(file)


def test_seed_from_is_a_list_of_distinct_earlier_study_names():
    assert load_space(PAPER).seed_from == () and space_from_dict(PAPER_DICT).seed_from == ()
    doc = copy.deepcopy(PAPER_DICT) | {"seed_from": ["paper-v1", "paper_v2"]}
    assert space_from_dict(doc).seed_from == ("paper-v1", "paper_v2")
    for value, message in [("paper-v1", r"seed_from: must be a list of study names"),
                           (["ok", "../x"], r"seed_from\[1\]: a study name must match"),
                           ([3], r"seed_from\[0\]: must be a non-empty string"),
                           (["a", "a"], r"seed_from\[1\]: study names must be distinct, got 'a' twice"),
                           ([PAPER_DICT["study"]], r"seed_from\[0\]: .* is this space's own study")]:
        with pytest.raises(SpaceError, match=message):
            space_from_dict(copy.deepcopy(PAPER_DICT) | {"seed_from": value})


def test_a_network_becomes_this_spaces_point_itself_or_the_nearest():
    """point_of: the per-block form encodes the network itself, the growing form its nearest point."""
    per_block = space_from_dict(PAPER_DICT)
    arch = PRESETS["custom-140k-3x3"]
    assert decode(per_block, point_of(per_block, arch)).arch.code() == arch.code()
    growing = load_space(PAPER)
    assert all(point_of(growing, PRESETS[name]) == params for name, params in nearest_trials(growing).items())
    with pytest.raises(ValueError, match="fewer than the space's"):
        point_of(growing, ArchSpec.from_code("C16 A"))

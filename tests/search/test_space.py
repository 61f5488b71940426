"""The search-space file: paper.yaml and the presets as points of a space, encode and decode
between networks and Optuna params, validation errors that name the file and the key path, and
the other keys of the file (data.resize, the demo space, the default budget,
latency.retime_front, seed_from). The reader's bounds and the property tests are in
test_space_reader.py, the growing form of the architecture in test_space_growing.py."""

import copy
import json
import logging
import re
import subprocess
import sys
import warnings

import optuna
import pytest
import yaml

from castmodels import PRESETS, ArchSpec
from search.space import (
    Budget,
    Candidate,
    InvalidCandidate,
    SpaceError,
    decode,
    encode,
    load_space,
    parse_duration,
    preset_params,
    space_from_dict,
    suggest,
)
from search.training.recipe import TrainRecipe
from tests.search.space_helpers import (
    DELETE,
    PAPER,
    PAPER_DICT,
    random_study,
    same_network,
    with_changes,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def space():
    return space_from_dict(PAPER_DICT, "paper-per-block.yaml")


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
    assert (r.image_size, r.epochs, r.class_balance) == (32, 10, default.class_balance)
    assert r.enhancements == default.enhancements and r.augmentations == default.augmentations
    assert r.seed == 555 and r.channels == 3


def test_the_paper_recipe_trains_presets_the_paper_way(tmp_path):
    file = tmp_path / "paper-recipe.yaml"
    file.write_text(yaml.safe_dump({"architecture": PAPER_DICT["architecture"], "training": {"recipe": "paper"}}))
    r = decode(load_space(file), preset_params(load_space(file))["custom-590k-dw"]).recipe
    assert (r.optimizer, r.lr, r.batch_size, r.schedule, r.weight_decay) == ("adam", 1e-3, 32, "constant", 0.0)
    assert r.enhancements == () and r.augmentations == ()


def test_the_presets_class_balance_follows_the_metric():
    """The default recipe weights the loss for balanced accuracy; a space that ranks by plain
    accuracy trains its presets unweighted without a second key, unless it fixes the balance."""
    def presets_balance(*changes):
        space = space_from_dict(with_changes(*changes))
        return decode(space, preset_params(space)["custom-590k-dw"]).recipe.class_balance

    metric = (("objectives", "accuracy", "metric"), "accuracy")
    assert presets_balance() == "weighted_loss"
    assert presets_balance((("objectives", "accuracy", "metric"), "macro_f1")) == "weighted_loss"
    assert presets_balance(metric) == "none"
    assert presets_balance(metric, (("training", "class_balance"), "weighted_loss")) == "weighted_loss"
    plain = space_from_dict(with_changes(metric, (("training", "class_balance"), DELETE)))
    assert plain.training["class_balance"].values() == ["none"]  # what the file does not set, likewise


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
# the other keys of the file


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

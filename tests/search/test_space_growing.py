"""The growing form of the architecture (paper.yaml's): every point builds at every image size
with stage widths that never shrink, the presets join such a space as fixed-architecture trials
(at each image size), mixed stages, the point nearest each preset (nearest, nearest_trials,
point_of), seed_nearest, and the errors of the form's own keys."""

import copy

import optuna
import pytest
import yaml

from castmodels import PRESETS, ArchSpec
from search.space import (
    GrowingArchitecture,
    SpaceError,
    decode,
    load_space,
    nearest,
    nearest_trials,
    point_of,
    preset_trials,
    space_from_dict,
    suggest,
)
from search.training.recipe import TrainRecipe
from tests.search.space_helpers import DELETE, PAPER, PAPER_DICT, random_study, same_network

optuna.logging.set_verbosity(optuna.logging.WARNING)


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


def test_a_network_becomes_this_spaces_point_itself_or_the_nearest():
    """point_of: the per-block form encodes the network itself, the growing form its nearest point."""
    per_block = space_from_dict(PAPER_DICT)
    arch = PRESETS["custom-140k-3x3"]
    assert decode(per_block, point_of(per_block, arch)).arch.code() == arch.code()
    growing = load_space(PAPER)
    assert all(point_of(growing, PRESETS[name]) == params for name, params in nearest_trials(growing).items())
    with pytest.raises(ValueError, match="fewer than the space's"):
        point_of(growing, ArchSpec.from_code("C16 A"))

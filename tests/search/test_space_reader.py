"""The search-space reader's defences and the property tests. A bad file (nested too deep,
aliased endlessly, a key written twice, a step too fine, a number out of bounds, NaN or
infinity, over 1 MiB or too many nodes, a space with no point that builds) is a one-line
SpaceError naming the file before any study exists; a mutated document or text loads, and then
samples cleanly, or raises SpaceError. The raw-YAML fuzzing is test_space_fuzz.py's."""

import copy
import re

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search.space import InvalidCandidate, SpaceError, load_space, space_from_dict, suggest
from tests.search.space_helpers import PAPER, PAPER_DICT, _paths, random_study, with_changes

optuna.logging.set_verbosity(optuna.logging.WARNING)


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

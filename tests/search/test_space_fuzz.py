"""Fuzzing the search-space reader: paper.yaml's document with duplicated keys, deep nesting,
extreme numbers, wrong types and huge strings written into it as raw YAML either loads, and
then samples without crashing, or is refused with a one-line SpaceError naming the file.
Bounded in examples and sizes so the file runs in seconds."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import optuna
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search.space import InvalidCandidate, SpaceError, load_space, suggest
from tests.search.space_helpers import _paths

PAPER = Path(__file__).resolve().parents[2] / "spaces" / "paper.yaml"
PAPER_DICT = yaml.safe_load(PAPER.read_text())

optuna.logging.set_verbosity(optuna.logging.WARNING)

# Raw YAML, each one line, that a fuzzed file puts where a value was
_NUMBERS = [
    "1.0e+300", "-1.0e+300", "1.0e-300", "5.0e-324", ".nan", ".inf", "-.inf", "0", "-1", "1", "2", "0.5",
    "4294967295", "4294967296", "18446744073709551616", "9" * 5000, "-" + "9" * 400, "0x" + "f" * 40,
    "true", "false", "null", "''", "1e23", "1.0e+23", "2024-13-45", "2024-01-01", "190:20:30",
]
_SHAPES = [
    "[]", "{}", "[1, two]", "{low: 1}", "{low: 1, high: 2}", "{low: 0.0, high: 0.5, step: 1.0e-300}",
    "{low: 1, high: 100000000, log: true}", "{low: .nan, high: 1.0}", "{relative_to: custom-590k-dw, factor: .inf}",
    "[conv3x3, conv3x3]", "[16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 4096, 4097]",
    "&a [*a]", "*nowhere", "&b {x: &c [1, *b]}", "!!python/object/apply:os.getcwd []", "{? [1, 2]: 3}",
    '"line\\nbreak"', "{x: 1, x: 2}", "{1: a, 0x1: b}",
]
_snippets = st.one_of(
    st.sampled_from(_NUMBERS),
    st.sampled_from(_SHAPES),
    st.builds(lambda n: "[" * n + "]" * n, st.sampled_from([30, 31, 32, 33, 200, 1200])),
    st.builds(lambda n: "{a: " * n + "1" + "}" * n, st.sampled_from([30, 33, 1200])),
    st.builds(lambda n: "x" * n, st.sampled_from([1000, 100_000])),
    st.builds(lambda low, high, step: f"{{low: {low}, high: {high}, step: {step}}}",
              st.sampled_from(_NUMBERS), st.sampled_from(_NUMBERS), st.sampled_from(_NUMBERS)),
)
_keys = st.sampled_from(["low", "high", "step", "log", "stages", "budget", "", "a\nb", "x" * 300, 1, True, None])
_KEY_LINE = re.compile(r"^ *[A-Za-z_][\w-]*:( |$)")


def _mutated_text(data) -> str:
    """paper.yaml's document with one to three values replaced, or keys added, by raw YAML,
    and maybe a key line written twice."""
    doc = copy.deepcopy(PAPER_DICT)
    snippets = {}
    for i in range(data.draw(st.integers(1, 3))):
        marker = f"FUZZ{i}MARK"
        snippets[marker] = data.draw(_snippets)
        path = data.draw(st.sampled_from(list(_paths(doc))))
        if not path:
            doc = marker
            break
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if data.draw(st.booleans()) and isinstance(parent[path[-1]], dict):
            parent[path[-1]][data.draw(_keys)] = marker
        else:
            parent[path[-1]] = marker
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=10**6)
    for marker, snippet in snippets.items():
        text = text.replace(marker, snippet)
    lines = text.splitlines(keepends=True)
    key_lines = [i for i, line in enumerate(lines) if _KEY_LINE.match(line)]
    if key_lines and data.draw(st.booleans()):
        i = data.draw(st.sampled_from(key_lines))
        lines.insert(i + 1, lines[i] if lines[i].endswith("\n") else lines[i] + "\n")
    return "".join(lines)


def _assert_one_line_space_error(error: SpaceError, file: Path) -> None:
    message = str(error)
    assert type(error) is SpaceError
    assert message.startswith(f"{file}: "), message
    assert len(message.splitlines()) == 1 and "\n" not in message, message
    assert len(message) < 1000, message[:300]


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(st.data())
def test_a_mutated_space_file_loads_or_is_refused_in_one_line(tmp_path, data):
    file = tmp_path / "fuzzed.yaml"
    file.write_text(_mutated_text(data), encoding="utf-8")
    try:
        space = load_space(file)
    except SpaceError as e:
        _assert_one_line_space_error(e, file)
        return
    if space.data.channels == "auto" and space.data.source != "synthetic":
        space = space.with_channels(3)  # what the runner does once the images decided
    study = optuna.create_study(directions=space.directions, sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(2):  # what loads also samples: no error waits for the run
        try:
            suggest(space, study.ask())
        except InvalidCandidate:
            pass


def test_every_key_written_twice_is_refused(tmp_path):
    """Each key line of paper.yaml's document, written twice, is refused and named."""
    text = yaml.safe_dump(PAPER_DICT, sort_keys=False, default_flow_style=False, width=10**6)
    lines = text.splitlines(keepends=True)
    key_lines = [i for i, line in enumerate(lines) if _KEY_LINE.match(line)]
    assert len(key_lines) > 50
    file = tmp_path / "twice.yaml"
    for i in key_lines:
        file.write_text("".join(lines[:i + 1] + lines[i:]), encoding="utf-8")
        with pytest.raises(SpaceError, match="the key is written twice") as info:
            load_space(file)
        _assert_one_line_space_error(info.value, file)
        key = lines[i].split(":")[0].strip()
        assert f"{key}: the key is written twice, at line {i + 1}, " in str(info.value)

"""What chooses a network, and what it is judged against.

- The test split never chooses: a search run twice, the second time with the test labels
  shuffled, samples the same candidates and tells the study the same values; only the
  reported test figures change.
- The front flags a network that scores no better than always answering the most common
  class (on the objective's metric and split), in ``front_rows`` and in ``castsearch front``.
- ``majority_score`` per metric, and the space file's ``objectives.accuracy.metric``.
"""

from __future__ import annotations

import dataclasses
import json

import optuna
import pytest
import torch
from optuna.trial import TrialState

from search.cli import main
from search.data import DataConfig, Dataset, load_dataset
from search.latency.measure import LatencyResult, Measurement, count_macs, count_params
from search.latency.screen import Screen
from search.latency.timer import Timer
from search.run import runs
from search.run.searcher import StudySearcher
from search.run.worker import FINAL, OUTCOME
from search.space import SearchSpace, SpaceError, space_from_dict
from search.study import storage as studylib
from search.study.record import METRICS, TrialRecord, majority_score
from search.trial.config import KEY
from search.trial.pipeline import run_candidate

TRIALS = 6

ARCHITECTURE = {
    "stages": {"low": 1, "high": 2},
    "blocks_per_stage": {"low": 1, "high": 2},
    "channels": {"low": 4, "high": 16},
    "conv": ["conv3x3", "dwsep"],
    "last_block": ["plain", "stride2"],
    "dropout": 0.0,
    "pool": [True, False],
    "head": ["gap"],
}

# NSGA-II with a population of 2: from the third trial on, what it samples depends on the
# values the study was told, so a test label that leaked into a value would change a choice.
# The paper recipe in small batches: enough steps in one or two epochs that the networks
# stop answering one class, so their scores differ and a label shuffle moves their test figures.
SPACE = {
    "study": "selection",
    "seed_presets": False,
    "sampler": {"name": "nsga2", "seed": 3, "population_size": 2},
    "budget": {"trials": TRIALS},
    "architecture": ARCHITECTURE,
    "training": {"recipe": "paper", "epochs": [1, 2], "batch_size": 4, "lr": 0.003, "image_size": [16]},
}


# ---------------------------------------------------------------------------
# Helpers


def _fake_measure(model, input_shape, threads=1, batch_size=50, runtime="onnxruntime", onnx=None,
                  timing=None) -> Measurement:
    """A deterministic stand-in for search.latency.measure.measure: latency from the parameter count,
    so timing noise cannot change NSGA-II's picks between two runs."""
    params = count_params(model)
    latency_ms = 0.01 + params / 10_000
    return Measurement(params=params, macs=count_macs(model, input_shape), latency_ms=latency_ms,
                       latency_iqr_ms=0.0, batch_latency_ms=latency_ms * batch_size, batch_latency_iqr_ms=0.0,
                       batch_size=batch_size, threads=threads, runtime=runtime, eager_latency_ms=latency_ms)


def _fake_time_single(model, input_shape, threads=1, runtime="onnxruntime", onnx=None, spread=3,
                      timing=None) -> LatencyResult:
    """The driver's re-check of a trained network (search.latency.screen.Screen.recheck), as deterministic."""
    ms = 0.01 + count_params(model) / 10_000
    return LatencyResult(median_ms=ms, iqr_ms=0.0, q1_ms=ms, q3_ms=ms, runs=5, batch_size=1, threads=threads,
                         cpu_median_ms=ms, spread_ms=[ms] * spread)


def _searcher(tmp_path, name: str, space: SearchSpace) -> tuple[optuna.Study, StudySearcher]:
    """A StudySearcher on a fresh SQLite study, as run_search builds it, without Ray."""
    sampler = studylib.make_sampler(space.sampler.name, space.sampler.seed, space.sampler.population_size)
    study = studylib.open_study(name, f"sqlite:///{tmp_path}/{name}.db", sampler=sampler, metric=space.metric)
    run = runs.RunRecord(run_id=name, trials=TRIALS, timeout_s=None)
    screen = Screen(study, Timer(space.latency_runtime), num_classes=9)
    limits = {size: space.constraints for size in space.image_sizes}
    return study, StudySearcher(study, space, run, tmp_path / name, None, None, screen, limits)


def _search(tmp_path, name: str, space: SearchSpace, data: Dataset) -> optuna.Study:
    """What Tune does with the searcher, in process: suggest, run the candidate, report it final."""
    study, searcher = _searcher(tmp_path, name, space)
    for i in range(TRIALS):
        config = searcher.suggest(f"t{i}")[KEY]
        outcome = run_candidate(config.arch, config.recipe, data, out_dir=config.out_dir, metric=config.metric,
                                measurement=config.measurement)
        assert outcome.objective == getattr(outcome.validation, config.metric)
        searcher.on_trial_complete(f"t{i}", {FINAL: True, OUTCOME: outcome.provenance(data)})
    assert searcher.suggest("over") == "FINISHED"
    return study


def _with_shuffled_test_labels(data: Dataset, seed: int = 0) -> Dataset:
    generator = torch.Generator().manual_seed(seed)
    shuffled = data.test_y[torch.randperm(len(data.test_y), generator=generator)]
    assert (shuffled != data.test_y).any(), "the permutation must move some labels"
    return dataclasses.replace(data, test_y=shuffled)



@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Dataset:
    cache = tmp_path_factory.mktemp("selection-cache")
    return load_dataset(DataConfig(source="synthetic", image_size=16, synthetic_count=200), cache_dir=cache)


# ---------------------------------------------------------------------------
# The test split never chooses


def test_the_sampler_listens_to_the_told_values(tmp_path, monkeypatch):
    """The guard for the next test: under this space and seed, and its deterministic timings,
    telling other values changes what NSGA-II samples next (so equal picks there are not equal
    by construction)."""
    monkeypatch.setattr("search.latency.measure.measure", _fake_measure)
    monkeypatch.setattr("search.latency.measure.export_for_timing", lambda model, shape: None)
    space = space_from_dict(SPACE)

    def picks(name: str, accuracy_of) -> list[dict]:
        study, searcher = _searcher(tmp_path, name, space)
        for i in range(TRIALS):
            number = searcher.suggest(f"t{i}")[KEY].number
            study.tell(number, values=[accuracy_of(number), 1.0, 100.0])
        return [t.params for t in study.trials]

    rising, falling = picks("rising", lambda n: n / 100), picks("falling", lambda n: 1 - n / 100)
    assert rising[:2] == falling[:2]  # the first generation is random
    assert rising != falling


def test_permuting_the_test_labels_changes_no_choice(tmp_path, data, monkeypatch, one_thread):
    monkeypatch.setattr("search.latency.measure.measure", _fake_measure)
    monkeypatch.setattr("search.latency.measure.export_for_timing", lambda model, shape: None)
    monkeypatch.setattr("search.latency.measure.time_single", _fake_time_single)
    space = space_from_dict(SPACE)
    original = _search(tmp_path, "original", space, data).trials
    permuted = _search(tmp_path, "permuted", space, _with_shuffled_test_labels(data)).trials

    assert len(original) == len(permuted) >= TRIALS
    for a, b in zip(original, permuted, strict=True):
        assert (a.number, a.state, a.params) == (b.number, b.state, b.params)
        assert a.values == b.values, f"trial {a.number}"
        if a.state == TrialState.COMPLETE:
            for t in (a, b):
                assert (t.user_attrs["objective_metric"], t.user_attrs["objective_split"]) == (
                    space.metric, "validation")
                assert t.values[0] == t.user_attrs["validation"][space.metric]
    complete = [(a, b) for a, b in zip(original, permuted, strict=True) if a.state == TrialState.COMPLETE]
    assert len(complete) >= TRIALS - 1
    # The test is not vacuous: the networks' validation scores differ, so NSGA-II's later picks
    # depend on them; and the shuffle moved the test figures, the balanced accuracy among them,
    # so an objective read from the test split would have told the study other values.
    assert len({a.values[0] for a, _ in complete}) > 1
    assert any(a.user_attrs["test_accuracy"] != b.user_attrs["test_accuracy"] for a, b in complete)
    assert any(a.user_attrs["test_balanced_accuracy"] != b.user_attrs["test_balanced_accuracy"]
               for a, b in complete)


# ---------------------------------------------------------------------------
# The majority-class floor


CLASSES = ["crack", "pit", "scratch"]
DATA = {
    "source": "synthetic",
    "class_names": CLASSES,
    # balanced-accuracy floor: validation 1/3 (three classes present), test 1/2 (two present);
    # accuracy floor on validation: 0.8. Trial 1's 0.4 clears only the right one.
    "class_counts": {"train": [40, 5, 5], "val": [8, 1, 1], "test": [5, 5, 0]},
}


def _front_trial(balanced_accuracy: float, latency_ms: float, params: float) -> optuna.trial.FrozenTrial:
    record = TrialRecord(
        arch_code="C8 A", enhancements="none", objective_metric="balanced_accuracy", objective_split="validation",
        validation={"balanced_accuracy": balanced_accuracy}, test_accuracy=0.5, test_balanced_accuracy=0.5,
        macro_f1=0.3, per_class_recall={"crack": 1.0, "pit": 0.0, "scratch": 0.0}, data=DATA,
    )
    return optuna.trial.create_trial(values=[balanced_accuracy, latency_ms, params], user_attrs=record.attrs())


def test_front_flags_a_network_no_better_than_the_majority_class(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path}/m.db"
    study = studylib.open_study("m", storage)
    study.add_trial(_front_trial(1 / 3, latency_ms=0.5, params=100.0))  # fast, small, useless
    study.add_trial(_front_trial(0.4, latency_ms=2.0, params=1000.0))

    rows = {r["trial"]: r for r in studylib.front_rows(study)}
    assert set(rows) == {0, 1}
    assert all(r["val_majority_balanced_accuracy"] == pytest.approx(1 / 3) for r in rows.values())
    assert all(r["objective"] == "val_balanced_accuracy" for r in rows.values())
    assert all((r["metric"], r["split"]) == ("balanced_accuracy", "validation") for r in rows.values())
    assert rows[0]["no_better_than_majority"] is True
    assert rows[1]["no_better_than_majority"] is False

    args = ["--study", "m", "--storage", storage]
    assert main(["front", *args]) == 0
    flagged = [line for line in capsys.readouterr().out.splitlines() if line.startswith("!")]
    assert len(flagged) == 1
    assert "most common class" in flagged[0] and "val_balanced_accuracy 0.3333" in flagged[0]

    assert main(["front", "--json", *args]) == 0
    printed = {r["trial"]: r for r in json.loads(capsys.readouterr().out)}
    assert printed[0]["no_better_than_majority"] is True and printed[1]["no_better_than_majority"] is False
    assert printed[0]["val_majority_balanced_accuracy"] == pytest.approx(1 / 3)


def test_majority_score_per_metric():
    assert majority_score([8, 1, 1], "accuracy") == pytest.approx(0.8)
    assert majority_score([2, 2], "accuracy") == pytest.approx(0.5)
    assert majority_score([8, 1, 1], "balanced_accuracy") == pytest.approx(1 / 3)
    assert majority_score([8, 2, 0], "balanced_accuracy") == pytest.approx(1 / 2)  # empty classes do not count
    # macro-F1: the majority class has precision p = its share and recall 1, the others F1 0
    assert majority_score([8, 1, 1], "macro_f1") == pytest.approx(2 * 0.8 / 1.8 / 3)
    assert majority_score([5, 5], "macro_f1") == pytest.approx(2 * 0.5 / 1.5 / 2)
    with pytest.raises(ValueError, match="unknown metric 'recall'") as e:
        majority_score([8, 1, 1], "recall")
    assert all(metric in str(e.value) for metric in METRICS)


# ---------------------------------------------------------------------------
# The space's objective metric


def _space(objectives: dict | None = None) -> SearchSpace:
    doc = {"architecture": ARCHITECTURE}
    if objectives is not None:
        doc["objectives"] = objectives
    return space_from_dict(doc)


def test_space_metric_is_validated():
    rest = {"latency_ms": "minimize", "params": "minimize"}
    assert _space({"accuracy": {"metric": "macro_f1"}, **rest}).metric == "macro_f1"
    assert _space().metric == "balanced_accuracy"

    with pytest.raises(SpaceError, match=r"objectives\.accuracy\.metric") as e:
        _space({"accuracy": {"metric": "recall"}, **rest})
    assert "recall" in str(e.value) and all(metric in str(e.value) for metric in METRICS)

    with pytest.raises(SpaceError, match=r"objectives\.accuracy\.direction: must be 'maximize'") as e:
        _space({"accuracy": {"metric": "accuracy", "direction": "minimize"}, **rest})
    assert "minimize" in str(e.value)

"""objectives.accuracy.seeds: a trial trained to its last epoch is trained again with the next
seeds and ranked by the mean; ``confirm`` then draws seeds the search did not use."""

from __future__ import annotations

import dataclasses
import json
import statistics

import optuna
import pytest

from castmodels import ArchSpec
from search.data import DataConfig, load_dataset
from search.latency.screen import Screen
from search.latency.timer import Timer
from search.run import runs
from search.run.confirm import new_seeds
from search.run.searcher import StudySearcher
from search.space import SpaceError, space_from_dict
from search.study import storage as studylib
from search.study.record import Limits, TrialRecord
from search.training.recipe import TrainRecipe
from search.trial.config import KEY
from search.trial.pipeline import run_candidate

ARCH = ArchSpec.from_code("C8 C16s2 A")
SPACE = {
    "study": "seeds",
    "seed_presets": False,
    "architecture": {"stages": {"low": 1, "high": 2}, "blocks_per_stage": 1, "channels": {"low": 4, "high": 8},
                     "conv": ["conv3x3"], "last_block": ["plain"], "dropout": 0.0, "pool": [True],
                     "head": ["gap"]},
    "training": {"epochs": 1, "image_size": [16]},
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    cache = tmp_path_factory.mktemp("seeds-cache")
    return load_dataset(DataConfig(source="synthetic", image_size=16, synthetic_count=120), cache_dir=cache)



def _recipe(**changes) -> TrainRecipe:
    return dataclasses.replace(TrainRecipe.named("paper", epochs=1, batch_size=16, image_size=16, channels=3, seed=5), **changes)


def test_the_space_reads_seeds_and_refuses_what_is_out_of_range():
    assert space_from_dict(SPACE).seeds == 1
    with_seeds = {**SPACE, "objectives": {"accuracy": {"metric": "accuracy", "seeds": 3},
                                          "latency_ms": "minimize", "params": "minimize"}}
    assert space_from_dict(with_seeds).seeds == 3
    for bad in (0, 11, "two", 1.5):
        with_seeds["objectives"]["accuracy"]["seeds"] = bad
        with pytest.raises(SpaceError, match=r"objectives\.accuracy\.seeds"):
            space_from_dict(with_seeds)


def test_a_fully_trained_candidate_is_ranked_by_the_mean_of_its_seeds(data, one_thread, tmp_path):
    outcome = run_candidate(ARCH, _recipe(), data, seeds=3, metric="accuracy")
    runs_ = outcome.seed_runs
    assert [r["seed"] for r in runs_] == [5, 6, 7]
    assert runs_[0]["validation"] == outcome.validation.accuracy  # the first seed's network is the one kept
    assert runs_[0]["test_accuracy"] == outcome.evaluation.accuracy
    assert runs_[0]["test_worst_class_recall"] == min(outcome.evaluation.per_class_recall.values())
    assert outcome.objective == pytest.approx(statistics.fmean(r["validation"] for r in runs_))
    # each further seed is a training from scratch, the same as a trial run with that seed
    again = run_candidate(ARCH, _recipe(seed=6), data, metric="accuracy")
    assert again.objective == pytest.approx(runs_[1]["validation"])
    assert again.evaluation.accuracy == pytest.approx(runs_[1]["test_accuracy"])

    # the study is told the mean, and the trial keeps every seed's figures
    study = studylib.open_study("seeds", f"sqlite:///{tmp_path}/seeds.db")
    trial = study.ask()
    studylib.tell_outcome(study, trial, TrialRecord(arch=ARCH.to_dict(), recipe=_recipe().to_dict()),
                          outcome.provenance(data), Limits())
    stored = study.trials[0]
    assert stored.values[0] == pytest.approx(outcome.objective)
    assert TrialRecord.read(stored).seed_runs == json.loads(json.dumps(runs_))
    assert new_seeds(TrialRecord.read(stored), 2) == [8, 9]  # confirm draws seeds the search did not use


def test_a_trial_stopped_early_is_not_trained_again(data, one_thread):
    outcome = run_candidate(ARCH, _recipe(epochs=2), data, seeds=3,
                            on_epoch=lambda epoch, score: True)
    assert outcome.stopped_early and outcome.seed_runs == []
    assert outcome.objective == outcome.validation.balanced_accuracy


def test_one_seed_keeps_the_single_training(data, one_thread):
    outcome = run_candidate(ARCH, _recipe(), data)
    assert outcome.seed_runs == [] and TrialRecord(recipe=_recipe().to_dict()).seed_runs is None
    assert new_seeds(TrialRecord(recipe=_recipe().to_dict()), 2) == [6, 7]


def test_the_driver_hands_the_seeds_to_every_trial(tmp_path):
    space = space_from_dict({**SPACE, "objectives": {"accuracy": {"seeds": 2}, "latency_ms": "minimize",
                                                     "params": "minimize"}})
    study = studylib.open_study("seeds", f"sqlite:///{tmp_path}/drive.db", sampler=optuna.samplers.RandomSampler(0))
    searcher = StudySearcher(study, space, runs.RunRecord(run_id="r", trials=2, timeout_s=None), tmp_path, None,
                             None, Screen(study, Timer(space.latency_runtime), num_classes=3),
                             {16: space.constraints})
    assert searcher.suggest("t0")[KEY].seeds == 2


def test_seeds_for_is_read_and_front_needs_extra_seeds():
    objectives = {"accuracy": {"seeds": 2}, "latency_ms": "minimize", "params": "minimize"}
    assert space_from_dict({**SPACE, "objectives": objectives}).seeds_for == "finished"
    objectives["accuracy"]["seeds_for"] = "front"
    assert space_from_dict({**SPACE, "objectives": objectives}).seeds_for == "front"
    objectives["accuracy"]["seeds_for"] = "best"
    with pytest.raises(SpaceError, match=r"objectives\.accuracy\.seeds_for"):
        space_from_dict({**SPACE, "objectives": objectives})
    objectives["accuracy"] = {"seeds": 1, "seeds_for": "front"}
    with pytest.raises(SpaceError, match=r"objectives\.accuracy\.seeds_for: 'front' .* needs seeds of 2"):
        space_from_dict({**SPACE, "objectives": objectives})


def test_repeat_if_decides_whether_the_further_seeds_are_trained(data, one_thread):
    seen = []
    kept = run_candidate(ARCH, _recipe(), data, seeds=3,
                         repeat_if=lambda o: seen.append(o.objective) or False)
    assert kept.seed_runs == [] and seen == [kept.validation.balanced_accuracy]
    assert kept.objective == kept.validation.balanced_accuracy  # one training, its own figure
    retrained = run_candidate(ARCH, _recipe(), data, seeds=3, repeat_if=lambda o: True)
    assert [r["seed"] for r in retrained.seed_runs] == [5, 6, 7]


def test_the_further_seeds_stop_once_the_mean_so_far_would_not_join(data, one_thread):
    asked = []

    def repeat_if(outcome):  # yes to the first training and to the mean of two, no to the mean of three
        asked.append((len(outcome.seed_runs), outcome.objective))
        return len(asked) < 3

    raced = run_candidate(ARCH, _recipe(), data, seeds=5, repeat_if=repeat_if)
    assert [r["seed"] for r in raced.seed_runs] == [5, 6, 7]
    assert [n for n, _ in asked] == [0, 2, 3]  # asked of the first training, then of each mean before a next seed
    first, second, third = (r["validation"] for r in raced.seed_runs)
    assert asked[1][1] == pytest.approx((first + second) / 2)
    assert asked[2][1] == pytest.approx((first + second + third) / 3) == pytest.approx(raced.objective)


def test_only_a_first_training_that_joins_the_front_is_retrained():
    from search.latency.measure import Measurement
    from search.run.worker import joins_front
    from search.training.train import EvalResult
    from search.trial.pipeline import TrialOutcome

    def outcome(accuracy: float, latency: float, params: int) -> TrialOutcome:
        m = Measurement(params=params, macs=0, latency_ms=latency, latency_iqr_ms=0.0,
                        batch_latency_ms=latency * 50, batch_latency_iqr_ms=0.0, batch_size=50, threads=1)
        v = EvalResult(accuracy=accuracy, balanced_accuracy=accuracy, macro_f1=accuracy, per_class_recall={},
                       confusion=[])
        return TrialOutcome(measurement=m, feasible=True, validation=v)

    front = [[0.90, 0.5, 500_000.0], [0.80, 0.1, 50_000.0]]
    assert joins_front(outcome(0.92, 0.6, 600_000), front)  # more accurate than all
    assert joins_front(outcome(0.85, 0.2, 40_000), front)  # smaller than the small one
    assert not joins_front(outcome(0.85, 0.6, 600_000), front)  # behind 0.90 everywhere
    assert not joins_front(outcome(0.79, 0.1, 50_000), front)  # behind the small one by a hair
    assert not joins_front(outcome(0.85, 0.2, 40_000), front, min_accuracy=0.86)  # on the front, below the floor
    assert joins_front(outcome(0.92, 0.6, 600_000), front, min_accuracy=0.86)
    assert joins_front(outcome(0.80, 0.1, 50_000), front)  # a tie is not dominated: it joins the front
    assert joins_front(outcome(0.10, 9.0, 10**6), [])  # and the first trial always does


def test_the_driver_hands_the_front_only_when_seeds_are_for_the_front(tmp_path):
    def searcher(seeds_for: str, name: str, trials: int = 2) -> StudySearcher:
        space = space_from_dict({**SPACE, "objectives": {"accuracy": {"seeds": 2, "seeds_for": seeds_for},
                                                         "latency_ms": "minimize", "params": "minimize"}})
        study = studylib.open_study(name, f"sqlite:///{tmp_path}/{name}.db",
                                    sampler=optuna.samplers.RandomSampler(0))
        for values in ([0.9, 0.5, 5000.0], [0.8, 0.1, 900.0], [0.7, 0.6, 6000.0]):  # the last is dominated
            study.add_trial(optuna.trial.create_trial(values=values, constraints={"params": -1.0}))
        return StudySearcher(study, space, runs.RunRecord(run_id="r", trials=trials, timeout_s=None), tmp_path, None,
                             None, Screen(study, Timer(space.latency_runtime), num_classes=3),
                             {16: space.constraints})

    assert searcher("finished", "all").suggest("t0")[KEY].front is None
    assert searcher("front", "front").suggest("t0")[KEY].front == ((0.9, 0.5, 5000.0), (0.8, 0.1, 900.0))

    # a preset trains with every seed whatever the front (no front handed, so nothing to join);
    # it and a seeded nearest point are never stopped early; a sampled trial is neither
    s = searcher("front", "queued", trials=3)
    s.study.enqueue_trial({}, user_attrs=TrialRecord(preset="custom-140k-3x3").attrs())
    s.study.enqueue_trial({}, user_attrs=TrialRecord(near_preset="custom-140k-3x3").attrs())
    preset, near, sampled = (s.suggest(f"t{i}")[KEY] for i in range(3))
    assert preset.front is None and preset.protect
    assert near.front == sampled.front == ((0.9, 0.5, 5000.0), (0.8, 0.1, 900.0))
    assert near.protect and not sampled.protect


def test_the_front_says_which_accuracies_are_means_over_seeds(capsys):
    from search.cli import print_front

    row = {"objective": "val_balanced_accuracy", "metric": "balanced_accuracy", "split": "validation",
           "latency_runtime": "onnxruntime", "latency_retimed": True, "no_better_than_majority": False,
           "test_accuracy": 0.9, "test_worst_class_recall": None, "preset": None, "trial": 1,
           "val_balanced_accuracy": 0.91, "latency_ms": 0.2, "params": 1000, "arch": "C8 A", "enhancements": "none",
           "val_majority_balanced_accuracy": 0.5}
    print_front([{**row, "seed_runs": [{}, {}, {}]}, {**row, "trial": 2, "seed_runs": [{}, {}]}, {**row, "trial": 3}])
    assert "the mean over 2/3 trainings with different seeds (objectives.accuracy.seeds), the others one training" \
        in capsys.readouterr().out
    print_front([{**row, "seed_runs": [{}, {}, {}]}, {**row, "trial": 4, "image_size": 64, "seed_runs": [{}, {}, {}]}])
    out = capsys.readouterr().out
    assert "the others" not in out
    assert out.splitlines()[0].split()[-4:] == ["params", "px", "architecture", "[enhancements]"]
    assert "1,000   64  C8 A" in out and "1,000    -  C8 A" in out  # each network's image size, - where unknown

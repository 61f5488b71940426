"""What a run queues before its sampler: the presets once per study (and once more when a
crash lost one), the points of the space nearest them (seed_nearest), every preset at each
image size of the space, and an earlier study's front (seed_from), refused when that study is
not in the storage."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState, create_trial

from castmodels import PRESETS, ArchSpec
from search.latency.timer import Timer
from search.run import runner, runs
from search.space import load_space, point_of
from search.study import storage as studylib
from search.study.record import CONSTRAINT_NAMES, TrialRecord
from tests.search.infra_helpers import REPO
from tests.search.runs_helpers import _study

# the order the presets are queued in: the most multiply-adds per image first (runs.dearest_first;
# `castsearch models`: 91M, 37M, 24.7M, 24.2M, 9.2M and 8.4M at 32 px)
DEAREST = ["custom-590k-dw", "custom-590k-3x3", "custom-340k-3x3", "custom-340k-dw", "custom-140k-dw", "custom-140k-3x3"]


def _presets(study) -> list[str]:
    return sorted(TrialRecord.read(t).preset for t in study.trials if TrialRecord.read(t).preset)


def test_presets_are_queued_once_even_after_a_driver_died_while_queueing(tmp_path):
    study, url = _study(tmp_path)
    space = load_space(REPO / "spaces" / "paper.yaml")
    everything = runs.preset_trials(space)
    # a driver queued two presets and was killed before the rest
    for name in list(everything)[:2]:
        p = everything[name]
        study.enqueue_trial(p.params, user_attrs=TrialRecord(
            preset=name, preset_arch=p.arch.to_dict() if p.arch else None).attrs())
    assert runs.enqueue_presets(study, space, url) == len(PRESETS) - 2
    assert _presets(study) == sorted(PRESETS)  # each once
    assert runs.enqueue_presets(study, space, url) == 0
    assert _presets(study) == sorted(PRESETS)


def test_the_presets_nearest_points_follow_them_in_the_queue_once(tmp_path):
    """seed_nearest: after the six presets (the dearest to train first, so the last to start
    is short), the space's point nearest each, as searched trials (no preset name: they are the
    search's own; like the presets, never stopped early); once per study."""
    study, url = _study(tmp_path)
    space = load_space(REPO / "spaces" / "paper.yaml")
    assert runs.enqueue_presets(study, space, url) == len(PRESETS)
    records = [TrialRecord.read(t) for t in study.trials]
    assert [r.preset for r in records[:len(PRESETS)]] == DEAREST
    assert [r.near_preset for r in records[len(PRESETS):]] == list(PRESETS)
    assert all(r.preset is None and r.preset_arch is None for r in records[len(PRESETS):])
    near = study.trials[len(PRESETS)]
    assert near.system_attrs["fixed_params"] == runs.nearest_trials(space)[near.user_attrs["near_preset"]]
    assert runs.enqueue_presets(study, space, url) == 0 and len(study.trials) == 2 * len(PRESETS)
    # without seed_nearest, only the presets
    plain = load_space(REPO / "spaces" / "paper.yaml", overrides={("seed_nearest",): False, ("study",): "p"})
    other, other_url = _study(tmp_path, "p")
    runs.enqueue_presets(other, plain, other_url)
    assert all(TrialRecord.read(t).near_preset is None for t in other.trials) and len(other.trials) == len(PRESETS)


def test_a_space_of_two_image_sizes_queues_every_preset_at_each_once(tmp_path):
    """image_size: [32, 64]: twelve presets (each named with its size), the dearest first (a
    preset at 64 px costs about four times its 32-px self), then the six nearest points at 32
    px; nothing again on the next run; the plan line says so."""
    from search.cli.printing import format_plan

    study, url = _study(tmp_path)
    space = load_space(REPO / "spaces" / "paper.yaml", overrides={("training", "image_size"): [32, 64]})
    assert runs.enqueue_presets(study, space, url) == 2 * len(PRESETS)
    assert _presets(study) == sorted(f"{name}@{size}px" for name in PRESETS for size in (32, 64))
    assert len(study.trials) == 3 * len(PRESETS)
    queued = [TrialRecord.read(t).preset for t in study.trials[:2 * len(PRESETS)]]
    assert queued[:5] == [f"{name}@64px" for name in DEAREST[:4]] + ["custom-590k-dw@32px"]
    assert queued[-1] == "custom-140k-3x3@32px"
    opts = runner.RunOptions(study_name=study.study_name, storage=url, trials=None, timeout_s=1800.0, workers=2)
    plan = runner.run_plan(study, space, opts, None, 1800.0, Timer(space.latency_runtime))
    assert "the paper's 6 presets at each of 32, 64 px first (3 seeds each)" in format_plan(plan)
    assert runs.enqueue_presets(study, space, url) == 0 and len(study.trials) == 3 * len(PRESETS)


def test_a_preset_lost_with_its_driver_is_queued_once_more(tmp_path):
    study, url = _study(tmp_path)
    space = load_space(REPO / "spaces" / "paper.yaml")
    runs.enqueue_presets(study, space, url)
    started = {t.user_attrs["preset"]: t for t in (study.ask() for _ in PRESETS)}  # the queue, running
    # one preset's driver died; another preset's training raised; the rest finished
    errors = {"custom-140k-3x3": "its run's driver died while it was running",
              "custom-590k-dw": "ValueError: bad input\nTraceback ..."}
    for name, trial in started.items():
        if name in errors:
            trial.set_user_attr("error", errors[name])
            study.tell(trial, state=TrialState.FAIL)
        else:
            study.tell(trial, values=[0.8, 1.0, 1000.0])
    assert runs.enqueue_presets(study, space, url) == 1
    again = [t for t in study.trials if t.user_attrs.get("preset") == "custom-140k-3x3"]
    assert [t.state for t in again] == [TrialState.FAIL, TrialState.WAITING]
    # lost a second time: not queued a third
    retry = study.ask()
    retry.set_user_attr("error", "its run's driver died while it was running")
    study.tell(retry, state=TrialState.FAIL)
    assert runs.enqueue_presets(study, space, url) == 0


def _trained(study, code: str, values: list[float]) -> None:
    """A COMPLETE trial within the limits that trained the network ``code``."""
    study.add_trial(create_trial(state=TrialState.COMPLETE, values=values,
                                 user_attrs={"arch": ArchSpec.from_code(code).to_dict()},
                                 constraints={name: 0.0 for name in CONSTRAINT_NAMES}))


def test_an_earlier_studys_front_follows_the_presets_and_their_nearest_points_once(tmp_path):
    """seed_from: each front network of the earlier study joins as this space's nearest point,
    after the presets and their nearest points, marked with its study and trial; a network
    with no point here, a point already queued and a network off the front are not queued."""
    url = f"sqlite:///{tmp_path}/s.db"
    old = studylib.open_study("old", url)
    wide = "C16 C16 P C32 C32 P C64 C64 P C128 C128 P C256 A"
    _trained(old, wide, [0.95, 3.0, 500_000])  # on the front: queued
    _trained(old, PRESETS["custom-140k-3x3"].code(), [0.90, 2.0, 140_000])  # its point seed_nearest queued
    _trained(old, "C16 A", [0.80, 1.0, 10_000])  # one stage: not a point of this space
    _trained(old, "C16 P D32 P D64 P D128 A", [0.50, 5.0, 900_000])  # dominated: off the front
    space = load_space(REPO / "spaces" / "paper.yaml", overrides={("seed_from",): ["old"]})
    assert space.seed_from == ("old",)
    study = studylib.open_study("s", url)
    assert runs.enqueue_presets(study, space, url) == len(PRESETS)
    records = [TrialRecord.read(t) for t in study.trials]
    assert [r.preset for r in records[:len(PRESETS)]] == DEAREST
    assert all(r.near_preset for r in records[len(PRESETS):-1])
    assert [r.seeded_from for r in records] == [None] * (len(records) - 1) + ["old#0"]
    assert records[-1].preset is None and records[-1].near_preset is None
    assert study.trials[-1].system_attrs["fixed_params"] == point_of(space, ArchSpec.from_code(wide))
    assert point_of(space, PRESETS["custom-140k-3x3"]) in runs.nearest_trials(space).values()
    # a later run queues nothing twice
    assert runs.enqueue_presets(study, space, url) == 0 and len(study.trials) == len(records)


def test_a_seed_from_study_that_is_not_in_the_storage_is_refused_before_anything_is_queued(tmp_path):
    study, url = _study(tmp_path)
    space = load_space(REPO / "spaces" / "paper.yaml", overrides={("seed_from",): ["nope"]})
    with pytest.raises(ValueError, match=r"paper.yaml: seed_from: no study 'nope' in .*\(studies there: s\)"):
        runs.enqueue_presets(study, space, url)
    assert study.trials == []
    with pytest.raises(ValueError, match="seed_from: no study 'nope'"):
        runs.seed_fronts(space, url)

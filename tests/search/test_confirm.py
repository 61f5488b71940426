"""castsearch confirm: the front and the presets retrained with other seeds, summarised and shown."""

from __future__ import annotations

import json
import shutil
import statistics

import optuna
import pytest

from search.cli import main
from search.run.confirm import summarise, t95, trials_to_confirm
from search.study import storage as studylib


def test_summary_is_mean_sd_and_a_t_interval():
    s = summarise([0.8, 0.9, 1.0])
    assert s["mean"] == pytest.approx(0.9) and s["std"] == pytest.approx(0.1)
    half = 4.303 * 0.1 / 3 ** 0.5  # t(0.975, 2 df)
    assert s["ci95"] == pytest.approx([0.9 - half, 1.0])  # 0.9 + half > 1: a fraction's interval stops at 1
    assert t95(1) == 12.706 and t95(12) == 2.228 and t95(100) == 1.96
    assert summarise([0.5, 0.6, 0.7])["ci95"] == pytest.approx([0.6 - 4.303 * 0.1 / 3 ** 0.5,
                                                                0.6 + 4.303 * 0.1 / 3 ** 0.5])
    with pytest.raises(ValueError, match="at least 2 runs"):
        t95(0)


def test_confirm_retrains_front_and_presets_and_front_shows_it(tiny_study, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CASTSEARCH_CACHE", str(tiny_study.cache))
    shutil.copy(tiny_study.root / "tiny.db", tmp_path / "tiny.db")  # the shared fixture stays untouched
    args = ["--study", "tiny", "--storage", f"sqlite:///{tmp_path}/tiny.db"]
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/tiny.db")
    chosen = {r.number for r in trials_to_confirm(study)}
    assert chosen == {t.number for t in studylib.pareto_front(study)} | {0}  # trial 0 is the fixture's preset

    assert main(["confirm", *args, "--seeds", "2", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert f"confirming {len(chosen)} trial(s)" in out and "confirmed with other seeds" in out

    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/tiny.db")
    for number in chosen:
        summary = studylib.confirmed(study, number)
        runs = summary["objective"]["runs"]
        assert summary["seeds"] == [1, 2] and len(runs) == 2  # the trials trained with seed 0
        assert summary["objective"]["mean"] == pytest.approx(statistics.fmean(runs))
        assert all(0.0 <= v <= 1.0 for v in runs + summary["test_accuracy"]["runs"]
                   + summary["test_worst_class_recall"]["runs"])
        assert all(w <= t for w, t in zip(summary["test_worst_class_recall"]["runs"],
                                          summary["test_accuracy"]["runs"], strict=True))

    assert main(["front", "--json", *args]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["objective"] == "val_balanced_accuracy" for r in rows)
    assert all({"val_balanced_accuracy_mean", "val_balanced_accuracy_std", "val_balanced_accuracy_ci95",
                "test_accuracy_mean", "test_worst_class_recall_mean", "seeds"} <= set(r) for r in rows)


def test_confirm_needs_two_seeds(tiny_study, cli_error):
    assert "at least 2" in cli_error(["confirm", *tiny_study.args(), "--seeds", "1"])


def test_top_keeps_the_most_accurate_searched_front_trials_and_every_preset(contested, tiny_study, cli_error):
    # contested: presets #0 and #1; searched front #2 (most accurate), #5, #3, #4; #3 is #0's challenger
    everything = trials_to_confirm(contested)
    assert sorted(r.number for r in everything) == [0, 1, 2, 3, 4, 5]
    top = trials_to_confirm(contested, top=2)
    assert sorted(r.number for r in top if not r.preset) == [2, 3, 5]  # the two most accurate and #0's challenger
    assert {r.number for r in top if r.preset} == {0, 1}
    assert {r.number for r in trials_to_confirm(contested, top=99)} == {r.number for r in everything}
    assert "--top must be at least 1, got 0" in cli_error(["confirm", *tiny_study.args(), "--top", "0"])


def _stored(values, preset=None, seed=7):
    """A trained, feasible COMPLETE trial as a study stores it (no weights on disk: nothing
    here loads them)."""
    from optuna.trial import TrialState, create_trial

    from search.study.record import CONSTRAINT_NAMES
    from search.training.recipe import TrainRecipe

    attrs = {"weights_path": "unused.pt", "recipe": TrainRecipe(seed=seed).to_dict(),
             "objective_metric": "balanced_accuracy", "objective_split": "validation"}
    if preset:
        attrs["preset"] = preset
    return create_trial(state=TrialState.COMPLETE, values=values, user_attrs=attrs,
                        constraints={name: 0.0 for name in CONSTRAINT_NAMES})


@pytest.fixture
def contested(tmp_path):
    """Two presets and four searched trials: #2 is the most accurate; #3 alone dominates the
    small preset #0, and #4 dominates it too but is less accurate; nothing dominates #1."""
    study = studylib.open_study("contested", f"sqlite:///{tmp_path}/c.db")
    for values, preset in [([0.80, 0.20, 140_000], "custom-140k-3x3"), ([0.95, 1.30, 590_000], "custom-590k-dw"),
                           ([0.93, 0.90, 300_000], None), ([0.85, 0.10, 60_000], None),
                           ([0.82, 0.05, 30_000], None), ([0.90, 0.50, 200_000], None)]:
        study.add_trial(_stored(values, preset))
    return study


def test_top_adds_each_presets_challenger_chosen_before_retraining(contested):
    from search.run.confirm import challengers

    chosen = trials_to_confirm(contested, top=1)
    assert sorted(r.number for r in chosen) == [0, 1, 2, 3]  # presets, the most accurate, #0's challenger
    beat = challengers(trials_to_confirm(contested))
    assert {name: r.number for name, r in beat.items()} == {"custom-140k-3x3": 3}
    assert sorted(r.number for r in trials_to_confirm(contested)) == [0, 1, 2, 3, 4, 5]


def test_a_seeded_nearest_point_is_no_challenger(contested):
    from dataclasses import replace

    from search.run.confirm import challengers

    records = trials_to_confirm(contested)
    seeded = [replace(r, near_preset="custom-140k-3x3") if r.number == 3 else r for r in records]
    # trial 3 dominated custom-140k-3x3; seeded, the next most accurate sampled trial that does is chosen
    assert {name: r.number for name, r in challengers(seeded).items()} == {"custom-140k-3x3": 4}


def test_a_trial_confirmed_with_the_same_seeds_is_not_trained_again(contested, tmp_path, capsys):
    from search.run.confirm import already_confirmed, new_seeds

    chosen = trials_to_confirm(contested, top=1)
    for r in chosen:
        contested.set_user_attr(f"{studylib.CONFIRMED}{r.number}", {
            "metric": "balanced_accuracy", "split": "validation", "seeds": new_seeds(r, 2),
            "objective": summarise([0.5, 0.6]), "test_accuracy": summarise([0.5, 0.6]),
            "test_worst_class_recall": summarise([0.4, 0.5])})
    assert new_seeds(chosen[0], 2) == [8, 9]
    assert already_confirmed(contested, chosen[0], 2) and already_confirmed(contested, chosen[0], 3) is None
    # a run would fail (no data, no weights on disk), so this passes only if nothing is trained
    assert main(["confirm", "--study", "contested", "--storage", f"sqlite:///{tmp_path}/c.db",
                 "--seeds", "2", "--top", "1", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "confirming 4 trial(s)" in out and "trial(s) 0, 1, 2, 3 already confirmed with these seeds" in out

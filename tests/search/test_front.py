"""The front: objective points, dominance, hypervolume, and which presets a searched network dominates."""

from __future__ import annotations

import html
import json

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from search.study import front
from search.study import storage as studylib
from search.study.record import CONSTRAINT_NAMES, TrialRecord

MET = {name: 0.0 for name in CONSTRAINT_NAMES}


def _study(tmp_path, name="s") -> optuna.Study:
    return studylib.open_study(name, f"sqlite:///{tmp_path}/s.db", sampler=optuna.samplers.RandomSampler(seed=0))


def _add(study, values, constraints=None, **attrs) -> int:
    """A COMPLETE trial as a search stores it; its number."""
    attrs = {"objective_metric": "balanced_accuracy", "objective_split": "validation", **attrs}
    study.add_trial(create_trial(state=TrialState.COMPLETE, values=values, user_attrs=attrs,
                                 constraints=constraints or MET))
    return study.get_trials(deepcopy=False)[-1].number


def _confirm(study, number, runs):
    """Store what ``castsearch confirm`` stores for trial ``number`` (the fields the front reads)."""
    study.set_user_attr(f"{front.CONFIRMED}{number}", {
        "seeds": list(range(1, len(runs) + 1)), "objective": {"mean": sum(runs) / len(runs), "runs": list(runs)}})


def test_the_point_of_a_trial_and_of_its_record_with_confirmed_figures_or_without(tmp_path):
    study = _study(tmp_path)
    n = _add(study, [0.9, 1.5, 1000])
    t = study.trials[n]
    assert front.point(t) == front.point(TrialRecord.read(t)) == [0.9, 1.5, 1000.0]
    assert front.confirmed_point(study, t) is None
    _confirm(study, n, [0.8, 0.84])
    assert front.confirmed_point(study, t) == pytest.approx([0.82, 1.5, 1000.0])
    assert front.point(TrialRecord.read(t), front.confirmed(study, n)) == front.confirmed_point(study, t)
    assert front.objective_point(1, 2, 3) == [1.0, 2.0, 3.0] and all(
        isinstance(v, float) for v in front.objective_point(1, 2, 3))


def test_storage_tells_the_objective_point(tmp_path):
    """The study's values are the objective point of what the pipeline measured."""
    study = _study(tmp_path)
    t = study.ask()
    study.tell(t, values=front.objective_point(0.5, 2.0, 300))
    assert study.trials[0].values == [0.5, 2.0, 300.0]
    assert studylib.objective_point is front.objective_point  # importers of storage keep the names


def test_dominates():
    assert front.dominates([0.9, 1.0, 10], [0.8, 1.0, 10])
    assert not front.dominates([0.9, 2.0, 10], [0.8, 1.0, 10])
    assert not front.dominates([0.9, 1.0, 10], [0.9, 1.0, 10])


def test_dominating_is_most_accurate_first_and_skips_missing_points():
    target = [0.8, 1.0, 100]
    found = front.dominating(target, [("a", [0.85, 0.9, 90]), ("b", None), ("c", [0.9, 1.0, 100]),
                                      ("d", [0.7, 0.1, 1]), ("e", [0.9, 0.5, 50])])
    assert [name for name, _ in found] == ["c", "e", "a"]  # ties keep the given order
    assert front.dominating(target, []) == []


def test_front_excludes_pruned_failed_and_infeasible(tmp_path):
    study = _study(tmp_path)
    good = _add(study, [0.9, 2.0, 1000])
    fast = _add(study, [0.8, 1.0, 1000])
    _add(study, [0.7, 3.0, 5000])  # dominated
    broken = {"max_latency_ms": 0.5, "max_params": 0.0, "min_accuracy": 0.0}
    _add(study, [0.0, 0.1, 10], constraints=broken, infeasible=True)
    t = study.ask()
    study.tell(t, state=TrialState.PRUNED)
    t = study.ask()
    study.tell(t, state=TrialState.FAIL)
    assert [t.number for t in front.pareto_front(study)] == [good, fast]
    c = front.counts(study.get_trials())
    assert (c["complete"], c["pruned"], c["failed"], c["infeasible"]) == (3, 1, 1, 1)


def test_hypervolume_grows_with_a_dominating_point():
    ref = [0.0, 100.0, 1e6]
    hv1 = front.hypervolume([[0.5, 50.0, 5e5]], ref)
    hv2 = front.hypervolume([[0.5, 50.0, 5e5], [0.8, 40.0, 4e5]], ref)
    assert hv1 == pytest.approx(0.5 * 50 * 5e5)
    assert hv2 > hv1
    assert front.hypervolume([[0.5, 500.0, 5e5]], ref) == 0.0  # outside the reference box


def test_hypervolume_is_exact_on_overlapping_boxes():
    # two boxes against the reference: 0.5*(10-4)*(10-6) + 0.8*(10-6)*(10-2), less their
    # overlap 0.5*(10-6)*(10-6)
    ref = [0.0, 10.0, 10.0]
    points = [[0.5, 4.0, 6.0], [0.8, 6.0, 2.0]]
    expected = 0.5 * 6 * 4 + 0.8 * 4 * 8 - 0.5 * 4 * 4
    assert front.hypervolume(points, ref) == pytest.approx(expected)
    assert front.hypervolume(points + [[0.4, 5.0, 7.0]], ref) == pytest.approx(expected)  # dominated
    assert front.hypervolume([], ref) == 0.0


@pytest.fixture
def contested(tmp_path) -> tuple[optuna.Study, dict[str, int]]:
    """Two presets; a searched trial that dominates the small one on its single figures;
    a seeded nearest point that dominates the large one; a searched trial just short of the
    large one; an infeasible trial that would dominate both; a below-floor trial."""
    study = _study(tmp_path)
    n = {
        "small": _add(study, [0.80, 2.0, 200_000], preset="custom-140k-3x3"),
        "large": _add(study, [0.95, 1.3, 590_000], preset="custom-590k-dw"),
        "drawn": _add(study, [0.85, 1.0, 100_000]),
        "seeded": _add(study, [0.96, 1.0, 500_000], near_preset="custom-590k-dw"),
        "short": _add(study, [0.94, 1.2, 400_000]),
        "broken": _add(study, [0.99, 0.1, 1_000], {**MET, "max_latency_ms": 1.0}, infeasible=True),
        "floor": _add(study, [0.50, 0.1, 1_000], {**MET, "min_accuracy": 0.3}),
    }
    return study, n


def test_searched_trials_are_neither_presets_nor_seeded_nor_out_of_limits(contested):
    study, n = contested
    trials = study.get_trials(deepcopy=False)
    assert {t.number for t in front.searched(trials)} == {n["drawn"], n["short"], n["floor"]}
    assert {name: t.number for name, t in front.presets(trials).items()} == {
        "custom-140k-3x3": n["small"], "custom-590k-dw": n["large"]}


def test_a_point_queued_from_an_earlier_studys_front_is_not_the_searchs_own(contested):
    """seed_from: a warm-start point that dominates a preset wins nothing for the search."""
    study, n = contested
    warm = _add(study, [0.99, 0.5, 50_000], seeded_from="paper-v1#7")  # dominates both presets
    trials = study.get_trials(deepcopy=False)
    assert warm not in {t.number for t in front.searched(trials)}
    assert {t.number for t in front.searched(trials)} == {n["drawn"], n["short"], n["floor"]}
    assert {p: w.trial for p, w in front.headline(study).dominated_single.items()} == {"custom-140k-3x3": n["drawn"]}


def test_headline_on_single_figures_counts_only_searched_trials(contested):
    study, n = contested
    h = front.headline(study)
    assert h.presets == ["custom-140k-3x3", "custom-590k-dw"]
    # the seeded point dominates custom-590k-dw, the infeasible trial both: neither counts
    assert {p: w.trial for p, w in h.dominated_single.items()} == {"custom-140k-3x3": n["drawn"]}
    win = h.dominated_single["custom-140k-3x3"]
    assert win.point == [0.85, 1.0, 100_000] and win.preset_point == [0.80, 2.0, 200_000] and win.by == 1
    assert h.dominated_confirmed == {} and h.confirmed == [] and h.unconfirmed == h.presets
    assert h.not_dominated == ["custom-590k-dw"]
    lines = front.format_headline(h)
    assert lines[0] == ("Paper presets dominated by a searched network (not a preset, not a seeded nearest point): "
                        "1 of 2 on single figures, not confirmed on means (castsearch confirm).")
    assert lines[1].split() == ["custom-140k-3x3", "single:", "by", f"#{n['drawn']}:", "85.0%", "against", "80.0%,",
                                "1.00", "ms,", "100,000", "params;", "confirmed:", "not", "confirmed"]
    assert lines[2].split() == ["custom-590k-dw", "single:", "no;", "confirmed:", "not", "confirmed"]


def test_a_preset_dominated_on_single_figures_may_not_be_once_confirmed(contested):
    """Confirmation turns the single-figure result around both ways: the small preset's
    challenger falls below it over new seeds, and the trial just short of the large preset
    beats it once both are confirmed. The seeded point's confirmed win still does not count."""
    study, n = contested
    _confirm(study, n["small"], [0.79, 0.79])
    _confirm(study, n["drawn"], [0.77, 0.79])  # 0.78 < 0.79
    _confirm(study, n["large"], [0.90, 0.90])
    _confirm(study, n["short"], [0.93, 0.93])  # beats 0.90, as fast and as small
    _confirm(study, n["seeded"], [0.97, 0.97])
    h = front.headline(study)
    assert {p: w.trial for p, w in h.dominated_single.items()} == {"custom-140k-3x3": n["drawn"]}
    assert {p: w.trial for p, w in h.dominated_confirmed.items()} == {"custom-590k-dw": n["short"]}
    win = h.dominated_confirmed["custom-590k-dw"]
    assert win.point == pytest.approx([0.93, 1.2, 400_000]) and win.preset_point == pytest.approx([0.90, 1.3, 590_000])
    assert h.confirmed == h.presets and h.not_dominated == []
    lines = front.format_headline(h)
    assert lines[0].endswith("1 of 2 on single figures, 1 of 2 on confirmed means.")
    assert lines[1].endswith("confirmed: no")
    assert lines[2].split("confirmed: ")[1].startswith(f"by #{n['short']}: 93.0% mean against 90.0%")
    as_json = json.loads(json.dumps(h.to_dict()))
    assert as_json["dominated_confirmed"]["custom-590k-dw"]["trial"] == n["short"]
    assert as_json["dominated_confirmed"]["custom-590k-dw"]["preset"]["val_balanced_accuracy"] == pytest.approx(0.90)
    assert as_json["dominated_single"]["custom-140k-3x3"]["val_balanced_accuracy"] == 0.85
    assert as_json["not_dominated"] == []


def test_a_trial_not_confirmed_does_not_count_on_confirmed_means(contested):
    study, n = contested
    _confirm(study, n["small"], [0.79, 0.79])  # the challenger was never confirmed
    h = front.headline(study)
    assert h.confirmed == ["custom-140k-3x3"] and h.dominated_confirmed == {}
    assert h.unconfirmed == ["custom-590k-dw"]
    assert front.format_headline(h)[0].endswith("0 of 1 on confirmed means (1 preset(s) not confirmed).")


def test_the_most_accurate_of_several_searched_trials_is_named(tmp_path):
    study = _study(tmp_path)
    _add(study, [0.80, 2.0, 200_000], preset="custom-140k-3x3")
    _add(study, [0.82, 1.0, 100_000])
    best = _add(study, [0.88, 1.5, 150_000])
    h = front.headline(study)
    assert h.dominated_single["custom-140k-3x3"].trial == best and h.dominated_single["custom-140k-3x3"].by == 2
    assert "(and 1 more)" in front.format_headline(h)[1]


def test_a_study_without_presets_says_so(tmp_path):
    study = _study(tmp_path)
    _add(study, [0.9, 1.0, 1000])
    h = front.headline(study)
    assert h.presets == [] and h.not_dominated == []
    assert front.format_headline(h) == [
        "No paper preset was trained within the limits in this study: nothing to compare against."]


def test_the_report_shows_the_headline(tiny_study, tmp_path):
    from search.view.report import write_report

    study = tiny_study.load()
    files = write_report(study, front.front_rows(study), tmp_path)
    page = files.html.read_text()
    h = front.headline(study)
    assert "<h3>Against the paper's presets</h3>" in page
    assert h.presets and all(name in page for name in h.presets)
    assert html.escape(front.headline_summary(h)) in page
    assert "dominated on confirmed means" in page


def test_castsearch_front_prints_the_headline_as_text_and_json(contested, tmp_path, capsys):
    from search.cli import main

    study, n = contested
    storage = f"sqlite:///{tmp_path}/s.db"
    assert main(["front", "--study", "s", "--storage", storage]) == 0
    out = capsys.readouterr().out
    assert "Paper presets dominated by a searched network" in out and f"by #{n['drawn']}:" in out

    assert main(["front", "--study", "s", "--storage", storage, "--headline", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["objective"] == "val_balanced_accuracy"
    assert found["not_dominated"] == ["custom-590k-dw"]
    win = found["dominated_single"]["custom-140k-3x3"]
    assert (win["trial"], win["val_balanced_accuracy"], win["preset"]["params"]) == (n["drawn"], 0.85, 200_000)

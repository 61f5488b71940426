import optuna
import pytest
from optuna.trial import TrialState

from search.study import storage as studylib
from search.study.record import CONSTRAINT_NAMES, Limits


def _study(tmp_path, name="s"):
    return studylib.open_study(name, f"sqlite:///{tmp_path}/s.db", sampler=optuna.samplers.RandomSampler(seed=0))


def test_open_study_names_objectives_and_directions(tmp_path):
    study = _study(tmp_path)
    assert study.metric_names == ["val_balanced_accuracy", "latency_ms", "params"]
    again = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/s.db")
    assert [d.name for d in again.directions] == ["MAXIMIZE", "MINIMIZE", "MINIMIZE"]
    assert again.metric_names == ["val_balanced_accuracy", "latency_ms", "params"]


def test_a_study_keeps_the_metric_it_ranks_by(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    studylib.open_study("s", url, metric="macro_f1")
    assert studylib.open_study("s", url, metric="macro_f1").metric_names[0] == "val_macro_f1"
    with pytest.raises(ValueError, match="study 's' ranks candidates by macro_f1, not validation accuracy"):
        studylib.open_study("s", url, metric="accuracy")


def test_open_study_is_idempotent_and_rejects_wrong_directions(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    studylib.open_study("s", url)
    studylib.open_study("s", url)  # loads, does not fail
    optuna.create_study(study_name="other", storage=url, directions=["minimize"])
    with pytest.raises(ValueError, match="exists with directions"):
        studylib.open_study("other", url)


def test_missing_study_lists_known_ones(tmp_path):
    _study(tmp_path, "alpha")
    with pytest.raises(ValueError, match=r"no study 'beta'.*alpha"):
        studylib.load_existing_study("beta", f"sqlite:///{tmp_path}/s.db")


def test_unknown_sampler_lists_known():
    with pytest.raises(ValueError, match="nsga2, tpe, gp, random"):
        studylib.make_sampler("cmaes")


@pytest.mark.parametrize("name", ["nsga2", "tpe", "gp", "random"])
def test_each_sampler_searches_a_conditional_space_under_constraints(tmp_path, name):
    """Past its start-up trials each sampler models the study (the GP fits with scipy) on a
    space whose stage parameters exist only for some points, and reads the limits from the
    constraint values of told trials."""
    study = studylib.open_study("s", f"sqlite:///{tmp_path}/s.db", sampler=studylib.make_sampler(name, seed=0, population_size=4))
    for _ in range(14):
        t = study.ask()
        stages = t.suggest_int("stages", 1, 3)
        width = t.suggest_categorical("width", [16, 32, 48])
        for s in range(stages):
            t.suggest_categorical(f"s{s}_conv", ["conv3x3", "dwsep"])
        params = width * 1000 * stages
        t.set_constraint("max_params", params - 60_000)
        study.tell(t, values=[0.5 + 0.1 * stages, 0.1 * stages, float(params)])
    assert len(study.get_trials(states=[TrialState.COMPLETE])) == 14
    assert len(studylib.pareto_front(study)) >= 1


def test_constraint_values_sign_convention():
    limits = Limits(max_latency_ms=5.0, max_params=1000, min_accuracy=0.8)
    v = limits.constraint_values(accuracy=0.9, latency_ms=6.0, params=500)
    assert v == {"max_latency_ms": 1.0, "max_params": -500.0, "min_accuracy": pytest.approx(-0.1)}
    assert Limits().constraint_values(None, 1.0, 1) == {n: 0.0 for n in CONSTRAINT_NAMES}
    assert limits.architecture_met(5.0, 1000) and not limits.architecture_met(5.1, 10)

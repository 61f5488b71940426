"""The trial record: one round trip through a study, and a study written by castsearch 0.1.0
(before the record existed, attrs written one by one) read by front, report and export."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from search.cli import main
from search.study import storage as studylib
from search.study.record import DIRECTIONS, TrialRecord

OLD_STUDY = Path(__file__).parent / "data" / "study-0.1.0.json"


def test_record_round_trip_writes_only_what_it_holds(tmp_path):
    study = studylib.open_study("s", f"sqlite:///{tmp_path}/s.db")
    trial = study.ask()
    TrialRecord(run_id="r", arch={"baseline": "vit"}, pretrained=False, per_class_recall={"a": 0.5, "b": 1.0}).write(trial)
    study.tell(trial, values=[0.75, 2.5, 1000.0])
    frozen = study.trials[0]
    assert frozen.user_attrs == {"run_id": "r", "arch": {"baseline": "vit"}, "pretrained": False,
                                 "per_class_recall": {"a": 0.5, "b": 1.0}}
    record = TrialRecord.read(frozen)
    assert (record.number, record.accuracy, record.latency_ms, record.params) == (0, 0.75, 2.5, 1000.0)
    assert record.pretrained is False and record.weights_path is None and not record.trained
    assert record.worst_recall == ("a", 0.5)


def test_record_fields_are_the_attr_names_castsearch_has_always_written():
    old = json.loads(OLD_STUDY.read_text())
    written = {name for t in old["trials"] for name in t["user_attrs"]}
    assert written <= set(TrialRecord.attr_names()), written - set(TrialRecord.attr_names())


def _result(trained: bool):
    """A pipeline result as a worker hands it back: two seeds trained, or measured only."""
    from search.latency.measure import Measurement
    from search.training.train import EvalResult
    from search.trial.pipeline import TrialOutcome, TrialResult

    m = Measurement(params=1200, macs=34_000, latency_ms=0.25, latency_iqr_ms=0.01, batch_latency_ms=9.0,
                    batch_latency_iqr_ms=0.2, batch_size=32, threads=1, runtime="onnxruntime",
                    eager_latency_ms=0.5, latency_timings_ms=[0.25, 0.27], preempted=True, paces=[1.0, 1.1])
    outcome = TrialOutcome(measurement=m, feasible=True, seconds={"measure": 0.1})
    if trained:
        val = EvalResult(accuracy=0.8, balanced_accuracy=0.75, macro_f1=0.7, per_class_recall={"a": 0.5, "b": 1.0},
                         confusion=[[1, 1], [0, 2]])
        test = EvalResult(accuracy=0.6, balanced_accuracy=0.55, macro_f1=0.5, per_class_recall={"a": 0.1, "b": 1.0},
                          confusion=[[1, 9], [0, 10]])
        outcome.validation, outcome.evaluation, outcome.val_scores, outcome.epochs_run = val, test, [0.6, 0.75], 2
        outcome.train_seconds, outcome.weights_path = 3.5, "trial-00004/model.pt"
        outcome.seed_runs = [{"seed": 0, "validation": 0.75, "test_accuracy": 0.6, "test_worst_class_recall": 0.1},
                             {"seed": 1, "validation": 0.65, "test_accuracy": 0.5, "test_worst_class_recall": 0.0}]
    return TrialResult(outcome=outcome, data={"source": "synthetic", "class_names": ["a", "b"]},
                       machine={"cpu": "x"}, versions={"torch": "2"})


def test_a_trial_result_is_stored_under_the_attrs_and_values_studies_have_always_held(tmp_path):
    """The worker's typed result is stored as it is, no JSON in between, under the attr names the
    pipeline's JSON was stored under; the study is told the mean over the seeds."""
    from search.study.record import Limits

    study = studylib.open_study("s", f"sqlite:///{tmp_path}/s.db")
    trained, measured = _result(trained=True), _result(trained=False)
    for result in (trained, measured):
        studylib.tell_outcome(study, study.ask(), TrialRecord(run_id="r"), result, Limits(max_params=1000))
    stored, screened = study.trials
    assert stored.values == [pytest.approx(0.7), 0.25, 1200.0]  # the mean of the two seeds' validation
    assert stored.constraints == {"max_latency_ms": 0.0, "max_params": 200.0, "min_accuracy": 0.0}
    assert screened.values == [0.0, 0.25, 1200.0]
    expected = json.loads(json.dumps(trained.to_dict()))  # what metrics.json holds for the same trial
    ev, m = expected["evaluation"], expected["measurement"]
    assert stored.user_attrs == {
        "run_id": "r", "latency_runtime": "onnxruntime", "eager_latency_ms": 0.5, "macs": 34_000,
        "latency_iqr_ms": 0.01, "batch_latency_ms": 9.0, "batch_size": 32, "threads": 1, "latency_preempted": True,
        "latency_timings_ms": m["latency_timings_ms"], "latency_paces": m["paces"],
        "objective_metric": "balanced_accuracy", "objective_split": "validation",
        "validation": expected["validation"], "test_accuracy": 0.6, "test_balanced_accuracy": 0.55,
        "macro_f1": 0.5, "per_class_recall": ev["per_class_recall"], "confusion": ev["confusion"],
        "val_accuracy": [0.6, 0.75], "seed_runs": expected["seed_runs"], "epochs_run": 2, "train_seconds": 3.5,
        "weights_path": "trial-00004/model.pt", "data": expected["data"], "machine": {"cpu": "x"},
        "versions": {"torch": "2"}, "worker_seconds": {"measure": 0.1}}
    assert screened.user_attrs["infeasible"] is True and "validation" not in screened.user_attrs


@pytest.fixture
def old_study(tmp_path) -> list[str]:
    """The 0.1.0 study in a fresh SQLite file, its trained trial's weights file recreated."""
    old = json.loads(OLD_STUDY.read_text())
    storage = f"sqlite:///{tmp_path}/old.db"
    study = optuna.create_study(study_name="old", storage=storage, directions=list(DIRECTIONS))
    for key, value in old["study_user_attrs"].items():
        study.set_user_attr(key, value)
    for t in old["trials"]:
        attrs = dict(t["user_attrs"])
        if "weights_path" in attrs:
            attrs["weights_path"] = str(tmp_path / "model.pt")
            torch.save(TrialRecord(**attrs).build_network().state_dict(),
                       attrs["weights_path"])
        study.add_trial(optuna.trial.create_trial(
            state=TrialState[t["state"]], values=t["values"], user_attrs=attrs,
            params=t["params"], distributions={k: optuna.distributions.json_to_distribution(d)
                                               for k, d in t["distributions"].items()},
            constraints=t["constraints"] or None))
    return ["--study", "old", "--storage", storage]


def test_a_study_written_by_0_1_0_opens_in_front_report_and_export(old_study, tmp_path, capsys):
    assert main(["front", "--json", *old_study]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["trial"], row["preset"], row["latency_ms"], row["latency_retimed"]) == (0, "old-preset", 0.5, True)
    assert row["arch"] == "C8 P D16 A" and row["enhancements"] == "blurpool"

    assert main(["report", *old_study, "--out", str(tmp_path / "report")]) == 0
    assert "old-preset" in (tmp_path / "report" / "report.html").read_text()

    assert main(["export", "--trial", "0", *old_study, "--out", str(tmp_path / "export"), "--format", "onnx"]) == 0
    card = json.loads((tmp_path / "export" / "card.json").read_text())
    assert card["preset"] == "old-preset" and card["classes"] == json.loads(OLD_STUDY.read_text())[
        "trials"][0]["user_attrs"]["data"]["class_names"]
    capsys.readouterr()
    assert main(["export", "--trial", "1", *old_study, "--out", str(tmp_path / "x")]) == 2  # infeasible
    assert "never trained" in capsys.readouterr().err

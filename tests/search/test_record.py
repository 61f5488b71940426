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

"""search.latency.timer: the one object a run times its networks with, and everything that
times through it reporting the search's statistic."""

from __future__ import annotations

import onnx
import pytest
import torch
from torch import nn

from search.latency.config import QUICK_ENV
from search.latency.measure import FULL, QUICK, SPREAD, Measurement
from search.latency.onnxrt import export_onnx
from search.latency.retime import FrontNetwork, retime_front
from search.latency.timer import BATCH_SIZE, Timer
from search.study.record import Limits
from search.training.recipe import TrainRecipe
from search.trial.pipeline import run_model
from tests.search.infra_helpers import QuietSlot


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 4))


def test_a_timer_reads_the_quick_switch_once_when_it_is_built(monkeypatch):
    monkeypatch.setenv(QUICK_ENV, "quick")
    timer = Timer("torch")
    monkeypatch.delenv(QUICK_ENV)
    assert timer.quick and timer.timing is QUICK  # the run keeps the protocol it started with
    assert Timer("torch").timing is FULL
    assert timer.in_runtime("onnxruntime").timing is QUICK and timer.in_runtime("torch") is timer


def test_a_timers_measurement_is_the_lowest_of_its_single_image_timings():
    timer = Timer("torch")
    m = timer.measure(_net(), (3, 8, 8))
    assert m.runtime == "torch" and m.threads == 1 and m.batch_size == BATCH_SIZE
    assert len(m.latency_timings_ms) == SPREAD and m.latency_ms == min(m.latency_timings_ms)
    again = timer.time_single(_net(), (3, 8, 8), spread=2)
    assert len(again.spread_ms) == 2 and again.robust_ms == min(again.spread_ms)


def test_the_exported_models_timing_reports_the_searchs_statistic(tmp_path):
    """castsearch export re-times the ONNX file as the search times its objective: the lowest of
    SPREAD single-image timings, listed beside it."""
    from search.deploy.export import time_model

    path = tmp_path / "model.onnx"
    export_onnx(_net(), torch.rand(2, 3, 8, 8), path)
    onnx.checker.check_model(str(path))
    single, batch = Timer().time_onnx(path, (3, 8, 8))
    assert len(single.spread_ms) == SPREAD and single.robust_ms == min(single.spread_ms)
    assert batch.batch_size == BATCH_SIZE
    card = time_model(path, (3, 8, 8))
    assert len(card["latency_timings_ms"]) == SPREAD and card["latency_ms"] == min(card["latency_timings_ms"])
    assert card["batch_size"] == BATCH_SIZE and card["threads"] == 1 and isinstance(card["preempted"], bool)


def test_settle_retimes_in_the_timers_quiet_slot():
    slot = QuietSlot()
    timer = Timer("torch", quiet=slot)
    readings = iter([1.5, 1.2, 0.9])

    def once() -> Measurement:
        return Measurement(params=1, macs=1, latency_ms=next(readings), latency_iqr_ms=0.0, batch_latency_ms=1.0,
                           batch_latency_iqr_ms=0.0, batch_size=50, threads=1)

    m = timer.settle(once, limit=1.0)  # over the limit by less than RECHECK: taken again, quietly
    assert slot.entered == 2 and m.latency_ms == 0.9


def test_run_model_takes_its_measurement_from_the_timer():
    """A network trained by hand is timed as the search times it: by the timer it is handed
    (here in torch), the lowest of its single-image timings."""
    recipe = TrainRecipe(image_size=8)
    outcome = run_model(_net(), "tiny", {}, recipe, data=None, limits=Limits(max_latency_ms=1e-9),
                        timer=Timer("torch"))
    m = outcome.measurement
    assert not outcome.feasible and m.runtime == "torch"  # ruled out before training: no data needed
    assert len(m.latency_timings_ms) == SPREAD and m.latency_ms == min(m.latency_timings_ms)


def test_the_fronts_networks_are_read_and_timed_in_one_quiet_slot():
    slot = QuietSlot()
    read_inside = []

    def front() -> dict[int, FrontNetwork]:
        read_inside.append(slot.inside)
        return {7: FrontNetwork(_net(), (3, 8, 8), 4, "torch")}

    import optuna

    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    measured = retime_front(study, front, Timer("onnxruntime", quiet=slot), passes=2, gap_s=0.0)
    assert read_inside == [True] and slot.entered == 1
    m = measured[7]
    assert m.runtime == "torch"  # each network in its own runtime, as its trial was timed
    assert len(m.latency_timings_ms) == 2 * SPREAD and m.latency_ms == min(m.latency_timings_ms)
    with pytest.raises(ValueError, match="passes must be >= 1"):
        retime_front(study, front, Timer(), passes=0)

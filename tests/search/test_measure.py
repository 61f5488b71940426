"""search.latency.measure: parameter and MAC counts, latency statistics, machine description."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
import torch
from torch import nn

from search.latency.config import QUICK_ENV, quick_protocol
from search.latency.measure import (
    FULL,
    QUICK,
    SPREAD,
    LatencyResult,
    Measurement,
    Timing,
    count_macs,
    count_params,
    library_versions,
    machine_fingerprint,
    measure,
    measure_latency,
    spread_timings,
    time_calls,
    time_single,
)
from search.latency.onnxrt import UnexportableNetwork


def _net() -> nn.Sequential:
    """3x3 conv, depthwise + pointwise, BatchNorm, pooling, linear on 3x8x8 input."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),  # 8x8 out
        nn.ReLU(),
        nn.BatchNorm2d(16),
        nn.Conv2d(16, 16, 3, padding=1, groups=16),  # depthwise, 8x8
        nn.Conv2d(16, 32, 1),  # pointwise, 8x8
        nn.MaxPool2d(2),  # 4x4
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )


def test_count_params_counts_trainable_parameters_only():
    model = _net()
    expected = (3 * 9 * 16 + 16) + (16 + 16) + (16 * 9 + 16) + (16 * 32 + 32) + (512 * 10 + 10)
    assert count_params(model) == expected
    model[0].weight.requires_grad_(False)
    assert count_params(model) == expected - 3 * 9 * 16


def test_count_macs_matches_hand_count():
    conv3x3 = 8 * 8 * 16 * (3 * 9)
    depthwise = 8 * 8 * 16 * 9
    pointwise = 8 * 8 * 32 * 16
    linear = 512 * 10
    assert count_macs(_net(), (3, 8, 8)) == conv3x3 + depthwise + pointwise + linear
    assert count_macs(nn.Conv2d(4, 6, 3, stride=2), (4, 9, 9)) == 4 * 4 * 6 * 4 * 9  # 4x4 out


def test_count_macs_leaves_training_mode_alone():
    model = _net().train()
    count_macs(model, (3, 8, 8))
    assert model.training


def test_measure_latency_statistics_and_thread_restore():
    model = _net().train()
    before = torch.get_num_threads()
    result = measure_latency(model, (3, 8, 8), batch_size=4, threads=1, warmup=1, repeats=7, min_seconds=0)
    assert result.runs >= 7 and result.batch_size == 4 and result.threads == 1
    assert 0 < result.q1_ms <= result.median_ms <= result.q3_ms
    assert result.iqr_ms == pytest.approx(result.q3_ms - result.q1_ms)
    assert torch.get_num_threads() == before and model.training
    assert json.loads(json.dumps(result.to_dict()))["runs"] == result.runs


@pytest.mark.parametrize("kwargs, message", [
    ({"threads": 0}, "threads must be >= 1, got 0"),
    ({"repeats": 1}, "repeats must be >= 2"),
    ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
    ({"warmup_seconds": -1}, "warmup_seconds must be >= 0, got -1"),
])
def test_measure_latency_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        measure_latency(_net(), (3, 8, 8), **kwargs)


def test_the_warm_up_lasts_its_seconds_before_the_timed_calls():
    """A core that slept runs slow for a while after it wakes: the warm-up calls until
    ``warmup_seconds`` have passed, however few calls ``warmup`` asks for."""
    stamps: list[float] = []
    start = time.perf_counter()
    result = time_calls(lambda: stamps.append(time.perf_counter()), warmup=1, warmup_seconds=0.05, repeats=3,
                        min_seconds=0)
    assert result.runs == 3 and len(stamps) > 4  # warm-up calls beyond the one asked for
    assert stamps[-result.runs] - start >= 0.05  # the first timed call came after the warm-up's seconds


def test_measure_collects_everything():
    m = measure(_net(), (3, 8, 8), threads=1, batch_size=5, timing=QUICK, runtime="torch")
    assert m.params == count_params(_net()) and m.macs == count_macs(_net(), (3, 8, 8))
    assert m.latency_ms > 0 and m.batch_latency_ms > 0 and m.latency_iqr_ms >= 0
    assert m.batch_size == 5 and m.threads == 1
    assert m.runtime == "torch" and m.eager_latency_ms == m.latency_ms
    assert set(m.to_dict()) == {"params", "macs", "latency_ms", "latency_iqr_ms", "batch_latency_ms",
                                "batch_latency_iqr_ms", "batch_size", "threads", "runtime", "eager_latency_ms",
                                "latency_timings_ms", "preempted", "paces"}
    assert m.paces is None  # unpaced unless a pacer's reference was timed beside it (search.latency.timer.Pacer)


def _result(ms: float, preempted: bool = False) -> LatencyResult:
    return LatencyResult(median_ms=ms, iqr_ms=0.0, q1_ms=ms, q3_ms=ms, runs=5, batch_size=1, threads=1,
                         cpu_median_ms=ms / 2 if preempted else ms)


def test_a_paced_latency_is_the_lowest_timing_over_its_pace():
    """Each slot's timings are divided by the machine's pace in that slot; the clock's timings
    and the paces are both kept, and a timing taken unpaced counts at pace 1."""
    m = Measurement(params=1, macs=1, latency_ms=0.30, latency_iqr_ms=0.03, batch_latency_ms=9.0,
                    batch_latency_iqr_ms=0.0, batch_size=50, threads=1, latency_timings_ms=[0.40, 0.30, 0.35])
    assert m.paced(None) is m
    slow = m.paced(1.5)
    assert slow.latency_ms == pytest.approx(0.20) and slow.latency_iqr_ms == pytest.approx(0.02)
    assert slow.latency_timings_ms == [0.40, 0.30, 0.35] and slow.paces == [1.5] * 3
    assert slow.batch_latency_ms == 9.0  # the batch figure is reported as the clock read it
    fast_again = dataclasses.replace(_result(0.21), spread_ms=[0.21, 0.24])
    later = slow.with_timing(fast_again, 1.0)  # the host at its pace: 0.21 is not under 0.20
    assert later.latency_ms == pytest.approx(0.20) and later.paces == [1.5] * 3 + [1.0] * 2
    slower = slow.with_timing(dataclasses.replace(_result(0.36), spread_ms=[0.36]), 2.0)  # 0.18 at pace
    assert slower.latency_ms == pytest.approx(0.18) and slower.latency_timings_ms[-1] == 0.36
    unpaced_first = m.with_timing(dataclasses.replace(_result(0.5), spread_ms=[0.5]), 2.0)
    assert unpaced_first.paces == [1.0] * 3 + [2.0] and unpaced_first.latency_ms == 0.25
    assert m.with_timing(_result(0.2)).paces is None


def test_the_single_image_latency_is_the_lowest_of_timings_around_the_batch():
    """Noise only slows a timing: of three single-image timings, two before the batch timing
    and one after it, the lowest is the latency, and all three are kept."""
    order, singles = [], iter([0.30, 0.50, 0.20])
    single, batch = spread_timings(lambda: order.append("single") or _result(next(singles)),
                                   lambda: order.append("batch") or _result(9.0))
    assert order == ["single", "single", "batch", "single"] and SPREAD == 3
    assert single.robust_ms == 0.20 and single.spread_ms == [0.30, 0.50, 0.20] and batch.robust_ms == 9.0
    # a preempted timing counts by its CPU time, as everywhere
    single, _ = spread_timings(lambda: _result(0.30, preempted=True), lambda: _result(9.0), spread=2)
    assert single.robust_ms == 0.15 and single.spread_ms == [0.15, 0.15]


@pytest.mark.parametrize("runtime", ["onnxruntime", "torch"])
def test_measure_records_every_single_image_timing(runtime):
    m = measure(_net(), (3, 8, 8), threads=1, batch_size=5, timing=QUICK, runtime=runtime)
    assert len(m.latency_timings_ms) == SPREAD and m.latency_ms == min(m.latency_timings_ms)
    again = time_single(_net(), (3, 8, 8), timing=QUICK, runtime=runtime, spread=2)
    assert again.batch_size == 1 and len(again.spread_ms) == 2 and again.robust_ms == min(again.spread_ms)


def test_the_full_protocol_runs_unless_quick_is_asked_for(monkeypatch):
    """The suite sets $CASTSEARCH_TIMING=quick (tests/conftest.py); without it a timing warms
    up for 0.25 s and times for at least 0.5 s, with it for a fraction of that."""
    def seconds(timing: Timing | None = None) -> float:
        start = time.perf_counter()
        time_single(_net(), (3, 8, 8), runtime="torch", spread=1, timing=timing)
        return time.perf_counter() - start

    monkeypatch.delenv(QUICK_ENV)
    assert not quick_protocol() and Timing.current() is FULL and seconds() >= 0.75
    monkeypatch.setenv(QUICK_ENV, "full")
    assert not quick_protocol() and not Timing.current().quick
    monkeypatch.setenv(QUICK_ENV, "quick")
    assert quick_protocol() and Timing.current() is QUICK and seconds() < 0.5
    assert seconds(FULL) >= 0.75  # settings handed in are the ones used


def test_default_latency_is_the_exported_onnx_model_in_onnx_runtime():
    m = measure(_net(), (3, 8, 8), threads=1, batch_size=5, timing=QUICK)
    assert m.runtime == "onnxruntime" and m.latency_ms > 0 and m.batch_latency_ms > 0
    assert m.eager_latency_ms > 0 and m.eager_latency_ms != m.latency_ms  # both timed, separately
    with pytest.raises(ValueError, match="unknown runtime 'tflite'; known: onnxruntime, torch"):
        measure(_net(), (3, 8, 8), runtime="tflite")


def test_a_network_onnx_cannot_export_is_a_clear_error(monkeypatch):
    def refuse(*args, **kwargs):
        raise torch.onnx.errors.UnsupportedOperatorError("aten::frobnicate", 18, "")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    with pytest.raises(UnexportableNetwork, match="ONNX export failed: UnsupportedOperatorError"):
        measure(_net(), (3, 8, 8), timing=QUICK)


def test_machine_fingerprint_and_versions(monkeypatch):
    fp = machine_fingerprint()
    assert {"cpu_model", "logical_cores", "physical_cores", "platform", "python", "torch",
            "torch_threads"} <= set(fp)
    assert fp["cpu_model"] and fp["logical_cores"] >= 1 and fp["torch"] == torch.__version__
    json.dumps(fp)
    versions = library_versions()
    assert torch.__version__.startswith(versions["torch"]) and "mosaicml" in versions
    monkeypatch.setattr("search.latency.measure.LIBRARIES", ("torch", "surely-not-an-installed-library"))
    assert set(library_versions()) == {"torch"}

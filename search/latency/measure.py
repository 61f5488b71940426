"""What a network costs: parameters, MACs, CPU latency; and what machine measured it.

Latency and parameters depend only on the architecture, so they are measured before
training. Latency is measured in the runtime a user ships (:data:`RUNTIMES`): by default
the network exported to ONNX and run by ONNX Runtime (what ``castsearch export`` writes),
or torch eager. Timings: warm-up, then the median and interquartile range of many
single-call timings, with the thread count recorded; torch runs in ``inference_mode`` and
eval mode. Eager torch latency is always measured too, for comparison.

The single-image latency, the search's objective, is the lowest of :data:`SPREAD` such
timings spread over a second or two (two before the batch timing, one after it): on a
virtual machine the host slows every call for stretches of a second or two, so one timing
can read up to 1.5x slow, and noise only ever slows a timing down
(bench/latency_agreement.py, 36 networks: one timing against a quiet re-timing
disagreed by more than 15% for 28% of them, the lowest of three for 8%, and the lowest of
three taken twice minutes apart, as the search does (search.latency.screen.Screen.recheck), for 3%).

Load cannot inflate a one-thread latency: each call's wall time and the CPU time of the
calling thread (which runs the whole inference on one thread) are both taken. When the
wall median exceeds the CPU median by more than :data:`PREEMPTED`, other work held the core
during the timing, and the CPU-time median -- what the same calls cost on an idle core --
is the latency (``Measurement.preempted`` says so). On an idle machine the two agree.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from search.latency.config import DEFAULT_RUNTIME, RUNTIMES, quick_protocol

log = logging.getLogger(__name__)

# time_calls() settings for a full measurement and for a quick one (tests, smoke runs), see Timing
TIMING: dict[str, dict] = {
    "full": {"warmup": 10, "warmup_seconds": 0.25, "repeats": 50, "min_seconds": 0.5},
    "quick": {"warmup": 2, "warmup_seconds": 0.02, "repeats": 5, "min_seconds": 0.05},
    # the batch of 50, a figure reported beside the objective: one call of a large network lasts
    # 0.1 s, and 50 of them cost the driver 5 s per candidate
    "batch": {"warmup": 2, "warmup_seconds": 0.25, "repeats": 10, "min_seconds": 0.5},
}

# library_versions(): distribution names as pip knows them (composer is "mosaicml")
LIBRARIES = ("torch", "torchvision", "mosaicml", "optuna", "ray", "onnx", "onnxruntime", "numpy", "pillow")


SPREAD = 3  # single-image timings per measurement; the lowest is the latency
PREEMPTED = 1.2  # wall median / CPU median above this: the timing shared its core with other work


@dataclass(frozen=True)
class Timing:
    """The protocol's settings (:func:`time_calls`' keywords) for a single-image timing and for
    the batch timing: :data:`FULL`, or :data:`QUICK` under ``$CASTSEARCH_TIMING=quick``."""

    name: str
    single: dict
    batch: dict

    @property
    def quick(self) -> bool:
        return self.name == "quick"

    @classmethod
    def current(cls) -> Timing:
        """:data:`QUICK` when :func:`search.latency.config.quick_protocol` says so, else :data:`FULL`."""
        return QUICK if quick_protocol() else FULL


FULL = Timing("full", TIMING["full"], TIMING["batch"])
QUICK = Timing("quick", TIMING["quick"], TIMING["quick"])


@dataclass
class LatencyResult:
    median_ms: float  # wall clock
    iqr_ms: float  # q3 - q1
    q1_ms: float
    q3_ms: float
    runs: int
    batch_size: int
    threads: int
    cpu_median_ms: float | None = None  # CPU time of the calling thread per call (median)
    spread_ms: list[float] | None = None  # the robust_ms of each timing this is the lowest of (spread_timings)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def preempted(self) -> bool:
        """Whether the calls waited for the CPU: on one thread the inference runs on the calling
        thread, so its wall time exceeds its CPU time only while other work held the core."""
        return self.threads == 1 and self.cpu_median_ms is not None and self.median_ms > PREEMPTED * self.cpu_median_ms

    @property
    def robust_ms(self) -> float:
        """The load-robust figure: the wall median when the timing was not preempted (what a
        user measures on an idle machine), else the CPU-time median, which preemption cannot
        inflate."""
        return self.cpu_median_ms if self.preempted else self.median_ms


@dataclass
class Measurement:
    params: int
    macs: int  # per image
    latency_ms: float  # median, one image
    latency_iqr_ms: float
    batch_latency_ms: float  # median, one batch of batch_size images
    batch_latency_iqr_ms: float
    batch_size: int
    threads: int
    runtime: str = "torch"  # what the latencies above were measured in (RUNTIMES)
    eager_latency_ms: float | None = None  # torch eager, one image, for comparison
    latency_timings_ms: list[float] | None = None  # each single-image timing, as the clock read it
    preempted: bool = False  # other work held the core while it was timed (the CPU-time medians were used)
    # the machine's pace when each of latency_timings_ms was taken (search.latency.timer.Pacer), None
    # when unpaced: latency_ms is the lowest timing divided by its pace
    paces: list[float] | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def paced(self, pace: float | None) -> Measurement:
        """This measurement (one slot's timings) at the machine's ``pace`` in that slot: its
        single-image latency divided by it; unchanged when ``pace`` is None."""
        if pace is None:
            return self
        timings = self.latency_timings_ms or [self.latency_ms]
        return dataclasses.replace(self, latency_ms=self.latency_ms / pace, latency_iqr_ms=self.latency_iqr_ms / pace,
                                   latency_timings_ms=timings, paces=[pace] * len(timings))

    def with_timing(self, again: LatencyResult, pace: float | None = None) -> Measurement:
        """This measurement with ``again`` (a later :func:`time_single`, taken at the machine's
        ``pace``) added: its timings join ``latency_timings_ms``, and the single-image latency
        is the lowest of all, each divided by its pace."""
        lower = {}
        scale = 1.0 if pace is None else pace
        if again.robust_ms / scale < self.latency_ms:
            lower = {"latency_ms": again.robust_ms / scale, "latency_iqr_ms": again.iqr_ms / scale,
                     "preempted": self.preempted or again.preempted}
        before = self.latency_timings_ms or [self.latency_ms]
        added = again.spread_ms or [again.robust_ms]
        paces = None
        if pace is not None or self.paces is not None:  # a timing taken unpaced counts at pace 1
            paces = [*(self.paces or [1.0] * len(before)), *[scale] * len(added)]
        return dataclasses.replace(self, latency_timings_ms=[*before, *added], paces=paces, **lower)


def count_params(model: nn.Module) -> int:
    """Trainable parameters (BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Multiply-accumulates of one forward pass of one image ``input_shape`` = (C, H, W).

    Counted by torch's FlopCounterMode (FLOPs / 2) for convolutions (grouped and depthwise
    included), matrix products and attention -- also those called functionally, such as
    BlurPool's blur filter. Bias additions, activations, pooling and norms are not counted.
    """
    param = next(model.parameters(), None)
    x = torch.zeros((1, *input_shape), device=param.device if param is not None else "cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def busy_wait(seconds: float) -> None:
    """Wait with the core busy: a core that slept runs slower for about 0.2 s after it wakes,
    which a timing that follows would pay."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def time_calls(call: Callable[[], object], batch_size: int = 1, threads: int = 1, warmup: int = 10,
               repeats: int = 50, min_seconds: float = 0.5, max_seconds: float = 5.0,
               warmup_seconds: float = 0.25) -> LatencyResult:
    """castsearch's latency protocol, for any runtime: time ``call`` (one inference).

    Runs untimed calls until there were ``warmup`` of them and ``warmup_seconds`` have passed
    (a core that was idle runs slower for about 0.2 s after it wakes; at most
    ``max_seconds / 5`` of warm-up, at least one call), then
    timed calls until there are at least ``repeats`` and at least ``min_seconds`` have passed;
    a slow model stops after ``max_seconds`` once it has 5 timings, so one huge candidate
    cannot stall a search. ``batch_size`` and ``threads`` are recorded, not applied. Each
    call's wall time and the calling thread's CPU time are both taken (see
    :attr:`LatencyResult.preempted`).
    """
    rules = [
        (batch_size >= 1, f"batch_size must be >= 1, got {batch_size}"),
        (threads >= 1, f"threads must be >= 1, got {threads}"),
        (warmup >= 0, f"warmup must be >= 0, got {warmup}"),
        (warmup_seconds >= 0, f"warmup_seconds must be >= 0, got {warmup_seconds}"),
        (repeats >= 2, f"repeats must be >= 2 (quartiles need two timings), got {repeats}"),
    ]
    for ok, message in rules:
        if not ok:
            raise ValueError(message)
    start = time.perf_counter()
    calls = 0
    while calls < max(1, warmup) or time.perf_counter() - start < warmup_seconds:
        if calls and time.perf_counter() - start > max_seconds / 5:
            break
        call()
        calls += 1
    timings_ms: list[float] = []
    cpu_ms: list[float] = []
    start = time.perf_counter()
    while len(timings_ms) < repeats or time.perf_counter() - start < min_seconds:
        c0, t0 = time.thread_time(), time.perf_counter()
        call()
        timings_ms.append((time.perf_counter() - t0) * 1000)
        cpu_ms.append((time.thread_time() - c0) * 1000)
        if len(timings_ms) >= 5 and time.perf_counter() - start > max_seconds:
            break
    q1, median, q3 = statistics.quantiles(timings_ms, n=4, method="inclusive")
    return LatencyResult(median_ms=median, iqr_ms=q3 - q1, q1_ms=q1, q3_ms=q3, runs=len(timings_ms),
                         batch_size=batch_size, threads=threads, cpu_median_ms=statistics.median(cpu_ms))


def measure_latency(model: nn.Module, input_shape: tuple[int, int, int], batch_size: int = 1,
                    threads: int = 1, **timing) -> LatencyResult:
    """Time torch ``model`` on a CPU batch of ``batch_size`` images of ``input_shape`` with
    :func:`time_calls` (``timing``: its warmup/repeats/min_seconds/max_seconds), in inference
    mode on ``threads`` torch threads; the previous thread count and the model's training
    mode are restored afterwards."""
    devices = {p.device.type for p in model.parameters()}
    if devices - {"cpu"}:
        raise ValueError(f"measure_latency times CPU inference; the model has parameters on "
                         f"{sorted(devices)}")
    for name, value in (("batch_size", batch_size), ("threads", threads)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    x = torch.rand((batch_size, *input_shape), generator=torch.Generator().manual_seed(0))
    previous_threads, was_training = torch.get_num_threads(), model.training
    torch.set_num_threads(threads)
    model.eval()
    try:
        with torch.inference_mode():
            return time_calls(lambda: model(x), batch_size, threads, **timing)
    finally:
        torch.set_num_threads(previous_threads)
        model.train(was_training)


def spread_timings(time_single: Callable[[], LatencyResult], time_batch: Callable[[], LatencyResult],
                   spread: int = SPREAD) -> tuple[LatencyResult, LatencyResult]:
    """(single image, batch): ``spread`` single-image timings, all but one before the batch
    timing and one after it, and the lowest kept (its ``spread_ms`` lists them all)."""
    singles = [time_single() for _ in range(spread - 1)]
    batch = time_batch()
    singles.append(time_single())
    return _lowest(singles), batch


def _lowest(singles: list[LatencyResult]) -> LatencyResult:
    """The lowest of ``singles``, its ``spread_ms`` listing them all."""
    lowest = min(singles, key=lambda r: r.robust_ms)
    return dataclasses.replace(lowest, spread_ms=[r.robust_ms for r in singles])


def _ort_timers(session, input_shape: tuple[int, int, int], batch_size: int, threads: int, timing: Timing):
    """(time one image, time a batch of ``batch_size``) of an ONNX Runtime ``session``."""
    from search.latency.onnxrt import ort_call

    single, batch = ort_call(session, input_shape, 1), ort_call(session, input_shape, batch_size)
    return (lambda: time_calls(single, 1, threads, **timing.single),
            lambda: time_calls(batch, batch_size, threads, **timing.batch))


def measure_ort(session, input_shape: tuple[int, int, int], batch_size: int = 50, threads: int = 1,
                timing: Timing | None = None) -> tuple[LatencyResult, LatencyResult]:
    """(single image, batch of ``batch_size``) latency of an ONNX Runtime ``session`` with
    castsearch's protocol (:func:`spread_timings`; ``timing``: :meth:`Timing.current` unless
    given). The session decides the threads it runs on; ``threads`` is recorded."""
    return spread_timings(*_ort_timers(session, input_shape, batch_size, threads, timing or Timing.current()))


def export_for_timing(model: nn.Module, input_shape: tuple[int, int, int]) -> bytes:
    """``model`` exported to ONNX as the latency protocol times it (:func:`measure`'s ``onnx``)."""
    from search.latency.onnxrt import export_onnx

    return export_onnx(model, torch.rand((2, *input_shape), generator=torch.Generator().manual_seed(0)))


def _timers(model: nn.Module, input_shape: tuple[int, int, int], threads: int, batch_size: int, timing: Timing,
            runtime: str, onnx: bytes | None):
    """(time one image, time a batch of ``batch_size``) of ``model`` in ``runtime``."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
    if runtime == "torch":
        return (lambda: measure_latency(model, input_shape, batch_size=1, threads=threads, **timing.single),
                lambda: measure_latency(model, input_shape, batch_size=batch_size, threads=threads, **timing.batch))
    from search.latency.onnxrt import ort_session

    session = ort_session(onnx if onnx is not None else export_for_timing(model, input_shape), threads)
    return _ort_timers(session, input_shape, batch_size, threads, timing)


def measure(model: nn.Module, input_shape: tuple[int, int, int], threads: int = 1, batch_size: int = 50,
            runtime: str = DEFAULT_RUNTIME, onnx: bytes | None = None, timing: Timing | None = None) -> Measurement:
    """Parameters, MACs, single-image latency and batch latency (``batch_size``, 50 as in
    the paper) of ``model`` on the CPU in ``runtime``, and its eager torch single-image latency.
    ``onnx``: the model already exported (:func:`export_for_timing`); ``timing``: the
    protocol's settings (:meth:`Timing.current` unless given). A network ONNX cannot export
    raises :class:`search.latency.onnxrt.UnexportableNetwork` (with ``runtime="onnxruntime"``).
    The search times through :class:`search.latency.timer.Timer`, which calls this."""
    timing = timing or Timing.current()
    eager = None
    if runtime == "onnxruntime":  # eager torch too, for comparison; in torch it is the latency itself
        eager = measure_latency(model, input_shape, batch_size=1, threads=threads, **timing.single)
    single, batch = spread_timings(*_timers(model, input_shape, threads, batch_size, timing, runtime, onnx))
    eager = eager or single
    result = Measurement(
        params=count_params(model),
        macs=count_macs(model, input_shape),
        latency_ms=single.robust_ms,
        latency_iqr_ms=single.iqr_ms,
        batch_latency_ms=batch.robust_ms,
        batch_latency_iqr_ms=batch.iqr_ms,
        batch_size=batch_size,
        threads=threads,
        runtime=runtime,
        eager_latency_ms=eager.robust_ms,
        latency_timings_ms=single.spread_ms,
        preempted=single.preempted or batch.preempted,
    )
    log.debug("measured %s", result)
    return result


def time_single(model: nn.Module, input_shape: tuple[int, int, int], threads: int = 1,
                runtime: str = DEFAULT_RUNTIME, onnx: bytes | None = None, spread: int = SPREAD,
                timing: Timing | None = None) -> LatencyResult:
    """The single-image latency alone (the search's objective), as :func:`measure` takes it:
    the lowest of ``spread`` timings (its ``spread_ms`` lists them all)."""
    timer, _ = _timers(model, input_shape, threads, 1, timing or Timing.current(), runtime, onnx)
    return _lowest([timer() for _ in range(spread)])


def _cpuinfo() -> list[dict[str, str]]:
    """/proc/cpuinfo as one dict per logical CPU; empty where there is no such file."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return []
    return [
        {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in block.splitlines())}
        for block in text.strip().split("\n\n")
    ]


def machine_fingerprint() -> dict:
    """The machine a measurement was taken on: CPU, cores, OS, Python, torch and its threads."""
    cpus = _cpuinfo()
    cores = {(c["physical id"], c["core id"]) for c in cpus if "physical id" in c and "core id" in c}
    model = next((c["model name"] for c in cpus if "model name" in c), None)
    return {
        "cpu_model": model or platform.processor() or platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": len(cores) or None,
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape results; missing ones are left out."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions

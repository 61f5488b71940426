"""castsearch's latency policy as one object: :class:`Timer`, built once per run.

A timer holds what every timing of a run shares: the runtime a latency is timed in, the
quiet slot a re-timing runs in (:meth:`search.latency.quiet.Workers.paused`: no training on
the machine) and the protocol's settings (:class:`search.latency.measure.Timing`: the quick
ones under ``$CASTSEARCH_TIMING=quick``, read once, when the timer is built). Everything that
times a network goes through it: the screen before dispatch and its re-check once trained
(:mod:`search.latency.screen`), the front's re-timing at the end of a run
(:mod:`search.latency.retime`), the pipeline's own measurement of a network trained by hand
(:func:`search.trial.pipeline.run_model`) and the export's re-timing
(:mod:`search.deploy.export`). All of them report one statistic, the search's: a network's
single-image latency is the lowest of :data:`search.latency.measure.SPREAD` single-image
timings (each the median of many calls, its CPU time where the calls were preempted), and
the lowest of all its timings once it is timed again.

The policy's parts, each here: :func:`settle` (a verdict of "too slow" is timed again, in a
quiet slot, before it stands) and :class:`Pacer` (a relative limit's reference timed at the
end of each slot, the slot's timings divided by its slowdown).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from search.latency import measure as protocol
from search.latency.config import DEFAULT_RUNTIME
from search.latency.measure import SPREAD, LatencyResult, Measurement, Timing, busy_wait

log = logging.getLogger(__name__)

THREADS = 1  # the search times every network on one thread: what a core of a user's machine runs
BATCH_SIZE = 50  # the batch latency reported beside the objective, as in the paper
RECHECK = 2.0  # a latency over the limit by less than this factor is timed again
RETRY_AFTER_S = (1.0, 3.0)  # the wait before each extra timing: longer than a slow stretch


def _unpaced() -> None:
    return None


def settle(measure_once: Callable[[], Measurement], limit: float | None,
           waits: tuple[float, ...] = RETRY_AFTER_S, every: bool = False,
           quiet: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
           time_again: Callable[[], LatencyResult] | None = None,
           pace: Callable[[], float | None] = _unpaced) -> Measurement:
    """The measurement a latency verdict rests on: ``measure_once()``, its single-image latency
    taken again after each of ``waits`` (seconds) while the lowest so far was preempted or is
    over ``limit`` by less than :data:`RECHECK` times, or every time with ``every`` (a reference
    the limit is derived from); the lowest is kept. A timing under the limit is not taken
    again: noise can only slow it, so it cannot have made the network feasible. Each timing
    taken again is ``time_again()`` (the single-image timing alone, :meth:`Timer.time_single`;
    without it, a whole ``measure_once()``) and runs inside ``quiet()``
    (:meth:`search.latency.quiet.Workers.paused`: no training on the machine while it runs),
    followed there by ``pace()``, the machine's pace it is divided by (:class:`Pacer`;
    ``measure_once`` paces its own)."""
    m = measure_once()
    for wait in waits:
        suspect = limit is not None and limit < m.latency_ms < RECHECK * limit
        if not (every or m.preempted or suspect):
            break
        busy_wait(wait)
        before = m
        with quiet():
            if time_again is None:
                again = measure_once()
                m = min(m, again, key=lambda x: x.latency_ms)
            else:
                timing = time_again()
                m = m.with_timing(timing, pace())
                if m.latency_ms < before.latency_ms:  # the verdict rests on this timing alone now
                    m = dataclasses.replace(m, preempted=timing.preempted)
        log.debug("timed again (%s): %.3f then %.3f ms",
                  "preempted" if before.preempted else "over the limit" if suspect else "a limit's reference",
                  before.latency_ms, m.latency_ms)
    return m


@dataclass
class Pacer:
    """The machine's pace: a latency limit's reference network (``relative_to``) timed once
    more, over its latency when the limit was set (``base_ms``). A slot of timings ends with
    :meth:`pace`, and its timings are divided by it (:meth:`search.latency.measure.Measurement.paced`).
    Built by :meth:`Timer.pacer`.

    One timing of the reference adds 0.75 s to a slot (0.1 s under the quick protocol). On the
    idle host over twelve minutes (bench/paced_latency.py, BENCHMARKS.md "Paced latency"), a
    re-check's slot read 1.00-1.22x each network's quiet latency as the clock read it (median
    1.10x), and 0.92-1.08x paced (median 1.00x, against the quiet latency at the pace of the
    limit's setting)."""

    relative_to: str
    base_ms: float
    time_once: Callable[[], LatencyResult]

    def pace(self) -> float:
        """The reference's timing now over its latency when the limit was set."""
        return self.time_once().robust_ms / self.base_ms


@dataclass
class Timer:
    """How a run times its networks (module docstring): in ``runtime``, re-timings inside
    ``quiet()``, with the protocol's ``timing`` settings (:meth:`Timing.current` when built)."""

    runtime: str = DEFAULT_RUNTIME
    quiet: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    timing: Timing = field(default_factory=Timing.current)

    @property
    def quick(self) -> bool:
        """Whether this timer uses the quick protocol (tests, smoke runs)."""
        return self.timing.quick

    def in_runtime(self, runtime: str) -> Timer:
        """This timer, timing in ``runtime`` (a trial of an older study timed in another one)."""
        return self if runtime == self.runtime else dataclasses.replace(self, runtime=runtime)

    def exported(self, model: nn.Module, shape: tuple[int, int, int]) -> bytes | None:
        """``model`` exported to ONNX for timing when this timer's runtime needs it, else None:
        export once, then time it as often as the policy asks."""
        return protocol.export_for_timing(model, shape) if self.runtime == "onnxruntime" else None

    def measure(self, model: nn.Module, shape: tuple[int, int, int], onnx: bytes | None = None) -> Measurement:
        """Parameters, MACs and the latencies of ``model`` for images of ``shape``
        (:func:`search.latency.measure.measure`; ``onnx``: the model as :meth:`exported`)."""
        return protocol.measure(model, shape, threads=THREADS, batch_size=BATCH_SIZE, runtime=self.runtime,
                                onnx=onnx, timing=self.timing)

    def time_single(self, model: nn.Module, shape: tuple[int, int, int], onnx: bytes | None = None,
                    spread: int = SPREAD) -> LatencyResult:
        """The single-image latency alone, the lowest of ``spread`` timings
        (:func:`search.latency.measure.time_single`)."""
        return protocol.time_single(model, shape, threads=THREADS, runtime=self.runtime, onnx=onnx, spread=spread,
                                    timing=self.timing)

    def time_onnx(self, path: Path, shape: tuple[int, int, int],
                  batch_size: int = BATCH_SIZE) -> tuple[LatencyResult, LatencyResult]:
        """(single image, batch of ``batch_size``) of the ONNX model at ``path`` in ONNX Runtime on
        one thread (:func:`search.latency.measure.measure_ort`): the single image's ``robust_ms``
        is the lowest of :data:`search.latency.measure.SPREAD` timings, as the search's objective is."""
        from search.latency.onnxrt import ort_session

        return protocol.measure_ort(ort_session(path, THREADS), shape, batch_size, threads=THREADS,
                                    timing=self.timing)

    def settle(self, measure_once: Callable[[], Measurement], limit: float | None, every: bool = False,
               time_again: Callable[[], LatencyResult] | None = None,
               pace: Callable[[], float | None] = _unpaced) -> Measurement:
        """:func:`settle` with this timer's quiet slot."""
        return settle(measure_once, limit, every=every, quiet=self.quiet, time_again=time_again, pace=pace)

    def pacer(self, relative_to: str, base_ms: float, model: nn.Module, shape: tuple[int, int, int]) -> Pacer:
        """The :class:`Pacer` of the limit's reference ``relative_to``, built as ``model`` for
        images of ``shape``, whose latency was ``base_ms`` when the limit was set."""
        onnx = self.exported(model, shape)
        return Pacer(relative_to, base_ms, lambda: self.time_single(model, shape, onnx, spread=1))

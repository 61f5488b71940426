"""The front's re-timing at the end of a run: each network on the Pareto front timed again
with nothing else running, in passes spread in time, its latency the lowest of all its timings.

The host's slow stretches (10% to 1.5x, for seconds to tens of seconds) can outlast one
network's timings, so a network's timings in successive passes are at least ``gap_s``
seconds apart (:data:`RETIME_GAP_S`; none under the quick protocol): a long front's passes
are that far apart anyway, a short one's wait. A network's latency objective is likewise the
lowest of timings minutes apart (the screen's and its re-check once trained,
:meth:`search.latency.screen.Screen.recheck`). Where the study's latency limit is relative,
each timing is paced by the limit's reference as the run's were
(:class:`search.latency.timer.Pacer`). Which networks are the front, whether the study is
free to be re-timed and where the figures are stored is the run's business
(:func:`search.run.runs.retime_study_front`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import optuna
import torch
from torch import nn

from search.latency.measure import SPREAD, Measurement, Timing
from search.latency.screen import study_pacer
from search.latency.timer import Pacer, Timer

__all__ = ["RETIME_GAP_S", "RETIME_PASSES", "FrontNetwork", "retime_front", "retime_seconds"]

RETIME_PASSES = 3  # passes over the front when it is re-timed
RETIME_GAP_S = 30.0  # the least time between two passes' timings of one network


@dataclass
class FrontNetwork:
    """One network to re-time, built as its trial trained it."""

    model: nn.Module
    shape: tuple[int, int, int]  # (channels, height, width) of its input
    classes: int
    runtime: str  # what its latency objective was timed in


def retime_front(study: optuna.Study, front: Callable[[], Mapping[int, FrontNetwork]], timer: Timer,
                 passes: int = RETIME_PASSES, gap_s: float | None = None) -> dict[int, Measurement]:
    """Each network of ``front()`` (by trial number) timed ``passes`` times by ``timer``, its
    single-image latency the lowest of all its timings (module docstring). ``timer``'s quiet
    slot is held for the whole re-timing, ``front()`` included: a trial the time budget cut
    can still be training when Ray has shut down, and it is stopped before anything is read.
    ``study``: where a relative limit's reference is recorded (its pacer)."""
    if passes < 1:
        raise ValueError(f"passes must be >= 1, got {passes}")
    if gap_s is None:
        gap_s = 0.0 if timer.quick else RETIME_GAP_S
    threads = torch.get_num_threads()
    pacers: dict[tuple, Pacer | None] = {}  # by (channels, image size, classes, runtime)
    with timer.quiet():
        networks = dict(front())
        timers, exported, paces = {}, {}, {}
        measured: dict[int, Measurement] = {}
        timed_at: dict[int, float] = {}
        for number, net in networks.items():
            timers[number] = own = timer.in_runtime(net.runtime)
            exported[number] = own.exported(net.model, net.shape)
            which = (*net.shape[:2], net.classes, net.runtime)
            if which not in pacers:
                pacers[which] = study_pacer(study, own, net.shape[1], net.shape[0], net.classes)
            pacer = pacers[which]
            paces[number] = pacer.pace if pacer is not None else lambda: None
            timed_at[number] = time.monotonic()
            measured[number] = own.measure(net.model, net.shape, exported[number]).paced(paces[number]())
        for _ in range(passes - 1):
            for number, net in networks.items():
                time.sleep(max(0.0, timed_at[number] + gap_s - time.monotonic()))
                timed_at[number] = time.monotonic()
                again = timers[number].time_single(net.model, net.shape, exported[number])
                measured[number] = measured[number].with_timing(again, paces[number]())
    torch.set_num_threads(threads)
    return measured


EXPORT_S = 5.0  # exporting one network to ONNX for its timings: 1-2 s idle, up to 5 s on 2 busy cores
SETUP_S = 1.0  # building one network from its record, counting its MACs, opening its runtime session


def retime_seconds(networks: int, timing: Timing, passes: int = RETIME_PASSES, gap_s: float | None = None) -> float:
    """About how long :func:`retime_front` takes for a front of ``networks`` small networks
    under ``timing``, erring long: the first pass exports and measures each (the eager
    timing, :data:`~search.latency.measure.SPREAD` single-image timings, the batch timing and
    its pace), each later pass times each again (``SPREAD`` timings and a pace), and a pass
    over a short front waits for ``gap_s`` (:data:`RETIME_GAP_S`; none under the quick
    protocol). A timing of a small network lasts its warm-up and its least timed seconds;
    each is counted 1.5 times, for the networks near the latency limit. On 2 busy cores, three
    of the paper's presets took 12 s each to export and measure and 2.3 s to time again (full
    protocol), 5-9 s and 0.25 s (quick); this says 16.75 s and 4.5 s, 6.6 s and 0.4 s."""
    if networks <= 0:
        return 0.0
    if gap_s is None:
        gap_s = 0.0 if timing.quick else RETIME_GAP_S
    one = 1.5 * (timing.single["warmup_seconds"] + timing.single["min_seconds"])
    batch = 1.5 * (timing.batch["warmup_seconds"] + timing.batch["min_seconds"])
    first = EXPORT_S + SETUP_S + (SPREAD + 2) * one + batch
    again = (SPREAD + 1) * one
    return networks * first + (passes - 1) * max(gap_s, networks * again)

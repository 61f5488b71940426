"""What the driver checks before a candidate reaches a worker: its parameter count and its
latency, against the space's limits.

Parameters are exact from the spec. Latency is measured once per distinct network on the
machine the driver runs on, in the space's runtime, by the run's
:class:`search.latency.timer.Timer` with :func:`search.latency.measure.measure`'s load-robust protocol (Ray workers train niced, search.run.worker.WORKER_NICE, and a timing
that waited for the CPU falls back to CPU time), and cached in the study as a user attr
``latency:<key>``: the key is a hash of the network as built (spec, model surgery, input
shape, classes), the runtime and the machine (CPU model, cores, torch and ONNX Runtime
versions), so a repeated architecture is never timed twice and a study moved to another
machine times afresh.
Noise on a shared machine only ever slows a timing down, and not only by the preemption a
timing can see: on a virtual machine the host's own load slows every call by 10% to 2x
for stretches of a second or two while the guest is idle (bench/timing_noise.py), and now
and then for tens of seconds (bench/latency_agreement.py). So the lowest timing is the
truest. A measurement's single-image latency is already the lowest of three timings over a
second or two (:func:`search.latency.measure.measure`); :func:`search.latency.timer.settle` takes the
measurement again,
seconds apart, when it was preempted or would rule the network out by less than
:data:`RECHECK` times the limit, keeping the lowest: a verdict of "too slow" stands only
when timings in separate stretches all say so. A network that trains is timed once more
when its trial ends, minutes later (:meth:`Screen.recheck`), and the lowest of all its
timings is its latency objective.
Load on the machine is the search's own: the trials training beside the driver. A worker
on the other core slows a timing even at its niceness (it shares the core's cache and
clock), so the timings settle takes again, and the re-check, run in a quiet slot: the
machine's trials are paused for their length (:mod:`search.latency.quiet`). A verdict of "too
slow" that load could have caused is thus always taken again with no training running.

A latency limit may be written relative to one of the paper's networks measured the same
way (``max_latency_ms: {relative_to: custom-590k-dw, factor: 1.0}``), so a space file
travels between machines; :func:`resolve_limits` turns it into milliseconds for this
machine and records it in the study (``latency_limit:<image size>``).
A relative limit also paces every timing that follows (:class:`search.latency.timer.Pacer`): the host's slow
stretches can outlast the minutes between a network's screening and its re-check (the
lowest of its timings then stays 10-25% slow), but they slow the reference as much as the
candidate, nearly. So each slot of timings ends with one timing of the reference, and the
candidate's timings in the slot are divided by the reference's slowdown against its latency
when the limit was set: the verdict compares the candidate with the reference as timed
together, and the objective is in milliseconds at the machine's pace when the limit was set.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import optuna

from castmodels import PRESETS, ArchSpec
from search.latency.config import CACHE_PREFIX, LIMIT_PREFIX
from search.latency.measure import (
    SPREAD,
    LatencyResult,
    Measurement,
    count_params,
    library_versions,
    machine_fingerprint,
)
from search.latency.timer import Pacer, Timer
from search.training.recipe import TrainRecipe

if TYPE_CHECKING:  # the study's limits, as the caller passes them (the latency package imports no study module)
    from search.study.record import Limits, RelativeLimit

log = logging.getLogger(__name__)

__all__ = ["CACHE_PREFIX", "LIMIT_PREFIX", "Screen", "Verdict", "cache_key", "reference_pacer", "resolve_limits",
           "study_pacer"]

# part of the cache key: a timing taken under an older protocol is taken again
PROTOCOL = f"lowest of {SPREAD}, again once trained"
KEEP_EXPORTED = 32  # exported networks kept for their re-check (Screen.recheck)


def reference_pacer(timer: Timer, relative_to: str, base_ms: float, recipe: TrainRecipe,
                    num_classes: int) -> Pacer:
    """``timer``'s pacer of ``relative_to`` built as the limit's reference was (``recipe``: its
    image size and channels), whose latency was ``base_ms`` when the limit was set."""
    from search.trial.build import build_candidate, input_shape

    return timer.pacer(relative_to, base_ms, build_candidate(PRESETS[relative_to], recipe, num_classes),
                       input_shape(recipe))


def study_pacer(study: optuna.Study, timer: Timer, image_size: int, channels: int, num_classes: int) -> Pacer | None:
    """``timer``'s pacer of the relative limit the study recorded at ``image_size`` in its
    runtime (:func:`resolve_limits`), or None where it has none."""
    limit = study.user_attrs.get(f"{LIMIT_PREFIX}{image_size}") or {}
    if "relative_to" not in limit or limit.get("runtime") != timer.runtime:
        return None
    recipe = TrainRecipe(image_size=image_size, channels=channels)
    return reference_pacer(timer, limit["relative_to"], limit["reference_ms"], recipe, num_classes)


@dataclass
class Verdict:
    """One candidate's screening: ``reason`` is None when it may be trained."""

    params: int
    measurement: Measurement | None  # None when the parameter count alone ruled it out
    reason: str | None
    cached: bool = False

    @property
    def feasible(self) -> bool:
        return self.reason is None


def _surgery(recipe: TrainRecipe) -> list[str]:
    from search.training.train import SURGERY

    return sorted(name for name in recipe.enhancements if name in SURGERY)


@functools.cache
def _machine() -> tuple[list, list]:
    """What of the machine and the libraries changes a timing (read once per process)."""
    machine, versions = machine_fingerprint(), library_versions()
    return ([machine["cpu_model"], machine["logical_cores"], machine["machine"]],
            [versions.get("torch"), versions.get("onnxruntime")])


def cache_key(arch: ArchSpec, recipe: TrainRecipe, num_classes: int, runtime: str,
              paced_by: str | None = None) -> str:
    """The latency cache key of ``arch`` built with ``recipe`` for ``num_classes`` classes,
    timed in ``runtime`` (``paced_by``: the :class:`search.latency.timer.Pacer`'s reference, if any)."""
    machine, versions = _machine()
    identity = {
        "arch": {**arch.to_dict(), "name": None},
        "surgery": _surgery(recipe),
        "input": [recipe.channels, recipe.image_size, recipe.image_size],
        "classes": num_classes,
        "runtime": runtime,
        "protocol": PROTOCOL,
        "machine": machine,
        "versions": versions,
    }
    if paced_by is not None:
        identity["paced_by"] = paced_by
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


class Screen:
    """Screens candidates for one study, timing them with the run's ``timer`` (its runtime, its
    quiet slot: search.latency.quiet, its protocol)."""

    def __init__(self, study: optuna.Study, timer: Timer, num_classes: int):
        self.study, self.timer, self.num_classes = study, timer, num_classes
        self.timed = 0  # measurements taken (cache misses), for tests and the summary
        self.rechecked = 0  # re-checks taken (Screen.recheck)
        self._exported: dict[str, bytes] = {}  # cache key -> ONNX model, for the re-check
        self.pacers: dict[int, Pacer] = {}  # by image size: a relative limit's reference (resolve_limits)

    @property
    def runtime(self) -> str:
        return self.timer.runtime

    def _build(self, arch: ArchSpec, recipe: TrainRecipe):
        from search.trial.build import build_candidate

        with warnings.catch_warnings():  # composer notes surgery that changed nothing; the worker says it
            warnings.simplefilter("ignore")
            return build_candidate(arch, recipe, self.num_classes)

    def _key(self, arch: ArchSpec, recipe: TrainRecipe) -> str:
        pacer = self.pacers.get(recipe.image_size)
        return CACHE_PREFIX + cache_key(arch, recipe, self.num_classes, self.runtime,
                                        pacer.relative_to if pacer is not None else None)

    def _pace(self, recipe: TrainRecipe) -> float | None:
        """The machine's pace now for a network at ``recipe``'s image size; None if unpaced."""
        pacer = self.pacers.get(recipe.image_size)
        return pacer.pace() if pacer is not None else None

    def latency(self, arch: ArchSpec, recipe: TrainRecipe, limit: float | None = None,
                model=None, reference: bool = False) -> tuple[Measurement, bool]:
        """(the measurement of ``arch`` built with ``recipe``, whether it came from the cache);
        ``model``: the network already built, when the caller has it; ``reference``: a limit
        is derived from it, so it is the lowest of all the timings settle takes
        (:func:`search.latency.timer.settle`: a slow stretch would loosen the limit for the whole run)."""
        key = self._key(arch, recipe)
        cached = self.study.user_attrs.get(key)
        if cached is not None:
            return Measurement(**cached["measurement"]), True
        from search.trial.build import input_shape

        model = model if model is not None else self._build(arch, recipe)
        shape = input_shape(recipe)
        onnx = self.timer.exported(model, shape)

        def measure_once() -> Measurement:  # the slot's timings, then the pace they are divided by
            timed = self._measure(model, shape, onnx)
            return timed.paced(self._pace(recipe))

        m = self.timer.settle(measure_once, limit, every=reference,
                              time_again=lambda: self._time_single(model, shape, onnx), pace=lambda: self._pace(recipe))
        self.study.set_user_attr(key, {"measurement": m.to_dict(), "arch_code": arch.code(), "at": time.time()})
        if onnx is not None:
            self._exported[key] = onnx
            while len(self._exported) > KEEP_EXPORTED:
                self._exported.pop(next(iter(self._exported)))
        return m, False

    def _measure(self, model, shape, onnx: bytes | None) -> Measurement:
        self.timed += 1
        return self.timer.measure(model, shape, onnx)

    def _time_single(self, model, shape, onnx: bytes | None) -> LatencyResult:
        self.timed += 1
        return self.timer.time_single(model, shape, onnx)

    def recheck(self, arch: ArchSpec, recipe: TrainRecipe) -> Measurement:
        """The cached measurement of ``arch`` with its single-image latency timed again now
        (:meth:`search.latency.timer.Timer.time_single`) and the lowest of all its timings kept, in the
        cache too; once per architecture. The screen's timings span a second or two, and the
        host's slow stretches can last tens of seconds (bench/latency_agreement.py), so the
        driver re-checks a network when it has trained, minutes after it was screened, in a
        quiet slot (the timer's ``quiet``)."""
        from search.trial.build import input_shape

        key = self._key(arch, recipe)
        entry = self.study.user_attrs.get(key)
        if entry is None:  # screened by another study's driver under an older key: time it afresh
            return self.latency(arch, recipe)[0]
        m = Measurement(**entry["measurement"])
        if entry.get("rechecked"):
            return m
        self.rechecked += 1
        model, shape, onnx = self._build(arch, recipe), input_shape(recipe), self._exported.pop(key, None)
        if onnx is None:  # exported before the pause, not during it
            onnx = self.timer.exported(model, shape)
        with self.timer.quiet():
            again = self.timer.time_single(model, shape, onnx)
            pace = self._pace(recipe)
        m = m.with_timing(again, pace)
        log.debug("re-checked %s: %s ms", arch.code(), ", ".join(f"{t:.3f}" for t in m.latency_timings_ms))
        self.study.set_user_attr(key, {**entry, "measurement": m.to_dict(), "rechecked": time.time()})
        return m

    def check(self, arch: ArchSpec, recipe: TrainRecipe, limits: Limits) -> Verdict:
        """Parameters first (exact from the built network, no timing), then latency (cached)."""
        model = self._build(arch, recipe)
        params = count_params(model)
        if limits.max_params is not None and params > limits.max_params:
            return Verdict(params, None, f"{params:,} parameters > max_params {limits.max_params:,.0f}")
        m, cached = self.latency(arch, recipe, limits.max_latency_ms, model)
        if not limits.architecture_met(m.latency_ms, params):
            return Verdict(params, m, f"{m.latency_ms:.3f} ms > max_latency_ms {limits.max_latency_ms:.3f} "
                                      f"({self.runtime})", cached)
        return Verdict(params, m, None, cached)


def resolve_limits(limits: Limits, relative: RelativeLimit | None, screen: Screen, image_size: int,
                   channels: int) -> Limits:
    """``limits`` with a relative latency limit turned into milliseconds on this machine at
    ``image_size`` (recorded in the study as ``latency_limit:<image_size>``); the reference
    paces ``screen``'s timings at that size from then on (:class:`search.latency.timer.Pacer`)."""
    if relative is None:
        return limits
    recipe = TrainRecipe(image_size=image_size, channels=channels)
    m, _ = screen.latency(PRESETS[relative.relative_to], recipe, reference=True)
    ms = relative.factor * m.latency_ms
    if not math.isfinite(ms) or ms <= 0:
        raise ValueError(f"{relative.relative_to} timed {m.latency_ms} ms; cannot derive max_latency_ms")
    screen.study.set_user_attr(f"{LIMIT_PREFIX}{image_size}", {
        "max_latency_ms": ms, "relative_to": relative.relative_to, "factor": relative.factor,
        "reference_ms": m.latency_ms, "runtime": screen.runtime, "at": time.time()})
    screen.pacers[image_size] = reference_pacer(screen.timer, relative.relative_to, m.latency_ms, recipe,
                                                screen.num_classes)
    # the reference at its own pace is its latency when the limit was set: its preset's trial
    # meets the limit it defines, as an unpaced one did (cached: a resumed run's entry stands)
    key = screen._key(PRESETS[relative.relative_to], recipe)
    if key not in screen.study.user_attrs:
        screen.study.set_user_attr(key, {"measurement": m.paced(1.0).to_dict(),
                                         "arch_code": PRESETS[relative.relative_to].code(), "at": time.time()})
    log.info("max_latency_ms = %s = %.3f ms at %d px (%s)", relative.describe(), ms, image_size, screen.runtime)
    return dataclasses.replace(limits, max_latency_ms=ms)

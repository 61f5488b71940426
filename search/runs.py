"""Runs: which ``castsearch run`` invocation owns which trials, whether it is alive, and what
a run does to the study before and after its trials (queue the presets, re-time the front).

Each invocation is a :class:`RunRecord` stored in the study's user attrs (``run:<id>``:
budget, heartbeat, host, pid); its trials carry its id. A run whose driver died (a dead
pid on this host, or a heartbeat older than :data:`STALE_AFTER_S`) has its RUNNING trials
failed and its remaining budget resumed by the next invocation (:func:`recover`). Nothing
here imports Ray.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import study as studylib
from search.record import TrialRecord
from search.space import SearchSpace, preset_trials

log = logging.getLogger(__name__)

HEARTBEAT_S = 10.0
STALE_AFTER_S = 60.0
RUN_PREFIX = "run:"
PRESETS_ENQUEUED = "presets_enqueued"


@dataclass
class RunRecord:
    run_id: str
    trials: int | None          # trials this run must finish (None: until the time budget)
    timeout_s: float | None
    started: float = field(default_factory=time.time)
    heartbeat: float = field(default_factory=time.time)
    done: bool = False
    resumed_from: str | None = None
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)

    def is_dead(self, now: float) -> bool:
        """Unfinished, and its driver is gone: a dead process on this host, or a stale heartbeat."""
        if self.done:
            return False
        if self.host == socket.gethostname() and self.pid != os.getpid():
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                pass  # a process of another user holds that pid: judge by the heartbeat
        return now - self.heartbeat > STALE_AFTER_S

    @property
    def key(self) -> str:
        return f"{RUN_PREFIX}{self.run_id}"

    def save(self, study: optuna.Study) -> None:
        study.set_user_attr(self.key, self.__dict__.copy())


def runs(study: optuna.Study) -> list[RunRecord]:
    return [RunRecord(**v) for k, v in study.user_attrs.items() if k.startswith(RUN_PREFIX)]


def finished_by(trials: list[FrozenTrial], run_id: str) -> int:
    """Trials of ``run_id`` that count towards its budget: those that reached a worker and ended
    complete (feasible or not) or pruned; not the invalid points nor those screened out before
    dispatch."""
    count = 0
    for t in trials:
        r = TrialRecord.read(t)
        if (r.run_id == run_id and not r.invalid and not r.screened
                and t.state in (TrialState.COMPLETE, TrialState.PRUNED)):
            count += 1
    return count


def recover(study: optuna.Study, storage_url: str, now: float | None = None) -> RunRecord | None:
    """Fail the RUNNING trials of runs whose driver died; return the dead run to resume, if any.

    Holds the study's lock, so drivers starting together resume a dead run once, not each."""
    with studylib.exclusive(storage_url, study.study_name, "recover"):
        return _recover(study, now or time.time())


def _recover(study: optuna.Study, now: float) -> RunRecord | None:
    dead = [r for r in runs(study) if r.is_dead(now)]
    if not dead:
        return None
    dead_ids = {r.run_id for r in dead}
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if TrialRecord.read(t).run_id in dead_ids:
            studylib.fail_orphan(study, t, "its run's driver died while it was running")
            log.warning("trial %d was running when its driver died: marked failed", t.number)
    for r in dead:
        r.done = True
        r.save(study)
    return max(dead, key=lambda r: r.started)


def enqueue_presets(study: optuna.Study, space: SearchSpace, storage_url: str) -> int:
    """Put the paper's presets first in the queue (points of the space or fixed-architecture
    trials, see :func:`search.space.preset_trials`), once per study (also when several drivers
    start on a new study at the same moment: the check and the enqueue hold the study's lock)."""
    if not space.seed_presets:
        return 0
    with studylib.exclusive(storage_url, study.study_name, "presets"):
        if study.user_attrs.get(PRESETS_ENQUEUED):
            return 0
        presets = preset_trials(space)
        outside = [name for name, p in presets.items() if p.arch is not None]
        if outside:
            log.info("%d of the paper presets are not points of this space; they join as fixed-architecture "
                     "trials: %s", len(outside), ", ".join(outside))
        for name, p in presets.items():
            fixed = p.arch.to_dict() if p.arch is not None else None
            study.enqueue_trial(p.params, user_attrs=TrialRecord(preset=name, preset_arch=fixed).attrs())
        study.set_user_attr(PRESETS_ENQUEUED, sorted(presets))
    return len(presets)


def heartbeat(study: optuna.Study, run: RunRecord, stop: threading.Event) -> None:
    """Save ``run``'s heartbeat every :data:`HEARTBEAT_S` until ``stop`` is set (a thread's target)."""
    while not stop.wait(HEARTBEAT_S):
        run.heartbeat = time.time()
        try:
            run.save(study)
        except Exception as e:  # a database hiccup must not kill the search
            log.warning("heartbeat not saved: %s", e)


def retime_front(study: optuna.Study) -> int:
    """Re-time the front's latencies with nothing else running.

    A finished Optuna trial cannot be changed, so the quiet timings are stored as study
    user attrs ``retimed:<trial number>`` (see :func:`search.study.retimed`)."""
    import torch

    from search.measure import measure

    front = studylib.pareto_front(study)
    threads = torch.get_num_threads()
    for t in front:
        record = TrialRecord.read(t)
        m = measure(record.build_network(), record.input_shape(), threads=1, runtime=record.runtime)
        study.set_user_attr(f"{studylib.RETIMED}{t.number}", {
            "latency_ms": m.latency_ms, "latency_iqr_ms": m.latency_iqr_ms,
            "batch_latency_ms": m.batch_latency_ms, "threads": m.threads, "runtime": m.runtime,
            "eager_latency_ms": m.eager_latency_ms, "at": time.time()})
    torch.set_num_threads(threads)
    return len(front)

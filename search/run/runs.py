"""Runs: which ``castsearch run`` invocation owns which trials, whether it is alive, and what
a run does to the study before and after its trials (queue the presets, re-time the front:
the re-timing itself is :mod:`search.latency.retime`).

Each invocation is a :class:`RunRecord` stored in the study's user attrs (``run:<id>``:
budget, heartbeat, host, pid and the process's start time, its index among the study's runs
and its sampler seed); its trials carry its id. A run whose driver died has its RUNNING
trials failed and its remaining budget resumed by the next invocation (:func:`begin`); a run
that died before it dispatched a trial has nothing to resume. On the driver's own host it
died exactly when its process is gone (its pid is free, or names a later process), however
long ago it last beat: a driver stalled for minutes is alive. Another host's driver died when
its heartbeat is older than :data:`STALE_AFTER_S`, both times read from the database's clock
(:func:`search.study.storage.database_now`), so hosts whose clocks disagree judge alike.
Each run samples with its own seed (:func:`run_seed`), so two drivers on one study draw
different points while a single driver stays reproducible. Nothing here imports Ray.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.latency.quiet import HOST, start_time
from search.latency.retime import RETIME_PASSES, FrontNetwork, retime_front
from search.latency.timer import Timer
from search.space import PresetTrial, SearchSpace, nearest_trials, point_of, preset_trials
from search.study import front as frontlib
from search.study import storage as studylib
from search.study.record import TrialRecord

log = logging.getLogger(__name__)

HEARTBEAT_S = 10.0
STALE_AFTER_S = 60.0
RUN_PREFIX = "run:"


@dataclass
class RunRecord:
    run_id: str
    trials: int | None          # trials this run must finish (None: until the time budget)
    timeout_s: float | None
    started: float = field(default_factory=time.time)    # by the database's clock once begun
    heartbeat: float = field(default_factory=time.time)  # by the database's clock once begun
    done: bool = False
    resumed_from: str | None = None
    host: str = field(default_factory=lambda: HOST)
    pid: int = field(default_factory=os.getpid)
    index: int = 0              # 0 for a study's first run, 1 for the next, ...
    seed: int | None = None     # the seed its sampler drew with (see run_seed)
    pid_start: str | None = None  # its process's start time (quiet.start_time); None in older records

    def is_dead(self, now: float) -> bool:
        """Unfinished, and its driver is gone: on this host, its process has ended (its
        heartbeat is not looked at); on another, its heartbeat is older than
        :data:`STALE_AFTER_S` at ``now``, both by the database's clock."""
        if self.done:
            return False
        if self.host == HOST:
            return not self.driver_alive()
        return now - self.heartbeat > STALE_AFTER_S

    def driver_alive(self) -> bool:
        """Whether this host's process ``pid`` is the run's driver: the pid is taken and the
        process holding it started when the driver did (a pid the system gave to a later
        process is a dead driver). A record without the start time is judged by the pid alone."""
        if self.pid_start is not None:
            current = start_time(self.pid)
            if current is not None:
                return current == self.pid_start
            # no such process, or /proc cannot tell: ask the kernel
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # a process of another user holds that pid
        return True

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


def run_seed(seed: int | None, index: int) -> int | None:
    """The sampler seed of a study's run number ``index``: the space's seed for the first run,
    a seed derived from it and ``index`` for each later one. Runs of one study (one after the
    other, or drivers started together) would otherwise draw the same points, and a random
    sampler would train the same networks again."""
    if seed is None or index == 0:
        return seed
    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def has_trials(study: optuna.Study, run_id: str) -> bool:
    return any(TrialRecord.read(t).run_id == run_id for t in study.get_trials(deepcopy=False))


def begin(study: optuna.Study, storage_url: str, run: RunRecord, seed: int | None,
          now: float | None = None) -> RunRecord | None:
    """Register ``run`` (its index and seed set here) after recovering the runs whose driver
    died; return the dead run ``run`` resumes, if any.

    Holds the study's lock, so drivers starting together resume a dead run once, not each,
    and get distinct indices (so distinct seeds). ``run`` is stamped with its process's start
    time and the database's clock (its start and first heartbeat)."""
    with studylib.exclusive(storage_url, study.study_name, "recover"):
        clock = studylib.database_now(study)
        dead = _recover(study, now or clock)
        run.started = run.heartbeat = clock
        if run.host == HOST:
            run.pid_start = start_time(run.pid)
        run.index = len(runs(study))
        run.seed = run_seed(seed, run.index)
        if dead is not None and dead.trials is not None:
            run.resumed_from = dead.run_id
            run.trials = max(0, dead.trials - finished_by(study.get_trials(deepcopy=False), dead.run_id))
        run.save(study)
    return dead


def recover(study: optuna.Study, storage_url: str, now: float | None = None) -> RunRecord | None:
    """Fail the RUNNING trials of runs whose driver died; return the dead run to resume, if any.

    Holds the study's lock, so drivers starting together resume a dead run once, not each."""
    with studylib.exclusive(storage_url, study.study_name, "recover"):
        return _recover(study, now or studylib.database_now(study))


def _recover(study: optuna.Study, now: float) -> RunRecord | None:
    """Close the runs dead at ``now`` (the database's clock); the latest that dispatched a
    trial is the one to resume (a run that died at start-up, before any trial, has no budget
    in progress)."""
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
    started = [r for r in dead if has_trials(study, r.run_id)]
    return max(started, key=lambda r: r.started, default=None)


def enqueue_presets(study: optuna.Study, space: SearchSpace, storage_url: str,
                    fronts: dict[str, list[FrozenTrial]] | None = None) -> int:
    """Put the paper's presets first in the queue, the dearest to train first
    (:func:`dearest_first`; points of the space or fixed-architecture trials, see
    :func:`search.space.preset_trials`); the number queued. With
    ``seed_nearest`` the space's points nearest them follow (:func:`_enqueue_nearest`), and
    with ``seed_from`` the fronts of those earlier studies (``fronts``, read by
    :func:`seed_fronts` when not given) after them (:func:`_enqueue_fronts`).

    Each preset is queued when no trial of the study carries its name, so a driver killed
    while queueing leaves the rest to the next run and nothing twice; and once more when its
    only trial failed because its driver or worker died or the time budget cut it (see
    :func:`retry_preset`), since the front promises the trained references. The check and the
    enqueue hold the study's lock, so drivers starting together queue each preset once."""
    if fronts is None:
        fronts = seed_fronts(space, storage_url)  # a missing study fails before anything is queued
    if not space.seed_presets and not space.seed_nearest and not fronts:
        return 0
    with studylib.exclusive(storage_url, study.study_name, "presets"):
        todo: dict = {}
        if space.seed_presets:
            tried: dict[str, list[FrozenTrial]] = {}
            for t in study.get_trials(deepcopy=False):
                name = TrialRecord.read(t).preset
                if name is not None:
                    tried.setdefault(name, []).append(t)
            presets = preset_trials(space)
            todo = {name: p for name, p in presets.items() if name not in tried or retry_preset(tried[name])}
            outside = [name for name, p in todo.items() if p.arch is not None]
            if outside:
                log.info("%d of the paper presets are not points of this space; they join as fixed-architecture "
                         "trials: %s", len(outside), ", ".join(outside))
            for name, p in dearest_first(todo).items():
                fixed = p.arch.to_dict() if p.arch is not None else None
                study.enqueue_trial(p.params, user_attrs=TrialRecord(preset=name, preset_arch=fixed).attrs())
        _enqueue_nearest(study, space)
        _enqueue_fronts(study, space, fronts)
    return len(todo)


def dearest_first(presets: dict[str, PresetTrial]) -> dict[str, PresetTrial]:
    """The presets in the order they are queued: the most multiply-adds per image, at the size
    each trains at, first.

    Under ``min_accuracy: presets`` no searched trial goes out until every preset has trained
    (the floor is the least accurate preset's), so the preset that starts last sets how long the
    other workers wait. In the paper's order, custom-590k-dw (2.5x the multiply-adds of the next)
    started last and trained alone: in an ELPV search with ``image_size: [32, 64]``, one of two
    workers waited 20 minutes of the 60 for custom-590k-dw at 64 px. Longest first is the
    classic rule for finishing a batch of jobs on several workers together; multiply-adds stand
    in for training time (custom-590k-dw: 91M at 32 px and 11 s per epoch on ELPV;
    custom-140k-3x3: 8M and 1.8 s). Equal costs keep their order."""
    from castmodels import PRESETS, build_model
    from search.latency.measure import count_macs

    def macs(p: PresetTrial) -> int:
        return count_macs(build_model(PRESETS[p.name], 1, 2, p.image_size), (1, p.image_size, p.image_size))

    cost = {label: macs(p) for label, p in presets.items()}
    return dict(sorted(presets.items(), key=lambda item: -cost[item[0]]))


def _enqueue_nearest(study: optuna.Study, space: SearchSpace) -> int:
    """With ``seed_nearest``, queue the space's point nearest each preset it cannot express
    (:func:`search.space.nearest_trials`), after the presets, as searched trials marked
    ``near_preset``: they train with the presets' recipe and count towards the budget; like
    the presets they are never stopped early (:class:`search.run.scheduler.ParetoRungs`), so the
    sampler learns what the paper's designs reach trained out, not at a rung. Each is queued
    once per study (the caller holds the study's lock); the number queued."""
    if not space.seed_nearest:
        return 0
    done = {TrialRecord.read(t).near_preset for t in study.get_trials(deepcopy=False)}
    todo = {name: params for name, params in nearest_trials(space).items() if name not in done}
    for name, params in todo.items():
        study.enqueue_trial(params, user_attrs=TrialRecord(near_preset=name).attrs())
    if todo:
        log.info("queued this space's points nearest %d of the presets as the search's first trials: %s",
                 len(todo), ", ".join(todo))
    return len(todo)


def seed_fronts(space: SearchSpace, storage_url: str) -> dict[str, list[FrozenTrial]]:
    """The Pareto front (:func:`search.study.front.pareto_front`) of each study ``seed_from``
    names, read from ``storage_url``; a study that is not there is a ValueError naming the key
    and the study, raised before a run queues or trains anything."""
    fronts = {}
    for name in space.seed_from:
        try:
            earlier = studylib.load_existing_study(name, storage_url)
        except ValueError as e:
            raise ValueError(f"{space.path or '<dict>'}: seed_from: {e}") from None
        fronts[name] = frontlib.pareto_front(earlier)
    return fronts


def _enqueue_fronts(study: optuna.Study, space: SearchSpace, fronts: dict[str, list[FrozenTrial]]) -> int:
    """Queue each earlier study's front network as this space's point (:func:`search.space.point_of`:
    itself, or the growing form's nearest point), after the presets and their nearest points,
    as searched trials marked ``seeded_from: "<study>#<trial>"`` that train with the presets'
    recipe (a warm start; :func:`search.study.front.searched` does not count them as the
    search's own). Each is queued once per study (the caller holds the study's lock); one
    that is not a point of this space, or whose point is already queued, is skipped with a
    log line. The number queued."""
    trials = study.get_trials(deepcopy=False)
    done = {TrialRecord.read(t).seeded_from for t in trials}
    taken = [t.system_attrs.get("fixed_params") or t.params for t in trials]
    queued = 0
    for name, front in fronts.items():
        for t in front:
            tag = f"{name}#{t.number}"
            if tag in done:
                continue
            try:
                params = point_of(space, TrialRecord.read(t).arch_spec())
            except (ValueError, KeyError, TypeError) as e:
                log.info("seed_from: %s is not a point of this space, skipped: %s", tag, e)
                continue
            if params in taken:
                log.info("seed_from: %s is a point already queued, skipped", tag)
                continue
            study.enqueue_trial(params, user_attrs=TrialRecord(seeded_from=tag).attrs())
            taken.append(params)
            queued += 1
    if queued:
        log.info("queued %d networks of the fronts of %s as the search's first trials", queued,
                 ", ".join(fronts))
    return queued


RETRIED_FAILURES = ("driver died", "worker raised or died", "stopped before it finished")
BUDGET_CUT = "stopped before it finished: the run's time budget ran out while it trained"  # the error of a cut trial


def retry_preset(trials: list[FrozenTrial]) -> bool:
    """A preset's trials call for one more: its only trial failed for a reason outside its
    training (its driver or worker died, or the run's time ran out), not because it raised."""
    if len(trials) != 1 or trials[0].state != TrialState.FAIL:
        return False
    error = TrialRecord.read(trials[0]).error or ""
    return any(reason in error for reason in RETRIED_FAILURES)


def heartbeat(study: optuna.Study, run: RunRecord, stop: threading.Event) -> None:
    """Save ``run``'s heartbeat, the database's clock, every :data:`HEARTBEAT_S` until ``stop``
    is set (a thread's target)."""
    while not stop.wait(HEARTBEAT_S):
        try:
            run.heartbeat = studylib.database_now(study)
            run.save(study)
        except Exception as e:  # a database hiccup must not kill the search
            log.warning("heartbeat not saved: %s", e)


def others_live(study: optuna.Study, run_id: str, now: float | None = None) -> list[RunRecord]:
    """The study's runs other than ``run_id`` whose drivers are still at work (``now``: the
    database's clock by default)."""
    now = now or studylib.database_now(study)
    return [r for r in runs(study) if r.run_id != run_id and not r.done and not r.is_dead(now)]


def retime_study_front(study: optuna.Study, run_id: str | None = None, timer: Timer | None = None,
                       passes: int = RETIME_PASSES, gap_s: float | None = None) -> int:
    """Re-time the study's front with nothing else running (:func:`search.latency.retime.retime_front`,
    with the run's ``timer``: its quiet slot pauses the run's workers); the number re-timed.

    Not while another run of the study is live (its workers would be training beside the
    timing): the last run to finish re-times. A finished Optuna trial cannot be changed, so
    the quiet timings are stored as study user attrs ``retimed:<trial number>`` (see
    :func:`search.study.storage.retimed`)."""
    if run_id is not None and (busy := others_live(study, run_id)):
        log.info("front not re-timed: run %s of this study is still training; it re-times when it ends",
                 busy[0].run_id)
        return 0
    front: list[FrozenTrial] = []

    def networks() -> dict[int, FrontNetwork]:  # read inside the quiet slot
        front.extend(studylib.pareto_front(study))
        records = {t.number: TrialRecord.read(t) for t in front}
        return {n: FrontNetwork(r.build_network(), r.input_shape(), len(r.class_names), r.runtime)
                for n, r in records.items()}

    measured = retime_front(study, networks, timer or Timer(), passes, gap_s)
    for t in front:
        m = measured[t.number]
        study.set_user_attr(f"{studylib.RETIMED}{t.number}", {
            "latency_ms": m.latency_ms, "latency_iqr_ms": m.latency_iqr_ms,
            "batch_latency_ms": m.batch_latency_ms, "threads": m.threads, "runtime": m.runtime,
            "eager_latency_ms": m.eager_latency_ms, "latency_timings_ms": m.latency_timings_ms,
            "paces": m.paces, "at": time.time()})
    return len(front)


@dataclass
class RunOutcome:
    """What one run did with its sampled (not preset) networks, and what the front holds."""
    trained: int = 0
    infeasible: int = 0       # screened out before dispatch, or over a limit once trained
    below_floor: int = 0      # trained, less accurate than min_accuracy (not in trained)
    invalid: int = 0          # could not be built
    pruned: int = 0           # stopped early
    failed: int = 0
    cut: int = 0              # still training when the run's time budget ran out (failed with BUDGET_CUT)
    presets_trained: int = 0  # completed presets that trained something here
    presets_reused: int = 0   # completed presets whose every training came from the store of trainings
    sampled_reused: int = 0   # sampled networks (in trained) whose every training came from the store
    # preset name, or "trial <n>" for a sampled network -> its reused seeds, {"seed", "study"} each
    reused: dict[str, list[dict]] = field(default_factory=dict)
    front: int = 0
    front_searched: int = 0   # sampled networks on the front (of any run)
    dominated: dict[str, list[int]] = field(default_factory=dict)  # preset -> sampled trials dominating it
    seeded: dict[int, str] = field(default_factory=dict)  # front trial -> the preset whose nearest point it is


def run_outcome(study: optuna.Study, run_id: str) -> RunOutcome:
    """Count this run's sampled networks by outcome, and say which presets the front's sampled
    networks dominate (feasible COMPLETE trials, by the study's three objectives)."""
    out = RunOutcome()
    trials = study.get_trials(deepcopy=False)
    for t in trials:
        r = TrialRecord.read(t)
        if r.run_id != run_id:
            continue
        whole = bool(r.reused) and len(r.reused) >= len(r.seed_runs or [None])  # no training of it ran here
        if r.reused:
            out.reused[r.preset or f"trial {t.number}"] = r.reused
        if r.preset is not None:
            out.presets_trained += t.state == TrialState.COMPLETE and not whole
            out.presets_reused += t.state == TrialState.COMPLETE and whole
        elif r.invalid:
            out.invalid += 1
        elif t.state == TrialState.COMPLETE:
            if studylib.is_feasible(t):
                out.trained += 1
                out.sampled_reused += whole
            elif studylib.below_floor(t):
                out.below_floor += 1
            else:
                out.infeasible += 1
        elif t.state == TrialState.PRUNED:
            out.pruned += 1
        elif t.state == TrialState.FAIL:
            if (r.error or "").startswith(BUDGET_CUT):
                out.cut += 1
            else:
                out.failed += 1
    on_front = frontlib.pareto_front(study)
    searched = [t for t in on_front if TrialRecord.read(t).preset is None]
    out.front, out.front_searched = len(on_front), len(searched)
    out.seeded = {t.number: near for t in searched if (near := TrialRecord.read(t).near_preset)}
    drawn = [(t, frontlib.point(t)) for t in searched]  # seeded points too, named as such
    for name, preset in frontlib.presets(trials).items():
        if beaters := frontlib.dominating(frontlib.point(preset), drawn):
            out.dominated[name] = [t.number for t, _ in beaters]
    return out

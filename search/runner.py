"""Run a search: Optuna asks, Ray Tune trains, Optuna is told. The only module that imports Ray.

The study in SQL is the single source of truth. A :class:`StudySearcher` (a Ray Tune
searcher) asks the Optuna study for each new trial, decodes it into a candidate and
hands it to Tune; Tune runs the trial on a worker (one CPU, one torch thread) under an
ASHA scheduler on validation accuracy; when Tune reports the trial's end the searcher
tells the study: COMPLETE with (accuracy, latency_ms, params), PRUNED when ASHA stopped
it early (never with partial values), FAIL with the error when it raised or its worker
died. Each invocation is a *run* recorded in the study with a heartbeat, so a run whose
driver was killed is found by the next invocation, its orphaned trials are failed, and
the rest of its budget is resumed.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState

from search import study as studylib
from search.space import Candidate, InvalidCandidate, SearchSpace, preset_params, suggest

log = logging.getLogger(__name__)

HEARTBEAT_S = 10.0
STALE_AFTER_S = 60.0
FINAL = "final"


# ---------------------------------------------------------------------------------------
# Run records: which invocation owns which trials, and whether it is still alive.


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
        return f"run:{self.run_id}"

    def save(self, study: optuna.Study) -> None:
        study.set_user_attr(self.key, self.__dict__.copy())


def _runs(study: optuna.Study) -> list[RunRecord]:
    return [RunRecord(**v) for k, v in study.user_attrs.items() if k.startswith("run:")]


def _finished_by(trials, run_id: str) -> int:
    """Trials of ``run_id`` that count towards its budget: complete (feasible or not) or pruned."""
    return sum(
        1 for t in trials
        if t.user_attrs.get("run_id") == run_id and not t.user_attrs.get("invalid")
        and t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    )


def recover(study: optuna.Study, now: float | None = None) -> RunRecord | None:
    """Fail the RUNNING trials of runs whose driver died; return the dead run to resume, if any.

    Holds the study's lock, so drivers starting together resume a dead run once, not each."""
    with studylib.exclusive(study, "recover"):
        return _recover(study, now or time.time())


def _recover(study: optuna.Study, now: float) -> RunRecord | None:
    dead = [r for r in _runs(study) if r.is_dead(now)]
    if not dead:
        return None
    dead_ids = {r.run_id for r in dead}
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("run_id") in dead_ids:
            study._storage.set_trial_user_attr(t._trial_id, "error", "its run's driver died while it was running")
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            log.warning("trial %d was running when its driver died: marked failed", t.number)
    for r in dead:
        r.done = True
        r.save(study)
    return max(dead, key=lambda r: r.started)


# ---------------------------------------------------------------------------------------
# The bridge between Tune and the study.


@dataclass
class Progress:
    complete: int
    running: int
    pruned: int
    infeasible: int
    invalid: int
    failed: int
    best_accuracy: float | None
    front_size: int
    elapsed_s: float
    time_left_s: float | None
    run_finished: int
    run_budget: int | None


def _searcher_class():
    from ray.tune.search import Searcher

    class _StudySearcher(Searcher):
        def __init__(self, study: optuna.Study, space: SearchSpace, run: RunRecord, artifacts: Path,
                     deadline: float | None, on_progress: Callable[[Progress], None] | None):
            super().__init__(metric="val_accuracy", mode="max")
            self.study, self.space, self.run, self.artifacts = study, space, run, artifacts
            self.deadline = deadline
            self.on_progress = on_progress
            self.live: dict[str, optuna.Trial] = {}
            self.val_history: dict[str, list[float]] = {}
            self.issued = 0
            self.t0 = time.time()

        # Tune checkpoints searchers by pickling them; our state is the SQL study.
        def save_to_dir(self, *args, **kwargs) -> None:
            pass

        def suggest(self, trial_id: str):
            if self.run.trials is not None and self.issued >= self.run.trials:
                return Searcher.FINISHED
            if self.deadline is not None and time.time() >= self.deadline:
                return Searcher.FINISHED
            for _ in range(1000):
                ot = self.study.ask()
                ot.set_user_attr("run_id", self.run.run_id)
                try:
                    cand = suggest(self.space, ot)
                except InvalidCandidate as e:
                    ot.set_user_attr("invalid", str(e))
                    self.study.tell(ot, state=TrialState.PRUNED)
                    continue
                break
            else:
                raise RuntimeError("the space produced 1000 invalid candidates in a row")
            ot.set_user_attr("arch", cand.arch.to_dict())
            ot.set_user_attr("arch_code", cand.arch.code())
            ot.set_user_attr("recipe", cand.recipe.to_dict())
            ot.set_user_attr("enhancements", cand.enhancements_summary())
            self.live[trial_id] = ot
            self.val_history[trial_id] = []
            self.issued += 1
            preset = ot.user_attrs.get("preset")
            return {
                "number": ot.number,
                "candidate": cand.to_dict(),
                "out_dir": str(self.artifacts / f"trial-{ot.number:05d}"),
                "limits": {"max_latency_ms": self.space.constraints.max_latency_ms,
                           "max_params": self.space.constraints.max_params},
                "protect": bool(preset),
            }

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            if trial_id in self.val_history and not result.get(FINAL):
                self.val_history[trial_id].append(float(result["val_accuracy"]))

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            ot = self.live.pop(trial_id, None)
            if ot is None:
                return
            history = self.val_history.pop(trial_id, [])
            result = result or {}
            if result.get("node_id"):
                ot.set_user_attr("node_id", result["node_id"])
            if error or result.get("error"):
                ot.set_user_attr("error", result.get("error") or "the trial's worker raised or died (see the Ray logs)")
                ot.set_user_attr("val_accuracy", history)
                self.study.tell(ot, state=TrialState.FAIL)
            elif result.get(FINAL):
                tell_outcome(self.study, ot, json.loads(result["outcome"]), self.space)
            else:
                ot.set_user_attr("val_accuracy", history)
                ot.set_user_attr("pruned_at_epoch", int(result.get("epoch", len(history))))
                self.study.tell(ot, state=TrialState.PRUNED)
            self.report()

        def fail_leftovers(self, reason: str) -> None:
            for trial_id in list(self.live):
                ot = self.live.pop(trial_id)
                ot.set_user_attr("error", reason)
                self.study.tell(ot, state=TrialState.FAIL)

        def report(self) -> None:
            if self.on_progress is None:
                return
            trials = self.study.get_trials(deepcopy=False)
            c = studylib.counts(trials)
            feasible = [t for t in trials if t.state == TrialState.COMPLETE and studylib.is_feasible(t)]
            best = max((t.values[0] for t in feasible), default=None)
            now = time.time()
            self.on_progress(Progress(
                complete=c["complete"], running=len(self.live), pruned=c["pruned"],
                infeasible=c["infeasible"], invalid=c["invalid"], failed=c["failed"], best_accuracy=best,
                front_size=len(studylib.pareto_front(self.study)), elapsed_s=now - self.t0,
                time_left_s=None if self.deadline is None else max(0.0, self.deadline - now),
                run_finished=_finished_by(trials, self.run.run_id), run_budget=self.run.trials,
            ))

    return _StudySearcher


def tell_outcome(study: optuna.Study, ot: optuna.Trial, outcome: dict, space: SearchSpace) -> None:
    """Store everything a finished trial produced, then tell the study COMPLETE."""
    m = outcome["measurement"]
    ev = outcome["evaluation"]
    attrs = {key: m[key] for key in ("macs", "latency_iqr_ms", "batch_latency_ms", "batch_size", "threads")}
    attrs |= {key: outcome[key] for key in ("machine", "versions", "data")}
    attrs["worker_seconds"] = outcome["seconds"]
    accuracy = None
    if ev is None:  # broke an architecture limit: measured, never trained
        attrs["infeasible"] = True
    else:
        accuracy = ev["accuracy"]
        attrs |= {key: ev[key] for key in ("macro_f1", "per_class_recall", "confusion")}
        attrs |= {key: outcome[key] for key in ("val_accuracy", "epochs_run", "train_seconds", "weights_path")}
    for key, value in attrs.items():
        ot.set_user_attr(key, value)
    limits = {"max_latency_ms": space.constraints.max_latency_ms, "max_params": space.constraints.max_params,
              "min_accuracy": space.constraints.min_accuracy}
    for name, value in studylib.constraint_values(limits, accuracy, m["latency_ms"], m["params"]).items():
        ot.set_constraint(name, value)
    # An untrained (infeasible) trial's accuracy is recorded as 0.0: it has none, and its
    # broken constraint keeps it off the front and tells the sampler to avoid the region.
    study.tell(ot, values=[accuracy if accuracy is not None else 0.0, m["latency_ms"], float(m["params"])])


# ---------------------------------------------------------------------------------------
# The trial, as it runs on a Ray worker.


def _trial(config: dict, datasets: dict | None = None) -> None:
    # Test hooks (environment of the Ray workers): CASTSEARCH_TRIAL_PIDFILE_DIR=<dir> makes each
    # trial write <dir>/trial-<number>.pid holding its worker's pid first thing, so a test can
    # kill the worker mid-trial; CASTSEARCH_INJECT_FAULT=<n>[,<n>...] makes those trials raise.
    pid_dir = os.environ.get("CASTSEARCH_TRIAL_PIDFILE_DIR")
    if pid_dir:
        Path(pid_dir, f"trial-{config['number']}.pid").write_text(str(os.getpid()))
    import ray
    import torch
    from ray import tune

    from search.measure import library_versions, machine_fingerprint
    from search.trial import Limits, run_candidate

    torch.set_num_threads(int(os.environ.get("CASTSEARCH_TRIAL_THREADS", "1")))
    node_id = ray.get_runtime_context().get_node_id()
    cand = Candidate.from_dict(config["candidate"])
    data = datasets[cand.recipe.image_size]
    last_epoch = cand.recipe.epochs

    def on_epoch(epoch: int, val_accuracy: float) -> None:
        if epoch < last_epoch:  # the last epoch is reported once, with the final result
            tune.report({"epoch": epoch, "val_accuracy": val_accuracy, "node_id": node_id})

    try:
        fault = os.environ.get("CASTSEARCH_INJECT_FAULT")
        if fault and str(config["number"]) in fault.split(","):
            raise RuntimeError(f"injected fault in trial {config['number']} (CASTSEARCH_INJECT_FAULT)")
        outcome = run_candidate(cand.arch, cand.recipe, data, out_dir=config["out_dir"],
                                limits=Limits(**config["limits"]), on_epoch=on_epoch)
    except Exception as e:
        tune.report({"epoch": 0, "val_accuracy": 0.0, "node_id": node_id, FINAL: True,
                     "error": f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}"})
        return
    record = outcome.to_dict()
    record.update(data=data.identity, machine=machine_fingerprint(), versions=library_versions())
    val = outcome.val_accuracy[-1] if outcome.val_accuracy else 0.0
    tune.report({"epoch": max(outcome.epochs_run, 1), "val_accuracy": val, "node_id": node_id,
                 FINAL: True, "outcome": json.dumps(record)})


def _scheduler(max_epochs: int):
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.schedulers.trial_scheduler import TrialScheduler

    class _ProtectingASHA(ASHAScheduler):
        """ASHA that lets seeded reference trials (the paper's presets) run to the end."""

        def on_trial_result(self, tune_controller, trial, result):
            decision = super().on_trial_result(tune_controller, trial, result)
            if trial.config.get("protect") and not result.get(FINAL):
                return TrialScheduler.CONTINUE
            return decision

    return _ProtectingASHA(time_attr="epoch", metric="val_accuracy", mode="max",
                           max_t=max(1, max_epochs), grace_period=1, reduction_factor=3)


# ---------------------------------------------------------------------------------------
# The driver.


@dataclass
class RunOptions:
    study_name: str
    storage: str
    trials: int | None
    timeout_s: float | None
    workers: int = 1
    cpus_per_trial: float = 1.0
    address: str | None = None
    artifacts: Path | None = None
    quiet_retime: bool = True


@dataclass
class RunSummary:
    run_id: str
    resumed_from: str | None
    finished: int
    budget: int | None
    elapsed_s: float
    front: list


def enqueue_presets(study: optuna.Study, space: SearchSpace) -> int:
    """Put the paper's presets first in the queue, once per study (also when several drivers
    start on a new study at the same moment: the check and the enqueue hold the study's lock)."""
    if not space.seed_presets:
        return 0
    with studylib.exclusive(study, "presets"):
        if study.user_attrs.get("presets_enqueued"):
            return 0
        params = preset_params(space)
        for name, p in params.items():
            study.enqueue_trial(p, user_attrs={"preset": name})
        study.set_user_attr("presets_enqueued", sorted(params))
    return len(params)


def _heartbeat(study: optuna.Study, run: RunRecord, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        run.heartbeat = time.time()
        try:
            run.save(study)
        except Exception as e:  # a database hiccup must not kill the search
            log.warning("heartbeat not saved: %s", e)


def run_search(space: SearchSpace, datasets: dict, opts: RunOptions,
               on_progress: Callable[[Progress], None] | None = None) -> RunSummary:
    """Run (or resume) a search until its budget is spent; return the study's front."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's legacy reporter honours verbose=0
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no CSV/JSON/TensorBoard per trial
    import ray
    from ray import tune

    sampler = studylib.make_sampler(space.sampler.name, space.sampler.seed, space.sampler.population_size)
    study = studylib.open_study(opts.study_name, opts.storage, sampler=sampler)
    dead = recover(study)
    trials, timeout_s, resumed_from = opts.trials, opts.timeout_s, None
    if dead is not None and dead.trials is not None:
        done = _finished_by(study.get_trials(deepcopy=False), dead.run_id)
        trials = max(0, dead.trials - done)
        resumed_from = dead.run_id
        log.info("resuming run %s that was interrupted: %d of %d trials finished, %d to go",
                 dead.run_id, done, dead.trials, trials)
    run = RunRecord(run_id=uuid.uuid4().hex[:8], trials=trials, timeout_s=timeout_s, resumed_from=resumed_from)
    run.save(study)
    queued = enqueue_presets(study, space)
    if queued:
        log.info("enqueued %d paper presets as the first trials", queued)

    artifacts = (opts.artifacts or Path("studies") / opts.study_name).resolve()
    artifacts.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + timeout_s if timeout_s else None
    searcher = _searcher_class()(study, space, run, artifacts, deadline, on_progress)

    started_ray = not ray.is_initialized()
    if started_ray:
        if opts.address:
            ray.init(address=opts.address, log_to_driver=False, configure_logging=False)
        else:
            # "local": a Ray of its own, even when `ray start` left a cluster address on this machine
            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
    logging.getLogger("ray").setLevel(logging.ERROR)

    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(study, run, stop), daemon=True)
    beat.start()
    t0 = time.time()
    try:
        if trials is None or trials > 0:
            tuner = tune.Tuner(
                tune.with_resources(tune.with_parameters(_trial, datasets=datasets), {"cpu": opts.cpus_per_trial}),
                tune_config=tune.TuneConfig(
                    search_alg=searcher, scheduler=_scheduler(space.max_epochs),
                    num_samples=-1, max_concurrent_trials=opts.workers, reuse_actors=True,
                    time_budget_s=timeout_s,
                ),
                run_config=tune.RunConfig(storage_path=str(artifacts / "ray"), name=f"run-{run.run_id}",
                                          verbose=0, log_to_file=True),
            )
            tuner.fit()
    finally:
        searcher.fail_leftovers("stopped before it finished (time budget or interrupt)")
        stop.set()
        if started_ray:
            ray.shutdown()
    if opts.quiet_retime:
        retime_front(study)
    run.done = True
    run.heartbeat = time.time()
    run.save(study)
    return RunSummary(run_id=run.run_id, resumed_from=resumed_from,
                      finished=_finished_by(study.get_trials(deepcopy=False), run.run_id),
                      budget=trials, elapsed_s=time.time() - t0, front=studylib.pareto_front(study))


def retime_front(study: optuna.Study) -> int:
    """Re-time the front's latencies with nothing else running.

    A finished Optuna trial cannot be changed, so the quiet timings are stored as study
    user attrs ``retimed:<trial number>`` (see :func:`search.study.retimed`)."""
    import torch

    from castmodels import ArchSpec
    from search.measure import measure
    from search.train import TrainRecipe
    from search.trial import build_candidate, input_shape

    front = studylib.pareto_front(study)
    threads = torch.get_num_threads()
    for t in front:
        arch = ArchSpec.from_dict(t.user_attrs["arch"])
        recipe = TrainRecipe.from_dict(t.user_attrs["recipe"])
        n_classes = len(t.user_attrs["data"]["class_names"])
        m = measure(build_candidate(arch, recipe, n_classes), input_shape(recipe), threads=1)
        study.set_user_attr(f"{studylib.RETIMED}{t.number}", {
            "latency_ms": m.latency_ms, "latency_iqr_ms": m.latency_iqr_ms,
            "batch_latency_ms": m.batch_latency_ms, "threads": m.threads, "at": time.time()})
    torch.set_num_threads(threads)
    return len(front)

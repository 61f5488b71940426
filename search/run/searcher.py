"""The bridge between Ray Tune and the study: Optuna asks, Tune trains, Optuna is told.

A :class:`StudySearcher` (a Ray Tune searcher) asks the Optuna study for each new trial,
decodes it into a candidate, screens it against the limits and hands it to Tune as one
:class:`search.trial.config.TrialConfig`; when Tune reports the trial's end the searcher tells
the study: COMPLETE with (accuracy, latency_ms, params), the latency the lower of the screen's
and a re-check taken as the trial ends (:meth:`search.latency.screen.Screen.recheck`), PRUNED
when the scheduler stopped it early (never with partial values), FAIL with the error when it
raised or its worker died. The study in SQL is the single source of truth.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from castmodels import ArchSpec
from search.latency.screen import Screen, Verdict
from search.run.runs import RunRecord, finished_by
from search.run.scheduler import preview_epochs
from search.run.worker import ERROR, FINAL, OUTCOME, PREVIEW, VAL_SCORE, WORKERS_DIR
from search.space import Candidate, InvalidCandidate, SearchSpace, suggest
from search.study import front as frontlib
from search.study.record import Limits, TrialRecord
from search.study.storage import FLOOR_ATTR, tell_outcome
from search.trial.config import KEY, TrialConfig
from search.trial.pipeline import TrialResult

log = logging.getLogger(__name__)

MAX_SKIPPED = 200  # candidates in a row that are invalid or screened out before the searcher gives up (each distinct one is timed)


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
    below_floor: int = 0  # trained, less accurate than min_accuracy


class StudySearcher(Searcher):
    """Tune's searcher backed by the Optuna study: each suggestion is an asked trial."""

    def __init__(self, study: optuna.Study, space: SearchSpace, run: RunRecord, artifacts: Path,
                 deadline: float | None, on_progress: Callable[[Progress], None] | None, screen: Screen,
                 limits: dict[int, Limits], gpus_per_trial: float = 0.0):
        super().__init__(metric=VAL_SCORE, mode="max")
        self.gpus_per_trial = gpus_per_trial  # what each trial is given of a GPU (search.run.resources)
        self.study, self.space, self.run, self.artifacts = study, space, run, artifacts
        self.deadline = deadline
        self.on_progress = on_progress
        self.screen = screen
        self.limits = limits  # by image size (a relative latency limit depends on it)
        self.live: dict[str, optuna.Trial] = {}
        self.configs: dict[str, TrialConfig] = {}  # what each live trial was handed
        self.val_history: dict[str, list[float]] = {}
        self.previews: dict[str, dict] = {}  # the preview each live trial reported (early_stopping: preview)
        self.issued = 0
        # min_accuracy: presets is resolved once the presets have trained; until then only presets go out
        self.floor_pending = space.accuracy_floor is not None
        self.t0 = time.time()

    # Tune checkpoints searchers by pickling them; our state is the SQL study.
    def save_to_dir(self, *args, **kwargs) -> None:
        pass

    def __getstate__(self) -> dict:
        """What Tune pickles into ``tuner.pkl`` under the artifacts folder: never the study,
        whose storage URL may hold a database password, nor the screen and callbacks that
        hold it too. A run is resumed from the study, never from Tune's pickle."""
        state = self.__dict__.copy()
        for key in ("study", "screen", "on_progress", "live"):
            state[key] = None
        return state

    def suggest(self, trial_id: str) -> dict[str, TrialConfig] | str | None:
        """Tune's config for its trial ``trial_id``: ``{KEY: TrialConfig}`` of the next feasible
        candidate; ``Searcher.FINISHED`` once the run's budget is spent; None while the
        presets that set ``min_accuracy: presets`` train."""
        if self.run.trials is not None and self.issued >= self.run.trials:
            return Searcher.FINISHED
        if self.deadline is not None and time.time() >= self.deadline:
            return Searcher.FINISHED
        if self.floor_pending and not self._floor_ready():
            return None  # Tune asks again when a preset finishes
        for _ in range(MAX_SKIPPED):
            ot = self.study.ask()
            TrialRecord(run_id=self.run.run_id).write(ot)
            fixed = TrialRecord.of_attrs(ot.user_attrs).preset_arch
            try:
                cand = suggest(self.space, ot, ArchSpec.from_dict(fixed) if fixed else None)
            except InvalidCandidate as e:
                TrialRecord(invalid=str(e)).write(ot)
                self.study.tell(ot, state=TrialState.PRUNED)
                continue
            TrialRecord(arch=cand.arch.to_dict(), arch_code=cand.arch.code(), recipe=cand.recipe.to_dict(),
                        enhancements=cand.enhancements_summary()).write(ot)
            verdict = self._screen(ot, cand)
            if verdict.feasible:
                break
            if self.deadline is not None and time.time() >= self.deadline:
                return Searcher.FINISHED
        else:
            raise RuntimeError(f"the space produced {MAX_SKIPPED} candidates in a row that cannot be built or "
                               f"break a limit ({self.space.constraints}): widen the limits or narrow the "
                               f"architecture ranges")
        config = self._config(ot, cand, verdict)
        self.live[trial_id] = ot
        self.configs[trial_id] = config
        self.val_history[trial_id] = []
        self.issued += 1
        return {KEY: config}

    def _config(self, ot: optuna.Trial, cand: Candidate, verdict: Verdict) -> TrialConfig:
        """What the worker is told to do with the feasible candidate ``cand`` of trial ``ot``."""
        record = TrialRecord.of_attrs(ot.user_attrs)
        preset = record.preset is not None
        space = self.space
        # seeds_for: front: the front as it stands, which the first training must join to be retrained,
        # and the mean so far to be retrained again.
        # A preset is trained with every seed: it is the reference the floor, the front and the
        # report compare against, and one draw of it is several points off on a small data set.
        front = None
        if space.seeds > 1 and space.seeds_for == "front" and not preset:
            front = tuple(tuple(t.values) for t in frontlib.pareto_front(self.study))
        return TrialConfig(
            number=ot.number, arch=cand.arch, recipe=cand.recipe, measurement=verdict.measurement,
            out_dir=self.artifacts / f"trial-{ot.number:05d}", workers_dir=self.artifacts / WORKERS_DIR,
            metric=space.metric, seeds=space.seeds, front=front,
            # never stopped early: the presets, and the space's points nearest them (seed_nearest),
            # which are there to show the sampler what the paper's designs reach when trained out
            protect=preset or record.near_preset is not None,
            min_accuracy=self.limits[cand.recipe.image_size].min_accuracy,
            # early_stopping: preview: epochs of the compressed schedule the trial is judged by first
            preview=preview_epochs(space.budget.early_stopping, space.max_epochs, cand.recipe.epochs),
            gpus=self.gpus_per_trial,
        )

    def _floor_ready(self) -> bool:
        """Whether a candidate may go out under ``min_accuracy: presets``: while a preset waits
        in the queue it is the next one asked; while presets train (and none waits) nothing
        goes out, since the floor is the least accurate preset's accuracy; once they are done
        the floor is resolved into the limits and the search starts."""
        pending = [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
                   if TrialRecord.read(t).preset is not None]
        if any(t.state == TrialState.WAITING for t in pending):
            return True
        if pending:
            return False
        self.floor_pending = False
        least = frontlib.least_accurate_preset(self.study.get_trials(deepcopy=False))
        if least is None:
            log.warning("min_accuracy: presets, but no preset trained in this study: the search has no "
                        "accuracy floor")
            return True
        floor, name = least.values[0], TrialRecord.read(least).preset
        self.limits = {size: dataclasses.replace(lim, min_accuracy=floor) for size, lim in self.limits.items()}
        self.study.set_user_attr(FLOOR_ATTR, {"min_accuracy": floor, "preset": name, "trial": least.number,
                                              "at": time.time()})
        log.info("min_accuracy = %.4f, the validation %s of %s (trial %d), the least accurate preset",
                 floor, self.space.metric, name, least.number)
        return True

    def _screen(self, ot: optuna.Trial, cand: Candidate) -> Verdict:
        """Check ``cand`` against the limits before it is dispatched (:mod:`search.latency.screen`).

        An infeasible candidate is told to the study at once: COMPLETE with its constraint
        values, so the sampler learns to avoid the region, accuracy 0 (never trained) and
        latency +inf when only its parameter count was needed to rule it out. It occupies no
        worker and does not count towards the run's trials."""
        limits = self.limits[cand.recipe.image_size]
        verdict = self.screen.check(cand.arch, cand.recipe, limits)
        if verdict.feasible:
            return verdict
        record = TrialRecord(infeasible=True, screened=verdict.reason)
        latency = math.inf
        if verdict.measurement is not None:
            record.add_measurement(verdict.measurement)
            latency = verdict.measurement.latency_ms
        record.write(ot)
        constraints = limits.constraint_values(None, 0.0 if math.isinf(latency) else latency, verdict.params)
        for name, value in constraints.items():
            ot.set_constraint(name, value)
        self.study.tell(ot, values=[0.0, latency, float(verdict.params)])
        return verdict

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.val_history and not result.get(FINAL):
            if PREVIEW in result:
                self.previews[trial_id] = {"epochs": int(result["epoch"]), "score": float(result[VAL_SCORE]),
                                           "seconds": float(result[PREVIEW])}
            else:
                self.val_history[trial_id].append(float(result[VAL_SCORE]))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot = self.live.pop(trial_id, None)
        if ot is None:
            return
        history = self.val_history.pop(trial_id, [])
        preview = self.previews.pop(trial_id, None)
        config = self.configs.pop(trial_id)
        limits = self.limits[config.image_size]
        result = result or {}
        record = TrialRecord(node_id=result.get("node_id") or None, preview=preview)
        if error or result.get(ERROR):
            record.error = result.get(ERROR) or "the trial's worker raised or died (see the Ray logs)"
            record.val_accuracy = history
            record.write(ot)
            self.study.tell(ot, state=TrialState.FAIL)
        elif result.get(FINAL):
            tell_outcome(self.study, ot, record, self._rechecked(ot.number, config, result[OUTCOME]), limits)
        else:
            record.val_accuracy = history
            record.pruned_at_epoch = int(result.get("epoch", len(history)))
            record.write(ot)
            seen = history + ([preview["score"]] if preview else [])
            if limits.min_accuracy is not None and seen:
                # TPE ranks a stopped trial with the trained ones that missed the floor, by how far
                # below it the trial was when stopped, not ahead of them (where Optuna puts trials
                # stopped early that carry no constraint)
                ot.set_constraint("min_accuracy", limits.min_accuracy - max(seen))
            self.study.tell(ot, state=TrialState.PRUNED)
        self.report()

    def _rechecked(self, number: int, config: TrialConfig, result: TrialResult) -> TrialResult:
        """``result`` with its latency timed again as the trial ends, when it trained: its latency
        joins the front. The screen's figure stands when the re-check fails."""
        if result.outcome.validation is None:
            return result
        try:
            return result.with_measurement(self.screen.recheck(config.arch, config.recipe))
        except Exception as e:  # the search goes on
            log.warning("trial %d: latency re-check failed (%s: %s); its screening latency stands",
                        number, type(e).__name__, e)
            return result

    def fail_leftovers(self, reason: str) -> None:
        for trial_id in list(self.live):
            ot = self.live.pop(trial_id)
            self.configs.pop(trial_id, None)
            TrialRecord(error=reason).write(ot)
            self.study.tell(ot, state=TrialState.FAIL)

    def report(self) -> None:
        if self.on_progress is None:
            return
        trials = self.study.get_trials(deepcopy=False)
        c = frontlib.counts(trials)
        feasible = [t for t in trials if t.state == TrialState.COMPLETE and frontlib.is_feasible(t)]
        best = max((t.values[0] for t in feasible), default=None)
        now = time.time()
        self.on_progress(Progress(
            complete=c["complete"], running=len(self.live), pruned=c["pruned"],
            infeasible=c["infeasible"], invalid=c["invalid"], failed=c["failed"], best_accuracy=best,
            front_size=len(frontlib.pareto_front(self.study)), elapsed_s=now - self.t0,
            time_left_s=None if self.deadline is None else max(0.0, self.deadline - now),
            run_finished=finished_by(trials, self.run.run_id), run_budget=self.run.trials,
            below_floor=c["below_floor"],
        ))

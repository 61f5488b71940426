"""Early stopping: where a trial is judged part-way (grace, preview) and the rule that stops it.

- :func:`grace_epochs`: the first rung, past the learning rate's warm-up;
- :func:`preview_epochs`: the length of a trial's preview under ``early_stopping: preview``;
- :class:`ParetoRungs`: successive halving by Pareto dominance instead of accuracy alone;
- :func:`make_scheduler`: the scheduler ``budget.early_stopping`` names.

The rule reads only what a trial reports (:mod:`search.run.worker`'s keys) and its
:class:`search.trial.config.TrialConfig`, so it is tested without Ray running.
"""

from __future__ import annotations

import math

from ray.tune.schedulers import FIFOScheduler
from ray.tune.schedulers.trial_scheduler import TrialScheduler

from search.run.worker import FINAL, PREVIEW, VAL_SCORE
from search.study.front import dominates, objective_point
from search.trial.config import KEY, TrialConfig

REDUCTION = 3  # rungs at grace, grace x 3, grace x 9, ... epochs


def grace_epochs(max_epochs: int) -> int:
    """The first rung: a third of the longest schedule (at least one epoch).

    Under the default one-cycle schedule the first quarter of training warms the learning
    rate up, so a score after one epoch of ten ranks candidates by how fast they start, not by
    where they end: with a rung at epoch 1, an X-SDD search stopped all 30 networks it sampled in
    its first 7 minutes there. The first rung sits past the warm-up, and the next at
    ``REDUCTION`` times that."""
    return max(1, math.ceil(max_epochs / REDUCTION))


def preview_epochs(early_stopping: str, max_epochs: int, epochs: int) -> int | None:
    """Under ``early_stopping: preview``, the epochs of a trial's preview: the first rung's
    (:func:`grace_epochs` of the longest schedule), or None when the trial's own schedule is not
    longer than that (its full training is no dearer than the look)."""
    if early_stopping != "preview":
        return None
    grace = grace_epochs(max_epochs)
    return grace if grace < min(epochs, max_epochs) else None


class ParetoRungs(FIFOScheduler):
    """Successive halving for a search with three objectives.

    ASHA ranks trials at each rung by accuracy alone, so in a search for small, fast networks
    it stops exactly the candidates the front needs: a 50K-parameter network is less accurate
    after four epochs than the paper's 600K-parameter presets, and with its first rung at a
    third of the schedule ASHA still stopped 10 of the first 11 networks an X-SDD search
    sampled, while the presets filled its rungs. Here a trial reaching a
    rung (``grace`` epochs, then ``REDUCTION`` times more, below ``max_t``) is recorded there
    with (validation score, latency, parameters) -- latency and parameters measured by the
    driver before dispatch -- and stopped when at least ``REDUCTION - 1`` trials recorded at
    the same rung dominate it: a network is stopped only for networks at least as accurate
    at the same point of training *and* as fast *and* as small. Trials marked ``protect``
    (the presets and, under ``seed_nearest``, the space's points nearest them) are recorded
    but never stopped.

    With ``preview`` there is one rung, at ``grace`` epochs, and it reads only the score each
    trial reports at the end of its preview (:func:`search.trial.pipeline.preview`: the schedule
    compressed to ``grace`` epochs) before its full training; the scores of that training's
    epochs are not judged."""

    def __init__(self, max_t: int, grace: int, metric: str = VAL_SCORE, preview: bool = False):
        super().__init__()
        self.score_key = metric
        self.preview = preview
        self.milestones = [m for m in (grace * REDUCTION ** k for k in range(1 if preview else 16)) if m < max_t]
        self.rungs: dict[int, list[list[float]]] = {m: [] for m in self.milestones}
        self.passed: dict[str, set[int]] = {}

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if result.get(FINAL) or self.score_key not in result or self.preview != (PREVIEW in result):
            return TrialScheduler.CONTINUE
        epoch = int(result.get("epoch", 0))
        passed = self.passed.setdefault(trial.trial_id, set())
        config: TrialConfig = trial.config[KEY]
        decision = TrialScheduler.CONTINUE
        for milestone in self.milestones:
            if epoch < milestone or milestone in passed:
                continue
            passed.add(milestone)
            m = config.measurement
            point = objective_point(result[self.score_key], m.latency_ms, m.params)
            dominated_by = sum(dominates(other, point) for other in self.rungs[milestone])
            self.rungs[milestone].append(point)
            if dominated_by >= REDUCTION - 1 and not config.protect:
                decision = TrialScheduler.STOP
        return decision

    def on_trial_complete(self, tune_controller, trial, result) -> None:
        self.passed.pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self.passed.pop(trial.trial_id, None)


def make_scheduler(max_epochs: int, early_stopping: str = "preview") -> FIFOScheduler:
    """Pareto rungs (read part-way through each trial's schedule, or at the end of its preview),
    or (``early_stopping: none``) Tune's FIFO scheduler, which stops nothing."""
    if early_stopping == "none":
        return FIFOScheduler()
    return ParetoRungs(max_t=max(1, max_epochs), grace=grace_epochs(max_epochs), metric=VAL_SCORE,
                       preview=early_stopping == "preview")

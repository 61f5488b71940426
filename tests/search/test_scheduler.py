"""Early stopping without Ray (search.run.scheduler): where the first rung falls, how long a
preview is, the Pareto rungs that stop only a trial two others dominate at the same rung, the
preview rung that judges the preview alone, early_stopping: none; and the typed trial
configuration (search.trial.config) the rungs read, which checks itself and pickles whole."""

from pathlib import Path

import pytest

from castmodels import ArchSpec
from search.latency.measure import Measurement
from search.run import scheduler
from search.run.worker import FINAL, PREVIEW, VAL_SCORE
from search.training.recipe import TrainRecipe
from search.trial.config import KEY, TrialConfig


@pytest.mark.parametrize(("epochs", "grace"), [(1, 1), (2, 1), (3, 1), (4, 2), (10, 4), (30, 10)])
def test_the_first_early_stopping_rung_is_past_the_warm_up(epochs, grace):
    assert scheduler.grace_epochs(epochs) == grace
    rungs = scheduler.make_scheduler(epochs)
    assert min(rungs.milestones, default=epochs) >= grace
    assert all(m < epochs for m in rungs.milestones)


def _config(latency_ms=1.0, params=1000, **fields) -> TrialConfig:
    m = Measurement(params=params, macs=0, latency_ms=latency_ms, latency_iqr_ms=0.0, batch_latency_ms=0.0,
                    batch_latency_iqr_ms=0.0, batch_size=1, threads=1)
    return TrialConfig(**{"number": 0, "arch": ArchSpec.from_code("C8 A"), "recipe": TrainRecipe(epochs=4),
                          "measurement": m, "out_dir": Path("trial-00000"), "workers_dir": Path("workers"), **fields})


def test_a_trial_config_checks_itself_and_crosses_a_process_whole():
    """What Ray does with it: a pickle of the typed configuration is the same configuration."""
    import pickle

    config = _config(seeds=3, front=((0.9, 0.5, 5000.0),), min_accuracy=0.5, preview=2, metric="macro_f1")
    assert pickle.loads(pickle.dumps({KEY: config})) == {KEY: config}
    assert (config.image_size, config.epochs) == (TrainRecipe().image_size, 4)
    with pytest.raises(ValueError, match=r"trial 0 must train with at least one seed \(seeds=0\)"):
        _config(seeds=0)
    with pytest.raises(ValueError, match="unknown metric 'f1' for trial 0; known: balanced_accuracy"):
        _config(metric="f1")
    with pytest.raises(ValueError, match=r"preview must be shorter than its schedule .*\(preview=4, epochs=4\)"):
        _config(preview=4)
    with pytest.raises(ValueError, match=r"number cannot be negative \(number=-1\)"):
        _config(number=-1)


class _Trial:
    def __init__(self, trial_id, latency_ms, params, protect=False):
        self.trial_id = trial_id
        self.config = {KEY: _config(latency_ms, params, protect=protect)}


def test_pareto_rungs_stop_only_what_two_trials_dominate_at_the_same_rung():
    """Small fast networks are not stopped for being less accurate than big slow ones."""
    s = scheduler.ParetoRungs(max_t=10, grace=4)
    assert s.milestones == [4]
    score = VAL_SCORE

    def at_rung(trial, value, epoch=4):
        return s.on_trial_result(None, trial, {"epoch": epoch, score: value})

    presets = [_Trial(f"p{i}", 2.0, 600_000, protect=True) for i in range(2)]
    assert at_rung(presets[0], 0.90) == at_rung(presets[1], 0.92) == "CONTINUE"
    assert at_rung(_Trial("small", 0.2, 50_000), 0.60) == "CONTINUE"  # less accurate, but faster and smaller
    assert at_rung(_Trial("slow", 3.0, 700_000), 0.80) == "STOP"  # both presets dominate it
    assert at_rung(_Trial("slow-but-good", 3.0, 700_000), 0.95) == "CONTINUE"
    assert at_rung(_Trial("p-weak", 3.0, 700_000, protect=True), 0.10) == "CONTINUE"  # presets run on
    t = _Trial("once", 3.0, 900_000)
    assert at_rung(t, 0.97, epoch=1) == "CONTINUE"  # before the rung
    assert at_rung(t, 0.97) == "CONTINUE" and at_rung(t, 0.10, epoch=5) == "CONTINUE"  # judged once per rung
    assert s.on_trial_result(None, t, {"epoch": 10, score: 0.1, FINAL: True}) == "CONTINUE"


def test_early_stopping_none_lets_a_dominated_trial_train_on(tmp_path):
    """budget.early_stopping: none trains every trial to its last epoch (the comparison that
    shows what Pareto rungs save); pareto stops the same dominated trial at its rung."""
    import yaml

    from search.space import load_space

    paper = Path(__file__).resolve().parents[2] / "spaces" / "paper.yaml"
    data = yaml.safe_load(paper.read_text())
    data["budget"]["early_stopping"] = "none"
    file = tmp_path / "nostop.yaml"
    file.write_text(yaml.safe_dump(data))
    space = load_space(file)
    assert space.budget.early_stopping == "none"
    assert load_space(paper).budget.early_stopping == "preview"
    for kind, verdict in (("pareto", "STOP"), ("none", "CONTINUE")):
        s = scheduler.make_scheduler(10, kind)
        for i, value in enumerate((0.9, 0.92)):
            s.on_trial_result(None, _Trial(f"p{i}", 2.0, 600_000, protect=True), {"epoch": 4, VAL_SCORE: value})
        assert s.on_trial_result(None, _Trial("slow", 3.0, 700_000), {"epoch": 4, VAL_SCORE: 0.8}) == verdict


def test_preview_rungs_judge_the_preview_alone():
    """Under early_stopping: preview the one rung reads each trial's preview (the result marked
    PREVIEW) and never the epochs of its full training: a dominated preview stops the trial,
    and the full training's scores, however low, do not."""
    s = scheduler.make_scheduler(10, "preview")
    assert s.milestones == [4]
    score, look = VAL_SCORE, {PREVIEW: 5.0}
    for i, value in enumerate((0.9, 0.92)):  # two previews that dominate slow, large networks
        assert s.on_trial_result(None, _Trial(f"p{i}", 2.0, 600_000, protect=True),
                                 {"epoch": 4, score: value, **look}) == "CONTINUE"
    assert s.on_trial_result(None, _Trial("slow", 3.0, 700_000), {"epoch": 4, score: 0.8, **look}) == "STOP"
    t = _Trial("passed", 3.0, 700_000)
    assert s.on_trial_result(None, t, {"epoch": 4, score: 0.95, **look}) == "CONTINUE"
    for epoch in range(1, 10):  # its full training starts again at epoch 1: not judged
        assert s.on_trial_result(None, t, {"epoch": epoch, score: 0.05}) == "CONTINUE"
    # the midway rungs ignore previews, and the preview rung a full training's epoch 4
    assert scheduler.make_scheduler(10, "pareto").on_trial_result(None, _Trial("x", 3.0, 700_000),
                                                           {"epoch": 4, score: 0.1, **look}) == "CONTINUE"
    assert s.on_trial_result(None, _Trial("y", 3.0, 700_000), {"epoch": 4, score: 0.1}) == "CONTINUE"


@pytest.mark.parametrize(("mode", "max_epochs", "epochs", "expected"), [
    ("preview", 10, 10, 4), ("preview", 30, 30, 10), ("preview", 2, 2, 1),
    ("preview", 10, 4, None),  # a trial whose own schedule is no longer than the preview trains it outright
    ("preview", 1, 1, None), ("pareto", 10, 10, None), ("none", 10, 10, None),
])
def test_preview_epochs(mode, max_epochs, epochs, expected):
    assert scheduler.preview_epochs(mode, max_epochs, epochs) == expected

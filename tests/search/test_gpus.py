"""GPU trials scheduled by Ray (search.run.resources): a trial asks for a fraction of a GPU,
Ray runs at most 1/F of them at once on each GPU and tells each which one it has; a machine
without a GPU refuses the request at once; a trial's data moves to its device once."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
import ray
import torch

from search.cli.printing import format_plan
from search.data import DataConfig, load_dataset
from search.run import resources, runner
from search.space import SpaceError, load_space
from search.study import storage as studylib
from search.trial.reuse import content_digest
from tests.search.space_helpers import with_changes

SPACE = """
study: gpu
seed_presets: false
sampler: {name: random, seed: 1}
budget: {trials: 8}
resources: {gpus_per_trial: 0.5}
architecture:
  stages: 1
  blocks_per_stage: 1
  channels: {low: 4, high: 8}
  conv: [conv3x3]
  last_block: [plain]
  dropout: 0.0
  pool: [true]
  head: [gap]
training:
  epochs: 1
  batch_size: 32
  image_size: [16]
"""


@pytest.mark.parametrize("cpus, gpus, error", [
    (1, 0.25, None), (2, 2, None), (1, 0, None),
    (0, 0, "--cpus-per-trial must be positive"), (1, -0.5, "--gpus-per-trial must be 0 or more"),
    (1, 1.5, "above 1 must be a whole number of GPUs"),
])
def test_what_ray_can_schedule(cpus, gpus, error):
    if error is None:
        resources.check_resources(cpus, gpus)
        assert resources.trial_resources(cpus, gpus) == ({"cpu": cpus, "gpu": gpus} if gpus else {"cpu": cpus})
    else:
        with pytest.raises(ValueError, match=error):
            resources.check_resources(cpus, gpus)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_a_gpu_without_one_is_refused_before_anything_is_written(tmp_path, monkeypatch, cli_error):
    monkeypatch.chdir(tmp_path)
    line = cli_error(["run", str(Path(__file__).parents[2] / "spaces" / "paper.yaml"), "--data", "synthetic",
                      "--gpus-per-trial", "0.25"])
    assert "--gpus-per-trial 0.25 asks for a GPU, but this machine has none" in line
    assert not list(tmp_path.iterdir())  # no study, no artifacts


def test_a_cluster_without_a_gpu_yet_is_waited_for(monkeypatch, caplog):
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0})
    with caplog.at_level(logging.WARNING, logger="search.run.resources"):
        assert resources.cluster_gpus(0.25) == 0
    assert "no GPU yet; trials wait until a GPU node joins" in caplog.text
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0, "GPU": 2.0})
    assert resources.cluster_gpus(0.25) == 2


def test_the_space_and_the_plan_say_how_trials_share_a_gpu():
    from search.space import space_from_dict

    space = space_from_dict(with_changes((("resources",), {"cpus_per_trial": 2, "gpus_per_trial": 0.25})), "r.yaml")
    assert (space.cpus_per_trial, space.gpus_per_trial) == (2, 0.25)
    with pytest.raises(SpaceError, match="resources.gpus_per_trial"):
        space_from_dict(with_changes((("resources",), {"gpus_per_trial": -1})), "r.yaml")
    plan = runner.RunPlan(timeout_s=1800, trials=None, workers=8, cpus_per_trial=1, sampler="tpe", presets=0,
                          preset_seeds=1, nearest=0, front=1, retime_s=0, search_s=1800, gpus_per_trial=0.25)
    assert "8 workers, 0.25 GPU per trial (up to 4 per GPU)" in format_plan(plan)


def test_a_dataset_moves_to_its_device_once_and_keeps_its_identity():
    data = load_dataset(DataConfig(source="synthetic", image_size=16, synthetic_count=60))
    digest = content_digest(data)
    assert data.to("cpu") is data
    moved = data.to("meta")  # a device without storage: what moves, and what stays
    assert {t.device.type for t in (moved.train_x, moved.val_y, moved.test_x)} == {"meta"}
    assert content_digest(moved) == digest and moved.identity == data.identity
    assert data.train_x.device.type == "cpu"


def test_trials_share_declared_gpus_at_most_one_over_f_at_a_time(tmp_path, monkeypatch):
    """Two GPUs declared to Ray on this CPU machine, half a GPU per trial: four trials run at
    once, two on each GPU (as CUDA_VISIBLE_DEVICES tells them), and the other four wait. The
    trials train on the CPU here (CASTSEARCH_TRIAL_DEVICE), being held in the worker until
    the test has counted them."""
    pids = tmp_path / "pids"
    pids.mkdir()
    for number in range(8):
        (pids / f"trial-{number}.hold").touch()
    monkeypatch.setenv("CASTSEARCH_TRIAL_PIDFILE_DIR", str(pids))
    monkeypatch.setenv("CASTSEARCH_TRIAL_DEVICE", "cpu")
    (tmp_path / "gpu.yaml").write_text(SPACE)
    space = load_space(tmp_path / "gpu.yaml")
    datasets = {16: load_dataset(DataConfig(source="synthetic", image_size=16, synthetic_count=120),
                                 cache_dir=tmp_path / "cache")}
    opts = runner.RunOptions(study_name="gpu", storage=f"sqlite:///{tmp_path}/gpu.db", trials=8, timeout_s=None,
                             workers=8, gpus_per_trial=space.gpus_per_trial, artifacts=tmp_path / "artifacts",
                             quiet_retime=False)
    ray.init(address="local", num_cpus=8, num_gpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        done: dict = {}
        thread = threading.Thread(target=lambda: done.setdefault("summary", runner.run_search(space, datasets, opts)))
        thread.start()
        deadline = time.monotonic() + 240
        while len(list(pids.glob("*.pid"))) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # a fifth trial, were Ray to start one, would have written its pid by now
        started = sorted(pids.glob("*.pid"))
        gpus = sorted(p.with_suffix(".gpu").read_text() for p in started)
        for hold in pids.glob("*.hold"):
            hold.unlink()
        thread.join(timeout=300)
    finally:
        ray.shutdown()
    assert len(started) == 4, [p.name for p in started]
    assert gpus == ["0", "0", "1", "1"]
    study = studylib.load_existing_study("gpu", opts.storage)
    assert studylib.counts(study.trials)["complete"] == 8, studylib.counts(study.trials)
    assert len(list(pids.glob("*.pid"))) == 8

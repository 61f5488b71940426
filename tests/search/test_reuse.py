"""The store of trainings: a full training is done once and reused by every later study, run,
further seed and confirm on the same network, recipe and data (search.trial.reuse)."""

from __future__ import annotations

import dataclasses
import json
import logging
import textwrap

import optuna
import pytest
import ray
import torch

from castmodels import ArchSpec
from search.cli import main
from search.cli.printing import print_run_summary
from search.data import DataConfig, load_dataset
from search.run import runner
from search.space import load_space
from search.training.recipe import TrainRecipe
from search.trial import pipeline
from search.trial.pipeline import run_candidate, seed_training
from search.trial.reuse import FOLDER, Trainings, data_identity, scan, training_key

ARCH = ArchSpec.from_code("C8 C16s2 A")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    cache = tmp_path_factory.mktemp("reuse-cache")
    return load_dataset(DataConfig(source="synthetic", image_size=16, synthetic_count=120), cache_dir=cache)


@pytest.fixture
def trainings_run(monkeypatch):
    """Counts the calls of ``train`` where the pipeline looks it up."""
    calls = []
    real = pipeline.train

    def counted(*args, **kwargs):
        calls.append(kwargs.get("metric"))
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "train", counted)
    return calls


def _recipe(**changes) -> TrainRecipe:
    return dataclasses.replace(TrainRecipe.named("paper", epochs=1, batch_size=16, image_size=16, channels=3,
                                                 seed=5), **changes)


def _weights(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_the_key_changes_with_each_part_that_decides_a_training_and_with_nothing_else(data):
    spec, recipe, identity = ARCH.to_dict(), _recipe().to_dict(), data_identity(data)
    key = training_key(spec, recipe, identity)
    assert key == training_key(json.loads(json.dumps(spec)), dict(reversed(recipe.items())), identity)
    assert len(key) == 64 and int(key, 16) >= 0

    wider = ArchSpec.from_code("C8 C24s2 A").to_dict()
    recipes = [_recipe(enhancements=("blurpool",)), _recipe(optimizer="sgd"), _recipe(lr=2e-3),
               _recipe(schedule="onecycle"), _recipe(batch_size=8), _recipe(epochs=2),
               _recipe(augmentations=("hflip",)), _recipe(seed=6), _recipe(class_balance="sampler"),
               _recipe(weight_decay=1e-4)]
    changed = [training_key(wider, recipe, identity)]
    changed += [training_key(spec, r.to_dict(), identity) for r in recipes]
    for part, value in (("split_hash", "0" * 64), ("image_size", 32), ("channels", 1), ("resize", "pad"),
                        ("content", "f" * 64), ("split_seed", 1)):
        changed.append(training_key(spec, recipe, {**identity, part: value}))
    assert len(set(changed)) == len(changed) and key not in changed

    # labels and where the data lies change nothing: the preset's name, the folder, what auto said
    assert training_key({**spec, "name": "custom-140k-3x3"}, recipe, identity) == key
    moved = dataclasses.replace(data, identity={**data.identity, "source": "/elsewhere", "channels_auto": "grey",
                                                "skipped": [{"path": "x.png", "reason": "truncated"}]})
    assert training_key(spec, recipe, data_identity(moved)) == key
    # the images themselves do
    other = dataclasses.replace(data, train_x=data.train_x.flip(0))
    assert training_key(spec, recipe, data_identity(other)) != key


def test_the_data_digest_is_worked_out_once_and_travels_with_the_dataset(data, monkeypatch):
    """The driver hashes the images once; the copy a Ray worker unpickles carries the digest,
    so no worker hashes them again."""
    import pickle

    from search.trial import reuse

    digest = reuse.content_digest(data)
    copy = pickle.loads(pickle.dumps(data))
    monkeypatch.setattr(reuse.hashlib, "sha256", lambda *a: pytest.fail("the images were hashed again"))
    assert reuse.content_digest(copy) == reuse.content_digest(data) == digest


def test_a_second_training_of_the_same_inputs_is_taken_from_the_store(data, one_thread, trainings_run, tmp_path):
    store = tmp_path / FOLDER
    first = run_candidate(ARCH, _recipe(), data, out_dir=tmp_path / "a", seeds=2,
                          trainings=Trainings(store, "study-a"))
    assert len(trainings_run) == 2 and first.reused == []  # the first seed and the further one
    assert scan(store)[0] == 2

    seen = []
    again = run_candidate(ARCH, _recipe(), data, out_dir=tmp_path / "b", seeds=2, trainings=Trainings(store, "study-b"),
                          on_epoch=lambda epoch, score: seen.append((epoch, score)))
    assert len(trainings_run) == 2  # nothing trained
    assert again.reused == [{"seed": 5, "study": "study-a"}, {"seed": 6, "study": "study-a"}]
    assert (again.validation, again.evaluation) == (first.validation, first.evaluation)
    assert again.seed_runs == first.seed_runs and again.objective == first.objective
    assert again.val_scores == first.val_scores and again.epochs_run == 1 and not again.stopped_early
    assert seen == [(1, first.val_scores[0])]  # the stored scores are reported as the training's were
    assert "train" not in again.seconds and "reuse" in again.seconds
    a, b = _weights(tmp_path / "a" / "model.pt"), _weights(tmp_path / "b" / "model.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # the further seed a search trained is what confirm would train: taken from the store too
    build = lambda r: pipeline.build_candidate(ARCH, r, data.num_classes)  # noqa: E731
    confirmed = seed_training(build, _recipe(), 6, data, "balanced_accuracy", spec=ARCH.to_dict(),
                              trainings=Trainings(store, "study-c"))
    assert len(trainings_run) == 2 and confirmed.reused.study == "study-a"
    assert confirmed.validation.balanced_accuracy == first.seed_runs[1]["validation"]
    # another seed is another training
    fresh = seed_training(build, _recipe(), 7, data, "balanced_accuracy", spec=ARCH.to_dict(),
                          trainings=Trainings(store, "study-c"))
    assert len(trainings_run) == 3 and fresh.reused is None and scan(store)[0] == 3

    # the study's record says which seeds were reused; a study's record without it reads as before
    from search.study.record import TrialRecord

    record = TrialRecord()
    record.add_outcome(again.provenance(data))
    assert record.reused == again.reused and "reused" in record.attrs()
    record.add_outcome(first.provenance(data))
    assert record.reused is None and "reused" not in record.attrs()


def test_a_training_stopped_early_is_not_stored(data, one_thread, trainings_run, tmp_path):
    store = Trainings(tmp_path / FOLDER, "s")
    stopped = run_candidate(ARCH, _recipe(epochs=2), data, trainings=store, on_epoch=lambda epoch, score: True)
    assert stopped.stopped_early and stopped.epochs_run == 1
    assert scan(store.folder) == (0, 0)
    full = run_candidate(ARCH, _recipe(epochs=2), data, trainings=store)
    assert len(trainings_run) == 2 and full.reused == [] and scan(store.folder)[0] == 1


def test_a_damaged_entry_is_trained_again_with_a_warning(data, one_thread, trainings_run, tmp_path, caplog):
    store = Trainings(tmp_path / FOLDER, "s")
    first = run_candidate(ARCH, _recipe(), data, trainings=store)
    key = store.key(ARCH.to_dict(), _recipe(), data)
    entry, weights = store.entry(key), store.folder / f"{key}.pt"
    good = entry.read_text()
    damages = [
        lambda: entry.write_text(good[: len(good) // 2]),  # cut short
        lambda: entry.write_text(json.dumps({**json.loads(good), "validation": {"accuracy": 1.0}})),  # not figures
        lambda: weights.write_bytes(weights.read_bytes()[:100]),  # weights truncated
    ]
    for n, damage in enumerate(damages, start=2):
        damage()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="search.trial"):
            again = run_candidate(ARCH, _recipe(), data, trainings=store)
        assert len(trainings_run) == n and again.reused == []  # trained again, not a crash
        assert any("cannot be used" in r.getMessage() and key in r.getMessage() for r in caplog.records)
        assert again.validation is not None
        good = entry.read_text()  # the training stored afresh
    reused = run_candidate(ARCH, _recipe(), data, trainings=store)
    assert len(trainings_run) == len(damages) + 1 and reused.reused == [{"seed": 5, "study": "s"}]
    assert first.measurement.params == reused.measurement.params


def test_the_cache_command_lists_the_stored_trainings_and_clear_empties_them(data, one_thread, tmp_path, capsys):
    cache = tmp_path / "cache"
    run_candidate(ARCH, _recipe(), data, trainings=Trainings.in_cache(cache, "s"))
    (cache / FOLDER / "notes.txt").write_text("mine")
    assert main(["cache", "--dir", str(cache)]) == 0
    assert "1 finished training(s) kept for reuse" in capsys.readouterr().out
    assert main(["cache", "--dir", str(cache), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["trainings"]["count"] == 1
    assert main(["cache", "--dir", str(cache), "--clear"]) == 0
    assert "removed 2 file(s)" in capsys.readouterr().out
    assert scan(cache / FOLDER) == (0, 0) and (cache / FOLDER / "notes.txt").read_text() == "mine"


SPACE = """
study: {study}
sampler: {{name: random, seed: 0}}
budget: {{trials: 2}}
data: {{source: synthetic, cache_dir: {cache}}}
architecture:
  stages: {{low: 1, high: 1}}
  blocks_per_stage: 1
  channels: {{low: 4, high: 8}}
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


def test_a_second_study_on_the_same_data_trains_no_preset_again(data, tmp_path, capsys):
    """Two runs in this process into two studies: the presets (the first two queued, each run's
    budget) are trained by the first and taken from the store by the second, which says so."""
    summaries = {}
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:  # one Ray for both runs (run_search starts none when one is up)
        for study in ("paper-a", "paper-b"):
            path = tmp_path / f"{study}.yaml"
            path.write_text(textwrap.dedent(SPACE.format(study=study, cache=tmp_path / "cache")))
            opts = runner.RunOptions(study_name=study, storage=f"sqlite:///{tmp_path}/studies.db", trials=2,
                                     timeout_s=None, workers=2, artifacts=tmp_path / study, quiet_retime=False)
            summaries[study] = runner.run_search(load_space(path), {16: data}, opts)  # data: the synthetic set, small
    finally:
        ray.shutdown()
    first, second = summaries["paper-a"].outcome, summaries["paper-b"].outcome
    assert (first.presets_trained, first.presets_reused, first.reused) == (2, 0, {})
    assert (second.presets_trained, second.presets_reused) == (0, 2)
    assert len(second.reused) == 2 and all(runs == [{"seed": 0, "study": "paper-a"}]
                                           for runs in second.reused.values())

    study = optuna.load_study(study_name="paper-b", storage=f"sqlite:///{tmp_path}/studies.db")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2 and all(t.user_attrs["reused"] == [{"seed": 0, "study": "paper-a"}] for t in done)
    assert all(t.user_attrs["weights_path"].startswith(str((tmp_path / "paper-b").resolve())) for t in done)

    capsys.readouterr()
    print_run_summary(summaries["paper-b"])
    out = capsys.readouterr().out
    assert "presets trained 0 (2 reused)" in out
    assert "reused: " + "; ".join(f"{name} 1 seed from study paper-a" for name in second.reused) in out

"""bench/rung_fidelity.py end to end: a short look at each stored trial, at its own image size
and at a smaller one (where the network can be built at it), scored against the trial's final
validation figure."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from bench.common import REPO
from castmodels import ArchSpec
from search.study import storage as studylib


def test_rung_fidelity_trains_the_short_look_at_the_trials_size_and_at_a_preview_size(tmp_path):
    from search.data import DataConfig, load_dataset
    from search.study.record import Limits, TrialRecord
    from search.training.recipe import TrainRecipe
    from search.trial.pipeline import run_candidate

    cache = tmp_path / "c"
    data = load_dataset(DataConfig(source="synthetic", image_size=24, synthetic_count=60), cache_dir=cache)
    load_dataset(DataConfig(source="synthetic", image_size=8, synthetic_count=60), cache_dir=cache)
    storage = f"sqlite:///{tmp_path}/f.db"
    study = studylib.open_study("f", storage)
    recipe = TrainRecipe.named("default", image_size=24, epochs=3)
    # the last downsamples 16x: it trains at 24 px but cannot be previewed at 8
    for i, code in enumerate(("C8 P C8 A", "C8 C8 P C16 A", "D8 P C16 A", "C8 P C8 P C8 P C8 P A")):
        arch = ArchSpec.from_code(code)
        outcome = run_candidate(arch, recipe, data, out_dir=tmp_path / f"t{i}", limits=Limits())  # weights: trained
        record = TrialRecord(run_id="t", arch=arch.to_dict(), arch_code=code, recipe=recipe.to_dict())
        studylib.tell_outcome(study, study.ask(), record, outcome.provenance(data), Limits())
    run = subprocess.run([sys.executable, str(REPO / "bench" / "rung_fidelity.py"), "--storage", storage,
                          "--studies", "f", "--epochs", "1", "--jobs", "1", "--preview-size", "8"],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "CASTSEARCH_CACHE": str(cache)})
    assert run.returncode == 0, run.stderr
    assert "f: 3 trials that trained all 3 epochs" in run.stdout
    looks = re.findall(r"^\| f \| 3 \| ([^|]+) \| (-?\d\.\d\d|nan) \|", run.stdout, re.M)
    assert [label.strip() for label, _ in looks] == [
        "mid-schedule (stored history)", "compressed schedule (trained here)",
        "compressed schedule at 8 px (trained here)"], run.stdout
    assert "1 more trained out but downsample too far to be trained at 8 px (trials 3)" in run.stdout

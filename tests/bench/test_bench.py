"""The benchmark scripts' judgement: verdicts, hypervolume tables, job lists.

The benchmarks themselves train for an hour on real data (see BENCHMARKS.md); here their
logic runs on small hand-made results whose right answers are known, and one slow test
trains a real run of the paper table on X-SDD.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from optuna.trial import TrialState, create_trial

from bench import paper_table as pt
from bench import paper_verdicts as pv
from bench import search_vs_random as svr
from bench.common import DATASETS, REPO
from castmodels import PRESETS, baseline_names
from search.study import storage as studylib
from search.study.record import CONSTRAINT_NAMES
from search.training.recipe import AUGMENTATIONS


def test_jobs_run_seed_zero_of_every_row_first_and_extra_seeds_only_where_differences_are_small():
    jobs = pt.jobs(["neu-cls", "x-sdd"], seeds=3)
    per_dataset_rows = len(PRESETS) + len(pt.ENHANCEMENT_ROWS) + len(AUGMENTATIONS) + len(baseline_names())
    first = jobs[:2 * per_dataset_rows]
    assert {j.seed for j in first} == {0}
    assert len({(j.dataset, j.group, j.row) for j in first}) == 2 * per_dataset_rows
    later = jobs[2 * per_dataset_rows:]
    assert {j.group for j in later} == {"preset", "enhancement"}
    assert {j.seed for j in later} == {1, 2}
    assert len(jobs) == len(set(jobs))
    assert pt.Job("x", "baseline", "inception_v3", 0).image_size == 75
    assert pt.Job("x", "preset", "custom-140k-dw", 0).image_size == 32


def test_recipe_follows_the_paper_and_the_row():
    r = pt.recipe_for(pt.Job("neu-cls", "enhancement", "blurpool+squeeze_excite+swa", 1), epochs=7)
    assert (r.epochs, r.batch_size, r.optimizer, r.lr, r.image_size, r.seed) == (7, 32, "adam", 1e-3, 32, 1)
    assert r.enhancements == ("blurpool", "squeeze_excite", "swa") and r.augmentations == ()
    a = pt.recipe_for(pt.Job("neu-cls", "augmentation", "vflip", 0), epochs=7)
    assert a.augmentations == ("vflip",) and a.enhancements == ()


def test_rows_that_change_training_only_share_the_plain_networks_latency():
    plain = pt.network_key(pt.Job("d", "preset", pt.ENHANCED, 0))
    assert pt.network_key(pt.Job("d", "enhancement", "swa", 1)) == plain
    assert pt.network_key(pt.Job("d", "enhancement", "mixup", 0)) == plain
    assert pt.network_key(pt.Job("d", "augmentation", "hflip", 0)) == plain
    assert pt.network_key(pt.Job("d", "enhancement", "blurpool", 0)) != plain
    assert pt.network_key(pt.Job("d", "enhancement", "blurpool+squeeze_excite+swa", 0))[2] == (
        "blurpool", "squeeze_excite")
    assert pt.network_key(pt.Job("e", "preset", pt.ENHANCED, 0)) != plain  # another dataset, another class count


def test_a_difference_counts_only_beyond_two_standard_errors():
    diff, se = pv.compare([0.90, 0.92, 0.94], [0.80, 0.82, 0.84])
    assert diff == pytest.approx(0.10) and se == pytest.approx((2 * 0.02**2 / 3) ** 0.5)
    assert pv.judged(diff, se) == "higher"
    assert pv.judged(*pv.compare([0.80, 0.82, 0.84], [0.90, 0.92, 0.94])) == "lower"
    assert pv.judged(*pv.compare([0.80, 0.90], [0.84, 0.86])) == "within noise"
    assert pv.judged(*pv.compare([0.85], [0.84])) == "higher"  # no spread at all: any difference


def test_a_claim_holds_only_when_every_comparison_is_in_its_favour():
    assert pv.verdict_of(3, 0, 3) == "holds"
    assert pv.verdict_of(1, 2, 3) == "mixed"
    assert pv.verdict_of(0, 1, 3) == "does not hold"
    assert pv.verdict_of(0, 0, 3) == "not shown (within noise)"  # no evidence either way is no refutation


def _records(acc: dict[tuple[str, str], list[float]]) -> dict:
    """Fake run records: accuracy per (group, row) and seed, on one dataset of two classes."""
    out = {}
    for (group, row), values in acc.items():
        for seed, a in enumerate(values):
            out[pt.Job("d", group, row, seed)] = {
                "accuracy": a, "macro_f1": a - 0.01, "per_class_recall": {"good": 1.0, "bad": a - 0.1},
                "params": 1000, "macs": 2000, "test_images": 50}
    return out


def test_verdicts_say_which_claims_hold_and_which_do_not():
    noisy = [0.80, 0.85, 0.90]
    acc = {("preset", f"custom-{s}-dw"): [0.90, 0.91, 0.92] for s in pv.SIZES}
    acc |= {("preset", f"custom-{s}-3x3"): [0.80, 0.81, 0.82] for s in pv.SIZES}
    acc[("preset", pv.ENHANCED)] = noisy  # custom-590k-dw: within noise of custom-590k-3x3
    acc |= {("enhancement", e): noisy for e in pv.ENHANCEMENT_ROWS}
    acc[("enhancement", "swa")] = [0.97, 0.98, 0.99]  # SWA, not BlurPool, is clearly best
    acc |= {("augmentation", a): [0.5] for a in AUGMENTATIONS}
    acc |= {("baseline", b): [0.99] for b in baseline_names()}
    lat = {("d", "preset", p): (1.0, 10.0) for p in PRESETS}
    lat |= {("d", "baseline", b): (5.0, 50.0) for b in baseline_names()}
    text = pt.render(_records(acc), lat, ["d"], epochs=3, seeds=3)
    assert "Depthwise-separable beats 3x3 at equal size: mixed** (depthwise better in 2 of 3" in text
    assert "BlurPool is the best enhancement: does not hold" in text
    assert "ranking by mean accuracy swa 98.0" in text
    assert f"Augmentations lower accuracy: holds** ({len(AUGMENTATIONS)} of {len(AUGMENTATIONS)}" in text
    assert "faster than ResNet-20/47/65 and MobileNetV2: holds" in text
    assert "more accurate than the ResNets and the ViT: does not hold" in text
    assert "d 590k: +4.0 ± 2.9 points (within noise)" in text
    # mean ± standard deviation over seeds; the worst class by mean recall, named
    assert "| custom-590k-dw | - | 85.0 ± 5.0 (n=3) | 84.0 ± 5.0 (n=3) | 75.0 (bad) | 1,000 | 2,000 | 1.00 |" in text

    lat[("d", "baseline", "mobilenet_v2")] = (0.5, 10.0)  # one baseline faster than a custom net
    assert "MobileNetV2: does not hold" in pt.render(_records(acc), lat, ["d"], epochs=3, seeds=3)
    presets_only = pt.render(_records({k: v for k, v in acc.items() if k[0] == "preset"}), {}, ["d"], 3, 3)
    assert "1. **Depthwise" in presets_only
    assert "BlurPool" not in presets_only and "Augmentations lower" not in presets_only  # no rows, no verdict


def _trial(values, preset=None, feasible=True, below_floor=False, **attrs):
    constraints = {name: 0.0 for name in CONSTRAINT_NAMES}
    if not feasible:
        constraints["max_params"] = 5.0
    if below_floor:
        constraints["min_accuracy"] = 0.3
    return create_trial(state=TrialState.COMPLETE, values=values, constraints=constraints,
                        user_attrs={**({"preset": preset} if preset else {}), **attrs})


def test_the_re_timing_agreement_compares_paced_objectives_and_the_clocks_lowest_timings(tmp_path):
    """Re-timed / objective per search; where the timings were paced, the same for the clock's
    lowest timings beside it (what the objectives would have been unpaced)."""
    study = studylib.open_study("t-default", f"sqlite:///{tmp_path}/a.db")
    # the run's lowest timing 0.24 ms at pace 1.2: objective 0.20; re-timed 0.21 ms at pace 1.0
    study.add_trial(_trial([0.9, 0.20, 1_000], latency_timings_ms=[0.30, 0.24], latency_paces=[1.2, 1.2]))
    study.add_trial(_trial([0.8, 0.10, 500], latency_timings_ms=[0.10], latency_paces=[1.0]))
    study.set_user_attr(f"{studylib.RETIMED}0", {"latency_ms": 0.21, "latency_timings_ms": [0.21], "paces": [1.0]})
    study.set_user_attr(f"{studylib.RETIMED}1", {"latency_ms": 0.08, "latency_timings_ms": [0.08], "paces": [1.0]})
    lines = svr.retiming_agreement({"default": study})
    row = next(line for line in lines[1].splitlines() if line.startswith("| default"))
    # paced 1.05 and 0.80 (median 0.925); unpaced 0.875 and 0.80
    assert [c.strip() for c in row.split("|")[2:-1]] == ["2", "0.92", "0.80-1.05", "1 (50%)",
                                                          "0.84", "0.80-0.88", "1 (50%)"]
    assert "unpaced" in lines[0]


def test_search_vs_random_report_counts_hypervolume_and_dominated_presets(tmp_path):
    storage = f"sqlite:///{tmp_path}/svr.db"
    default = studylib.open_study("t-default", storage)
    default.add_trial(_trial([0.80, 2.0, 200_000], preset="custom-140k-3x3", epochs_run=5))
    default.add_trial(_trial([0.90, 6.0, 600_000], preset="custom-590k-dw"))
    default.add_trial(_trial([0.85, 1.0, 100_000], epochs_run=5,  # dominates custom-140k-3x3 only;
                             seed_runs=[{"seed": 1}, {"seed": 2}]))  # trained twice: 10 epochs
    default.add_trial(_trial([0.99, 0.5, 50_000], feasible=False))  # infeasible: counts for nothing
    default.add_trial(_trial([0.50, 0.1, 1_000], below_floor=True))  # under min_accuracy: off the front, in the volume
    default.add_trial(create_trial(state=TrialState.PRUNED, values=None, user_attrs={"pruned_at_epoch": 2}))
    default.set_user_attr(svr.WALL_ATTR, 600.0)
    default.set_user_attr(svr.BUDGET_ATTR, {"minutes": 10.0, "workers": 2, "epochs": 5})
    default.set_user_attr("latency_limit:32", {"max_latency_ms": 10.0})  # paper.yaml's relative limit, resolved
    random = studylib.open_study("t-random", storage)
    # dominates custom-590k-dw only; queued by seed_nearest, not drawn by the sampler
    random.add_trial(_trial([0.95, 5.0, 500_000], near_preset="custom-590k-dw"))
    args = argparse.Namespace(space=str(REPO / "spaces" / "paper.yaml"), storage=storage, prefix="t",
                              data=str(DATASETS / "x-sdd"), epochs=1, minutes=99.0, workers=7)  # the stored budget wins
    text = svr.report(args)
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in text.splitlines() if line.startswith("| ")}
    # wall min, finished (feasible), stopped early, epochs trained (in stopped), finished below
    # min_accuracy, infeasible, invalid, failed, front size, best own %, hypervolume own, own / random,
    # with presets, then above the floor
    assert rows["default"][:10] == ["10.0", "3", "1", "17 (2)", "1", "1", "0", "0", "2", "85.0"]
    assert rows["random"][1:10] == ["1", "0", "0 (0)", "0", "0", "0", "0", "1", "95.0"]
    box = 10.0 * 1_000_000
    own = studylib.hypervolume([[0.85, 1.0, 100_000], [0.50, 0.1, 1_000]], [0.0, 10.0, 1_000_000]) / box
    everything = studylib.hypervolume([[0.80, 2.0, 200_000], [0.90, 6.0, 600_000], [0.85, 1.0, 100_000],
                                       [0.50, 0.1, 1_000]], [0.0, 10.0, 1_000_000]) / box
    random_own = 0.95 * 5.0 * 500_000 / box
    assert float(rows["default"][10]) == pytest.approx(own, abs=1e-4)
    assert float(rows["default"][11]) == pytest.approx(own / random_own, abs=1e-2)
    assert float(rows["default"][12]) == pytest.approx(everything, abs=1e-4)
    assert float(rows["random"][10]) == pytest.approx(random_own, abs=1e-4)
    # above the least accurate preset (0.80): only what beats it counts, in a box of 0.2 accuracy
    assert float(rows["default"][13]) == pytest.approx(0.05 * 9.0 * 900_000 / (0.2 * box), abs=1e-4)
    assert float(rows["random"][13]) == pytest.approx(0.15 * 5.0 * 500_000 / (0.2 * box), abs=1e-4)
    assert rows["custom-140k-3x3"][3].startswith("yes, by 1 (all sampled); e.g. #2: 85.0%")
    assert rows["custom-140k-3x3"][4] == "no"
    assert rows["custom-590k-dw"][3] == "no"
    assert rows["custom-590k-dw"][4].startswith("yes, by 1 (0 sampled); e.g. #0 (seeded: nearest custom-590k-dw): 95.0%")
    assert "**20.0 CPU-minutes**" in text
    assert "Presets dominated: default 1 of 2, random 1 of 2." in text
    assert "on confirmed means" not in text  # nothing confirmed yet

    # confirmed: trial 2 falls to 0.78 over new seeds and no longer dominates custom-140k-3x3
    # (confirmed at 0.79); random's trial beats custom-590k-dw's confirmed 0.91 with 0.93
    def confirm(study, number, runs, seeds=(1, 2)):
        study.set_user_attr(f"{studylib.CONFIRMED}{number}", {"seeds": list(seeds), "objective": {
            "mean": sum(runs) / len(runs), "runs": list(runs)}})

    def confirmed_rows():
        text = svr.report(args).split("on confirmed means", 1)[1]
        rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
                for line in text.splitlines() if line.startswith("| ")}
        return text, rows

    confirm(default, 0, [0.78, 0.80])
    confirm(default, 1, [0.90, 0.92])
    confirm(default, 2, [0.77, 0.79])
    text, rows = confirmed_rows()
    # confirmed accuracy, seeds, latency, params, by default, by random
    assert rows["custom-140k-3x3"][:2] == ["79.0", "2"] and rows["custom-140k-3x3"][4:] == ["no", "not confirmed"]
    assert "Presets dominated on confirmed means: default 0 of 2, random not confirmed; by a sampled" in text
    confirm(random, 0, [0.93, 0.93])
    text, rows = confirmed_rows()
    assert rows["custom-590k-dw"][4] == "no" and rows["custom-590k-dw"][5].startswith("yes, by 1 (0 sampled); e.g. #0")
    assert "Presets dominated on confirmed means: default 0 of 2, random 1 of 2; by a sampled trial (the seeded " \
           "nearest points left out): default 0, random 0." in text
    # a preset confirmed in another study too: seeds pooled, a seed seen twice counted once
    random.add_trial(_trial([0.90, 6.0, 600_000], preset="custom-590k-dw"))
    confirm(random, 1, [0.92, 1.0], seeds=(2, 3))
    _, rows = confirmed_rows()
    assert rows["custom-590k-dw"][:2] == ["94.0", "3"]  # seeds 1, 2, 3: 0.90, 0.92, 1.0
    assert rows["custom-590k-dw"][5] == "no"
    random.set_user_attr(svr.BUDGET_ATTR, {"minutes": 5.0, "workers": 2, "epochs": 5})
    with pytest.raises(SystemExit, match="different budgets"):
        svr.report(args)


@pytest.mark.slow
def test_one_paper_table_run_on_real_images(tmp_path):
    record = pt.train_job(pt.Job("x-sdd", "preset", "custom-140k-3x3", 0), epochs=2, out=tmp_path, val_fraction=0.1)
    stored = json.loads((tmp_path / "x-sdd__preset__custom-140k-3x3__s0.json").read_text())
    assert stored["accuracy"] == record["accuracy"] > 1 / 7  # better than chance on 7 classes
    assert stored["params"] == 143_218 - 3 * 121  # 7 classes instead of the paper's 10
    assert stored["test_images"] == 135 and len(stored["val_accuracy"]) == 2
    assert 0 <= stored["val"]["accuracy"] <= 1 and stored["val_images"] > 0
    assert set(stored["per_class_recall"]) == {p.name for p in (DATASETS / "x-sdd").iterdir() if p.is_dir()}


@pytest.mark.slow  # a latency bench script end to end (10-40 s): make test-all and CI run it
def test_timing_noise_bench_prints_its_three_measurements():
    """bench/timing_noise.py at its smallest: it runs, and each part reports (the figures
    themselves are the machine's; BENCHMARKS.md holds a full run)."""
    run = subprocess.run([sys.executable, str(REPO / "bench" / "timing_noise.py"), "--seconds", "0.5",
                          "--wakeups", "1", "--verdicts", "2"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert re.search(r"\d+ windows of 100 ms", out) and "| > 1.2x |" in out
    assert "After a 0.5 s sleep (1 times)" in out and "| 0-50 |" in out
    assert re.search(r"\| one full timing \| [0-2] of 2 \|", out) and re.search(r"\| the screen's settle\(\) \| [0-2] of 2 \|", out)


@pytest.mark.slow  # a latency bench script end to end (10-40 s): make test-all and CI run it
def test_paced_latency_bench_reports_clock_and_paced_figures():
    """bench/paced_latency.py at its smallest: a few seconds of rounds of one network, each slot
    and each pair of slots apart reported as the clock read it and paced (the figures are the
    machine's; BENCHMARKS.md holds a full run)."""
    run = subprocess.run([sys.executable, str(REPO / "bench" / "paced_latency.py"), "--minutes", "0.1",
                          "--apart-minutes", "0.02", "--networks", "custom-140k-3x3"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    for figure in ("one slot, clock", "one slot, paced", "objective, clock", "objective, paced"):
        assert f"| {figure} |" in out
    row = next(line for line in out.splitlines() if line.startswith("| custom-140k-3x3 |"))
    assert float(row.split("|")[7]) == pytest.approx(1.0)  # the quiet latency is the lowest slot's lowest timing
    assert re.search(r"The reference's pace \(its timing over [\d.]+ ms\), \d+ timings", out)
    bad = subprocess.run([sys.executable, str(REPO / "bench" / "paced_latency.py"), "--networks", "resnet-9000"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "'resnet-9000' is not a paper network" in bad.stderr


@pytest.mark.slow  # a latency bench script end to end (10-40 s): make test-all and CI run it
def test_latency_agreement_bench_compares_its_protocols():
    """bench/latency_agreement.py at its smallest (two networks): it runs its four passes and
    reports each protocol (the figures are the machine's; BENCHMARKS.md holds a full run)."""
    run = subprocess.run([sys.executable, str(REPO / "bench" / "latency_agreement.py"), "--points", "1",
                          "--presets", "custom-140k-3x3"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "2 networks (1 paper presets and 1 draws" in out
    for protocol in ("one timing", "lowest of 3", "lowest of 3, twice"):
        assert re.search(rf"\| {protocol} \| \d\.\d\d \| \d\.\d\d-\d\.\d\d \| [0-2] of 2 ", out), protocol
    assert re.search(r"\| custom-140k-3x3 \| (\d\.\d{3} / \d\.\d{3} \|\s*){4}", out)


@pytest.mark.slow  # a latency bench script end to end (10-40 s): make test-all and CI run it
def test_retime_trials_bench_times_stored_trials_against_a_reference(tmp_path):
    """bench/retime_trials.py rebuilds stored trials' networks and times them again: two
    presets trained for one epoch on generated images, one pass."""
    from search.data import DataConfig, load_dataset
    from search.study.record import Limits, TrialRecord
    from search.training.recipe import TrainRecipe
    from search.trial.pipeline import run_candidate

    data = load_dataset(DataConfig(source="synthetic", image_size=16, synthetic_count=60), cache_dir=tmp_path / "c")
    storage = f"sqlite:///{tmp_path}/r.db"
    study = studylib.open_study("r", storage)
    recipe = TrainRecipe.named("paper", image_size=16, epochs=1)
    for name in ("custom-140k-3x3", "custom-140k-dw"):
        arch = PRESETS[name]
        outcome = run_candidate(arch, recipe, data, out_dir=tmp_path / name, limits=Limits())
        record = TrialRecord(run_id="t", arch=arch.to_dict(), arch_code=arch.code(), recipe=recipe.to_dict(),
                             enhancements="none", preset=name)
        studylib.tell_outcome(study, study.ask(), record, outcome.provenance(data), Limits())
    run = subprocess.run([sys.executable, str(REPO / "bench" / "retime_trials.py"), "--storage", storage,
                          "--trials", "r:0", "--reference", "r:1", "--passes", "1", "--gap", "0"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "6 single-image timings per network" in run.stdout
    assert re.search(r"\| r:0 \| custom-140k-3x3 \| \d\.\d{3} \| - \| \d\.\d{3} \| \d\.\d\d \|", run.stdout)
    assert re.search(r"\| r:1 \| custom-140k-dw \| \d\.\d{3} \| - \| \d\.\d{3} \| 1\.00 \|", run.stdout)
    bad = subprocess.run([sys.executable, str(REPO / "bench" / "retime_trials.py"), "--storage", storage,
                          "--trials", "r-0"], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "'r-0' is not STUDY:NUMBER" in bad.stderr


@pytest.mark.slow  # a latency bench script end to end (10-40 s): make test-all and CI run it
def test_retime_protocols_bench_re_times_a_copy_of_the_front_by_each_protocol(tmp_path):
    """bench/retime_protocols.py at its smallest: a two-network front re-timed once by each
    protocol, on a copy (the study itself keeps no re-timing)."""
    from search.study.record import TrialRecord
    from search.training.recipe import TrainRecipe

    storage = f"sqlite:///{tmp_path}/p.db"
    study = studylib.open_study("p", storage)
    recipe = TrainRecipe(image_size=16, epochs=1).to_dict()
    for name, values in (("custom-140k-3x3", [0.9, 1.0, 150_000]), ("custom-140k-dw", [0.8, 0.5, 90_000])):
        trial = study.ask()
        TrialRecord(run_id="t", arch=PRESETS[name].to_dict(), recipe=recipe, data={"class_names": ["a", "b"]},
                    latency_runtime="torch", preset=name).write(trial)
        study.tell(trial, values=values)
    run = subprocess.run([sys.executable, str(REPO / "bench" / "retime_protocols.py"), "--storage", storage,
                          "--study", "p", "--reps", "1", "--gap", "0.2"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "2 front trials of p (#0, #1), re-timed 1 times" in out
    for protocol in ("2 passes, back to back", "3 passes, 0.2 s apart"):
        assert re.search(rf"\| {protocol} \| 2 \| \d\.\d\d-\d\.\d\d \| [0-2] \| \d\.\d\d \| [0-2] \|", out), protocol
    assert not [k for k in studylib.open_study("p", storage).user_attrs if k.startswith(studylib.RETIMED)]
    missing = subprocess.run([sys.executable, str(REPO / "bench" / "retime_protocols.py"), "--storage", storage,
                              "--study", "nope"], capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "no study 'nope'" in missing.stderr


def test_each_search_of_the_sampler_bench_is_a_valid_space(tmp_path):
    """Every search bench/search_vs_random.py can run changes only the sampler (and, for the
    -nostop ones, early stopping; for -single, -seeds2, -front2 and -front3, the accuracy's seeds) of
    the shipped space."""
    from search.space import load_space

    shipped = load_space(REPO / "spaces" / "paper.yaml")
    for kind, changes in svr.STUDIES.items():
        space = load_space(svr.space_file(str(REPO / "spaces" / "paper.yaml"), changes, tmp_path, population=8))
        sampler = changes.get("sampler", shipped.sampler.name)
        assert space.sampler.name == sampler and space.sampler.seed == shipped.sampler.seed, kind
        assert space.sampler.population_size == (8 if sampler == "nsga2" and changes else
                                                 shipped.sampler.population_size), kind
        assert space.budget.early_stopping == {"nostop": "none", "midway": "pareto"}.get(
            kind.rsplit("-", 1)[-1], "preview"), kind
        seeds = {"single": (1, "finished"), "seeds2": (2, "finished"), "front2": (2, "front"), "front3": (3, "front")}.get(
            kind.rsplit("-", 1)[-1], (shipped.seeds, shipped.seeds_for))
        assert (space.seeds, space.seeds_for) == seeds, kind
        assert space.architecture == shipped.architecture and space.constraints == shipped.constraints, kind
        assert space.seed_nearest == (not kind.endswith("-nonear")), kind


def test_seed_replicates_a_bench_run_with_another_sampler_and_training_seed(tmp_path):
    """--seed changes the sampler's seed of every search (and so each trial's training seed),
    keeps the data split, and the report names it; without it the space file's seed stands."""
    from search.space import load_space

    path = str(REPO / "spaces" / "paper.yaml")
    shipped = load_space(path)
    args = argparse.Namespace(data=str(tmp_path), epochs=3, channels=None, image_size=None, seed=shipped.sampler.seed + 1)
    for kind, changes in svr.STUDIES.items():
        space = load_space(svr.space_file(path, changes, tmp_path, population=8),
                           overrides=svr.run_overrides(args, f"t-{kind}"))
        assert space.sampler.seed == shipped.sampler.seed + 1, kind
        assert space.data.split_seed == shipped.data.split_seed and space.max_epochs == 3, kind
        assert Path(space.data.cache_dir) == REPO / "studies" / f"t-{kind}" / "cache", kind  # a store of its own
    args.seed, args.image_size = None, [32, 64]  # --image-size: the sizes the search picks among
    space = load_space(path, overrides=svr.run_overrides(args, "t-default"))
    assert space.sampler.seed == shipped.sampler.seed
    assert space.image_sizes == [32, 64] and shipped.image_sizes == [32]
    storage = f"sqlite:///{tmp_path}/seed.db"
    study = studylib.open_study("t-default", storage)
    study.set_user_attr(svr.SAMPLER_ATTR, {"name": "tpe", "early_stopping": "preview", "seed": 556})
    assert svr.describe("default", study).endswith(", seed 556)")
    study.set_user_attr(svr.SAMPLER_ATTR, {"name": "tpe", "early_stopping": "preview"})  # stored before --seed
    assert "seed " not in svr.describe("default", study)


def test_every_form_of_the_feasibility_bench_is_a_valid_space():
    """bench/space_feasibility.py screens the shipped space, it at the other widths of 256, 384
    and 512 channels, and its per-block form, at 32 px; all must load (the per-block form cannot
    take seed_nearest)."""
    from bench.space_feasibility import forms
    from search.space import space_from_dict

    spaces = {name: space_from_dict(doc, name) for name, doc in forms().items()}
    assert [s.image_sizes for s in spaces.values()] == [[32]] * 4
    *growing, per_block = spaces.values()
    assert sorted(s.architecture.max_channels for s in growing) == [256, 384, 512]
    assert all(s.seed_nearest for s in growing) and not per_block.seed_nearest
    assert growing[0].architecture != per_block.architecture


def test_side_by_side_says_when_epoch_times_were_not_measured_together():
    def record(seconds: float) -> dict:
        return {"val": {"accuracy": 0.9}, "accuracy": 0.9, "balanced_accuracy": 0.9, "train_seconds": seconds,
                "recipe": {"epochs": 10}, "per_class_recall": {"a": 0.8, "b": 1.0}}

    by_recipe = {r: {pt.Job("x-sdd", "preset", "custom-140k-3x3", s, r): record(20.0 if r == "paper" else 30.0)
                     for s in range(2)} for r in ("paper", "default")}
    together = pt.side_by_side(by_recipe, ["x-sdd"], {"paper": 2, "default": 2})
    assert "both recipes trained in this run" in together and "median ratio 1.50 over 1 rows" in together
    apart = pt.side_by_side(by_recipe, ["x-sdd"], {"paper": 2})
    assert "both recipes trained in this run" not in apart
    assert "an earlier invocation (`default` 2 of 2)" in apart


def test_the_bench_trains_each_presets_nearest_point_of_the_shipped_space():
    from bench import space_near_presets as near
    from search.space import load_space

    points = near.nearest_points(load_space(near.SPACE))
    assert set(points) == set(PRESETS)
    for name, preset in PRESETS.items():
        assert points[name].code() != preset.code()  # the space cannot express the preset itself
        assert points[name].downsampling == preset.downsampling, name


def test_rung_fidelity_scores_a_look_against_the_final_score():
    """bench/rung_fidelity.py's measures: ranks with ties, Spearman, the clearly different pairs a
    look orders right, and how many of the finally best a best-third cut by the look keeps."""
    from bench import rung_fidelity as rf

    assert rf.ranks([3.0, 1.0, 2.0, 2.0]) == [3.0, 0.0, 1.5, 1.5]
    assert rf.spearman([1.0, 2.0, 3.0], [10.0, 20.0, 30.0]) == pytest.approx(1.0)
    assert rf.spearman([1.0, 2.0, 3.0], [30.0, 20.0, 10.0]) == pytest.approx(-1.0)
    # (0, 1) and (0, 2) differ by more than 2 points, (1, 2) by 1: only the first two count
    assert rf.clear_pairs([0.1, 0.2, 0.3], [0.5, 0.6, 0.61]) == (2, 2)
    assert rf.clear_pairs([0.3, 0.2, 0.1], [0.5, 0.6, 0.61]) == (0, 2)
    # by image size: (0, 1) are both 32 px, so only (0, 2) is a pair across sizes
    assert rf.clear_pairs([0.1, 0.2, 0.05], [0.5, 0.6, 0.61], groups=[32, 32, 64]) == (0, 1)
    final = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]  # the best quarter: trials 0 and 1
    look = [0.9, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]  # its best third: trials 0, 7 and 6
    assert rf.kept_best(look, final) == (1, 2)
    assert rf.kept_best(final, final) == (2, 2)


@pytest.mark.slow  # three one-minute searches end to end (about 4 minutes): make test-all and CI run it
def test_gpu_sharing_bench_runs_its_searches_on_declared_gpus(tmp_path):
    """bench/gpu_sharing.py with GPUs declared to Ray on this CPU machine: each search runs and
    its row says how many trials trained; no GPU speed is measured (BENCHMARKS.md says where
    a GPU run is)."""
    run = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_sharing.py"), "--declare-gpus", "1",
                          "--space", str(REPO / "spaces" / "demo.yaml"), "--data", "synthetic", "--minutes", "1",
                          "--sizes", "16", "--shares", "2", "--cpu-workers", "2"],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "CASTSEARCH_TIMING": "quick"})
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [line for line in run.stdout.splitlines() if line.startswith("| 16 |")]
    assert [row.split("|")[2].strip() for row in rows] == ["CPU", "2 per GPU (--gpus-per-trial 0.5)"]
    assert all(int(row.split("|")[4]) > 0 for row in rows), run.stdout
    assert "a check of the script, not a measurement" in run.stdout
    no_gpu = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_sharing.py")], capture_output=True, text=True,
                            timeout=120)
    assert no_gpu.returncode != 0 and "no GPU here" in no_gpu.stderr

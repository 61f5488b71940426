"""The paper's tables re-measured on real steel-defect images, with a verdict per claim.

    python bench/paper_table.py [--epochs 8] [--seeds 3] [--jobs 2] [--datasets neu-cls x-sdd]
                                [--recipes paper default] [--groups preset ...] [--val-fraction 0.1]

The paper's protocol: 32x32 input scaled by 1/255, a stratified 10% test split with seed
555 (then 10% of the rest for validation), Adam at 1e-3, batch 32, cross-entropy, a
fixed number of epochs (the paper trained up to 100-200 with early stopping; a 2-core
CPU cannot, so ``--epochs`` is stated in the output). Rows, per dataset:

- the six presets (3x3 against depthwise at each size);
- the enhancement table on custom-590k-dw: blurpool, swa, squeeze_excite, mixup,
  blurpool+squeeze_excite+swa (``none`` is the preset row itself);
- each of the paper's augmentations alone on custom-590k-dw;
- the baselines, trained from scratch (no pretrained weights offline); InceptionV3 at
  75x75, the smallest input it takes.

``--recipes`` names the training recipes (castsearch's named recipes: ``paper`` is the
protocol above, ``default`` castsearch's); each row is trained under each, the enhancement
and augmentation rows adding their switch to the recipe's own. With more than one recipe a
side-by-side table follows: validation and test accuracy, seed spread and seconds per epoch
of every row under each recipe, measured in the same run. ``--groups`` restricts the rows.

Presets and enhancement rows, where the differences are small, run ``--seeds`` seeds;
augmentation and baseline rows run seed 0 only. Every trained run is a JSON file in
``--results`` (a run already there is not trained again, so a killed benchmark resumes).
Then, on a quiet machine, single-image and batch-of-50 latency of every row is measured
round-robin on one thread, and the tables and verdicts are printed as markdown.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DATASETS, REPO, header, table, training_worker  # noqa: E402
from bench.paper_verdicts import (  # noqa: E402
    ENHANCED,
    ENHANCEMENT_ROWS,
    mean_sd,
    pct,
    verdicts,
    worst_class,
)

BASELINE_SIZE = {"inception_v3": 75}  # input side for baselines that cannot take 32x32
DEFAULT_RESULTS = REPO / "bench" / "results" / "paper_table"


@dataclass(frozen=True)
class Job:
    """One training run: a row of the table on one dataset with one seed."""

    dataset: str
    group: str  # preset | enhancement | augmentation | baseline
    row: str  # preset name, enhancement row, augmentation name or baseline name
    seed: int
    recipe: str = "paper"

    @property
    def key(self) -> str:
        return f"{self.dataset}__{self.group}__{self.row}__s{self.seed}"

    @property
    def image_size(self) -> int:
        return BASELINE_SIZE.get(self.row, 32) if self.group == "baseline" else 32


GROUPS = ("preset", "enhancement", "augmentation", "baseline")


def jobs(datasets: list[str], seeds: int, recipe: str = "paper", groups: tuple[str, ...] = GROUPS) -> list[Job]:
    """All runs, seed 0 of every row first (so an interrupted run still fills the whole table)."""
    from castmodels import PRESETS, baseline_names
    from search.training.recipe import AUGMENTATIONS

    out = []
    for seed in range(seeds):
        for d in datasets:
            out += [Job(d, "preset", name, seed, recipe) for name in PRESETS]
            out += [Job(d, "enhancement", row, seed, recipe) for row in ENHANCEMENT_ROWS]
            if seed == 0:
                out += [Job(d, "augmentation", a, 0, recipe) for a in AUGMENTATIONS]
                out += [Job(d, "baseline", b, 0, recipe) for b in baseline_names()]
    return [j for j in out if j.group in groups]


def recipe_for(job: Job, epochs: int):
    """The job's named recipe, with the row's enhancement or augmentation added to its own."""
    from search.training.recipe import TrainRecipe

    base = TrainRecipe.named(job.recipe)
    extra_enh = ENHANCEMENT_ROWS.get(job.row, ()) if job.group == "enhancement" else ()
    extra_aug = (job.row,) if job.group == "augmentation" else ()
    return TrainRecipe.named(
        job.recipe, epochs=epochs, image_size=job.image_size, channels=3, seed=job.seed,
        enhancements=tuple(dict.fromkeys(base.enhancements + extra_enh)),
        augmentations=tuple(dict.fromkeys(base.augmentations + extra_aug)),
    )


def build(job: Job, recipe, num_classes: int):
    """The network of ``job``, randomly initialised from the job's seed, with the recipe's surgery."""
    import torch

    from castmodels import PRESETS, build_baseline
    from search.trial.build import build_candidate

    torch.manual_seed(job.seed)
    if job.group == "baseline":
        return build_baseline(job.row, 3, num_classes, job.image_size)
    return build_candidate(PRESETS[job.row if job.group == "preset" else ENHANCED], recipe, num_classes)


def load(dataset: str, image_size: int, val_fraction: float):
    from search.data import DataConfig, load_dataset

    return load_dataset(DataConfig(source=str(DATASETS / dataset), image_size=image_size, channels=3,
                                   test_fraction=0.1, val_fraction=val_fraction,
                                   split_seed=555))


def train_job(job: Job, epochs: int, out: Path, val_fraction: float) -> dict:
    """Train one job, evaluate it on the validation and the test split; write and return its record."""
    from search.latency.measure import count_macs, count_params
    from search.training.train import train
    from search.trial.pipeline import evaluate_splits

    data = load(job.dataset, job.image_size, val_fraction)
    recipe = recipe_for(job, epochs)
    model = build(job, recipe, data.num_classes)
    result = train(model, data, recipe, device="cpu")
    val, ev = evaluate_splits(result.model, data)
    record = {
        "job": job.__dict__, "recipe": recipe.to_dict(), "accuracy": ev.accuracy, "macro_f1": ev.macro_f1,
        "balanced_accuracy": ev.balanced_accuracy, "val": val.to_dict(), "val_images": len(data.val_y),
        "per_class_recall": ev.per_class_recall, "val_accuracy": result.val_scores,
        "params": count_params(result.model), "macs": count_macs(result.model, (3, job.image_size, job.image_size)),
        "train_seconds": result.train_seconds, "test_images": len(data.test_y), "data": data.identity,
    }
    tmp = out / f"{job.key}.json.tmp"
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(out / f"{job.key}.json")
    return record


def run_all(todo: list[tuple[Job, Path]], epochs: int, workers: int, val_fraction: float) -> None:
    for d in {j.dataset for j, _ in todo}:  # decode each dataset once, before the workers need it
        for size in {j.image_size for j, _ in todo if j.dataset == d}:
            load(d, size, val_fraction)
    started = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=training_worker) as pool:
        futures = {pool.submit(train_job, j, epochs, out, val_fraction): j for j, out in todo}
        for i, f in enumerate(as_completed(futures), 1):
            j, r = futures[f], f.result()
            print(f"[{i}/{len(todo)} {time.perf_counter() - started:6.0f}s] {j.key}: accuracy "
                  f"{r['accuracy']:.3f} in {r['train_seconds']:.0f}s", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Latency, statistics, tables, verdicts


def network_key(job: Job) -> tuple:
    """What latency depends on: the network as built (preset or baseline, model surgery), its
    class count (the dataset) and input size. SWA, MixUp and the augmentations change
    training only, so their rows share the plain network's measurement."""
    from search.training.train import SURGERY

    if job.group == "baseline":
        return (job.dataset, job.row, ())
    surgery = tuple(e for e in ENHANCEMENT_ROWS.get(job.row, ()) if e in SURGERY) if job.group == "enhancement" else ()
    return (job.dataset, job.row if job.group == "preset" else ENHANCED, surgery)


def latencies(rows: list[Job], num_classes: dict[str, int], rounds: int) -> dict[tuple[str, str, str], tuple]:
    """(dataset, group, row) -> (single-image ms, batch-of-50 ms): medians over ``rounds``
    round-robin rounds of castsearch's latency protocol, one thread, once per distinct network."""
    from search.latency.measure import measure_latency

    models = {}
    for j in rows:
        if network_key(j) not in models:
            models[network_key(j)] = (build(j, recipe_for(j, 1), num_classes[j.dataset]).eval(),
                                      (3, j.image_size, j.image_size))
    single: dict = {k: [] for k in models}
    batch: dict = {k: [] for k in models}
    for _ in range(rounds):
        for k, (model, shape) in models.items():
            single[k].append(measure_latency(model, shape, 1, threads=1).median_ms)
            batch[k].append(measure_latency(model, shape, 50, threads=1).median_ms)
    return {(j.dataset, j.group, j.row): (statistics.median(single[network_key(j)]),
                                          statistics.median(batch[network_key(j)])) for j in rows}


def describe_recipe(name: str) -> str:
    from search.training.recipe import RECIPES

    return f"recipe `{name}` (" + ", ".join(f"{k} {v if not isinstance(v, tuple) else '+'.join(v)}"
                                            for k, v in RECIPES[name].items()) + ")"


def render(records: dict[Job, dict], lat: dict, datasets: list[str], epochs: int, seeds: int,
           recipe: str = "paper", val_fraction: float = 0.1) -> str:
    from castmodels import PRESETS, baseline_names
    from search.training.recipe import AUGMENTATIONS

    def acc(d: str, group: str, row: str) -> list[float]:
        return [r["accuracy"] for j, r in records.items() if (j.dataset, j.group, j.row) == (d, group, row)]

    def runs(d: str, group: str, row: str) -> list[dict]:
        return [r for j, r in records.items() if (j.dataset, j.group, j.row) == (d, group, row)]

    out = [header(f"The paper's tables on NEU-CLS and X-SDD, {recipe} recipe")]
    out.append(
        f"Protocol: 32x32 RGB input / 255, stratified split 10% test (seed 555) then {val_fraction:.0%} of the "
        f"rest for validation; {describe_recipe(recipe)}, {epochs} epochs, no early stopping, metrics "
        f"after the last epoch: validation accuracy (val %) and, on the test split, everything else. "
        f"Training ran on 1 torch thread per run. Presets and enhancement rows: "
        f"{seeds} seeds (mean ± standard deviation across seeds); augmentation and baseline rows: seed 0. "
        f"Baselines are trained from scratch (no pretrained weights here); InceptionV3 takes 75x75 input "
        f"(its minimum). Latency: castsearch's protocol (torch eager, inference mode, 1 thread, median), "
        f"medians over round-robin rounds, measured after training on an otherwise idle machine, once "
        f"per distinct network (SWA, MixUp and the augmentations change training, not the network). "
        f"Worst class: the lowest per-class recall on the test split and its class.\n")
    columns = ["row", "val %", "test accuracy %", "macro-F1 %", "worst-class recall %", "params", "MACs",
               "1 image ms", "batch of 50 ms"]
    for d in datasets:
        test_images = next((r["test_images"] for j, r in records.items() if j.dataset == d), 0)
        out.append(f"### {d} ({test_images} test images)\n")
        sections = [
            ("Presets", [("preset", p, p) for p in PRESETS]),
            (f"Enhancements on {ENHANCED}",
             [("preset", ENHANCED, "none")] + [("enhancement", e, e) for e in ENHANCEMENT_ROWS]),
            (f"Augmentations on {ENHANCED} (one at a time)", [("augmentation", a, a) for a in AUGMENTATIONS]),
            ("Baselines (from scratch)", [("baseline", b, b) for b in baseline_names()]),
        ]
        for title, rows in sections:
            lines = []
            for group, row, label in rows:
                rs = runs(d, group, row)
                if not rs:
                    continue
                single, batch = lat.get((d, group, row), (float("nan"), float("nan")))
                val = pct([r["val"]["accuracy"] for r in rs]) if all("val" in r for r in rs) else "-"
                lines.append([label, val, pct([r["accuracy"] for r in rs]), pct([r["macro_f1"] for r in rs]),
                              worst_class(rs), rs[0]["params"], rs[0]["macs"], f"{single:.2f}", f"{batch:.1f}"])
            if lines:
                out.append(f"**{title}**\n\n" + table(columns, lines))
    out.append("### Verdicts on the paper's claims\n")
    out.append("A difference counts when it exceeds two standard errors of the difference of means "
               "(seed-to-seed spread); otherwise it is 'within noise'.\n")
    out += verdicts(acc, lat, datasets)
    return "\n".join(out)


def side_by_side(by_recipe: dict[str, dict[Job, dict]], datasets: list[str],
                 trained_now: dict[str, int] | None = None) -> str:
    """Every row under each recipe: validation and test accuracy (mean ± sd over seeds) and
    the median training seconds per epoch. ``trained_now``: how many of each recipe's runs
    this invocation trained (the rest were stored by an earlier one, under other load)."""
    trained_now = trained_now or {}
    earlier = [f"`{r}` {len(records) - trained_now.get(r, 0)} of {len(records)}"
               for r, records in by_recipe.items() if trained_now.get(r, 0) < len(records)]
    when = ("both recipes trained in this run with the same parallelism, interleaved job by job" if not earlier else
            f"runs trained by an earlier invocation ({', '.join(earlier)}) met other machine load, so epoch "
            f"times compare side by side only between runs trained together")
    rows = []
    keys = sorted({(j.dataset, j.group, j.row) for records in by_recipe.values() for j in records},
                  key=lambda k: (datasets.index(k[0]), GROUPS.index(k[1]), k[2]))
    for d, group, row in keys:
        for recipe, records in by_recipe.items():
            rs = [r for j, r in records.items() if (j.dataset, j.group, j.row) == (d, group, row)]
            if not rs:
                continue
            per_epoch = statistics.median(r["train_seconds"] / r["recipe"]["epochs"] for r in rs)
            rows.append([d, row, recipe, pct([r["val"]["accuracy"] for r in rs]), pct([r["accuracy"] for r in rs]),
                         pct([r["balanced_accuracy"] for r in rs]), worst_class(rs), f"{per_epoch:.1f}"])
    out = ["### Recipes side by side\n",
           "Validation accuracy chose the default recipe (bench/recipe_choice.py); the test columns are "
           "reported, never used to choose. s/epoch: median wall seconds per training epoch, validation "
           f"included; {when}.\n",
           table(["dataset", "row", "recipe", "val %", "test accuracy %", "test balanced %",
                  "worst-class recall %", "s / epoch"], rows)]
    recipes = list(by_recipe)
    for d in datasets:
        for recipe in recipes:
            records = by_recipe[recipe]
            presets = {j.row for j in records if j.dataset == d and j.group == "preset"}
            if not presets:
                continue
            stats = {p: mean_sd([r["accuracy"] for j, r in records.items()
                                 if (j.dataset, j.group, j.row) == (d, "preset", p)]) for p in presets}
            best = max(stats, key=lambda p: statistics.fmean(
                [r["val"]["accuracy"] for j, r in records.items() if (j.dataset, j.group, j.row) == (d, "preset", p)]))
            worst_sd = max(stats, key=lambda p: stats[p][1])
            out.append(f"- {d}, `{recipe}`: best preset by mean validation accuracy {best}, test "
                       f"{100 * stats[best][0]:.1f} ± {100 * stats[best][1]:.1f}%; largest seed-to-seed sd "
                       f"{100 * stats[worst_sd][1]:.1f} points ({worst_sd}).")
    if len(recipes) > 1:
        a, b = recipes[0], recipes[1]
        ratios = []
        for key in keys:
            ta = [r["train_seconds"] / r["recipe"]["epochs"] for j, r in by_recipe[a].items()
                  if (j.dataset, j.group, j.row) == key]
            tb = [r["train_seconds"] / r["recipe"]["epochs"] for j, r in by_recipe[b].items()
                  if (j.dataset, j.group, j.row) == key]
            if ta and tb:
                ratios.append(statistics.median(tb) / statistics.median(ta))
        if ratios:
            out.append(f"\nEpoch time `{b}` / `{a}`: median ratio {statistics.median(ratios):.2f} over "
                       f"{len(ratios)} rows (range {min(ratios):.2f}-{max(ratios):.2f}).")
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["neu-cls", "x-sdd"])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--seeds", type=int, default=3, help="seeds for the preset and enhancement rows")
    p.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 1)), help="parallel runs, 1 thread each")
    p.add_argument("--rounds", type=int, default=2, help="round-robin latency rounds")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    p.add_argument("--train-only", action="store_true", help="train the missing runs, print nothing")
    p.add_argument("--recipes", nargs="+", default=["paper"], help="named recipes to train every row with")
    p.add_argument("--groups", nargs="+", default=list(GROUPS), choices=GROUPS, help="which rows")
    p.add_argument("--val-fraction", type=float, default=0.1, help="validation share of the non-test images")
    args = p.parse_args()
    for d in args.datasets:
        if not (DATASETS / d).is_dir():
            p.error(f"no dataset folder {DATASETS / d}")
    plan = {}
    for recipe in args.recipes:
        # e5/ holds the paper-protocol runs of earlier versions: the paper recipe with 10% validation
        name = f"e{args.epochs}" if (recipe, args.val_fraction) == ("paper", 0.1) else \
            f"e{args.epochs}-{recipe}-v{round(100 * args.val_fraction)}"
        out = args.results / name
        out.mkdir(parents=True, exist_ok=True)
        plan[recipe] = (out, jobs(args.datasets, args.seeds, recipe, tuple(args.groups)))
    # Recipes interleaved job by job, so that both meet the same machine load (epoch times are compared).
    todo = [(j, out) for group in itertools.zip_longest(*[[(j, out) for j in all_jobs] for out, all_jobs
                                                          in plan.values()])
            for j, out in filter(None, group) if not (out / f"{j.key}.json").exists()]
    total = sum(len(all_jobs) for _, all_jobs in plan.values())
    print(f"{total - len(todo)} of {total} runs already done; training {len(todo)}", file=sys.stderr)
    if todo:
        run_all(todo, args.epochs, args.jobs, args.val_fraction)
    if args.train_only:
        return
    by_recipe = {recipe: {j: json.loads((out / f"{j.key}.json").read_text()) for j in all_jobs}
                 for recipe, (out, all_jobs) in plan.items()}
    first = next(iter(by_recipe.values()))
    num_classes = {j.dataset: len(r["per_class_recall"]) for j, r in first.items()}
    rows = list({(j.dataset, j.group, j.row): j for j in first}.values())
    lat = latencies(rows, num_classes, args.rounds)  # the network does not depend on the recipe
    for recipe, records in by_recipe.items():
        print(render(records, lat, args.datasets, args.epochs, args.seeds, recipe, args.val_fraction))
    if len(by_recipe) > 1:
        trained_now = collections.Counter(next(r for r, (o, _) in plan.items() if o == out) for _, out in todo)
        print(side_by_side(by_recipe, args.datasets, dict(trained_now)))


if __name__ == "__main__":
    main()

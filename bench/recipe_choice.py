"""Which training recipe castsearch uses by default, chosen on validation figures only.

    python bench/recipe_choice.py [--epochs 10] [--seeds 2] [--jobs 2] [--val-fraction 0.2]

Each candidate recipe trains two of the paper's presets (the smallest 3x3 net and the
largest depthwise one) on NEU-CLS and X-SDD at 32x32 for ``--epochs`` epochs with
``--seeds`` seeds, on the castsearch split (10% test with seed 555, then
``--val-fraction`` of the rest for validation, stratified). The pick is the recipe with
the highest mean validation balanced accuracy over datasets, presets and seeds; test
figures are computed after training and printed beside, never used to choose. Every run
is a JSON record under ``--results``, so a killed benchmark resumes.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DATASETS, REPO, header, table, training_worker  # noqa: E402

PRESETS = ("custom-140k-3x3", "custom-590k-dw")
DATASET_NAMES = ("neu-cls", "x-sdd")
_MODERN = {"batch_size": 32, "weight_decay": 5e-4, "warmup": 0.25, "enhancements": ("label_smoothing",),
           "label_smoothing": 0.1, "augmentations": ("hflip",)}
CANDIDATES: dict[str, dict] = {  # name -> TrainRecipe fields over the paper recipe
    "paper": {"optimizer": "adam", "lr": 1e-3, "batch_size": 32},
    "adamw-onecycle": {**_MODERN, "optimizer": "adamw", "lr": 3e-3, "schedule": "onecycle"},
    "adamw-cosine": {**_MODERN, "optimizer": "adamw", "lr": 3e-3, "schedule": "cosine"},
    "sgd-onecycle": {**_MODERN, "optimizer": "sgd", "lr": 0.05, "schedule": "onecycle"},
    "adamw-onecycle-plain": {"optimizer": "adamw", "lr": 3e-3, "batch_size": 32, "weight_decay": 5e-4,
                             "schedule": "onecycle", "warmup": 0.25},
}
DEFAULT_RESULTS = REPO / "bench" / "results" / "recipe_choice"


@dataclass(frozen=True)
class Job:
    dataset: str
    preset: str
    recipe: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.dataset}__{self.preset}__{self.recipe}__s{self.seed}"


def run_job(job: Job, epochs: int, val_fraction: float, out: Path) -> dict:
    import torch

    from castmodels import PRESETS as NETS
    from search.data import DataConfig, load_dataset
    from search.training.recipe import TrainRecipe
    from search.training.train import evaluate, train
    from search.trial.build import build_candidate

    data = load_dataset(DataConfig(source=str(DATASETS / job.dataset), image_size=32, channels=3,
                                   test_fraction=0.1, val_fraction=val_fraction, split_seed=555))
    recipe = TrainRecipe.named("paper", **CANDIDATES[job.recipe], epochs=epochs, image_size=32, channels=3, seed=job.seed)
    torch.manual_seed(job.seed)
    model = build_candidate(NETS[job.preset], recipe, data.num_classes)
    result = train(model, data, recipe, device="cpu")
    val = evaluate(result.model, data.val_x, data.val_y, data.class_names)
    test = evaluate(result.model, data.test_x, data.test_y, data.class_names)
    record = {"job": job.__dict__, "recipe": recipe.to_dict(), "epochs": epochs, "val_fraction": val_fraction,
              "val": val.to_dict(), "test": test.to_dict(), "val_images": len(data.val_y),
              "test_images": len(data.test_y), "train_seconds": result.train_seconds,
              "images_per_second": result.images_per_second, "split_hash": data.identity["split_hash"]}
    path = out / f"{job.key}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    return record


def _mean_sd(values: list[float]) -> str:
    m = statistics.mean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * m:.1f} ± {100 * sd:.1f}"


def report(records: list[dict], args) -> str:
    by = {}
    for r in records:
        j = r["job"]
        by.setdefault(j["recipe"], {}).setdefault((j["dataset"], j["preset"]), []).append(r)
    lines = [header("Choosing the default training recipe on validation accuracy"), ""]
    n_val = {r["job"]["dataset"]: r["val_images"] for r in records}
    lines.append(f"{args.epochs} epochs, {args.seeds} seed(s), batch 32, 32x32, one torch thread per run; "
                 f"validation {args.val_fraction:.0%} of the non-test images "
                 f"({', '.join(f'{d}: {n}' for d, n in sorted(n_val.items()))} images), stratified. "
                 "Cells: mean ± standard deviation over seeds, in %. The pick reads validation balanced "
                 "accuracy only; test accuracy is printed beside it and chose nothing.\n")
    for name, fields in CANDIDATES.items():
        lines.append(f"- `{name}`: {', '.join(f'{k}={v}' for k, v in fields.items())}")
    lines.append("")
    rows, score = [], {}
    for name in CANDIDATES:
        cells = by.get(name, {})
        if not cells:
            continue
        per_cell = []
        for (dataset, preset), runs in sorted(cells.items()):
            vb = [r["val"]["balanced_accuracy"] for r in runs]
            per_cell.append(statistics.mean(vb))
            rows.append([name, dataset, preset, len(runs), _mean_sd(vb),
                         _mean_sd([r["val"]["accuracy"] for r in runs]),
                         _mean_sd([r["test"]["accuracy"] for r in runs]),
                         _mean_sd([r["test"]["balanced_accuracy"] for r in runs]),
                         f"{100 * statistics.mean(min(r['test']['per_class_recall'].values()) for r in runs):.1f}",
                         f"{statistics.median(r['train_seconds'] / r['epochs'] for r in runs):.1f}"])
        score[name] = statistics.mean(per_cell)
    lines.append(table(["recipe", "dataset", "preset", "runs", "val balanced acc", "val acc", "test acc",
                        "test balanced acc", "test worst-class recall", "s / epoch"], rows))
    complete = {n: s for n, s in score.items() if len(by[n]) == len(DATASET_NAMES) * len(PRESETS)}
    if complete:
        best = max(complete, key=complete.get)
        lines.append("Mean validation balanced accuracy over datasets and presets: "
                     + ", ".join(f"`{n}` {100 * s:.1f}%" for n, s in sorted(complete.items(), key=lambda x: -x[1])))
        lines.append(f"\n**Pick (validation only): `{best}`.**")
        se = {d: 100 * math.sqrt(0.9 * 0.1 / n) for d, n in n_val.items()}
        lines.append("\nBinomial standard error of one validation accuracy near 90%: "
                     + ", ".join(f"{d} {v:.1f} points" for d, v in sorted(se.items())) + ".")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--recipes", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    args = p.parse_args()
    out = args.results / f"e{args.epochs}-v{round(100 * args.val_fraction)}"
    out.mkdir(parents=True, exist_ok=True)
    todo = [Job(d, preset, recipe, seed) for seed in range(args.seeds) for recipe in args.recipes
            for d in DATASET_NAMES for preset in PRESETS]
    records = []
    pending = []
    for job in todo:
        path = out / f"{job.key}.json"
        if path.is_file():
            records.append(json.loads(path.read_text()))
        else:
            pending.append(job)
    print(f"{len(records)} runs on file, {len(pending)} to train", file=sys.stderr, flush=True)
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn"), initializer=training_worker) as pool:
        futures = {pool.submit(run_job, job, args.epochs, args.val_fraction, out): job for job in pending}
        for done in as_completed(futures):
            r = done.result()
            records.append(r)
            print(f"{futures[done].key}: val balanced {r['val']['balanced_accuracy']:.3f}, "
                  f"{r['train_seconds']:.0f} s", file=sys.stderr, flush=True)
    print(report(records, args))


if __name__ == "__main__":
    main()

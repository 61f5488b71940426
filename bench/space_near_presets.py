"""Can the search space reach the paper's networks? Each preset against the point of the
shipped space (spaces/paper.yaml, the growing form: one width and one conv type, or mixed, per stage)
nearest to it, both trained with the space's named recipe and the same seeds.

    python bench/space_near_presets.py [--data PATH] [--seeds 555 556] [--epochs 10] [--jobs 2]
                                       [--presets custom-140k-dw ...]

The space cannot express a preset (its widths change inside a stage), so the presets join a
study as fixed-architecture trials. Each one's nearest point (search.space.nearest: its stages,
each stage's block count, majority conv type or mixed, widest block, dropout, pool and last
block) is what ``seed_nearest`` queues as the search's first own trials. If the
nearest points train as well as the presets, the space holds networks as accurate as the
paper's and the question is how the search reaches them; if not, the space itself is short.
Validation balanced accuracy is the figure compared; test accuracy is printed beside it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DATASETS, header, table, training_worker  # noqa: E402

SPACE = Path(__file__).resolve().parent.parent / "spaces" / "paper.yaml"


def nearest_points(space) -> dict:
    """Each preset's nearest point of the space (search.space.nearest_trials: what
    ``seed_nearest`` queues), as the network the space decodes from it."""
    from search.space import decode, nearest_trials

    return {name: decode(space, params).arch for name, params in nearest_trials(space).items()}


def run_job(label: str, code: str, data_path: str, seed: int, epochs: int) -> dict:
    import torch

    from castmodels import ArchSpec, build_model
    from search.data import DataConfig, load_dataset
    from search.training.recipe import TrainRecipe
    from search.training.train import evaluate, train

    data = load_dataset(DataConfig(source=data_path))
    channels = data.train_x.shape[1]
    recipe = TrainRecipe.named("default", epochs=epochs, image_size=32, channels=channels, seed=seed)
    torch.manual_seed(seed)  # the initial weights, as castsearch's trials draw them
    result = train(build_model(ArchSpec.from_code(code), channels, data.num_classes), data, recipe, device="cpu")
    val = evaluate(result.model, data.val_x, data.val_y, data.class_names)
    test = evaluate(result.model, data.test_x, data.test_y, data.class_names)
    return {"label": label, "seed": seed, "val": val.balanced_accuracy, "test": test.accuracy,
            "seconds": result.train_seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DATASETS / "neu-cls"))
    p.add_argument("--seeds", type=int, nargs="+", default=[555, 556])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--presets", nargs="+", help="only these presets (default: all six)")
    args = p.parse_args()

    import torch

    from castmodels import PRESETS, build_model
    from search.data import DataConfig, load_dataset
    from search.latency.measure import count_params, time_single
    from search.space import load_space

    space = load_space(SPACE)
    data = load_dataset(DataConfig(source=args.data))
    channels = data.train_x.shape[1]
    networks = {}  # label -> (code, params, ONNX Runtime ms), timed now, before any training runs
    torch.set_num_threads(1)
    nearest = nearest_points(space)
    for preset in args.presets or PRESETS:
        for label, arch in ((preset, PRESETS[preset]), (f"{preset}, nearest point", nearest[preset])):
            model = build_model(arch, channels, data.num_classes).eval()
            params = count_params(model)
            ms = time_single(model, (channels, 32, 32)).robust_ms
            networks[label] = (arch.code(), params, ms)
    runs: dict[str, list[dict]] = {label: [] for label in networks}
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn"), initializer=training_worker) as pool:
        futures = [pool.submit(run_job, label, code, args.data, seed, args.epochs)
                   for seed in args.seeds for label, (code, _, _) in networks.items()]
        for done in as_completed(futures):
            r = done.result()
            runs[r["label"]].append(r)
            print(f"{r['label']} seed {r['seed']}: val {r['val']:.3f}, {r['seconds']:.0f} s", file=sys.stderr, flush=True)

    def cell(values: list[float]) -> str:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{100 * statistics.mean(values):.1f} ± {100 * sd:.1f}"

    rows = []
    for label, (code, params, ms) in networks.items():
        rs = runs[label]
        rows.append([label, code, f"{params:,}", f"{ms:.2f}", cell([r["val"] for r in rs]),
                     cell([r["test"] for r in rs])])
    print(header("The search space's nearest points to the paper's presets"))
    print(f"Data: {data.identity['source']} ({len(data.train_y)} training / {len(data.val_y)} validation / "
          f"{len(data.test_y)} test images, {channels} channel(s)) at 32x32. Space: {SPACE.name} (growing form). "
          f"Recipe: the space's named recipe (`default`), {args.epochs} epochs, seeds "
          f"{', '.join(map(str, args.seeds))}, one thread per training, {args.jobs} at a time. Latency: "
          f"ONNX Runtime, one thread, single image, timed before any training started. Accuracy: mean ± sd over "
          f"the seeds, in %; validation balanced accuracy is the compared figure, test accuracy chose nothing.\n")
    print(table(["network", "layers", "params", "latency ms", "val. balanced accuracy %", "test accuracy %"], rows))


if __name__ == "__main__":
    main()

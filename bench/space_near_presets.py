"""Can the search space reach the paper's networks? Each preset against the point of the
shipped space (spaces/paper.yaml, the growing form: one width and one conv type per stage)
nearest to it, both trained with the space's named recipe and the same seeds.

    python bench/space_near_presets.py [--data PATH] [--seeds 555 556] [--epochs 10] [--jobs 2]

The space cannot express a preset (its widths change inside a stage), so the presets join a
study as fixed-architecture trials and teach the sampler nothing about where they lie. If the
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

from bench.common import DATASETS, header, table  # noqa: E402

SPACE = Path(__file__).resolve().parent.parent / "spaces" / "paper.yaml"


def _stage(growth, conv, blocks, last, dropout, pool):
    return {"growth": growth, "conv": conv, "blocks": blocks, "last": last, "dropout": dropout, "pool": pool}


# Each preset's nearest point, stage by stage: the preset's stage widths rounded to one width per
# stage (first stage's width, then growth), its majority conv type, its stride / dilation /
# dropout / pool where the stage ends. Widths are capped at the space's 256 channels.
NEAREST = {
    # [C16 C16 X.06 P] [C32 C32 X.07 P] [C64 C64s2 X.07 P] [C120]
    "custom-140k-3x3": (16, [_stage(None, "conv3x3", 2, "plain", 0.06, True),
                             _stage(2.0, "conv3x3", 2, "plain", 0.07, True),
                             _stage(2.0, "conv3x3", 2, "stride2", 0.07, True),
                             _stage(2.0, "conv3x3", 1, "plain", 0.0, False)]),
    # [C16 C16 X.06 P] [D32 C32 X.07 P] [D64 C64d2 X.07 P] [D128 D192 X.05] [D260]
    "custom-140k-dw": (16, [_stage(None, "conv3x3", 2, "plain", 0.06, True),
                            _stage(2.0, "dwsep", 2, "plain", 0.07, True),
                            _stage(2.0, "dwsep", 2, "dilation2", 0.07, True),
                            _stage(2.0, "dwsep", 2, "plain", 0.05, False),
                            _stage(2.0, "dwsep", 1, "plain", 0.0, False)]),
    # [C16 C32 X.06 P] [C64 C64 X.07 P] [C96 C96s2 X.07 P] [C160]
    "custom-340k-3x3": (32, [_stage(None, "conv3x3", 2, "plain", 0.06, True),
                             _stage(2.0, "conv3x3", 2, "plain", 0.07, True),
                             _stage(1.5, "conv3x3", 2, "stride2", 0.07, True),
                             _stage(1.5, "conv3x3", 1, "plain", 0.0, False)]),
    # [C16 C32 X.06 P] [D64 C64 X.07 P] [D96 C96d2 X.07 P] [D128 D192 X.05] [D210 D240 X.02 D280]
    "custom-340k-dw": (32, [_stage(None, "conv3x3", 2, "plain", 0.06, True),
                            _stage(2.0, "dwsep", 2, "plain", 0.07, True),
                            _stage(1.5, "dwsep", 2, "dilation2", 0.07, True),
                            _stage(2.0, "dwsep", 2, "plain", 0.05, False),
                            _stage(1.5, "dwsep", 3, "plain", 0.02, False)]),
    # [C16 C32 C32 X.06 P] [C64 C64 X.07 P] [C128 C128s2 X.07 P] [C256]
    "custom-590k-3x3": (32, [_stage(None, "conv3x3", 3, "plain", 0.06, True),
                             _stage(2.0, "conv3x3", 2, "plain", 0.07, True),
                             _stage(2.0, "conv3x3", 2, "stride2", 0.07, True),
                             _stage(2.0, "conv3x3", 1, "plain", 0.0, False)]),
    # [C16 C32 X.03] [D64 C64 X.03 P] [D96 C96d2 X.07] [D128 D192 X.05 P] [D260 D320 X.02 P D370 D415]
    "custom-590k-dw": (32, [_stage(None, "conv3x3", 2, "plain", 0.03, False),
                            _stage(2.0, "dwsep", 2, "plain", 0.03, True),
                            _stage(1.5, "dwsep", 2, "dilation2", 0.07, False),
                            _stage(2.0, "dwsep", 2, "plain", 0.05, True),
                            _stage(1.5, "dwsep", 3, "plain", 0.02, True)]),
}


def nearest_point(space, preset: str, image_size: int):
    """The ArchSpec the space decodes from the preset's nearest point: decoded by the space
    itself, so it is a point of the space (an unknown or inadmissible value raises)."""
    from search.space import _walk_growing

    width, stages = NEAREST[preset]
    values = {"width": width, "stages": len(stages), "head": "gap"}
    for i, s in enumerate(stages, start=1):
        if i > 1:
            values[f"s{i}_growth"] = s["growth"]
        values |= {f"s{i}_conv": s["conv"], f"s{i}_blocks": s["blocks"], f"s{i}_last": s["last"],
                   f"s{i}_dropout": s["dropout"], f"s{i}_pool": s["pool"]}

    def pick(name, param):
        value = values[name]
        if not param.admits(value):
            raise ValueError(f"{preset}'s nearest point needs {name}={value!r}, outside the space")
        return value

    return _walk_growing(space.architecture, pick, image_size)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def run_job(label: str, code: str, data_path: str, seed: int, epochs: int) -> dict:
    import torch

    from castmodels import ArchSpec, build_model
    from search.data import DataConfig, load_dataset
    from search.recipe import TrainRecipe
    from search.train import evaluate, train

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
    args = p.parse_args()

    import torch

    from castmodels import PRESETS, build_model
    from search.data import DataConfig, load_dataset
    from search.measure import count_params, time_single
    from search.space import load_space

    space = load_space(SPACE)
    data = load_dataset(DataConfig(source=args.data))
    channels = data.train_x.shape[1]
    networks = {}  # label -> (code, params, ONNX Runtime ms), timed now, before any training runs
    torch.set_num_threads(1)
    for preset, spec in PRESETS.items():
        for label, arch in ((preset, spec), (f"{preset}, nearest point", nearest_point(space, preset, 32))):
            model = build_model(arch, channels, data.num_classes).eval()
            params = count_params(model)
            ms = time_single(model, (channels, 32, 32)).robust_ms
            networks[label] = (arch.code(), params, ms)
    runs: dict[str, list[dict]] = {label: [] for label in networks}
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn"), initializer=_init_worker) as pool:
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

"""Training throughput from the tensor cache: castsearch's composer training against a bare
PyTorch loop on the same model, data and batches, interleaved in one run.

    python bench/train_throughput.py [--preset custom-590k-dw] [--data PATH] [--epochs 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench.common import DATASETS, header, median_iqr, table  # noqa: E402
from castmodels import build_model, get_preset  # noqa: E402
from search.data import DataConfig, load_dataset  # noqa: E402
from search.recipe import TrainRecipe  # noqa: E402
from search.train import train  # noqa: E402


def bare_loop(model, data, recipe: TrainRecipe) -> float:
    """Adam + cross-entropy over shuffled batches of uint8/255, nothing else; images/s."""
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    g = torch.Generator().manual_seed(recipe.seed)
    model.train()
    n = len(data.train_y)
    start = time.perf_counter()
    for _ in range(recipe.epochs):
        order = torch.randperm(n, generator=g)
        for i in range(0, n - 1, recipe.batch_size):
            idx = order[i:i + recipe.batch_size]
            x = data.train_x[idx].float().div_(255)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), data.train_y[idx]).backward()
            opt.step()
    return recipe.epochs * n / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--preset", default="custom-590k-dw")
    p.add_argument("--data", default=str(DATASETS / "neu-cls"))
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()

    data = load_dataset(DataConfig(source=args.data, image_size=args.image_size))
    t0 = time.perf_counter()
    load_dataset(DataConfig(source=args.data, image_size=args.image_size))
    cached_s = time.perf_counter() - t0
    recipe = TrainRecipe(epochs=args.epochs, image_size=args.image_size, channels=3)
    spec = get_preset(args.preset)
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        castsearch, bare = [], []
        for r in range(args.repeats):  # interleaved, so drift on a shared machine hits both alike
            torch.manual_seed(r)
            castsearch.append(train(build_model(spec, 3, data.num_classes), data, recipe).images_per_second)
            torch.manual_seed(r)
            bare.append(bare_loop(build_model(spec, 3, data.num_classes), data, recipe))
        (c, c_iqr), (b, b_iqr) = median_iqr(castsearch), median_iqr(bare)
        rows.append([threads, f"{c:.0f} (IQR {c_iqr:.0f})", f"{b:.0f} (IQR {b_iqr:.0f})", f"{c / b:.2f}"])
    print(header(f"Training throughput: {args.preset} at {args.image_size}x{args.image_size}"))
    print(f"Data: {data.identity['source']} ({len(data.train_y)} training images), loaded from the "
          f"tensor cache in {cached_s * 1000:.0f} ms. {args.epochs} epochs per measurement, batch "
          f"{recipe.batch_size}, Adam; {args.repeats} interleaved repeats, medians. castsearch = "
          f"composer Trainer with per-epoch validation excluded from its images/s.\n")
    print(table(["torch threads", "castsearch (composer) images/s", "bare PyTorch loop images/s",
                 "ratio castsearch / bare"], rows))


if __name__ == "__main__":
    main()

"""Training throughput from the tensor cache: castsearch's composer training, in its
channels-last layout and in the default NCHW layout, against a bare PyTorch loop on the same
model, data and batches, interleaved in one run, for the paper's presets and a few networks of
the kind the search draws.

    python bench/train_throughput.py [--networks custom-590k-dw "D24 D24 D24d2 X.03 P ..."]
        [--data PATH] [--epochs 1] [--repeats 3] [--threads 1 2]

A network is a preset name or an architecture code (``castsearch`` prints them as arch_code).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import search.training.train as train_module  # noqa: E402
from bench.common import DATASETS, header, median_iqr, table  # noqa: E402
from castmodels import PRESETS, ArchSpec, build_model, get_preset  # noqa: E402
from search.data import DataConfig, load_dataset  # noqa: E402
from search.latency.measure import count_params  # noqa: E402
from search.training.recipe import TrainRecipe  # noqa: E402
from search.training.train import train  # noqa: E402

# Networks the default NEU-CLS search trained at 2 CPU-hours (BENCHMARKS.md): depthwise-separable
# stages, dilated last blocks, 11-31K parameters.
SEARCHED = ["D24 D24 D24d2 X.03 P C32d2 X.08 D48s2 X.05 A",
            "C24 C24d2 X.01 P C32 C32d2 X.05 D48 D48s2 X.02 D72d2 X.07 A"]


def bare_loop(model, data, recipe: TrainRecipe) -> float:
    """Adam + cross-entropy over shuffled batches of uint8/255 in NCHW, nothing else; images/s."""
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


def castsearch(spec, channels, data, recipe, memory_format) -> float:
    train_module.CPU_MEMORY_FORMAT = memory_format
    try:
        return train(build_model(spec, channels, data.num_classes), data, recipe, device="cpu").images_per_second
    finally:
        train_module.CPU_MEMORY_FORMAT = torch.channels_last


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--networks", nargs="+", default=[*PRESETS, *SEARCHED],
                   help="preset names or architecture codes")
    p.add_argument("--data", default=str(DATASETS / "neu-cls"))
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, nargs="+", default=[1])
    args = p.parse_args()

    data = load_dataset(DataConfig(source=args.data, image_size=args.image_size))
    t0 = time.perf_counter()
    load_dataset(DataConfig(source=args.data, image_size=args.image_size))
    cached_s = time.perf_counter() - t0
    channels = data.train_x.shape[1]  # 1 for grey datasets under channels: auto
    recipe = TrainRecipe.named("paper", epochs=args.epochs, image_size=args.image_size, channels=channels)
    rows, ratios = [], []
    for name in args.networks:
        spec = get_preset(name) if name in PRESETS else ArchSpec.from_code(name)
        params = count_params(build_model(spec, channels, data.num_classes))
        for threads in args.threads:
            torch.set_num_threads(threads)
            nhwc, nchw, bare = [], [], []
            for r in range(args.repeats):  # interleaved, so drift on a shared machine hits all alike
                torch.manual_seed(r)
                nhwc.append(castsearch(spec, channels, data, recipe, torch.channels_last))
                torch.manual_seed(r)
                nchw.append(castsearch(spec, channels, data, recipe, torch.contiguous_format))
                torch.manual_seed(r)
                bare.append(bare_loop(build_model(spec, channels, data.num_classes), data, recipe))
            (a, a_iqr), (b, b_iqr), (c, c_iqr) = median_iqr(nhwc), median_iqr(nchw), median_iqr(bare)
            ratios.append(a / b)
            rows.append([name, f"{params:,}", threads, f"{a:.0f} (IQR {a_iqr:.0f})", f"{b:.0f} (IQR {b_iqr:.0f})",
                         f"{c:.0f} (IQR {c_iqr:.0f})", f"{a / b:.2f}", f"{a / c:.2f}"])
    print(header(f"Training throughput in channels-last layout at {args.image_size}x{args.image_size}"))
    print(f"Data: {data.identity['source']} ({len(data.train_y)} training images, {channels} channel(s)), "
          f"loaded from the tensor cache in {cached_s * 1000:.0f} ms. {args.epochs} epoch(s) per "
          f"measurement, batch {recipe.batch_size}, the default recipe's optimizer for castsearch, Adam "
          f"for the bare loop; {args.repeats} interleaved repeats, medians. castsearch = composer "
          f"Trainer (per-epoch validation excluded from its images/s), in channels-last (NHWC, "
          f"what it trains in on CPU) and in the default NCHW layout; the bare loop is NCHW.\n")
    print(table(["network", "params", "torch threads", "castsearch NHWC images/s", "castsearch NCHW images/s",
                 "bare loop NCHW images/s", "NHWC / NCHW", "castsearch NHWC / bare"], rows))
    ratios.sort()
    print(f"\nMedian speed-up of channels-last over NCHW: {ratios[len(ratios) // 2]:.2f}x "
          f"(range {ratios[0]:.2f}-{ratios[-1]:.2f}x over {len(ratios)} networks).")


if __name__ == "__main__":
    main()

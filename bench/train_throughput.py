"""Training throughput on CPU: which changes make an epoch faster, against the core's fp32
peak, and whether the one adopted keeps validation accuracy.

    python bench/train_throughput.py steps [--networks ...] [--data PATH] [--repeats 3]
    python bench/train_throughput.py accuracy [--networks ...] [--data PATH ...] [--seeds 3] [--epochs 10]

``steps``: one thread trains each network for ``--steps`` batches of the real data (uint8 / 255,
channels-last, AdamW, cross-entropy) under each variant, interleaved ``--repeats`` times so
drift on a shared machine hits all alike; medians. The variants:

- ``fp32``: what castsearch trained in before ``precision: auto``;
- ``bf16``: the forward pass under bf16 autocast, dilated depthwise convolutions kept in fp32;
- ``bf16-dw32``: every depthwise convolution kept in fp32, dilated or not (what ``precision:
  auto`` does on a CPU with native bf16);
- ``bf16-all``: every convolution in bf16;
- ``fp32-b128`` / ``bf16-b128``: batches of 128 instead of 32;
- ``compile`` / ``compile-bf16``: ``torch.compile`` (its compile time is reported apart).

Each figure is images per second, and the share of the core's peak: 3 x the network's
multiply-adds per image (forward, and backward for activations and weights) x images/s, over
the multiply-adds per second of a 1-thread 2048x2048 fp32 matrix product measured in the same run.

``accuracy``: the real training (:func:`search.training.train.train`, composer, the default
recipe) of each network, ``--seeds`` seeds of ``--epochs`` epochs, in fp32 and in
``precision: auto`` on each dataset: images/s and validation balanced accuracy (mean and sd
over the seeds; it decides), test balanced accuracy beside it.

A network is a preset name or an architecture code (``castsearch`` prints them as arch_code).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench.common import DATASETS, header, median_iqr, table  # noqa: E402
from castmodels import PRESETS, ArchSpec, build_model, get_preset  # noqa: E402
from search.data import DataConfig, load_dataset  # noqa: E402
from search.latency.measure import count_macs, count_params  # noqa: E402
from search.training.precision import (
    Float32Conv2d,  # noqa: E402
    training_precision,  # noqa: E402
)
from search.training.recipe import TrainRecipe  # noqa: E402
from search.training.train import train  # noqa: E402
from search.trial.pipeline import evaluate_splits  # noqa: E402

# Two of the paper's presets (its smallest 3x3 and its most accurate, slowest network) and three
# networks of the kind the search draws: the X-SDD/NEU-CLS headline (3x3, no dilation) and two
# NEU-CLS front networks with dilated depthwise blocks.
NETWORKS = ["custom-140k-3x3", "custom-590k-dw", "C32 C32 C32 X.02 P C64 C64 X.04 P A",
            "D24 D24 D24d2 X.03 P C32d2 X.08 D48s2 X.05 A",
            "C24 C24d2 X.01 P C32 C32d2 X.05 D48 D48s2 X.02 D72d2 X.07 A"]
VARIANTS = ["fp32", "bf16", "bf16-dw32", "bf16-all", "fp32-b128", "bf16-b128", "compile", "compile-bf16"]


def spec_of(name: str) -> ArchSpec:
    return get_preset(name) if name in PRESETS else ArchSpec.from_code(name)


def peak_macs_per_second(side: int = 2048, repeats: int = 5) -> float:
    """Multiply-adds per second of one thread's fp32 matrix product: the core's practical peak."""
    a, b = torch.rand(side, side), torch.rand(side, side)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return side ** 3 / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def step_throughput(spec: ArchSpec, data, variant: str, steps: int) -> tuple[float, float]:
    """(images/s over ``steps`` training batches after a warm-up, compile seconds) of ``variant``."""
    batch = 128 if variant.endswith("-b128") else 32
    bf16 = "bf16" in variant
    torch.manual_seed(0)  # the variants keep what they keep in fp32 here, whatever train() does now
    model = build_model(spec, data.train_x.shape[1], data.num_classes)
    if bf16 and variant != "bf16-all":
        for m in model.modules():
            depthwise = type(m) is torch.nn.Conv2d and m.groups > 1
            if depthwise and (variant == "bf16-dw32" or max(m.dilation) > 1):
                m.__class__ = Float32Conv2d
    model = model.to(memory_format=torch.channels_last).train()
    forward = torch.compile(model) if variant.startswith("compile") else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    n = len(data.train_y)

    def step(i: int) -> None:
        idx = torch.arange(i * batch, (i + 1) * batch) % n
        x = data.train_x[idx].float().div_(255).contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = forward(x)
        F.cross_entropy(out.float(), data.train_y[idx]).backward()
        optimizer.step()

    compile_seconds = _timed(lambda: step(0))
    for i in range(1, 4):
        step(i)
    seconds = _timed(lambda: [step(i) for i in range(4, 4 + steps)])
    return steps * batch / seconds, compile_seconds if variant.startswith("compile") else 0.0


def steps_table(args) -> None:
    torch.set_num_threads(1)
    data = load_dataset(DataConfig(source=args.data[0], image_size=args.image_size))
    peak = peak_macs_per_second()
    rows = []
    for name in args.networks:
        spec = spec_of(name)
        model = build_model(spec, data.train_x.shape[1], data.num_classes)
        macs = count_macs(model, tuple(data.train_x.shape[1:]))
        runs: dict[str, list[float]] = {v: [] for v in args.variants}
        compiles: dict[str, list[float]] = {v: [] for v in args.variants}
        for _ in range(args.repeats):
            for variant in args.variants:
                rate, compile_s = step_throughput(spec, data, variant, args.steps)
                runs[variant].append(rate)
                compiles[variant].append(compile_s)
        base = statistics.median(runs[args.variants[0]])
        for variant in args.variants:
            rate, iqr = median_iqr(runs[variant])
            share = 3 * macs * rate / peak
            extra = f" (+{statistics.median(compiles[variant]):.0f} s compile)" if variant.startswith("compile") else ""
            rows.append([name, f"{count_params(model):,}", f"{macs / 1e6:.1f}", variant, f"{rate:.0f} (IQR {iqr:.0f}){extra}",
                         f"{rate / base:.2f}", f"{share:.1%}"])
    print(header(f"Training steps per second on one thread at {args.image_size}x{args.image_size}"))
    print(f"Data: {data.identity['source']} ({len(data.train_y)} training images, {data.train_x.shape[1]} "
          f"channel(s)). {args.steps} batches per measurement after 4 warm-up batches, {args.repeats} interleaved "
          f"repeats, medians. Core's fp32 peak: {peak / 1e9:.1f} G multiply-adds/s (1-thread 2048x2048 "
          f"matrix product, this run). Share of peak = 3 x MACs/image x images/s / peak.\n")
    print(table(["network", "params", "M MACs/image", "variant", "images/s", f"x {args.variants[0]}",
                 "share of fp32 peak"], rows))


def accuracy_table(args) -> None:
    torch.set_num_threads(1)
    rows = []
    for source in args.data:
        data = load_dataset(DataConfig(source=source, image_size=args.image_size))
        channels = data.train_x.shape[1]
        for name in args.networks:
            spec = spec_of(name)
            figures: dict[str, dict[str, list[float]]] = {}
            for seed in range(args.seeds):  # interleaved: drift hits both precisions alike
                for precision in ("fp32", "auto"):
                    recipe = TrainRecipe(epochs=args.epochs, image_size=args.image_size, channels=channels,
                                         seed=seed, precision=precision)
                    torch.manual_seed(seed)
                    result = train(build_model(spec, channels, data.num_classes), data, recipe, device="cpu",
                                   metric="balanced_accuracy")
                    val, test = evaluate_splits(result.model, data)
                    f = figures.setdefault(result.precision, {"rate": [], "val": [], "test": []})
                    f["rate"].append(result.images_per_second)
                    f["val"].append(val.balanced_accuracy)
                    f["test"].append(test.balanced_accuracy)
                    print(f"  {Path(source).name} {name} seed {seed} {result.precision}: "
                          f"{result.images_per_second:.0f} images/s, val {val.balanced_accuracy:.3f}", flush=True)
            for precision, f in figures.items():
                rows.append([Path(source).name, name, precision, f"{statistics.median(f['rate']):.0f}",
                             f"{statistics.mean(f['val']):.3f} ± {statistics.stdev(f['val']):.3f}",
                             f"{statistics.mean(f['test']):.3f} ± {statistics.stdev(f['test']):.3f}"])
    auto = training_precision("auto", "cpu")
    print(header(f"fp32 against precision: auto ({auto} on this CPU), {args.epochs} epochs, {args.seeds} seeds"))
    print(f"The default recipe at {args.image_size}x{args.image_size}, one thread, composer training; images/s is "
          f"the median over seeds (per-epoch validation excluded); accuracy is balanced accuracy, mean ± sd over "
          f"seeds 0-{args.seeds - 1}. Validation decides; test is reported beside it.\n")
    print(table(["data", "network", "precision", "images/s", "val balanced acc", "test balanced acc"], rows))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("part", choices=["steps", "accuracy"])
    p.add_argument("--networks", nargs="+", default=NETWORKS, help="preset names or architecture codes")
    p.add_argument("--data", nargs="+", default=[str(DATASETS / "neu-cls")])
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=VARIANTS)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=10)
    args = p.parse_args()
    (steps_table if args.part == "steps" else accuracy_table)(args)


if __name__ == "__main__":
    main()

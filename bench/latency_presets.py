"""Single-image and batch-of-50 CPU latency of the paper's six presets, side by side.

    python bench/latency_presets.py [--image-size 32] [--threads 1] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import header, median_iqr, table  # noqa: E402
from castmodels import PRESETS, build_model  # noqa: E402
from search.latency.measure import count_macs, count_params, measure_latency  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3, help="rounds over all presets; medians across rounds")
    args = p.parse_args()
    shape = (3, args.image_size, args.image_size)
    models = {name: build_model(spec, 3, 10).eval() for name, spec in PRESETS.items()}
    single = {n: [] for n in models}
    batch = {n: [] for n in models}
    for _ in range(args.rounds):  # round-robin, so machine noise spreads over all presets
        for name, model in models.items():
            single[name].append(measure_latency(model, shape, 1, threads=args.threads).median_ms)
            batch[name].append(measure_latency(model, shape, 50, threads=args.threads).median_ms)
    base = median_iqr(single["custom-140k-3x3"])[0]
    rows = []
    for name, model in models.items():
        (s, s_iqr), (b, b_iqr) = median_iqr(single[name]), median_iqr(batch[name])
        rows.append([name, count_params(model), count_macs(model, shape), f"{s:.3f} ({s_iqr:.3f})",
                     f"{b:.2f} ({b_iqr:.2f})", f"{b / 50:.3f}", f"{s / base:.2f}"])
    print(header(f"Latency of the paper's presets at {args.image_size}x{args.image_size}, "
                 f"{args.threads} thread(s)"))
    print(f"3 input channels, 10 classes, torch eager, inference mode. Each cell: the median over "
          f"{args.rounds} round-robin rounds of each measurement's median (10 warm-up runs, then >= 50 "
          f"timed runs and >= 0.5 s); in brackets the spread (IQR) of those medians across rounds.\n")
    print(table(["preset", "params", "MACs", "1 image ms", "batch of 50 ms", "ms/image in batch",
                 "1 image vs 140k-3x3"], rows))


if __name__ == "__main__":
    main()

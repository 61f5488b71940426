"""How much an idle machine's own noise moves a latency timing, and whether the screen's
verdict survives it.

    python bench/timing_noise.py [--preset custom-140k-3x3] [--seconds 60] [--wakeups 20] [--verdicts 30]

One paper network at 32x32, exported to ONNX and run by ONNX Runtime on one thread, as the
screen times it. Three measurements, on a machine with nothing else running:

1. Slow stretches: the network is called back to back for ``--seconds``; the median of each
   100 ms window against the quiet level (the windows' 10th percentile): how often and for
   how long every call is slower.
2. Waking up: ``--wakeups`` times, a 0.5 s sleep and then 0.4 s of calls; each 50 ms bucket's median
   against the quiet level.
3. Verdicts: with a limit at 1.25x the quiet level (the network is feasible), ``--verdicts``
   times: one full timing (search.latency.measure's protocol) and the screen's verdict
   (search.latency.timer.settle: a timing over the limit by less than 2x is taken again, seconds
   apart, and the lowest kept). How often each calls the feasible network too slow.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import header, table  # noqa: E402


def windows(call, seconds: float, width: float = 0.1) -> list[float]:
    """Median call time (ms) of each ``width``-second window of ``seconds`` of back-to-back calls."""
    out = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        w_end, times = time.perf_counter() + width, []
        while time.perf_counter() < w_end:
            t0 = time.perf_counter()
            call()
            times.append((time.perf_counter() - t0) * 1000)
        out.append(statistics.median(times))
    return out


def longest_run(flags: list[bool]) -> int:
    best = run = 0
    for f in flags:
        run = run + 1 if f else 0
        best = max(best, run)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="custom-140k-3x3")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--wakeups", type=int, default=20)
    parser.add_argument("--verdicts", type=int, default=30)
    args = parser.parse_args()

    import torch

    from castmodels import PRESETS
    from search.latency.measure import Measurement, busy_wait, measure_ort
    from search.latency.onnxrt import export_onnx, ort_call, ort_session
    from search.latency.timer import settle
    from search.training.recipe import TrainRecipe
    from search.trial.build import build_candidate, input_shape

    recipe = TrainRecipe(image_size=32)
    shape = input_shape(recipe)
    model = build_candidate(PRESETS[args.preset], recipe, 10)
    session = ort_session(export_onnx(model, torch.rand(2, *shape)), 1)
    call = ort_call(session, shape, 1)
    print(header(f"Timing noise on an idle machine: {args.preset} at 32x32 in ONNX Runtime, one thread"))

    busy_wait(1.0)
    series = windows(call, args.seconds)
    quiet = sorted(series)[len(series) // 10]
    rows = []
    for factor in (1.1, 1.2, 1.5):
        flags = [w > factor * quiet for w in series]
        rows.append([f"> {factor}x", f"{100 * sum(flags) / len(flags):.1f}%", f"{longest_run(flags) / 10:.1f}"])
    print(f"1. {len(series)} windows of 100 ms, back to back; quiet level (10th percentile) {quiet:.4f} ms, "
          f"slowest window {max(series) / quiet:.2f}x\n")
    print(table(["window median", "share of windows", "longest stretch, s"], rows))

    buckets: dict[int, list[float]] = {}
    for _ in range(args.wakeups):
        time.sleep(0.5)
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < 0.4:
            t0 = time.perf_counter()
            call()
            buckets.setdefault(int(elapsed / 0.05), []).append((time.perf_counter() - t0) * 1000)
    print(f"\n2. After a 0.5 s sleep ({args.wakeups} times): median call time by time since waking, against the quiet level\n")
    print(table(["since waking, ms", "median / quiet"],
                [[f"{50 * b}-{50 * b + 50}", f"{statistics.median(v) / quiet:.2f}"] for b, v in sorted(buckets.items())]))

    limit = 1.25 * quiet

    def once() -> Measurement:
        single, batch = measure_ort(session, shape)
        return Measurement(params=0, macs=0, latency_ms=single.robust_ms, latency_iqr_ms=single.iqr_ms,
                           batch_latency_ms=batch.robust_ms, batch_latency_iqr_ms=batch.iqr_ms, batch_size=50,
                           threads=1, preempted=single.preempted or batch.preempted)

    single_wrong = settled_wrong = 0
    worst_single = worst_settled = 0.0
    for _ in range(args.verdicts):
        first = once()
        single_wrong += first.latency_ms > limit
        worst_single = max(worst_single, first.latency_ms / quiet)
        pending = [first]  # the screen's first timing is this one
        settled = settle(lambda pending=pending: pending.pop() if pending else once(), limit)
        settled_wrong += settled.latency_ms > limit
        worst_settled = max(worst_settled, settled.latency_ms / quiet)
        time.sleep(0.5)  # as the driver does between candidates: it waits for Ray
    print(f"\n3. Limit {limit:.4f} ms (1.25x the quiet level); {args.verdicts} verdicts, 0.5 s apart\n")
    print(table(["verdict from", "called too slow", "slowest, x quiet"], [
        ["one full timing", f"{single_wrong} of {args.verdicts}", f"{worst_single:.2f}"],
        ["the screen's settle()", f"{settled_wrong} of {args.verdicts}", f"{worst_settled:.2f}"],
    ]))


if __name__ == "__main__":
    main()

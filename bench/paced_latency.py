"""Whether pacing by the latency limit's reference takes the host's drift out of a timing.

    python bench/paced_latency.py [--minutes 12] [--reference custom-590k-dw]
                                  [--networks custom-140k-3x3 custom-340k-dw] [--apart-minutes 3]

On a machine with nothing else running, the limit's reference is timed as
search.latency.screen.resolve_limits times it (the lowest of three timings of three, 1 s and 3 s
apart), and then, for ``--minutes``, rounds of: each network's slot as the screen's re-check
takes it (search.latency.measure.time_single, the lowest of three timings) followed by the pacer's one
timing of the reference (search.latency.timer.Pacer.pace). Each slot's figure as the clock read it
is compared with the network's quiet latency, the lowest timing it had in the whole run; the
figure divided by its pace, with the quiet latency at the pace of the limit's setting (times
the reference's latency then over its lowest timing in the run: what a perfect pacer would
read). How far one slot reads off, and how far the lowest of two slots ``--apart-minutes``
apart does (a latency objective: the screen and the re-check once trained).
All networks at 32x32, one channel, six classes, exported to ONNX and run by ONNX Runtime on
one thread, as the search times them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import header, table  # noqa: E402

OFF = 0.15  # what the issue allows between an objective and its quiet re-timing


def _build(name: str):
    from castmodels import PRESETS
    from search.latency.measure import export_for_timing
    from search.training.recipe import TrainRecipe
    from search.trial.build import build_candidate, input_shape

    recipe = TrainRecipe(image_size=32, channels=1)
    model, shape = build_candidate(PRESETS[name], recipe, 6), input_shape(recipe)
    return recipe, model, shape, export_for_timing(model, shape)


def summary(ratios: list[float]) -> list:
    """median, 90th percentile, lowest, highest, share more than OFF slow, share more than OFF fast."""
    deciles = statistics.quantiles(ratios, n=10, method="inclusive")
    slow, fast = sum(r > 1 + OFF for r in ratios), sum(r < 1 - OFF for r in ratios)
    return [f"{statistics.median(ratios):.3f}", f"{deciles[-1]:.3f}", f"{min(ratios):.3f}", f"{max(ratios):.3f}",
            f"{slow / len(ratios):.0%}", f"{fast / len(ratios):.0%}"]


def run(args) -> str:
    import torch

    from search.latency.measure import busy_wait, time_single
    from search.latency.screen import reference_pacer
    from search.latency.timer import RETRY_AFTER_S, Timer

    torch.set_num_threads(1)
    recipe, ref_model, ref_shape, ref_onnx = _build(args.reference)
    base, reference_ms = [], []  # the limit's three measurements; every timing of the reference
    for wait in (0.0, *RETRY_AFTER_S):
        busy_wait(wait)
        timing = time_single(ref_model, ref_shape, runtime="onnxruntime", onnx=ref_onnx)
        base.append(timing.robust_ms)
        reference_ms += timing.spread_ms
    pacer = reference_pacer(Timer("onnxruntime"), args.reference, min(base), recipe, 6)
    networks = {name: _build(name)[1:] for name in args.networks}
    slots: dict[str, list[tuple[float, float, float, list[float]]]] = {name: [] for name in networks}
    start = time.monotonic()
    while time.monotonic() - start < args.minutes * 60:
        for name, (model, shape, onnx) in networks.items():
            at = time.monotonic() - start
            timing = time_single(model, shape, runtime="onnxruntime", onnx=onnx)
            slots[name].append((at, timing.robust_ms, pacer.pace(), timing.spread_ms))

    out = [header("Paced latency: timings divided by the limit's reference timed beside them"),
           f"\nReference {args.reference}, its latency when the limit was set {min(base):.3f} ms (the lowest of "
           f"{', '.join(f'{b:.3f}' for b in base)}); {args.minutes:g} minutes of rounds, idle machine. Each figure "
           f"is a slot's latency over the network's quiet latency (its lowest timing in the whole run; paced: "
           f"at the pace of the limit's setting, see below); "
           f"'objective': the lower of two slots {args.apart_minutes:g} minutes apart. Off: more than "
           f"{OFF:.0%} slow or fast.\n"]
    head = ["network", "slots", "quiet ms", "figure", "median", "90th pct", "lowest", "highest",
            f"> {OFF:.0%} slow", f"> {OFF:.0%} fast"]
    rows = []
    paces = [pace for taken in slots.values() for _, _, pace, _ in taken]
    reference_ms += [pace * min(base) for pace in paces]
    at_base = min(base) / min(reference_ms)  # how slow the machine was when the limit was set
    for name, taken in slots.items():
        quiet = min(t for *_, spread in taken for t in spread)
        raw = [ms / quiet for _, ms, _, _ in taken]
        paced = [ms / pace / (quiet * at_base) for _, ms, pace, _ in taken]
        later = {i: next((j for j in range(i, len(taken)) if taken[j][0] - taken[i][0] >= args.apart_minutes * 60),
                         None) for i in range(len(taken))}
        pairs = [(i, j) for i, j in later.items() if j is not None]
        rows.append([name, len(taken), f"{quiet:.3f}", "one slot, clock", *summary(raw)])
        rows.append(["", "", "", "one slot, paced", *summary(paced)])
        if pairs:
            rows.append(["", len(pairs), "", "objective, clock", *summary([min(raw[i], raw[j]) for i, j in pairs])])
            rows.append(["", "", "", "objective, paced",
                         *summary([min(paced[i], paced[j]) for i, j in pairs])])
    out.append(table(head, rows))
    out.append(f"\nThe reference's pace (its timing over {min(base):.3f} ms), {len(paces)} timings: median "
               f"{statistics.median(paces):.3f}, range {min(paces):.3f}-{max(paces):.3f}. Its latency when the limit "
               f"was set is {at_base:.3f}x its lowest timing in the run ({min(reference_ms):.3f} ms): the paced "
               f"figures are compared with each network's quiet latency times {at_base:.3f}, and read that much "
               f"over the clock's quiet latency.\n")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=12.0)
    parser.add_argument("--reference", default="custom-590k-dw")
    parser.add_argument("--networks", nargs="+", default=["custom-140k-3x3", "custom-340k-dw"])
    parser.add_argument("--apart-minutes", type=float, default=3.0)
    args = parser.parse_args(argv)
    from castmodels import PRESETS

    for name in [args.reference, *args.networks]:
        if name not in PRESETS:
            parser.error(f"{name!r} is not a paper network; known: {', '.join(PRESETS)}")
    print(run(args), flush=True)


if __name__ == "__main__":
    main()

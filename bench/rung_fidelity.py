"""How well a short look at a network predicts where it ends, under the one-cycle schedule.

    python bench/rung_fidelity.py --storage sqlite:///x.db --studies STUDY [STUDY ...]
                                  [--epochs 4] [--jobs 2] [--limit N] [--preview-size PX]

Early stopping judges a trial at a rung by its validation score after a few epochs. Under
a schedule that warms the learning rate up over the first quarter of training and decays it
to zero at the end, a score taken mid-schedule is read at the highest learning rate, where
it swings from epoch to epoch. Two ways to look at a network after ``--epochs`` epochs:

- **mid-schedule**: its score after ``--epochs`` epochs of its full schedule (what the
  Pareto rungs read today; taken from the trial's stored per-epoch history, no training);
- **compressed**: its score at the end of a schedule of ``--epochs`` epochs, the same
  recipe and seed with the one-cycle (or cosine) schedule compressed to that length
  (trained here).

With ``--preview-size PX`` a third look: the compressed schedule trained at PX pixels (the
data loaded at that size), what previews at a space's smallest size would see of a network
trained at a larger one. In a study of several image sizes, the clear pairs of trials trained at
different sizes are also counted apart: a preview at one size cannot see what the larger size
buys.

For every trial of ``--studies`` that trained all its epochs, each look is set against the
score the trial ended with. Reported: Spearman's rank correlation; the share of clear pairs
(final scores more than 2 points apart) that the short look orders right; and the share of
the final best quarter that a rung keeping the best third by the short look would keep.
Accuracy only, so the machine need not be idle.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import header, table, training_worker  # noqa: E402


def _short(attrs: dict, epochs: int, size: int | None = None) -> tuple[int, float, float]:
    """Train the trial whose attrs these are with its recipe compressed to ``epochs`` (at
    ``size`` px when given): (number, validation score, seconds)."""
    from search.data import load_dataset
    from search.study.record import TrialRecord
    from search.trial.pipeline import build_candidate, train_seed

    record = TrialRecord.of_attrs(attrs["attrs"])
    config, recipe = record.data_config(), replace(record.train_recipe(), epochs=epochs)
    if size is not None:
        config, recipe = replace(config, image_size=size), replace(recipe, image_size=size)
    data = load_dataset(config)
    metric, arch, classes = record.objective[0], record.arch_spec(), len(record.class_names)
    start = time.perf_counter()
    val, _ = train_seed(lambda r: build_candidate(arch, r, classes), recipe, recipe.seed, data, metric, device="cpu")
    return attrs["number"], getattr(val, metric), time.perf_counter() - start


def ranks(xs: list[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2
        i = j + 1
    return r


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation; nan where it is undefined (fewer than two trials, or one
    side constant)."""
    try:
        return statistics.correlation(ranks(a), ranks(b))
    except statistics.StatisticsError:
        return math.nan


def clear_pairs(look: list[float], final: list[float], gap: float = 0.02,
                groups: list | None = None) -> tuple[int, int]:
    """(pairs ordered right by ``look``, pairs) over pairs whose final scores differ by > gap;
    with ``groups`` (one label per trial, its image size), only pairs from different groups."""
    right = total = 0
    for i in range(len(final)):
        for j in range(i + 1, len(final)):
            if abs(final[i] - final[j]) > gap and (groups is None or groups[i] != groups[j]):
                total += 1
                right += (look[i] - look[j]) * (final[i] - final[j]) > 0
    return right, total


def share(right: int, pairs: int) -> str:
    """A table cell for (pairs ordered right, pairs): '7 of 9 (78%)'."""
    return f"{right} of {pairs} ({100 * right / max(pairs, 1):.0f}%)"


def kept_best(look: list[float], final: list[float]) -> tuple[int, int]:
    """(of the final best quarter, how many rank in the best third by ``look``, how many)."""
    n = len(final)
    best = set(sorted(range(n), key=lambda i: -final[i])[:max(1, n // 4)])
    kept = set(sorted(range(n), key=lambda i: -look[i])[:max(1, round(n / 3))])
    return len(best & kept), len(best)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--storage", required=True)
    p.add_argument("--studies", nargs="+", required=True)
    p.add_argument("--epochs", type=int, default=4, help="the rung: epochs of the short look")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--limit", type=int, help="at most this many trials per study (the first ones)")
    p.add_argument("--preview-size", type=int, metavar="PX", help="also the compressed look trained at PX pixels")
    args = p.parse_args()

    import optuna

    from castmodels.spec import feature_size
    from search.study.record import TrialRecord

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(header(f"Rung fidelity under the schedule, {args.epochs} epochs"))
    rows = []
    for name in args.studies:
        study = optuna.load_study(study_name=name, storage=args.storage)
        trials = []
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            record = TrialRecord.read(t)
            history = t.user_attrs.get("val_accuracy")
            full = record.train_recipe().epochs if record.trained else 0
            if record.trained and isinstance(history, list) and len(history) == full > args.epochs:
                trials.append({"number": t.number, "attrs": dict(t.user_attrs), "final": history[-1],
                               "mid": history[args.epochs - 1], "full": full,
                               "size": record.train_recipe().image_size,
                               "schedule": record.train_recipe().schedule})
        trials = trials[:args.limit]
        # a network sampled at a larger size may downsample too far for the preview size: it
        # cannot be previewed there at all, and is left out of every look so all compare one set
        too_deep = {t["number"] for t in trials if args.preview_size
                    and feature_size(TrialRecord.of_attrs(t["attrs"]).arch_spec(), args.preview_size) < 1}
        trials = [t for t in trials if t["number"] not in too_deep]
        sizes = [None] + ([args.preview_size] if args.preview_size else [])
        short: dict[int | None, dict[int, float]] = {size: {} for size in sizes}
        seconds = []
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn"), initializer=training_worker) as pool:
            futures = {pool.submit(_short, t, args.epochs, size): size for t in trials for size in sizes}
            for f in as_completed(futures):
                number, score, secs = f.result()
                short[futures[f]][number] = score
                seconds.append(secs)
        final, sizes_of = [t["final"] for t in trials], [t["size"] for t in trials]
        mixed = len(set(sizes_of)) > 1
        looks = [("mid-schedule (stored history)", [t["mid"] for t in trials]),
                 ("compressed schedule (trained here)", [short[None][t["number"]] for t in trials])]
        if args.preview_size:
            looks.append((f"compressed schedule at {args.preview_size} px (trained here)",
                          [short[args.preview_size][t["number"]] for t in trials]))
        for label, look in looks:
            kept, best = kept_best(look, final)
            across = share(*clear_pairs(look, final, groups=sizes_of)) if mixed else ""
            rows.append([name, len(trials), label, f"{spearman(look, final):.2f}", share(*clear_pairs(look, final)),
                         across, f"{kept} of {best}", f"{100 * statistics.fmean(look):.1f}"])
        schedules = sorted({t["schedule"] for t in trials})
        at = ", ".join(f"{sizes_of.count(px)} at {px} px" for px in sorted(set(sizes_of)))
        print(f"{name}: {len(trials)} trials that trained all {trials[0]['full'] if trials else '?'} epochs "
              f"({', '.join(schedules)}; {at}); compressed runs took {statistics.median(seconds):.1f} s each "
              "(median)")
        if too_deep:
            print(f"{len(too_deep)} more trained out but downsample too far to be trained at {args.preview_size} px "
                  f"(trials {', '.join(map(str, sorted(too_deep)))}): left out of every look")
        print()
    print(table(["study", "trials", f"look after {args.epochs} epochs", "Spearman with the final score",
                 "clear pairs ordered right", "of them, pairs across image sizes",
                 "final best quarter in the look's best third", "mean score %"], rows))


if __name__ == "__main__":
    main()

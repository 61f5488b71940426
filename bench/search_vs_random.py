"""The default search against the random sampler at an equal CPU budget, and both against
the paper's six presets.

    python bench/search_vs_random.py [--data ../shared/datasets/x-sdd] [--minutes 11] [--workers 2] [--epochs 5]

Two searches of ``spaces/paper.yaml`` run one after the other on the same data, each for
``--minutes`` of wall time with ``--workers`` Ray workers of one CPU and one torch thread:

- **default**: the space as shipped, NSGA-II with the paper's six presets seeded first;
- **random**: the same space, budget and seed with Optuna's RandomSampler (the presets
  are trained inside this study too, as the space says).

The budget in CPU-minutes is ``minutes x workers`` for each. ``--epochs`` caps training
(the space's 30 is far beyond this budget); ASHA stops weak trials early in both. The
presets' points are the preset trials of the default search (same recipe, data, epochs
and machine as every other trial); only the searches' own trials count as beating them. For each search the table gives the trials finished,
pruned, infeasible, invalid and failed, the best accuracy, and the hypervolume of its
feasible points against one fixed reference point (accuracy 0, the space's latency and
parameter limits; a relative latency limit as the default search resolved it), normalised
by the reference box. Latency values are the ones the searches' drivers measured before
dispatch (search.screen: load-robust, so the training workers do not inflate them). Then for each
preset: is it dominated by a non-preset trial of each search?

The studies stay in ``--storage`` (default ``studies/search-vs-random.db``), so
``bench/latency.py`` can time the networks on their fronts; ``--searches`` with no name
prints the tables again from them.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import optuna  # noqa: E402
import yaml  # noqa: E402

from bench.common import DATASETS, REPO, header, table  # noqa: E402
from search import study as studylib  # noqa: E402
from search.data import DataConfig, load_dataset  # noqa: E402
from search.record import TrialRecord  # noqa: E402
from search.runner import RunOptions, run_search  # noqa: E402
from search.screen import LIMIT_PREFIX  # noqa: E402
from search.space import load_space  # noqa: E402

STUDIES = {  # changes to the space file: none, or random sampling
    "default": {},
    "random": {"sampler": "random"},
}


WALL_ATTR = "bench_wall_s"  # the run's wall seconds, kept for reports without a run
BUDGET_ATTR = "bench_budget"  # the run's minutes, workers and epochs, likewise


def study_name(prefix: str, kind: str) -> str:
    return f"{prefix}-{kind}"


def space_file(path: str, changes: dict, folder: Path) -> Path:
    """The space at ``path`` with ``changes`` made (a random sampler keeps the seed and drops
    the population, which only NSGA-II has), written into ``folder``."""
    if not changes:
        return Path(path)
    data = yaml.safe_load(Path(path).read_text())
    data["sampler"] = {"name": changes["sampler"], "seed": data["sampler"].get("seed")}
    data["seed_presets"] = changes.get("seed_presets", data.get("seed_presets", True))
    out = folder / f"{Path(path).stem}-{changes['sampler']}.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def run(args, changes: dict, name: str) -> float:
    """Run one search from scratch (an old study of that name is deleted); its wall seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        space = load_space(space_file(args.space, changes, Path(tmp)),
                           overrides={("data", "source"): args.data, ("training", "epochs"): args.epochs,
                                      ("study",): name})
    datasets = {s: load_dataset(DataConfig(source=args.data, image_size=s, channels=space.data.channels,
                                           test_fraction=space.data.test_fraction,
                                           val_fraction=space.data.val_fraction, split_seed=space.data.split_seed))
                for s in space.image_sizes}
    try:
        optuna.delete_study(study_name=name, storage=args.storage)
    except KeyError:
        pass
    t0 = time.perf_counter()
    run_search(space, datasets, RunOptions(study_name=name, storage=args.storage, trials=None,
                                           timeout_s=args.minutes * 60, workers=args.workers,
                                           artifacts=REPO / "studies" / name))
    wall = time.perf_counter() - t0
    study = studylib.load_existing_study(name, args.storage)
    study.set_user_attr(WALL_ATTR, wall)
    study.set_user_attr(BUDGET_ATTR, {"minutes": args.minutes, "workers": args.workers, "epochs": args.epochs})
    return wall


def point(t: optuna.trial.FrozenTrial) -> list[float]:
    return [t.values[0], t.values[1], t.values[2]]


def report(args) -> str:
    space = load_space(args.space)
    studies = {kind: studylib.load_existing_study(study_name(args.prefix, kind), args.storage) for kind in STUDIES}
    limits = space.constraints
    if space.relative_latency is not None:
        resolved = studies["default"].user_attrs.get(f"{LIMIT_PREFIX}{space.image_sizes[0]}")
        if resolved is None:
            raise SystemExit(f"{space.relative_latency.describe()}: the default study holds no resolved "
                             f"latency limit (run the default search first)")
        limits = dataclasses.replace(limits, max_latency_ms=resolved["max_latency_ms"])
    reference = [0.0, limits.max_latency_ms, limits.max_params]
    box = reference[1] * reference[2]  # accuracy spans 0..1
    feasible = {k: [t for t in s.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE
                    and studylib.is_feasible(t)] for k, s in studies.items()}
    budgets = [s.user_attrs[BUDGET_ATTR] for s in studies.values() if BUDGET_ATTR in s.user_attrs]
    if any(b != budgets[0] for b in budgets):
        raise SystemExit(f"the searches ran with different budgets, not comparable: {budgets}")
    budget = budgets[0] if budgets else {"minutes": args.minutes, "workers": args.workers, "epochs": args.epochs}
    minutes, workers, epochs = budget["minutes"], budget["workers"], budget["epochs"]
    presets = {TrialRecord.read(t).preset: t for t in feasible["default"] if TrialRecord.read(t).preset}

    rows = []
    for kind, s in studies.items():
        c = studylib.counts(s.get_trials(deepcopy=False))
        pts = [point(t) for t in feasible[kind]]
        best = max((p[0] for p in pts), default=float("nan"))
        rows.append([kind, f"{s.user_attrs.get(WALL_ATTR, float('nan')) / 60:.1f}", c["complete"], c["pruned"], c["infeasible"],
                     c["invalid"], c["failed"], len(studylib.pareto_front(s)), f"{100 * best:.1f}",
                     f"{studylib.hypervolume(pts, reference) / box:.4f}" if pts else "0"])
    preset_pts = [point(t) for t in presets.values()]
    rows.append(["the six presets (from default)", "", len(presets), "", "", "", "", "",
                 f"{100 * max((p[0] for p in preset_pts), default=float('nan')):.1f}",
                 f"{studylib.hypervolume(preset_pts, reference) / box:.4f}" if preset_pts else "0"])

    prow = []
    for name, pt in sorted(presets.items()):
        cells = [name, f"{100 * pt.values[0]:.1f}", f"{pt.values[1]:.2f}", f"{int(pt.values[2]):,}"]
        for kind in STUDIES:
            beaters = [t for t in feasible[kind] if not TrialRecord.read(t).preset
                       and studylib.dominates(point(t), point(pt))]
            if beaters:
                b = max(beaters, key=lambda t: t.values[0])
                cells.append(f"yes, by {len(beaters)} trial{'s' if len(beaters) > 1 else ''}; e.g. #{b.number}: {100 * b.values[0]:.1f}%, "
                             f"{b.values[1]:.2f} ms, {int(b.values[2]):,} params")
            else:
                cells.append("no")
        prow.append(cells)
    dominated = {k: sum(1 for r in prow if r[4 + i] != "no") for i, k in enumerate(STUDIES)}

    out = [header(f"Search against random sampling on {Path(args.data).name}")]
    relative = f" = {space.relative_latency.describe()}" if space.relative_latency else ""
    out.append(f"Space `{Path(args.space).name}` (constraints: {limits.max_latency_ms:.3g} ms{relative}, "
               f"{limits.max_params:,.0f} params), training capped at {epochs} epochs. Budget per search: "
               f"{minutes} minutes of wall time x {workers} workers of 1 CPU = "
               f"**{minutes * workers} CPU-minutes**; the searches ran one after the other. "
               f"Hypervolume: of the feasible (accuracy, latency, params) points against the reference "
               f"point {reference}, divided by the reference box ({box:,.0f}); 1 would be a 100%-accurate "
               f"network with no latency and no parameters. Wall minutes include Ray's start and the quiet "
               f"re-timing of each front.\n")
    out.append(table(["search", "wall min", "finished (feasible)", "pruned", "infeasible", "invalid", "failed",
                      "front size", "best accuracy %", "hypervolume"], rows))
    out.append("\nIs each paper preset dominated (at least as accurate, as fast and as small, better in one) "
               "by a trial the search found itself? Preset values as measured in the default search.\n")
    out.append(table(["preset", "accuracy %", "latency ms", "params", "by the default search",
                      "by the random search"], prow))
    out.append(f"\nThe default search dominated {dominated['default']} of {len(presets)} presets, "
               f"random sampling {dominated['random']}.\n")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default=str(REPO / "spaces" / "paper.yaml"))
    p.add_argument("--data", default=str(DATASETS / "x-sdd"))
    p.add_argument("--minutes", type=float, default=11)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--storage", default=f"sqlite:///{REPO / 'studies' / 'search-vs-random.db'}")
    p.add_argument("--prefix", default="svr", help="study names: <prefix>-default, <prefix>-random")
    p.add_argument("--searches", nargs="*", choices=list(STUDIES), default=list(STUDIES),
                   help="which searches to run (the report shows all stored ones); none: only report")
    args = p.parse_args()
    if not Path(args.data).is_dir():
        p.error(f"--data: no folder {args.data}")
    for kind in args.searches:
        wall = run(args, STUDIES[kind], study_name(args.prefix, kind))
        print(f"{kind}: {wall / 60:.1f} min", file=sys.stderr, flush=True)
    print(report(args))


if __name__ == "__main__":
    main()

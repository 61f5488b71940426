"""Samplers against each other and against random sampling at an equal CPU budget, and all
against the paper's six presets.

    python bench/search_vs_random.py [--data ../shared/datasets/x-sdd] [--minutes 11] [--workers 2] [--epochs 5]
        [--searches default random] [--population 8] [--confirm 2] [--image-size 32 64]

Searches of ``spaces/paper.yaml`` run one after the other on the same data, each for
``--minutes`` of wall time with ``--workers`` Ray workers of one CPU and one torch thread.
Each changes only the space's sampler (same space, budget, recipe and seed):

- **default**: the space as shipped (its sampler: multivariate TPE since it won the
  sampler comparison);
- **nsga2**: NSGA-II with ``--population`` per generation (size it to the budget: a few
  generations of the trials that finish);
- **tpe**: Optuna's multivariate, grouped TPE;
- **gp**: Optuna's GPSampler (Gaussian process, log expected hypervolume improvement);
- **random**: Optuna's RandomSampler.

Each also comes as ``<name>-nostop`` (``budget.early_stopping: none``), and with the
accuracy objective's seeds set: ``<name>-single`` (one training per trial),
``<name>-seeds2`` (``objectives.accuracy.seeds: 2``: a fully trained trial is ranked by
the mean of two trainings) and ``<name>-front2`` (the same with ``seeds_for: front``: only a
trial whose first training joins the front as it stands is trained a second time; the
shipped space's setting, so the same search as ``<name>`` under a name that says so) and
``<name>-front3`` (``seeds: 3, seeds_for: front``: a third training too while the mean of
two still joins the front), and
as ``<name>-nofloor`` (``constraints.min_accuracy: null``: no accuracy floor, so the smallest,
least accurate networks are on the front and the sampler spends trials on them), and as
``<name>-nonear`` (``seed_nearest: false``: the search does not start from the presets'
nearest points), and as ``<name>-midway`` (``budget.early_stopping: pareto``: trials judged
part-way through their full schedule instead of by a preview).

The points ``seed_nearest`` queues are the search's own trials (points of its space that it
trains and learns from), but they are drawn from the paper's designs, not by the sampler:
every "dominated by" cell says how many of the dominating trials the sampler drew, and the
confirmed table counts the presets a sampled trial dominates apart.

Every sampler reads the space's limits from the constraint values of told trials. The
paper's six presets are trained inside every study, as the space says, and each search pays
for them: it has a data cache, and so a training store, of its own (``studies/<study>/cache``),
so no search takes another's preset trainings from the store (a user's second search on the
same data would, a saving these tables do not count).

The budget in CPU-minutes is ``minutes x workers`` for each. ``--epochs`` caps training;
Pareto rungs stop dominated trials early in all. The presets' points are the preset
trials of the first search in the table (same recipe, data, epochs and machine as every
other trial); only the searches' own trials count as beating them. For each search the
table gives the trials finished, pruned, infeasible, invalid and failed, the best
accuracy, and the hypervolume of its own feasible points (presets excluded) and of all of
them against one fixed reference point (accuracy 0, the space's latency and parameter
limits; a relative latency limit as the first search resolved it), normalised by the
reference box, and the first against random sampling's; then the same above the least
accurate preset's accuracy. A trained network under a search's ``min_accuracy`` counts in
every hypervolume (it is off that search's front, not out of the comparison). Latency values are the ones the
searches' drivers measured before dispatch (search.latency.screen: load-robust, so the training
workers do not inflate them). Then for each preset: is it dominated by a non-preset trial
of each search? With ``--confirm K`` each search's front and presets are retrained K times
with new seeds when it ends (``castsearch confirm``), and a second table asks the same
question on the confirmed means: a search's single-seed figures flatter the trials it
picked, confirmed ones do not.

The studies stay in ``--storage`` (default ``studies/search-vs-random.db``), so
``bench/latency.py`` can time the networks on their fronts; ``--searches`` with no name
prints the tables again from the stored ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import optuna  # noqa: E402
import yaml  # noqa: E402

from bench.common import DATASETS, REPO, header, table  # noqa: E402
from search.data import load_sizes  # noqa: E402
from search.latency.screen import LIMIT_PREFIX  # noqa: E402
from search.run.confirm import confirm_study  # noqa: E402
from search.run.runner import RunOptions, run_search  # noqa: E402
from search.space import load_space  # noqa: E402
from search.study import front  # noqa: E402
from search.study import storage as studylib  # noqa: E402
from search.study.record import TrialRecord  # noqa: E402

SAMPLER_STUDIES = {  # changes to the space file's sampler section; nsga2's population is --population
    "default": {},
    "nsga2": {"sampler": "nsga2"},
    "tpe": {"sampler": "tpe"},
    "gp": {"sampler": "gp"},
    "random": {"sampler": "random"},
}
# each of them again with budget.early_stopping: none (tpe-nostop), ranked by one training
# per trial (tpe-single), by the mean of two trainings per finished trial (tpe-seeds2), and
# by that only for a trial whose first training joins the front (tpe-front2, as the space ships),
# and by up to three trainings, each next one only while the mean so far joins the front (tpe-front3)
ACCURACY_SEEDS = {"single": {"seeds": 1, "seeds_for": "finished"}, "seeds2": {"seeds": 2, "seeds_for": "finished"},
                  "front2": {"seeds": 2, "seeds_for": "front"}, "front3": {"seeds": 3, "seeds_for": "front"}}
# and without the accuracy floor (k-nofloor: constraints.min_accuracy: null), without
# the presets' nearest points queued first (k-nonear: seed_nearest: false), and judged at
# rungs part-way through the full schedule instead of by previews (k-midway: early_stopping: pareto)
STUDIES = {**SAMPLER_STUDIES, **{f"{k}-nostop": {**v, "early_stopping": "none"} for k, v in SAMPLER_STUDIES.items()},
           **{f"{k}-{suffix}": {**v, **seeds} for suffix, seeds in ACCURACY_SEEDS.items()
              for k, v in SAMPLER_STUDIES.items()},
           **{f"{k}-nofloor": {**v, "min_accuracy": None} for k, v in SAMPLER_STUDIES.items()},
           **{f"{k}-nonear": {**v, "seed_nearest": False} for k, v in SAMPLER_STUDIES.items()},
           **{f"{k}-midway": {**v, "early_stopping": "pareto"} for k, v in SAMPLER_STUDIES.items()}}


WALL_ATTR = "bench_wall_s"  # the run's wall seconds, kept for reports without a run
BUDGET_ATTR = "bench_budget"  # the run's minutes, workers and epochs, likewise
SAMPLER_ATTR = "bench_sampler"  # the sampler the run used (name, NSGA-II population)


def study_name(prefix: str, kind: str) -> str:
    return f"{prefix}-{kind}"


def space_file(path: str, changes: dict, folder: Path, population: int | None = None) -> Path:
    """The space at ``path`` with ``changes`` made (another sampler keeps the seed; only
    NSGA-II has a population, ``population`` or the file's), written into ``folder``."""
    if not changes:
        return Path(path)
    data = yaml.safe_load(Path(path).read_text())
    if "sampler" in changes:
        sampler = {"name": changes["sampler"], "seed": data["sampler"].get("seed")}
        if changes["sampler"] == "nsga2":
            sampler["population_size"] = population or data["sampler"].get("population_size")
        data["sampler"] = {k: v for k, v in sampler.items() if v is not None}
    if "early_stopping" in changes:
        data.setdefault("budget", {})["early_stopping"] = changes["early_stopping"]
    if "seeds" in changes:
        data["objectives"]["accuracy"]["seeds"] = changes["seeds"]
    if "seeds_for" in changes:
        data["objectives"]["accuracy"]["seeds_for"] = changes["seeds_for"]
    if "min_accuracy" in changes:
        data.setdefault("constraints", {})["min_accuracy"] = changes["min_accuracy"]
    if "seed_nearest" in changes:
        data["seed_nearest"] = changes["seed_nearest"]
    out = folder / f"{Path(path).stem}-{'-'.join(str(v) for v in changes.values())}.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def run_overrides(args, name: str) -> dict:
    """What every search of one bench run sets in its space: data, epochs, study name, a data
    cache of its own (so its training store is its own: every search trains the presets and
    their nearest points itself, at the same cost), and the channels and sampler seed where
    given (``--image-size 32 64`` searches those sizes; ``--seed`` replicates a run with
    another search and training seed; the data split keeps ``split_seed``)."""
    return {("data", "source"): args.data, ("training", "epochs"): args.epochs, ("study",): name,
            ("data", "cache_dir"): str(REPO / "studies" / name / "cache"),
            **({("data", "channels"): args.channels} if args.channels else {}),
            **({("training", "image_size"): args.image_size} if args.image_size else {}),
            **({("sampler", "seed"): args.seed} if args.seed is not None else {})}


def run(args, changes: dict, name: str) -> float:
    """Run one search from scratch (an old study of that name is deleted); its wall seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        space = load_space(space_file(args.space, changes, Path(tmp), args.population),
                           overrides=run_overrides(args, name))
    datasets = load_sizes(space)  # as castsearch run loads them (resize, cache, channels: auto)
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
    study.set_user_attr(SAMPLER_ATTR, {"name": space.sampler.name, "population_size": space.sampler.population_size,
                                       "early_stopping": space.budget.early_stopping, "seeds": space.seeds,
                                       "seeds_for": space.seeds_for, "seed": space.sampler.seed,
                                       "min_accuracy": space.accuracy_floor or space.constraints.min_accuracy})
    if args.confirm:
        confirm_study(study, seeds=args.confirm, workers=args.workers, cache_dir=space.data.cache_dir,
                      top=args.confirm_top)
    return wall


def stored_studies(args) -> dict[str, optuna.Study]:
    """The searches of ``--prefix`` stored in ``--storage``, in the order of STUDIES."""
    names = {x.study_name for x in optuna.get_all_study_summaries(studylib.make_storage(args.storage),
                                                                   include_best_trial=False)}
    return {kind: studylib.load_existing_study(study_name(args.prefix, kind), args.storage)
            for kind in STUDIES if study_name(args.prefix, kind) in names}


def describe(kind: str, s: optuna.Study) -> str:
    sampler = s.user_attrs.get(SAMPLER_ATTR)
    if not sampler:
        return kind
    pop = f", population {sampler['population_size']}" if sampler.get("population_size") else ""
    stop = {"none": ", no early stopping", "pareto": ", rungs part-way through the schedule",
            "preview": ", previews"}.get(sampler.get("early_stopping"), "")
    n = sampler.get("seeds") or 1
    seeds = f", mean of {n} seeds" if n > 1 else ", one seed"
    if sampler.get("seeds_for") == "front":  # needs seeds > 1 (search.space)
        seeds = (", mean of 2 seeds for trials that join the front" if n == 2 else
                 f", mean of up to {n} seeds for trials that join the front, each next while the mean joins it")
    floor = f", min_accuracy {sampler['min_accuracy']}" if sampler.get("min_accuracy") else ""
    seed = f", seed {sampler['seed']}" if sampler.get("seed") is not None else ""
    return f"{kind} ({sampler['name']}{pop}{stop}{seeds}{floor}{seed})"


def pooled_presets(studies: dict[str, optuna.Study]) -> dict[str, dict[int, float]]:
    """Each preset's confirmed runs, by seed, pooled over every study that confirmed it: the
    presets are the same networks with the same recipe in every study, so a seed confirmed in
    two studies is one run, and more seeds pin the presets' means down better."""
    pooled: dict[str, dict[int, float]] = {}
    for s in studies.values():
        for t in s.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            preset, summary = TrialRecord.read(t).preset, front.confirmed(s, t.number)
            if preset and summary:
                pooled.setdefault(preset, {}).update(zip(summary["seeds"], summary["objective"]["runs"], strict=True))
    return pooled


def confirmed_dominance(studies: dict[str, optuna.Study], own: dict, presets: dict) -> list[str]:
    """The preset table again on confirmed means (:func:`pooled_presets` for the presets,
    each search's trials as confirmed in its own study); empty when no preset was confirmed."""
    pooled = pooled_presets(studies)
    if not pooled:
        return []
    rows = []
    sampled = dict.fromkeys(studies, 0)  # presets a trial the sampler drew dominates (not a seeded nearest point)
    for name in sorted(set(presets) & set(pooled)):
        runs = pooled[name]
        base = front.objective_point(statistics.fmean(runs.values()), *presets[name].values[1:])
        cells = [name, f"{100 * base[0]:.1f}", str(len(runs)), f"{base[1]:.2f}", f"{int(base[2]):,}"]
        for kind, s in studies.items():
            confirmed = [(t, front.confirmed_point(s, t)) for t in own[kind]]
            beaters = front.dominating(base, confirmed)  # most accurate first
            drawn = {t.number for t in front.searched(b for b, _ in beaters)}
            sampled[kind] += bool(drawn)
            if beaters:
                t, p = beaters[0]
                cells.append(f"yes, by {_by([b for b, _ in beaters])}; e.g. {_label(t)}: {100 * p[0]:.1f}%, "
                             f"{p[1]:.2f} ms, {int(p[2]):,} params")
            else:
                cells.append("no" if any(p for _, p in confirmed) else "not confirmed")
        rows.append(cells)
    dominated = {k: sum(1 for r in rows if r[5 + i].startswith("yes")) for i, k in enumerate(studies)}
    confirmed_any = {k: any(r[5 + i] != "not confirmed" for r in rows) for i, k in enumerate(studies)}
    counts = [f"{k} {dominated[k]} of {len(rows)}" if confirmed_any[k] else f"{k} not confirmed" for k in studies]
    return ["\nThe same on confirmed means (castsearch confirm: new seeds only, the search's own left "
            "out): each preset's over every seed any of these studies confirmed it with, each search's "
            "trials as confirmed in its own study.\n",
            table(["preset", "confirmed accuracy %", "seeds", "latency ms", "params", *[f"by {k}" for k in studies]],
                  rows),
            "\nPresets dominated on confirmed means: " + ", ".join(counts) + "; by a sampled trial (the "
            "seeded nearest points left out): " + ", ".join(f"{k} {sampled[k]}" for k in studies) + ".\n"]


def _label(t) -> str:
    """``#12``, or ``#12 (seeded: nearest custom-140k-dw)`` for a point ``seed_nearest`` queued."""
    near = TrialRecord.read(t).near_preset
    return f"#{t.number} (seeded: nearest {near})" if near else f"#{t.number}"


def _by(trials: list) -> str:
    """How many trials dominate, and how many of them the sampler drew (not seeded nearest points)."""
    seeded = sum(1 for t in trials if TrialRecord.read(t).near_preset)
    return f"{len(trials)} ({len(trials) - seeded} sampled)" if seeded else f"{len(trials)} (all sampled)"


def _agreement(ratios: list[float]) -> list:
    off = sum(abs(r - 1) > 0.15 for r in ratios)
    return [f"{statistics.median(ratios):.2f}", f"{min(ratios):.2f}-{max(ratios):.2f}", f"{off} ({off / len(ratios):.0%})"]


def retiming_agreement(studies: dict[str, optuna.Study]) -> list[str]:
    """The front's latency objectives against their quiet re-timing at the end of the run; where
    the timings were paced (search.latency.screen.Pacer), the clock's lowest timings against each other
    too, which is what the objectives would have been unpaced."""
    rows, paced = [], False
    for kind, s in studies.items():
        ratios, clock = [], []
        for t in front.pareto_front(s):
            if (r := front.retimed(s, t.number)) is None:
                continue
            ratios.append(r["latency_ms"] / t.values[1])
            timings = TrialRecord.read(t).latency_timings_ms
            if r.get("paces") and timings:
                clock.append(min(r["latency_timings_ms"]) / min(timings))
        if ratios:
            paced |= bool(clock)
            rows.append([kind, len(ratios), *_agreement(ratios), *(_agreement(clock) if clock else ["", "", ""])])
    if not rows:
        return []
    head = ["search", "front trials re-timed", "median ratio", "range", "off by > 15%"]
    if paced:
        head += ["unpaced: median ratio", "range", "off by > 15%"]
    else:
        rows = [row[:5] for row in rows]
    return ["\nThe front's latency objectives against the quiet re-timing at the end of each run "
            "(search.run.runs.retime_study_front), re-timed / objective" + (
                "; 'unpaced': the lowest of the clock's timings of each, before they were divided by the "
                "pace of the limit's reference timed beside them (search.latency.screen.Pacer)" if paced else "") + ":\n",
            table(head, rows)]


def report(args) -> str:
    space = load_space(args.space)
    studies = stored_studies(args)
    if not studies:
        raise SystemExit(f"no searches with prefix {args.prefix!r} in {args.storage}")
    first = next(iter(studies))
    limits = space.constraints
    if space.relative_latency is not None:
        resolved = studies[first].user_attrs.get(f"{LIMIT_PREFIX}{space.image_sizes[0]}")
        if resolved is None:
            raise SystemExit(f"{space.relative_latency.describe()}: the {first} study holds no resolved "
                             f"latency limit (run a search first)")
        limits = dataclasses.replace(limits, max_latency_ms=resolved["max_latency_ms"])
    reference = [0.0, limits.max_latency_ms, limits.max_params]
    box = reference[1] * reference[2]  # accuracy spans 0..1
    # trained networks within the architecture limits, whether or not a search's min_accuracy
    # kept them off its front: searches with and without a floor are measured alike
    feasible = {k: [t for t in s.get_trials(deepcopy=False) if front.within_limits(t)] for k, s in studies.items()}
    own = {k: [t for t in ts if not TrialRecord.read(t).preset] for k, ts in feasible.items()}
    budgets = [s.user_attrs[BUDGET_ATTR] for s in studies.values() if BUDGET_ATTR in s.user_attrs]
    if any(b != budgets[0] for b in budgets):
        raise SystemExit(f"the searches ran with different budgets, not comparable: {budgets}")
    budget = budgets[0] if budgets else {"minutes": args.minutes, "workers": args.workers, "epochs": args.epochs}
    minutes, workers, epochs = budget["minutes"], budget["workers"], budget["epochs"]
    presets = front.presets(feasible[first])

    def hv(trials) -> float:
        return front.hypervolume([front.point(t) for t in trials], reference) / box if trials else 0.0

    def trained_epochs(s: optuna.Study) -> str:
        """Epochs the workers trained (a trial trained with several seeds: each training; a trial
        that passed its preview: the preview's too), and how many of them went to trials stopped early."""
        done = sum(int(t.user_attrs.get("epochs_run") or 0) * max(1, len(t.user_attrs.get("seed_runs") or ()))
                   + int((t.user_attrs.get("preview") or {}).get("epochs") or 0)
                   for t in s.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE)
        stopped = sum(int(t.user_attrs.get("pruned_at_epoch") or 0) for t in s.get_trials(deepcopy=False)
                      if t.state == optuna.trial.TrialState.PRUNED)
        return f"{done + stopped} ({stopped})"

    # Against (accuracy 0, limits) the small fast networks every search finds fill most of the
    # box (random sampling's own points: 0.86 of it on X-SDD), so no search can score 1.2x
    # another there. Above the least accurate preset's accuracy the volume counts only
    # networks that compete with the paper's on accuracy, and the ratio can show a difference.
    floor = min((t.values[0] for t in presets.values()), default=0.0)
    floor_ref = [floor, reference[1], reference[2]]
    floor_box = (1.0 - floor) * box

    def hv_floor(trials) -> float:
        return front.hypervolume([front.point(t) for t in trials], floor_ref) / floor_box if trials else 0.0

    hv_own = {k: hv(ts) for k, ts in own.items()}
    hvf_own = {k: hv_floor(ts) for k, ts in own.items()}
    rows = []
    for kind, s in studies.items():
        c = front.counts(s.get_trials(deepcopy=False))
        best = max((t.values[0] for t in own[kind]), default=float("nan"))
        ratio = f"{hv_own[kind] / hv_own['random']:.2f}" if hv_own.get("random") else ""
        ratio_f = f"{hvf_own[kind] / hvf_own['random']:.2f}" if hvf_own.get("random") else ""
        rows.append([describe(kind, s), f"{s.user_attrs.get(WALL_ATTR, float('nan')) / 60:.1f}", c["complete"],
                     c["pruned"], trained_epochs(s), c["below_floor"], c["infeasible"], c["invalid"], c["failed"],
                     len(front.pareto_front(s)),
                     f"{100 * best:.1f}", f"{hv_own[kind]:.4f}", ratio, f"{hv(feasible[kind]):.4f}",
                     f"{hvf_own[kind]:.4f}", ratio_f, f"{hv_floor(feasible[kind]):.4f}"])
    preset_pts = list(presets.values())
    rows.append([f"the six presets (from {first})", "", len(presets), "", "", "", "", "", "", "",
                 f"{100 * max((t.values[0] for t in preset_pts), default=float('nan')):.1f}", "", "",
                 f"{hv(preset_pts):.4f}", "", "", f"{hv_floor(preset_pts):.4f}"])

    prow = []
    for name, pt in sorted(presets.items()):
        cells = [name, f"{100 * pt.values[0]:.1f}", f"{pt.values[1]:.2f}", f"{int(pt.values[2]):,}"]
        for kind in studies:
            beaters = [t for t, _ in front.dominating(front.point(pt), ((t, front.point(t)) for t in own[kind]))]
            if beaters:
                b = beaters[0]  # the most accurate
                cells.append(f"yes, by {_by(beaters)}; e.g. {_label(b)}: {100 * b.values[0]:.1f}%, "
                             f"{b.values[1]:.2f} ms, {int(b.values[2]):,} params")
            else:
                cells.append("no")
        prow.append(cells)
    dominated = {k: sum(1 for r in prow if r[4 + i] != "no") for i, k in enumerate(studies)}

    out = [header(f"Samplers and random sampling on {Path(args.data).name}")]
    relative = f" = {space.relative_latency.describe()}" if space.relative_latency else ""
    out.append(f"Space `{Path(args.space).name}` (constraints: {limits.max_latency_ms:.3g} ms{relative}, "
               f"{limits.max_params:,.0f} params), training capped at {epochs} epochs. Budget per search: "
               f"{minutes} minutes of wall time x {workers} workers of 1 CPU = "
               f"**{minutes * workers} CPU-minutes**; the searches ran one after the other. "
               f"Hypervolume: of the trained (accuracy, latency, params) points within the latency and parameter "
               f"limits (those under a search's min_accuracy included) against the reference "
               f"point {reference}, divided by the reference box ({box:,.0f}); 1 would be a 100%-accurate "
               f"network with no latency and no parameters. 'own' counts the search's trials only, "
               f"'with presets' adds the six presets trained in the same study. Best accuracy: of the "
               f"search's own trials. 'Above the presets' floor': the same with the reference accuracy "
               f"raised to the least accurate preset's ({100 * floor:.1f}%), normalised by that smaller box: "
               f"only networks that compete with the paper's on accuracy count. Epochs trained: by "
               f"all the study's workers, each seed's training of a trial counted, in brackets those of "
               f"trials stopped early. Wall minutes include "
               f"Ray's start and the quiet re-timing of each front.\n")
    out.append(table(["search", "wall min", "finished (feasible)", "stopped early", "epochs trained (in stopped trials)",
                      "finished below min_accuracy", "infeasible", "invalid", "failed",
                      "front size", "best own accuracy %", "hypervolume, own", "own / random",
                      "hypervolume, with presets", "above the presets' floor, own", "own / random",
                      "above the floor, with presets"], rows))
    out.append(f"\nIs each paper preset dominated (at least as accurate, as fast and as small, better in one) "
               f"by a trial the search found itself? Preset values as measured in the {first} search.\n")
    out.append(table(["preset", "accuracy %", "latency ms", "params", *[f"by {k}" for k in studies]], prow))
    out.append("\nPresets dominated: " + ", ".join(f"{k} {dominated[k]} of {len(presets)}" for k in studies) + ".\n")
    out.extend(confirmed_dominance(studies, own, presets))
    out.extend(retiming_agreement(studies))
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default=str(REPO / "spaces" / "paper.yaml"))
    p.add_argument("--data", default=str(DATASETS / "x-sdd"))
    p.add_argument("--minutes", type=float, default=11)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--storage", default=f"sqlite:///{REPO / 'studies' / 'search-vs-random.db'}")
    p.add_argument("--prefix", default="svr", help="study names: <prefix>-<search>, e.g. svr-default")
    p.add_argument("--channels", choices=["auto", "1", "3"], default=None,
                   help="override the space's data.channels (to compare with searches stored before auto)")
    p.add_argument("--image-size", type=int, nargs="+", default=None, metavar="PX",
                   help="override the space's training.image_size (several: the search picks among them)")
    p.add_argument("--seed", type=int, default=None,
                   help="the sampler's seed for every search, also each trial's training seed "
                        "(default: the space file's; the data split keeps its split_seed)")
    p.add_argument("--population", type=int, default=None,
                   help="the nsga2 search's population (default: the space file's)")
    p.add_argument("--confirm", type=int, default=0, metavar="K",
                   help="retrain each search's front and presets K times with new seeds when it ends")
    p.add_argument("--confirm-top", type=int, default=None, metavar="N",
                   help="confirm only the N most accurate searched trials of each front, each preset's "
                        "challenger and the presets (castsearch confirm --top)")
    p.add_argument("--searches", nargs="*", choices=list(STUDIES), default=["default", "random"],
                   help="which searches to run (the report shows all stored ones); none: only report")
    args = p.parse_args()
    if args.channels in ("1", "3"):
        args.channels = int(args.channels)
    if not Path(args.data).is_dir():
        p.error(f"--data: no folder {args.data}")
    for kind in args.searches:
        wall = run(args, STUDIES[kind], study_name(args.prefix, kind))
        print(f"{kind}: {wall / 60:.1f} min", file=sys.stderr, flush=True)
    print(report(args))


if __name__ == "__main__":
    main()

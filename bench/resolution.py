"""Does resolution buy accuracy, and at what cost? Networks trained at several image sizes.

    python bench/resolution.py [--data ../shared/datasets/x-sdd ../shared/datasets/elpv]
        [--sizes 32 64 128] [--epochs N] [--seeds 3] [--presets] [--codes CODE ...]
        [--front STUDY --storage URL [--front-top 3]] [--class-balance weighted_loss]
        [--jobs 2] [--rounds 3]

Each network (the paper's six presets with ``--presets``, the architecture codes of
``--codes``, and the ``--front-top`` most accurate searched networks on the front of
``--front``) is trained on each dataset at each size with ``--seeds`` seeds, exactly as a
study of ``--space`` (default ``spaces/paper.yaml``) trains its presets: the space's named
recipe and fixed training values (``precision: auto`` among them), its epochs, its data
split and channels, its seeds (the space's seed, then the next ones). Every network gets the
same recipe, so a row differs from another by the network and the size alone. ``--epochs``
trains every network that many epochs instead of the space's (how far the networks are from
what they can reach at the space's budget: the same networks trained longer).
``--class-balance`` fixes ``training.class_balance`` for all of them instead (``none`` is the
paper's training: on imbalanced data it teaches every network the large classes and not the
smallest; the default recipe weights the loss).

Trainings go through castsearch's training store (``search.trial.reuse``, in the space's
data cache): a killed benchmark resumes, and a training a study already did (a preset at
32 px from a search on the same data, say) is taken from there, which the table marks.
``--jobs`` trainings run at once, one torch thread each.

Reported per dataset, network and size: validation balanced accuracy, mean and sample
standard deviation over the seeds (the figure a search ranks by); test accuracy and the
test split's worst-class recall (reported beside, never used to choose); seconds per epoch
of one training on one thread (with ``--jobs`` trainings side by side; a reused training's
as it was measured when it ran); and the single-image latency in ONNX Runtime on one thread,
the search's objective, timed after all training round-robin over ``--rounds`` rounds on an
otherwise idle machine (median of the rounds).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DATASETS, REPO, header, table, training_worker  # noqa: E402

BENCH = "bench-resolution"  # the store's study name for trainings done here (a resumed run takes them back)


@dataclass(frozen=True)
class Job:
    """One training: a network on one dataset at one size with one seed."""

    space: str
    data: str
    size: int
    name: str  # a preset's name or the network's code
    code: str
    seed: int
    class_balance: str | None = None  # fixed for every network; None: the space's preset recipe's
    epochs: int | None = None  # likewise; None: the space's


def space_at(space_file: str, data: str, size: int, class_balance: str | None = None, epochs: int | None = None):
    """``space_file`` on ``data`` searching the one image size ``size`` (and training with
    ``class_balance`` and for ``epochs`` where given)."""
    from search.space import load_space

    overrides = {("data", "source"): data, ("training", "image_size"): [size]}
    if class_balance:
        overrides[("training", "class_balance")] = class_balance
    if epochs:
        overrides[("training", "epochs")] = epochs
    return load_space(space_file, overrides=overrides)


def candidate_at(space, code: str):
    """The network ``code`` with the recipe the space trains its presets with (search.space.preset_trials)."""
    from castmodels import ArchSpec
    from search.space import decode, preset_trials

    first = next(iter(preset_trials(space).values()))
    return decode(space, first.params, ArchSpec.from_code(code))


def train_job(job: Job) -> dict:
    """Train (or take from the store) one job; its figures."""
    from search.data import load_sizes
    from search.trial.build import build_candidate
    from search.trial.pipeline import seed_training
    from search.trial.reuse import Trainings

    space = space_at(job.space, job.data, job.size, job.class_balance, job.epochs)
    data = load_sizes(space)[job.size]
    candidate = candidate_at(space.with_channels(data.in_channels), job.code)
    spec, recipe = candidate.arch.to_dict(), replace(candidate.recipe, seed=job.seed)
    trainings = Trainings.in_cache(space.data.cache_dir, BENCH)
    done = seed_training(lambda r: build_candidate(candidate.arch, r, data.num_classes), recipe, job.seed, data,
                         space.metric, "cpu", spec=spec, trainings=trainings)
    stored = trainings.get(trainings.key(spec, recipe, data, "cpu"))
    return {"validation": done.validation.balanced_accuracy, "test_accuracy": done.test.accuracy,
            "worst_recall": min(done.test.per_class_recall.values()),
            "epoch_s": stored.train_seconds / stored.epochs if stored else None,
            "reused": done.reused.study if done.reused and done.reused.study != BENCH else None,
            "classes": data.num_classes, "channels": data.in_channels}


def latency(job: Job, classes: int, channels: int, timer) -> tuple[float, int]:
    """(single-image latency ms in the search's runtime, parameters) of ``job``'s network."""
    from search.latency.measure import count_params
    from search.trial.build import build_candidate

    space = space_at(job.space, job.data, job.size, job.class_balance, job.epochs)
    candidate = candidate_at(space.with_channels(channels), job.code)
    model = build_candidate(candidate.arch, candidate.recipe, classes).eval()
    shape = (channels, job.size, job.size)
    return timer.time_single(model, shape, timer.exported(model, shape)).robust_ms, count_params(model)


def networks(args) -> dict[str, str]:
    """name -> architecture code of every network to train."""
    from castmodels import PRESETS

    out = {name: arch.code() for name, arch in PRESETS.items()} if args.presets else {}
    out |= {code: code for code in args.codes}
    if args.front:
        from search.study import front as frontlib
        from search.study import storage as studylib
        from search.study.record import TrialRecord

        study = studylib.load_existing_study(args.front, args.storage)
        searched = [t for t in frontlib.pareto_front(study) if TrialRecord.read(t).preset is None]
        for t in sorted(searched, key=lambda t: -t.values[0])[:args.front_top]:
            out[f"#{t.number}"] = TrialRecord.read(t).arch_spec().code()
    if not out:
        raise SystemExit("no networks: give --presets, --codes or --front")
    return out


def report(args, nets: dict[str, str], results: dict[Job, dict]) -> str:
    from search.latency.timer import Timer

    timer = Timer()
    jobs = sorted(results, key=lambda j: (j.data, j.name, j.size, j.seed))
    cells: dict[tuple, list[dict]] = {}
    for j in jobs:
        cells.setdefault((j.data, j.name, j.size), []).append(results[j])
    lat: dict[tuple, list[float]] = {}
    params: dict[tuple, int] = {}
    for _ in range(args.rounds):  # round-robin: machine noise spreads over every network
        for (data, name, size), runs in cells.items():
            job = Job(args.space, data, size, name, nets[name], 0, args.class_balance, args.epochs)
            ms, params[(data, name, size)] = latency(job, runs[0]["classes"], runs[0]["channels"], timer)
            lat.setdefault((data, name, size), []).append(ms)
    out = [header("Resolution: the same networks trained at several image sizes"), "",
           f"Space `{Path(args.space).name}` (its preset recipe, "
           + (f"**{args.epochs} epochs** and split" if args.epochs else "epochs and split")
           + (f"; `class_balance: {args.class_balance}` for every network" if args.class_balance else "")
           + "), seeds from the space's, "
           f"{args.jobs} training(s) at once on one thread each; latency: the search's runtime "
           f"({timer.runtime}), one thread, single image, median of {args.rounds} round-robin rounds. "
           "Accuracy: validation balanced accuracy, mean ± sample sd over the seeds; test accuracy and "
           "worst-class recall (test split) are reported beside and chose nothing.", ""]
    for data in dict.fromkeys(j.data for j in jobs):
        rows = []
        for name in nets:
            base = statistics.median(lat[(data, name, args.sizes[0])]) if (data, name, args.sizes[0]) in lat else None
            for size in args.sizes:
                runs = cells.get((data, name, size))
                if not runs:
                    continue
                val = [r["validation"] for r in runs]
                sd = statistics.stdev(val) if len(val) > 1 else 0.0
                ms = statistics.median(lat[(data, name, size)])
                epoch = [r["epoch_s"] for r in runs if r["epoch_s"] is not None]
                reused = sum(r["reused"] is not None for r in runs)
                rows.append([name, size, params[(data, name, size)], f"{statistics.mean(val):.3f} ± {sd:.3f}",
                             len(val), f"{100 * statistics.mean(r['test_accuracy'] for r in runs):.1f}",
                             f"{100 * statistics.mean(r['worst_recall'] for r in runs):.1f}",
                             f"{statistics.median(epoch):.1f}" if epoch else "-", f"{ms:.3f}",
                             f"{ms / base:.1f}x" if base else "-", reused or ""])
        out += [f"### {Path(data).name}", "",
                table(["network", "px", "params", "val balanced acc", "seeds", "test acc %",
                       "worst-class recall %", "s / epoch", "latency ms", "latency / smallest px",
                       "seeds reused"], rows)]
    return "\n".join(out)


def main() -> None:
    from search.training.recipe import CLASS_BALANCES  # torch-free

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default=str(REPO / "spaces" / "paper.yaml"))
    p.add_argument("--data", nargs="+", default=[str(DATASETS / "x-sdd"), str(DATASETS / "elpv")])
    p.add_argument("--sizes", nargs="+", type=int, default=[32, 64, 128])
    p.add_argument("--epochs", type=int, help="train every network this many epochs (default: the space's)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--presets", action="store_true", help="the paper's six presets")
    p.add_argument("--codes", nargs="*", default=[], help="architecture codes, e.g. 'C32 C32 P C64 A'")
    p.add_argument("--front", help="a study whose most accurate searched front networks join")
    p.add_argument("--storage", help="the --front study's storage URL")
    p.add_argument("--front-top", type=int, default=3)
    p.add_argument("--class-balance", choices=CLASS_BALANCES,
                   help="train every network with this class balance instead of the preset recipe's")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    for d in args.data:
        if not Path(d).is_dir():
            p.error(f"--data: no folder {d}")
    if args.epochs is not None and args.epochs < 1:
        p.error(f"--epochs: {args.epochs}; train at least 1 epoch")
    if args.front and not args.storage:
        p.error("--front needs --storage")
    args.sizes = sorted(set(args.sizes))
    nets = networks(args)
    seed0 = space_at(args.space, args.data[0], args.sizes[0]).sampler.seed
    # the smallest size first, every network's first seed before the next seeds: a benchmark cut
    # short still has whole columns
    jobs = [Job(args.space, d, size, name, code, seed0 + k, args.class_balance, args.epochs)
            for size in args.sizes for k in range(args.seeds) for d in args.data for name, code in nets.items()]
    from search.data import load_sizes

    for d in args.data:  # decode each size once, before the workers need it
        for size in args.sizes:
            load_sizes(space_at(args.space, d, size, args.class_balance))
    results: dict[Job, dict] = {}
    started = time.perf_counter()
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn"), initializer=training_worker) as pool:
        futures = {pool.submit(train_job, j): j for j in jobs}
        for i, f in enumerate(as_completed(futures), 1):
            j = futures[f]
            results[j] = r = f.result()
            print(f"[{i}/{len(jobs)} {time.perf_counter() - started:6.0f}s] {Path(j.data).name} {j.name} {j.size}px "
                  f"seed {j.seed}: {r['validation']:.3f}{' (reused)' if r['reused'] else ''}",
                  file=sys.stderr, flush=True)
    print(report(args, nets, results))


if __name__ == "__main__":
    main()

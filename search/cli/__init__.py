"""The ``castsearch`` command line. ``main(argv) -> int``; libraries log, this module prints.

Heavy imports (torch, composer, ray) happen inside the subcommands, so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path

log = logging.getLogger("castsearch")


class _LiveLine(logging.Handler):
    """Writes the trainer's per-epoch lines over one another on a terminal (carriage return,
    clear to the end of the line); any other record ends that line first."""

    def __init__(self, stream) -> None:
        super().__init__()
        self.stream, self.open = stream, False
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if record.getMessage().startswith("epoch "):
            self.stream.write("\r\x1b[K" + text)
            self.open = True
        else:
            self.stream.write(("\n" if self.open else "") + text + "\n")
            self.open = False
        self.stream.flush()


@contextlib.contextmanager
def live_epoch_line(stream):
    """On a terminal, training progress is one live line; in a log file or pipe, one line per
    epoch (the records pass to the usual handlers unchanged)."""
    if not stream.isatty():
        yield
        return
    logger, handler = logging.getLogger("search.training.train"), _LiveLine(stream)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        if handler.open:
            stream.write("\n")


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _csv(text: str | None) -> tuple[str, ...]:
    return tuple(t.strip() for t in (text or "").split(",") if t.strip())


def _resolve_arch(text: str):
    """A preset name, a JSON file holding a spec (or a spec.json/metrics.json with one), or a layer code."""
    from castmodels import PRESETS, ArchSpec

    if text in PRESETS:
        return PRESETS[text]
    path = Path(text)
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise CLIError(f"{text}: no such spec file")
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CLIError(f"{text}: not a JSON spec file ({e})") from None
        try:
            return ArchSpec.from_dict(data.get("arch", data) if isinstance(data, dict) else data)
        except (ValueError, TypeError) as e:
            raise CLIError(f"{text}: {e}") from None
    if text[:1] in ("C", "D") and " " in text.strip():
        return ArchSpec.from_code(text)
    raise CLIError(f"unknown preset {text!r}; known presets: {', '.join(PRESETS)} "
                   "(or give a spec .json file or a layer code like 'C16 P D32 A')")


def _fmt_int(n: int) -> str:
    return f"{n:,}"


def cmd_cache(args: argparse.Namespace) -> int:
    import datetime

    from search.data import cache as tensorcache  # torch-free

    folder = Path(args.dir).expanduser() if args.dir else tensorcache.default_cache_dir()
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"cache folder is a file: {folder}")
    if args.clear:
        removed, freed, left = tensorcache.clear(folder)
        print(f"removed {removed} file(s), {tensorcache.human_bytes(freed)}, from {folder}")
        if left:
            print(f"  left {len(left)} file(s) castsearch did not write: "
                  + ", ".join(p.name for p in left[:5]) + (" ..." if len(left) > 5 else ""))
        return 0
    contents = tensorcache.scan(folder)
    if args.json:
        print(json.dumps({"folder": str(folder), "bytes": contents.nbytes, "datasets": [
            {"file": str(e.path), "name": e.name, "source": e.source, "image_size": e.image_size,
             "channels": e.channels, "bytes": e.nbytes,
             "modified": datetime.datetime.fromtimestamp(e.modified, datetime.UTC).isoformat()}
            for e in contents.entries], "other_files": [str(p) for p in contents.other],
            "foreign_files": [str(p) for p in contents.foreign]}, indent=2))
        return 0
    if not contents.entries and not contents.other:
        print(f"cache {folder}: empty")
        return 0
    print(f"cache {folder}: {len(contents.entries)} decoded dataset(s), {tensorcache.human_bytes(contents.nbytes)}; "
          "`castsearch cache --clear` removes them (a later run decodes its images again)")
    for e in contents.entries:
        when = datetime.datetime.fromtimestamp(e.modified).strftime("%Y-%m-%d %H:%M")
        print(f"  {tensorcache.human_bytes(e.nbytes):>9}  {e.image_size:>4} px  {e.channels} ch  {when}  "
              f"{e.source or e.name}  ({e.path.name})")
    choices = sum(1 for p in contents.other if tensorcache.CHANNEL_CHOICE.match(p.name))
    if choices:
        print(f"  and {choices} small file(s) recording what channels: auto chose")
    if len(contents.other) > choices:
        print(f"  and {len(contents.other) - choices} file(s) left by interrupted writes or removed datasets")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from castmodels import PRESETS, build_model
    from search.latency.measure import count_macs, count_params

    rows = []
    for name, spec in PRESETS.items():
        model = build_model(spec, 3, 10)
        rows.append({"name": name, "params": count_params(model), "macs": count_macs(model, (3, 32, 32)),
                     "summary": spec.summary(), "code": spec.code()})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'preset':<17} {'params':>9} {'MACs@32px':>11}  layers (3 channels, 10 classes)")
    for r in rows:
        print(f"{r['name']:<17} {_fmt_int(r['params']):>9} {_fmt_int(r['macs']):>11}  {r['code']}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train one network. The objective a search would rank it by is printed first (validation);
    the test figures follow."""
    import torch

    from search.data import DataConfig, load_dataset
    from search.training.recipe import TrainRecipe
    from search.trial.pipeline import run_candidate

    arch = _resolve_arch(args.arch)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset(DataConfig(source=args.data, image_size=args.image_size, channels=args.channels,
                                   resize=args.resize))
    flags = {"batch_size": args.batch_size, "optimizer": args.optimizer, "lr": args.lr,
             "weight_decay": args.weight_decay, "schedule": args.schedule, "warmup": args.warmup,
             "class_balance": args.class_balance,
             "enhancements": _csv(args.enhance) if args.enhance is not None else None,
             "augmentations": _csv(args.augment) if args.augment is not None else None}
    recipe = TrainRecipe.named(args.recipe, epochs=args.epochs, image_size=args.image_size,
                               channels=data.in_channels, seed=args.seed, **{k: v for k, v in flags.items() if v is not None})
    name = arch.name or "custom"
    out = Path(args.out) if args.out else Path("studies") / "train" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    log.info("training %s on %s (%d train / %d val / %d test images, %d classes)", name,
             data.identity["source"], len(data.train_y), len(data.val_y), len(data.test_y), data.num_classes)
    for line in data.notices():  # layout, what decoding changed, classes too small to measure
        print(f"  {line}", file=sys.stderr if args.json else sys.stdout, flush=True)
    with live_epoch_line(sys.stderr):
        outcome = run_candidate(arch, recipe, data, out_dir=out)
    ev, val, m = outcome.evaluation, outcome.validation, outcome.measurement
    result = {
        "arch": name, "code": arch.code(), "accuracy": ev.accuracy, "macro_f1": ev.macro_f1,
        "balanced_accuracy": ev.balanced_accuracy, "per_class_recall": ev.per_class_recall,
        "val_accuracy": val.accuracy, "val_balanced_accuracy": val.balanced_accuracy, "val_macro_f1": val.macro_f1,
        "params": m.params, "macs": m.macs,
        "latency_ms": m.latency_ms, "latency_iqr_ms": m.latency_iqr_ms, "latency_runtime": m.runtime,
        "eager_latency_ms": m.eager_latency_ms,
        "batch_latency_ms": m.batch_latency_ms, "batch_size": m.batch_size, "threads": m.threads,
        "epochs": outcome.epochs_run, "train_seconds": outcome.train_seconds,
        "images_per_second": outcome.images_per_second, "out": str(out),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{name}: {arch.code()}")
    print(f"  val accuracy    {val.accuracy:.4f}   balanced {val.balanced_accuracy:.4f}   macro-F1 {val.macro_f1:.4f}")
    print(f"  test accuracy   {ev.accuracy:.4f}   balanced {ev.balanced_accuracy:.4f}   macro-F1 {ev.macro_f1:.4f}")
    width = max(len(c) for c in ev.per_class_recall)
    for cls, rec in ev.per_class_recall.items():
        print(f"    recall {cls:<{width}}  {rec:.3f}")
    print(f"  params          {_fmt_int(m.params)}   MACs {_fmt_int(m.macs)}")
    print(f"  latency         {m.latency_ms:.3f} ms (IQR {m.latency_iqr_ms:.3f}) per image, "
          f"{m.batch_latency_ms:.2f} ms per batch of {m.batch_size}, {m.threads} thread(s), {m.runtime}; "
          f"torch eager {m.eager_latency_ms:.3f} ms per image")
    print(f"  training        {outcome.epochs_run} epoch{'' if outcome.epochs_run == 1 else 's'}, "
          f"{outcome.train_seconds:.1f} s, "
          f"{outcome.images_per_second:.0f} images/s")
    print(f"  written to      {out}")
    return 0


def _fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def _print_progress(p) -> None:
    budget = f"/{p.run_budget}" if p.run_budget is not None else ""
    best = f"{p.best_accuracy:.4f}" if p.best_accuracy is not None else "-"
    left = f" · {_fmt_time(p.time_left_s)} left" if p.time_left_s is not None else ""
    floor = f" · below floor {p.below_floor}" if p.below_floor else ""
    print(f"  [{p.run_finished}{budget} this run] complete {p.complete} · running {p.running} · "
          f"pruned {p.pruned} · infeasible {p.infeasible}{floor} · failed {p.failed} · invalid {p.invalid} · "
          f"best accuracy {best} · "
          f"front {p.front_size} · {_fmt_time(p.elapsed_s)} elapsed{left}", flush=True)


def print_run_summary(summary) -> None:
    """How the run ended: what became of its sampled networks, what the front holds, which
    presets a searched network beat, and the time used against the budget."""
    resumed = f" (resumed run {summary.resumed_from})" if summary.resumed_from else ""
    budget = f" of {_fmt_time(summary.timeout_s)}" if summary.timeout_s else ""
    print(f"run {summary.run_id}{resumed}: {summary.finished} trials finished in "
          f"{_fmt_time(summary.elapsed_s)}{budget}")
    o = summary.outcome
    if o is None:
        return
    floor = f" · {o.below_floor} trained below the accuracy floor" if o.below_floor else ""
    print(f"  sampled networks: {o.trained} trained{floor} · {o.infeasible} infeasible · {o.invalid} invalid · "
          f"{o.pruned} stopped early · {o.failed} failed; presets trained {o.presets_trained}")
    n = len(o.seeded)
    seeded = f" ({n} seeded nearest point{'' if n == 1 else 's'}, seed_nearest)" if n else ""
    print(f"  front: {o.front} network{'' if o.front == 1 else 's'}, {o.front_searched} of them found by the search{seeded}")
    if o.dominated:
        def label(t: int) -> str:
            return f"{t} (seeded: nearest {o.seeded[t]})" if t in o.seeded else str(t)
        beaten = (f"{name} (by trial{'s' if len(ts) > 1 else ''} {', '.join(map(label, ts))})"
                  for name, ts in sorted(o.dominated.items()))
        print(f"  presets dominated by a searched network: {'; '.join(beaten)}")
    if o.front and not o.front_searched:
        print("  warning: no searched network is on the front, only presets: give the search more time "
              "or widen the limits", flush=True)
    if summary.artifacts is not None:
        print(f"  trial weights in {summary.artifacts}")


def _study_and_storage(args: argparse.Namespace) -> tuple[str, str]:
    """--study/--storage, defaulting to the only study database under studies/."""
    from search.study.storage import STUDIES_DIR, default_storage

    if args.study:
        return args.study, args.storage or default_storage(args.study)
    if args.storage:
        raise CLIError("--storage needs --study NAME too")
    dbs = sorted(STUDIES_DIR.glob("*.db"))
    if len(dbs) != 1:
        found = ", ".join(d.stem for d in dbs) or "none"
        raise CLIError(f"say which study with --study NAME (study databases in {STUDIES_DIR}/: {found})")
    print(f"study {dbs[0].stem!r}: the only study database in {STUDIES_DIR.resolve()}/ "
          f"(--study and --storage choose another)", file=sys.stderr)
    return dbs[0].stem, default_storage(dbs[0].stem)


def print_front(rows: list[dict]) -> None:
    if not rows:
        print("the front is empty: no feasible trial has completed yet")
        return
    metric, split = rows[0]["metric"], rows[0]["split"]
    objective = f"{'val' if split == 'validation' else split} {metric.replace('_', ' ')}"
    latency = f"{rows[0]['latency_runtime']} ms"
    print(f"{'trial':>5} {objective:>22} {'test acc':>8} {'worst test recall':>24} {latency:>16} "
          f"{'params':>9}  architecture  [enhancements]")
    for r in rows:
        mark = "" if r["latency_retimed"] else "~"
        flag = "!" if r["no_better_than_majority"] else ""
        test = f"{r['test_accuracy']:.4f}" if r["test_accuracy"] is not None else "-"
        worst = r["worst_class_recall"]
        worst = f"{worst['recall']:.3f} {worst['class'][:14]}" if worst else "-"
        name = f"{r['preset']}: " if r["preset"] else ""
        print(f"{r['trial']:>5} {flag + format(r['accuracy'], '.4f'):>22} {test:>8} {worst:>24} "
              f"{mark + format(r['latency_ms'], '.3f'):>16} {_fmt_int(r['params']):>9}  {name}{r['arch']}  "
              f"[{r['enhancements']}]")
    averaged = {len(r["seed_runs"]) for r in rows if r.get("seed_runs")}
    if averaged:
        single = any(not r.get("seed_runs") for r in rows)
        print(f"{objective}: the mean over {'/'.join(map(str, sorted(averaged)))} trainings with different "
              f"seeds (objectives.accuracy.seeds){', the others one training' if single else ''}; "
              f"test figures: the first seed's network, the one saved")
    if split == "validation":
        print(f"ranked by {objective} only; the test figures were computed after training and chose nothing")
    else:
        print("this study ranked candidates on the test split (castsearch 0.1): its test figures are optimistic")
    majority = rows[0]["majority"]
    if any(r["no_better_than_majority"] for r in rows):
        print(f"! no better than always answering the most common class ({objective} {majority:.4f}): "
              f"do not ship it")
    if any(not r["latency_retimed"] for r in rows):
        print("~ latency measured during the search, not yet re-timed in a quiet phase")
    paced = sorted({r["latency_paced_by"] for r in rows if r.get("latency_paced_by")})
    if paced:
        print(f"{latency}: at this machine's pace when the latency limit was set; each timing is divided by "
              f"how much slower than then {', '.join(paced)} ran when timed beside it")
    print_confirmed(rows, objective)


def _mean_sd(mean: float, sd: float, ci: list[float] | None = None) -> str:
    interval = f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""
    return f"{mean:.4f} ± {sd:.4f}{interval}"


def print_confirmed(rows: list[dict], objective: str) -> None:
    """The seed-repeated figures of the front rows ``castsearch confirm`` retrained."""
    done = [r for r in rows if "accuracy_mean" in r]
    if not done:
        return
    print("\nconfirmed with other seeds (castsearch confirm): mean ± sd [95% interval]")
    print(f"{'trial':>5} {objective + ' (objective)':>48} {'test accuracy':>36} {'worst test recall':>17}  seeds")
    for r in done:
        worst = r.get("test_worst_class_recall_mean")
        print(f"{r['trial']:>5} {_mean_sd(r['accuracy_mean'], r['accuracy_std'], r['accuracy_ci95']):>48} "
              f"{_mean_sd(r['test_accuracy_mean'], r['test_accuracy_std'], r['test_accuracy_ci95']):>36} "
              f"{'-' if worst is None else format(worst, '.3f'):>17}  {','.join(map(str, r['seeds']))}")


def _quiet_optuna() -> None:
    """Optuna logs through its own handler at INFO ("A new study created ..."); the CLI prints."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.DEBUG if log.isEnabledFor(logging.DEBUG) else optuna.logging.WARNING)


def load_sizes(space) -> dict:
    """The space's data at each of its image sizes. ``channels: auto`` is decided at the first
    size and the others load with what it decided, so every network of a study takes one input."""
    from search.data import load_dataset

    first, *rest = space.image_sizes
    datasets = {first: load_dataset(space.data.config(first), cache_dir=space.data.cache_dir)}
    decided = space.with_channels(datasets[first].in_channels).data
    datasets.update({size: load_dataset(decided.config(size), cache_dir=decided.cache_dir) for size in rest})
    return datasets


def cmd_run(args: argparse.Namespace) -> int:
    from search.run.runner import RunOptions, check_options, run_search
    from search.space import load_space
    from search.study.storage import default_storage, front_rows, load_existing_study, redact_url

    overrides = {
        ("data", "source"): args.data, ("study",): args.study, ("budget", "trials"): args.trials,
        ("budget", "timeout"): args.timeout, ("training", "epochs"): args.epochs, ("sampler", "seed"): args.seed,
    }
    space = load_space(args.space, overrides={k: v for k, v in overrides.items() if v is not None})
    _quiet_optuna()
    workers = args.workers if args.workers is not None else os.cpu_count() or 1
    if space.budget.trials is None and space.budget.timeout_s is None:
        raise CLIError(f"{args.space}: the search needs a budget: budget.trials or budget.timeout (or --trials / --timeout)")
    storage = args.storage or default_storage(space.study)
    opts = RunOptions(study_name=space.study, storage=storage, trials=space.budget.trials,
                      timeout_s=space.budget.timeout_s, workers=workers, address=args.address,
                      artifacts=Path(args.artifacts) if args.artifacts else None)
    check_options(opts)  # before any data is read, study written or Ray started
    datasets = load_sizes(space)
    first = next(iter(datasets.values()))
    budget = [f"{space.budget.trials} trials"] if space.budget.trials else []
    budget += [_fmt_time(space.budget.timeout_s)] if space.budget.timeout_s else []
    print(f"castsearch run: study {space.study!r} in {redact_url(storage)}")  # no password in logs
    print(f"  data {first.identity['source']}: {first.num_classes} classes, {len(first.train_y)} train / "
          f"{len(first.val_y)} val / {len(first.test_y)} test images; sizes {space.image_sizes}")
    skipped = first.identity.get("skipped", [])
    for s in skipped[:10]:  # also when the images came from the cache, which logs nothing
        print(f"  skipped {s['path']}: {s['reason']}")
    if len(skipped) > 10:
        print(f"  skipped {len(skipped) - 10} more unreadable files (listed in each trial's data attrs)")
    for line in first.notices():  # layout, what decoding changed (at the first size), classes too small to measure
        print(f"  {line}")
    for other in list(datasets.values())[1:]:  # each size is cached on its own: say where each new one went
        for line in other.notices():
            if line.startswith("cache:"):
                print(f"  {line}")
    print(f"  budget {' or '.join(budget)}, {workers} worker(s), sampler {space.sampler.name}", flush=True)
    summary = run_search(space, datasets, opts, on_progress=_print_progress)
    print_run_summary(summary)
    if args.confirm:
        confirm(space.study, storage, args.confirm, workers, space.data.cache_dir)
    print_front(front_rows(load_existing_study(space.study, storage)))
    return 0


def print_references(references: list[dict]) -> None:
    print(f"{'baseline':<13} {'pretrained':<10} {'accuracy':>8} {'latency ms':>10} {'params':>11} {'size':>4}  weights")
    for ref in references:
        print(f"{ref['baseline']:<13} {'yes' if ref['pretrained'] else 'no':<10} {ref['accuracy']:>8.4f} "
              f"{ref['latency_ms']:>10.3f} {_fmt_int(ref['params']):>11} {ref['image_size']:>4}  "
              f"{ref['pretrained_from'] or 'trained from scratch'}")


def print_dominated(rows: list[dict], references: list[dict]) -> None:
    by_name = {ref["baseline"]: ref for ref in references}
    print("\nfront trials that dominate a reference (at least as accurate, fast and small):")
    for r in rows:
        if r["dominates"]:
            beaten = (f"{name} ({by_name[name]['latency_ms'] / r['latency_ms']:.1f}x faster, "
                      f"{by_name[name]['params'] / r['params']:.1f}x fewer params)" for name in r["dominates"])
            print(f"  trial {r['trial']}: {', '.join(beaten)}")
    if not any(r["dominates"] for r in rows):
        print("  none")


def cmd_front(args: argparse.Namespace) -> int:
    from search.study.storage import add_dominated, front_rows, load_existing_study, reference_rows

    _quiet_optuna()
    name, storage = _study_and_storage(args)
    study = load_existing_study(name, storage)
    references = reference_rows(name, storage)
    if args.references:
        if args.json:
            print(json.dumps(references, indent=2))
        elif references:
            print_references(references)
        else:
            print(f"no baselines stored for study {name!r} (castsearch baselines stores them)")
        return 0
    rows = front_rows(study)
    add_dominated(rows, references)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_front(rows)
        if references:
            print("\nreferences (castsearch baselines, not searched):")
            print_references(references)
            print_dominated(rows, references)
    return 0


def _print_baseline(result) -> None:
    ev, m = result.outcome.evaluation, result.outcome.measurement
    print(f"  {result.name:<13} {'pretrained' if result.pretrained else 'scratch':<10} accuracy {ev.accuracy:.4f}  "
          f"latency {m.latency_ms:.3f} ms  params {_fmt_int(m.params)}  MACs {_fmt_int(m.macs)}  "
          f"({result.outcome.epochs_run} epoch(s), {result.outcome.train_seconds:.0f} s; trial {result.trial_number})",
          flush=True)


def cmd_baselines(args: argparse.Namespace) -> int:
    from castmodels import get_baseline
    from search.data import load_dataset
    from search.run.references import baseline_recipe, run_baselines, select_baselines
    from search.space import load_space
    from search.study.storage import STUDIES_DIR, baselines_study_name, default_storage, redact_url

    overrides = {("data", "source"): args.data, ("study",): args.study}
    space = load_space(args.space, overrides={k: v for k, v in overrides.items() if v is not None})
    _quiet_optuna()
    image_size = args.image_size or space.image_sizes[0]
    names, left_out = select_baselines(_csv(args.only), image_size)
    storage = args.storage or default_storage(space.study)
    study_name = baselines_study_name(space.study)
    data = load_dataset(space.data.config(image_size), cache_dir=space.data.cache_dir)
    space = space.with_channels(data.in_channels)  # what channels: auto decided
    recipe = baseline_recipe(space, epochs=args.epochs, image_size=image_size)
    print(f"castsearch baselines: study {study_name!r} in {redact_url(storage)}")
    print(f"  data {data.identity['source']}: {data.num_classes} classes, {len(data.train_y)} train / "
          f"{len(data.val_y)} val / {len(data.test_y)} test images at {recipe.image_size} px, "
          f"{recipe.channels} channel(s)")
    for line in data.notices():  # layout, the channels auto chose, what decoding changed, small classes
        print(f"  {line}")
    print(f"  {recipe.epochs} epoch(s), batch {recipe.batch_size}, {recipe.optimizer} lr {recipe.lr:g}; "
          f"weights {args.weights}", flush=True)
    for name in left_out:
        print(f"  leaving out {name}: it needs --image-size {get_baseline(name).min_image_size} or more")
    artifacts = Path(args.artifacts) if args.artifacts else STUDIES_DIR / study_name
    run_baselines(space, data, names, args.weights, recipe, storage, artifacts, on_result=_print_baseline)
    return 0


def _print_confirmed_trial(record, summary: dict) -> None:
    o, t = summary["objective"], summary["test_accuracy"]
    name = f" ({record.preset})" if record.preset else ""
    print(f"  trial {record.number}{name}: {summary['split']} {summary['metric']} {_mean_sd(o['mean'], o['std'], o['ci95'])}"
          f" (search run {record.accuracy:.4f}); test accuracy {_mean_sd(t['mean'], t['std'])}, worst-class "
          f"recall {summary['test_worst_class_recall']['mean']:.3f} (mean); seeds {','.join(map(str, summary['seeds']))}", flush=True)


def confirm(study_name: str, storage: str, seeds: int, workers: int | None, cache_dir: str | None,
            top: int | None = None) -> None:
    from search.run.confirm import already_confirmed, confirm_study, trials_to_confirm
    from search.study.storage import load_existing_study

    if top is not None and top < 1:
        raise CLIError(f"--top must be at least 1, got {top}")
    study = load_existing_study(study_name, storage)
    todo = trials_to_confirm(study, top)
    workers = workers or os.cpu_count() or 1
    which = "the front" if top is None else (f"the {top} most accurate searched trials of the front, each "
                                             "preset's challenger")
    done = [r.number for r in todo if already_confirmed(study, r, seeds)]
    again = f"; trial(s) {', '.join(map(str, done))} already confirmed with these seeds" if done else ""
    print(f"confirming {len(todo)} trial(s) of study {study_name!r} ({which} and the paper's presets): "
          f"{seeds} more seeds each, {workers} worker(s){again}", flush=True)
    confirm_study(study, seeds=seeds, workers=workers, cache_dir=cache_dir, on_trial=_print_confirmed_trial,
                  top=top)


def cmd_confirm(args: argparse.Namespace) -> int:
    from search.study.storage import front_rows, load_existing_study

    _quiet_optuna()
    name, storage = _study_and_storage(args)
    confirm(name, storage, args.seeds, args.workers, None, args.top)
    print()
    print_front(front_rows(load_existing_study(name, storage)))
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from search.study.storage import load_existing_study
    from search.view.dashboard import dashboard_server

    name, storage = _study_and_storage(args)
    load_existing_study(name, storage)
    server, url = dashboard_server(storage, name, args.host, args.port, args.allow_writes)
    print(f"optuna-dashboard for study {name!r}: {url}  (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from search.study.storage import STUDIES_DIR, front_rows, load_existing_study, reference_rows
    from search.view.report import write_report

    name, storage = _study_and_storage(args)
    study = load_existing_study(name, storage)
    out = Path(args.out) if args.out else STUDIES_DIR / name / "report"
    files = write_report(study, front_rows(study), out, reference_rows(name, storage))
    print(f"report: {files.html}")
    print(f"plots:  {', '.join(p.name for p in files.plots)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from search.deploy.export import TOLERANCE, export_trial
    from search.study.storage import STUDIES_DIR, load_existing_study

    name, storage = _study_and_storage(args)
    study = load_existing_study(name, storage)
    out = Path(args.out) if args.out else STUDIES_DIR / name / "export" / f"trial-{args.trial:05d}"
    r = export_trial(study, args.trial, out, formats=_csv(args.format), quantize=args.quantize)
    print(f"exported trial {args.trial} of study {name!r} to {out}")
    for fmt, diff in r.max_abs_diff.items():
        print(f"  {fmt:<12} max abs difference to PyTorch {diff:.3g} (tolerance {TOLERANCE:g}): ok")
    for kind, t in r.latency.items():
        print(f"  {kind:<12} onnxruntime, {t['threads']} thread: {t['latency_ms']:.3f} ms per image "
              f"(IQR {t['latency_iqr_ms']:.3f}), {t['batch_latency_ms']:.2f} ms per batch of {t['batch_size']}")
    if "int8" in r.accuracy:
        print(f"  test accuracy: study {r.accuracy['study']:.4f}, onnx {r.accuracy['onnx']:.4f}, "
              f"int8 {r.accuracy['int8']:.4f}")
    print(f"  files: {', '.join(r.files)}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Exit statuses: see :mod:`search.deploy.predict`."""
    from search.deploy import predict  # onnxruntime, Pillow, numpy: no torch

    predictor = predict.Predictor(args.model_dir)
    unreadable: list = []
    predictions = predictor.predict(predict.image_files(args.images), unreadable=unreadable)
    for e in unreadable:
        print(f"castsearch: skipped {e}", file=sys.stderr)
    width = max((len(p.image) for p in predictions), default=0)
    try:
        if args.json:
            print(json.dumps([p.to_dict() for p in predictions], indent=2))
        else:
            for p in predictions:
                print(f"{p.image:<{width}}  {p.label}  {p.probability:.3f}")
        sys.stdout.flush()  # a reader that went away shows here rather than at exit
    except BrokenPipeError:
        return stdout_closed()
    return predict.UNREADABLE_STATUS if unreadable else 0


def stdout_closed() -> int:
    """The reader of stdout went away (``castsearch ... | head``): stop quietly, as Unix tools
    do, with the status a shell gives a process SIGPIPE ended (128 + 13). stdout is pointed at
    /dev/null, as Python's documentation advises, so that the flush at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


STORAGE_HELP = "SQLAlchemy URL (default sqlite:///studies/STUDY.db)"


def _study_args(p: argparse.ArgumentParser) -> None:
    """--study and --storage of the commands that read an existing study."""
    p.add_argument("--study", help="study name (default: the only one under studies/)")
    p.add_argument("--storage", help=STORAGE_HELP)


def _space_args(p: argparse.ArgumentParser, space_help: str, study_help: str) -> None:
    """SPACE, --data, --study and --storage of the commands that read a space file."""
    p.add_argument("space", metavar="SPACE", help=space_help)
    p.add_argument("--data", help="image folder, GC10-DET folder, or 'synthetic' (overrides data.source)")
    p.add_argument("--study", help=study_help)
    p.add_argument("--storage", help=STORAGE_HELP)


def _channels(text: str) -> int | str:
    """``--channels``: a count as an int, anything else as written (argparse then names the choices)."""
    return int(text) if text.isdigit() else text


def build_parser() -> argparse.ArgumentParser:
    from search.data.rules import AUTO, CHANNELS  # torch-free
    from search.training.recipe import CLASS_BALANCES, OPTIMIZERS, RECIPES, SCHEDULES  # torch-free

    p = argparse.ArgumentParser(prog="castsearch", description=(
        "Search for small, fast image classifiers for surface-defect inspection."))
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    m = sub.add_parser("models", help="list the paper's preset networks")
    m.add_argument("--json", action="store_true", help="print JSON")
    m.set_defaults(func=cmd_models)

    ca = sub.add_parser("cache", help="list or clear the decoded images castsearch keeps between runs")
    ca.add_argument("--dir", help="the cache folder (default: $CASTSEARCH_CACHE, else ~/.cache/castsearch; "
                                  "a space file's data.cache_dir when it sets one)")
    ca.add_argument("--clear", action="store_true", help="remove every file castsearch wrote there")
    ca.add_argument("--json", action="store_true", help="print the listing as JSON")
    ca.set_defaults(func=cmd_cache)

    t = sub.add_parser("train", help="train and measure one network")
    t.add_argument("arch", metavar="PRESET_OR_SPEC_JSON", help="a preset name, a spec .json file, or a layer code")
    t.add_argument("--data", default="synthetic", help="image folder, GC10-DET folder, or 'synthetic' (default)")
    t.add_argument("--image-size", type=int, default=32)
    t.add_argument("--channels", type=_channels, choices=CHANNELS, default=AUTO,
                   help="auto (default: 1 when every image is grey, else 3), 1 (grey) or 3 (RGB)")
    t.add_argument("--resize", choices=("squash", "pad", "center-crop"), default="squash",
                   help="how images are made square: squash (default), pad with black, or center-crop")
    t.add_argument("--recipe", default="default", choices=tuple(RECIPES),
                   help="named recipe the other training flags override (default: default; paper: "
                        "Adam at a constant 1e-3, nothing else)")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--optimizer", choices=OPTIMIZERS)
    t.add_argument("--lr", type=float, help="the schedule's peak learning rate")
    t.add_argument("--weight-decay", type=float)
    t.add_argument("--schedule", choices=SCHEDULES)
    t.add_argument("--warmup", type=float, help="fraction of training spent warming up, in [0, 1)")
    t.add_argument("--class-balance", choices=CLASS_BALANCES)
    t.add_argument("--enhance", help="comma-separated: blurpool,squeeze_excite,swa,label_smoothing,mixup,cutout "
                                     "('' for none; default: the recipe's)")
    t.add_argument("--augment", help="comma-separated: hflip,vflip,rotate,gaussian_blur,"
                                     "shift_scale_rotate,random_crop,brightness_contrast "
                                     "('' for none; default: the recipe's)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=0, help="torch threads for training (default: torch's)")
    t.add_argument("--out", help="output folder (default: studies/train/NAME-TIME)")
    t.add_argument("--json", action="store_true", help="print one JSON object")
    t.set_defaults(func=cmd_train)

    r = sub.add_parser("run", help="run (or resume) a search over a space file")
    _space_args(r, "search-space YAML, e.g. spaces/paper.yaml", "study name (overrides the space's)")
    r.add_argument("--trials", type=int, help="trials this run starts (overrides budget.trials)")
    r.add_argument("--timeout", help="time budget, e.g. 90s, 30m, 2h (overrides budget.timeout)")
    r.add_argument("--epochs", type=int, help="maximum epochs per trial (overrides training.epochs)")
    r.add_argument("--workers", type=int, help="trials at once, one CPU each (default: one per CPU)")
    r.add_argument("--address", help="join an existing Ray cluster at this address instead of starting one")
    r.add_argument("--seed", type=int, help="sampler seed (overrides sampler.seed)")
    r.add_argument("--artifacts", help="where trial weights go (default: beside a SQLite study database, "
                   "<its folder>/STUDY/; studies/STUDY/ for PostgreSQL)")
    r.add_argument("--confirm", type=int, metavar="K", help="then retrain the front and the presets K times "
                                                            "with other seeds (castsearch confirm)")
    r.set_defaults(func=cmd_run)

    f = sub.add_parser("front", help="show a study's Pareto front")
    _study_args(f)
    f.add_argument("--json", action="store_true", help="print a JSON list")
    f.add_argument("--references", action="store_true",
                   help="list the baselines stored by 'castsearch baselines' instead of the front")
    f.set_defaults(func=cmd_front)

    c = sub.add_parser("confirm", help="retrain the front and the paper's presets with other seeds: mean, "
                                      "spread and 95%% interval of validation and test accuracy")
    _study_args(c)
    c.add_argument("--seeds", type=int, default=3, help="runs per trial, each with a seed of its own (default 3)")
    c.add_argument("--workers", type=int, help="runs at once, one CPU each (default: one per CPU)")
    c.add_argument("--top", type=int, metavar="N",
                   help="of the front's searched trials only the N most accurate and each preset's "
                        "challenger: the most accurate one that dominates it (and the presets)")
    c.set_defaults(func=cmd_confirm)

    d = sub.add_parser("dashboard", help="serve optuna-dashboard on a study's database")
    _study_args(d)
    d.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine only)")
    d.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    d.add_argument("--allow-writes", action="store_true",
                   help="let the dashboard edit notes and trials (default: read-only; it never deletes)")
    d.set_defaults(func=cmd_dashboard)

    rp = sub.add_parser("report", help="write an HTML report of a study, with plots")
    _study_args(rp)
    rp.add_argument("--out", help="output folder (default studies/STUDY/report)")
    rp.set_defaults(func=cmd_report)

    e = sub.add_parser("export", help="export a trial's network: ONNX, TorchScript, spec, weights, model card")
    e.add_argument("--trial", type=int, required=True, help="trial number")
    _study_args(e)
    e.add_argument("--out", help="output folder (default studies/STUDY/export/trial-N)")
    e.add_argument("--format", default="onnx,torchscript", help="comma-separated: onnx,torchscript (default both)")
    e.add_argument("--quantize", choices=("int8",), help="also write an int8 ONNX model, with its test accuracy and latency")
    e.set_defaults(func=cmd_export)

    pr = sub.add_parser("predict", help="classify images with an exported model (onnxruntime only)",
                        epilog="exit status: 0 every image classified; 1 some files could not be read (each "
                               "named on stderr, the others classified); 2 bad input; 141 the output's "
                               "reader went away (| head)")
    pr.add_argument("model_dir", metavar="MODEL_DIR", help="a folder written by castsearch export")
    pr.add_argument("images", metavar="IMAGE_OR_FOLDER", nargs="+", help="image files or folders of images")
    pr.add_argument("--json", action="store_true", help="print a JSON list, one object per image")
    pr.set_defaults(func=cmd_predict)

    b = sub.add_parser("baselines", help="train and measure the paper's reference networks beside a study")
    _space_args(b, "search-space YAML whose data and training settings to use",
                "study name (overrides the space's); baselines go to STUDY-baselines")
    b.add_argument("--only", help="comma-separated baseline names (default: every baseline that takes "
                                  "the image size)")
    b.add_argument("--epochs", type=int, help="epochs per baseline (default: the space's training.epochs)")
    b.add_argument("--image-size", type=int, help="image side in px (default: the space's first image size)")
    b.add_argument("--weights", default="auto", metavar="auto|imagenet|none|PATH",
                   help="starting weights: ImageNet's when cached (auto, default), ImageNet's downloaded "
                        "if needed (imagenet), none, or a local state-dict file for one baseline")
    b.add_argument("--artifacts", help="where baseline weights go (default studies/STUDY-baselines/)")
    b.set_defaults(func=cmd_baselines)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("composer", "optuna", "ray", "torch", "onnxscript", "onnx_ir", "onnxruntime"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        status = args.func(args)
        sys.stdout.flush()  # a reader that went away (``| head``) shows here, not at exit
        return status
    except BrokenPipeError:
        return stdout_closed()
    except KeyboardInterrupt:
        print("castsearch: interrupted", file=sys.stderr)
        return 130
    except (CLIError, ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as e:
        # Bad input: a one-line message, no traceback (CASTSEARCH_DEBUG=1 shows it).
        if os.environ.get("CASTSEARCH_DEBUG"):
            raise
        print(f"castsearch: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

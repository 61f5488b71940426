"""The ``castsearch`` subcommands, one ``cmd_<name>(args) -> int`` each (the exit status).

Heavy imports (torch, composer, ray) happen inside the commands, so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from search.cli.common import (
    CLIError,
    csv,
    fmt_int,
    log,
    quiet_optuna,
    resolve_arch,
    stdout_closed,
    storage_option,
    study_and_storage,
)
from search.cli.printing import (
    live_epoch_line,
    print_baseline,
    print_confirmed_trial,
    print_dominated,
    print_front,
    print_plan,
    print_progress,
    print_references,
    print_run_summary,
)


def cmd_cache(args: argparse.Namespace) -> int:
    import datetime

    from search.data import cache as tensorcache  # torch-free
    from search.trial import reuse  # torch-free

    folder = Path(args.dir).expanduser() if args.dir else tensorcache.default_cache_dir()
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"cache folder is a file: {folder}")
    stored = folder / reuse.FOLDER  # finished trainings kept for reuse (search.trial.reuse)
    if args.clear:
        removed, freed, left = tensorcache.clear(folder)
        trainings_removed, trainings_freed = reuse.clear(stored)
        print(f"removed {removed + trainings_removed} file(s), {tensorcache.human_bytes(freed + trainings_freed)}, "
              f"from {folder}")
        if left:
            print(f"  left {len(left)} file(s) castsearch did not write: "
                  + ", ".join(p.name for p in left[:5]) + (" ..." if len(left) > 5 else ""))
        return 0
    contents = tensorcache.scan(folder)
    trainings, trainings_bytes = reuse.scan(stored)
    if args.json:
        print(json.dumps({"folder": str(folder), "bytes": contents.nbytes, "datasets": [
            {"file": str(e.path), "name": e.name, "source": e.source, "image_size": e.image_size,
             "channels": e.channels, "bytes": e.nbytes,
             "modified": datetime.datetime.fromtimestamp(e.modified, datetime.UTC).isoformat()}
            for e in contents.entries], "other_files": [str(p) for p in contents.other],
            "foreign_files": [str(p) for p in contents.foreign],
            "trainings": {"folder": str(stored), "count": trainings, "bytes": trainings_bytes}}, indent=2))
        return 0
    if not contents.entries and not contents.other and not trainings:
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
    if line := reuse.describe(stored):
        print(line)
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
        print(f"{r['name']:<17} {fmt_int(r['params']):>9} {fmt_int(r['macs']):>11}  {r['code']}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train one network. The validation figures a search would rank it by (``val_*``) come
    first, the test figures (``test_*``) after, named alike in the table and in ``--json``."""
    import torch

    from search.data import DataConfig, load_dataset
    from search.training.recipe import TrainRecipe
    from search.trial.pipeline import run_candidate

    arch = resolve_arch(args.arch)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset(DataConfig(source=args.data, image_size=args.image_size, channels=args.channels,
                                   resize=args.resize))
    flags = {"batch_size": args.batch_size, "optimizer": args.optimizer, "lr": args.lr,
             "weight_decay": args.weight_decay, "schedule": args.schedule, "warmup": args.warmup,
             "class_balance": args.class_balance,
             "enhancements": csv(args.enhance) if args.enhance is not None else None,
             "augmentations": csv(args.augment) if args.augment is not None else None}
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
        "arch": name, "code": arch.code(),
        "val_accuracy": val.accuracy, "val_balanced_accuracy": val.balanced_accuracy, "val_macro_f1": val.macro_f1,
        "test_accuracy": ev.accuracy, "test_balanced_accuracy": ev.balanced_accuracy, "test_macro_f1": ev.macro_f1,
        "test_per_class_recall": ev.per_class_recall,
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
    for split, e in (("val", val), ("test", ev)):
        print(f"  {split + '_accuracy':<15} {e.accuracy:.4f}   {split}_balanced_accuracy {e.balanced_accuracy:.4f}   "
              f"{split}_macro_f1 {e.macro_f1:.4f}")
    width = max(len(c) for c in ev.per_class_recall)
    print("  test_per_class_recall")
    for cls, rec in ev.per_class_recall.items():
        print(f"    {cls:<{width}}  {rec:.3f}")
    print(f"  params          {fmt_int(m.params)}   MACs {fmt_int(m.macs)}")
    print(f"  latency         {m.latency_ms:.3f} ms (IQR {m.latency_iqr_ms:.3f}) per image, "
          f"{m.batch_latency_ms:.2f} ms per batch of {m.batch_size}, {m.threads} thread(s), {m.runtime}; "
          f"torch eager {m.eager_latency_ms:.3f} ms per image")
    print(f"  training        {outcome.epochs_run} epoch{'' if outcome.epochs_run == 1 else 's'}, "
          f"{outcome.train_seconds:.1f} s, "
          f"{outcome.images_per_second:.0f} images/s")
    print(f"  written to      {out}")
    return 0

def cmd_run(args: argparse.Namespace) -> int:
    from search.data import load_sizes
    from search.run.runner import RunOptions, check_options, run_search
    from search.space import load_space
    from search.study.storage import default_storage, front_rows, load_existing_study, redact_url

    overrides = {
        ("data", "source"): args.data, ("study",): args.study, ("budget", "trials"): args.trials,
        ("budget", "timeout"): args.timeout, ("training", "epochs"): args.epochs, ("sampler", "seed"): args.seed,
        ("resources", "cpus_per_trial"): args.cpus_per_trial, ("resources", "gpus_per_trial"): args.gpus_per_trial,
    }
    space = load_space(args.space, overrides={k: v for k, v in overrides.items() if v is not None})
    quiet_optuna()
    workers = args.workers if args.workers is not None else os.cpu_count() or 1
    if space.budget.trials is None and space.budget.timeout_s is None:
        raise CLIError(f"{args.space}: the search needs a budget: budget.trials or budget.timeout (or --trials / --timeout)")
    storage = storage_option(args) or default_storage(space.study)
    opts = RunOptions(study_name=space.study, storage=storage, trials=space.budget.trials,
                      timeout_s=space.budget.timeout_s, workers=workers, address=args.address,
                      cpus_per_trial=space.cpus_per_trial, gpus_per_trial=space.gpus_per_trial,
                      artifacts=Path(args.artifacts) if args.artifacts else None,
                      quiet_retime=space.retime_front)
    check_options(opts)  # before any data is read, study written or Ray started
    datasets = load_sizes(space)
    first = next(iter(datasets.values()))
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
    summary = run_search(space, datasets, opts, on_progress=print_progress, on_start=print_plan)
    print_run_summary(summary)
    if args.confirm:
        _confirm(space.study, storage, args.confirm, workers, space.data.cache_dir)
    print_front(front_rows(load_existing_study(space.study, storage)))
    return 0

def cmd_front(args: argparse.Namespace) -> int:
    from search.study.front import format_headline, headline
    from search.study.storage import add_dominated, front_rows, load_existing_study, reference_rows

    quiet_optuna()
    name, storage = study_and_storage(args)
    study = load_existing_study(name, storage)
    if args.headline:
        found = headline(study)
        print(json.dumps(found.to_dict(), indent=2) if args.json else "\n".join(format_headline(found)))
        return 0
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
        print()
        print("\n".join(format_headline(headline(study))))
        if references:
            print("\nreferences (castsearch baselines, not searched):")
            print_references(references)
            print_dominated(rows, references)
    return 0


def cmd_baselines(args: argparse.Namespace) -> int:
    from castmodels import get_baseline
    from search.data import load_dataset
    from search.run.references import baseline_recipe, run_baselines, select_baselines
    from search.space import load_space
    from search.study.storage import STUDIES_DIR, baselines_study_name, default_storage, redact_url

    overrides = {("data", "source"): args.data, ("study",): args.study}
    space = load_space(args.space, overrides={k: v for k, v in overrides.items() if v is not None})
    quiet_optuna()
    image_size = args.image_size or space.image_sizes[0]
    names, left_out = select_baselines(csv(args.only), image_size)
    storage = storage_option(args) or default_storage(space.study)
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
    run_baselines(space, data, names, args.weights, recipe, storage, artifacts, on_result=print_baseline)
    return 0

def _confirm(study_name: str, storage: str, seeds: int, workers: int | None, cache_dir: str | None,
             top: int | None = None) -> None:
    """:func:`search.run.confirm.confirm`, saying what it retrains and each trial's figures as they come."""
    from search.run.confirm import confirm

    confirm(study_name, storage, seeds, workers, cache_dir, top,
            on_start=lambda line: print(line, flush=True), on_trial=print_confirmed_trial)


def cmd_confirm(args: argparse.Namespace) -> int:
    from search.study.storage import front_rows, load_existing_study

    quiet_optuna()
    name, storage = study_and_storage(args)
    _confirm(name, storage, args.seeds, args.workers, None, args.top)
    print()
    print_front(front_rows(load_existing_study(name, storage)))
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from search.study.storage import load_existing_study
    from search.view.dashboard import dashboard_server

    name, storage = study_and_storage(args)
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

    name, storage = study_and_storage(args)
    study = load_existing_study(name, storage)
    out = Path(args.out) if args.out else STUDIES_DIR / name / "report"
    files = write_report(study, front_rows(study), out, reference_rows(name, storage))
    print(f"report: {files.html}")
    print(f"plots:  {', '.join(p.name for p in files.plots)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from search.deploy.export import TOLERANCE, export_trial
    from search.study.storage import STUDIES_DIR, load_existing_study

    name, storage = study_and_storage(args)
    study = load_existing_study(name, storage)
    out = Path(args.out) if args.out else STUDIES_DIR / name / "export" / f"trial-{args.trial:05d}"
    r = export_trial(study, args.trial, out, formats=csv(args.format), quantize=args.quantize)
    print(f"exported trial {args.trial} of study {name!r} to {out}")
    for fmt, diff in r.max_abs_diff.items():
        print(f"  {fmt:<12} max abs difference to PyTorch {diff:.3g} (tolerance {TOLERANCE:g}): ok")
    for kind, t in r.latency.items():
        print(f"  {kind:<12} onnxruntime, {t['threads']} thread: {t['latency_ms']:.3f} ms per image "
              f"(IQR {t['latency_iqr_ms']:.3f}), {t['batch_latency_ms']:.2f} ms per batch of {t['batch_size']}")
    if "int8" in r.accuracy:
        print(f"  test_accuracy: study {r.accuracy['study']:.4f}, onnx {r.accuracy['onnx']:.4f}, "
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


"""The ``castsearch`` argument parser: every command, flag and default, each with its help
(``docs/cli.md`` is generated from it by :mod:`search.cli.reference`). Torch-free."""

from __future__ import annotations

import argparse

from search.cli import commands

STORAGE_HELP = ("SQLAlchemy URL (default: $CASTSEARCH_STORAGE, else sqlite:///studies/STUDY.db); keep a "
                "password out of it: libpq reads PGPASSWORD and ~/.pgpass")


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


def _command(sub, name: str, func, summary: str, description: str, **kw) -> argparse.ArgumentParser:
    """A subcommand: ``summary`` in ``castsearch --help``'s list, ``description`` atop its own help."""
    c = sub.add_parser(name, help=summary, description=description, **kw)
    c.set_defaults(func=func)
    return c


def build_parser() -> argparse.ArgumentParser:
    from search.data.rules import AUTO, CHANNELS  # torch-free
    from search.training.recipe import CLASS_BALANCES, OPTIMIZERS, RECIPES, SCHEDULES  # torch-free

    p = argparse.ArgumentParser(prog="castsearch", description=(
        "Search for small, fast image classifiers for surface-defect inspection."))
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    m = _command(sub, "models", commands.cmd_models, "list the paper's preset networks",
                 "List the paper's preset networks: parameters, multiply-accumulates at 32 px and layer code "
                 "(3 channels, 10 classes).")
    m.add_argument("--json", action="store_true", help="print JSON")

    ca = _command(sub, "cache", commands.cmd_cache,
                  "list or clear the decoded images and finished trainings castsearch keeps between runs",
                  "List the decoded datasets castsearch keeps between runs (size, image side, channels, source) "
                  "and the finished trainings it reuses (in trainings/: a preset or seed trained once on the same "
                  "data and recipe is not trained again by any study), or remove them with --clear; a later run "
                  "decodes its images and trains its networks again.")
    ca.add_argument("--dir", help="the cache folder (default: $CASTSEARCH_CACHE, else ~/.cache/castsearch; "
                                  "a space file's data.cache_dir when it sets one)")
    ca.add_argument("--clear", action="store_true", help="remove every file castsearch wrote there")
    ca.add_argument("--json", action="store_true", help="print the listing as JSON")

    t = _command(sub, "train", commands.cmd_train, "train and measure one network",
                 "Train one network, evaluate it on the validation split (what a search ranks by; its figures "
                 "are named val_...) and the test split (test_...), and measure its ONNX Runtime CPU latency "
                 "and parameters. Writes "
                 "model.pt, spec.json, recipe.json and metrics.json to --out.")
    t.add_argument("arch", metavar="PRESET_OR_SPEC_JSON", help="a preset name, a spec .json file, or a layer code")
    t.add_argument("--data", default="synthetic", help="image folder, GC10-DET folder, or 'synthetic' (default)")
    t.add_argument("--image-size", type=int, default=32, help="image side in px (default 32)")
    t.add_argument("--channels", type=_channels, choices=CHANNELS, default=AUTO,
                   help="auto (default: 1 when every image is grey, else 3), 1 (grey) or 3 (RGB)")
    t.add_argument("--resize", choices=("squash", "pad", "center-crop"), default="squash",
                   help="how images are made square: squash (default), pad with black, or center-crop")
    t.add_argument("--recipe", default="default", choices=tuple(RECIPES),
                   help="named recipe the other training flags override (default: default, AdamW with a "
                        "one-cycle schedule; paper: Adam at a constant 1e-3, nothing else)")
    t.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    t.add_argument("--batch-size", type=int, help="images per batch (default: the recipe's)")
    t.add_argument("--optimizer", choices=OPTIMIZERS, help="optimizer (default: the recipe's)")
    t.add_argument("--lr", type=float, help="the schedule's peak learning rate (default: the recipe's)")
    t.add_argument("--weight-decay", type=float, help="weight decay (default: the recipe's)")
    t.add_argument("--schedule", choices=SCHEDULES, help="learning-rate schedule (default: the recipe's)")
    t.add_argument("--warmup", type=float, help="fraction of training spent warming up, in [0, 1) "
                                                "(default: the recipe's)")
    t.add_argument("--class-balance", choices=CLASS_BALANCES,
                   help="weighted_loss: inverse class frequency; sampler: class-balanced batches "
                        "(default: the recipe's: weighted_loss in default, none in paper)")
    t.add_argument("--enhance", help="comma-separated: blurpool,squeeze_excite,swa,label_smoothing,mixup,cutout "
                                     "('' for none; default: the recipe's)")
    t.add_argument("--augment", help="comma-separated: hflip,vflip,rotate,gaussian_blur,"
                                     "shift_scale_rotate,random_crop,brightness_contrast "
                                     "('' for none; default: the recipe's)")
    t.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    t.add_argument("--threads", type=int, default=0, help="torch threads for training (default: torch's)")
    t.add_argument("--out", help="output folder (default: studies/train/NAME-TIME)")
    t.add_argument("--json", action="store_true", help="print one JSON object")

    r = _command(sub, "run", commands.cmd_run, "run (or resume) a search over a space file",
                 "Run a search over a space file, or resume its study: Ray Tune workers train sampled "
                 "networks, Optuna maximises their validation objective (balanced accuracy by default) "
                 "against measured latency and parameters. "
                 "Prints progress, a summary and the Pareto front.")
    _space_args(r, "search-space YAML, e.g. spaces/paper.yaml", "study name (overrides the space's)")
    r.add_argument("--trials", type=int, help="trials this run starts (overrides budget.trials)")
    r.add_argument("--timeout", help="time budget, e.g. 90s, 30m, 2h (overrides budget.timeout)")
    r.add_argument("--epochs", type=int, help="maximum epochs per trial (overrides training.epochs)")
    r.add_argument("--workers", type=int, help="trials at once, one CPU each (default: one per CPU)")
    r.add_argument("--cpus-per-trial", type=float, metavar="N",
                   help="CPUs Ray gives each trial (overrides resources.cpus_per_trial; default 1)")
    r.add_argument("--gpus-per-trial", type=float, metavar="F",
                   help="GPUs Ray gives each trial, a fraction to share one: 0.25 runs four trials per GPU "
                        "(overrides resources.gpus_per_trial; default 0, train on the CPUs)")
    r.add_argument("--address", help="join an existing Ray cluster at this address instead of starting one")
    r.add_argument("--seed", type=int, help="sampler seed (overrides sampler.seed)")
    r.add_argument("--artifacts", help="where trial weights go (default: beside a SQLite study database, "
                   "<its folder>/STUDY/; studies/STUDY/ for PostgreSQL)")
    r.add_argument("--confirm", type=int, metavar="K", help="then retrain the front and the presets K times "
                                                            "with other seeds (castsearch confirm)")

    f = _command(sub, "front", commands.cmd_front, "show a study's Pareto front",
                 "Show a study's Pareto front: the validation objective each trial was ranked by, its test "
                 "figures (never ranked by), latency and parameters; with the confirmed figures where "
                 "castsearch confirm retrained it, and the baselines it dominates; then which of the paper's "
                 "presets a searched network dominates, on single figures and on confirmed means.")
    _study_args(f)
    f.add_argument("--json", action="store_true", help="print JSON: the front's rows, or with --headline the headline")
    f.add_argument("--headline", action="store_true",
                   help="print only which presets a searched network (not a preset, not a seeded nearest point) "
                        "dominates, on single figures and on confirmed means")
    f.add_argument("--references", action="store_true",
                   help="list the baselines stored by 'castsearch baselines' instead of the front")

    c = _command(sub, "confirm", commands.cmd_confirm,
                 "retrain the front and the paper's presets with other seeds: mean, "
                 "spread and 95%% interval of validation and test accuracy",
                 "Retrain every front trial and the paper's presets with other seeds and store the mean, "
                 "standard deviation and 95% interval of the validation objective, the test accuracy and "
                 "the test worst-class recall; a trial already confirmed with these seeds is not retrained.")
    _study_args(c)
    c.add_argument("--seeds", type=int, default=3, help="runs per trial, each with a seed of its own (default 3)")
    c.add_argument("--workers", type=int, help="runs at once, one CPU each (default: one per CPU)")
    c.add_argument("--top", type=int, metavar="N",
                   help="of the front's searched trials only the N most accurate and each preset's "
                        "challenger: the most accurate one that dominates it (and the presets)")

    d = _command(sub, "dashboard", commands.cmd_dashboard, "serve optuna-dashboard on a study's database",
                 "Serve optuna-dashboard on a study's database, read-only unless --allow-writes; Ctrl-C stops it.")
    _study_args(d)
    d.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine only)")
    d.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    d.add_argument("--allow-writes", action="store_true",
                   help="let the dashboard save study and trial notes, nothing else (default: read-only); refused with a --host other than this machine")

    rp = _command(sub, "report", commands.cmd_report, "write an HTML report of a study, with plots",
                  "Write a self-contained HTML report of a study: the front table, which of the paper's presets "
                  "a searched network dominates, the baselines, the machines and library versions, and PNG "
                  "plots (the front, the hypervolume over trials, recall and confusion of chosen networks).")
    _study_args(rp)
    rp.add_argument("--out", help="output folder (default studies/STUDY/report)")

    e = _command(sub, "export", commands.cmd_export,
                 "export a trial's network: ONNX, TorchScript, spec, weights, model card",
                 "Export a trial's network: ONNX and TorchScript models checked against PyTorch, the spec, "
                 "the weights, card.json and MODEL_CARD.md with the study's figures (val_... and test_...) and "
                 "the exported models' measured latency.")
    e.add_argument("--trial", type=int, required=True, help="trial number")
    _study_args(e)
    e.add_argument("--out", help="output folder (default studies/STUDY/export/trial-N)")
    e.add_argument("--format", default="onnx,torchscript", help="comma-separated: onnx,torchscript (default both)")
    e.add_argument("--quantize", choices=("int8",), help="also write an int8 ONNX model, with its test accuracy and latency")

    pr = _command(sub, "predict", commands.cmd_predict, "classify images with an exported model (onnxruntime only)",
                  "Classify images with a model written by castsearch export, with onnxruntime only (no torch): "
                  "one line per image, its label and probability.",
                  epilog="exit status: 0 every image classified; 1 some files could not be read (each "
                         "named on stderr, the others classified); 2 bad input; 141 the output's "
                         "reader went away (| head)")
    pr.add_argument("model_dir", metavar="MODEL_DIR", help="a folder written by castsearch export")
    pr.add_argument("images", metavar="IMAGE_OR_FOLDER", nargs="+", help="image files or folders of images")
    pr.add_argument("--json", action="store_true", help="print a JSON list, one object per image")

    b = _command(sub, "baselines", commands.cmd_baselines,
                 "train and measure the paper's reference networks beside a study",
                 "Train and measure the paper's reference networks (pretrained where weights are available) on "
                 "a space's data and training settings, and store them in the study STUDY-baselines, which "
                 "front and report compare against.")
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
    return p

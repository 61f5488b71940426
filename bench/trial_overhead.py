"""Per-trial overhead of Ray + Optuna + the study database against the work of a trial,
from one real search run.

    python bench/trial_overhead.py [--data PATH] [--trials 8] [--epochs 2] [--workers 2]

For each trained trial the study records when it was asked and told (driver clock) and the
worker records how long measuring, training, evaluating and saving took. The rest of a
trial's wall time is the framework's: Ray scheduling and result transport, actor start and
imports, dataset hand-over, Optuna ask/tell and SQL writes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from optuna.trial import TrialState  # noqa: E402

from bench.common import DATASETS, REPO, header, median_iqr, table  # noqa: E402
from search.data import load_sizes  # noqa: E402
from search.run.runner import RunOptions, run_search  # noqa: E402
from search.space import load_space  # noqa: E402
from search.study.record import TrialRecord  # noqa: E402
from search.study.storage import load_existing_study  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--space", default=str(REPO / "spaces" / "paper.yaml"))
    p.add_argument("--data", default=str(DATASETS / "neu-cls"))
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()

    space = load_space(args.space, overrides={("data", "source"): args.data, ("training", "epochs"): args.epochs,
                                              ("study",): "overhead"})
    datasets = load_sizes(space)  # as castsearch run loads them (resize, cache, channels: auto)
    with tempfile.TemporaryDirectory() as tmp:
        storage = f"sqlite:///{tmp}/overhead.db"
        t0 = time.perf_counter()
        summary = run_search(space, datasets, RunOptions(
            study_name="overhead", storage=storage, trials=args.trials, timeout_s=None,
            workers=args.workers, artifacts=Path(tmp) / "art", quiet_retime=False))
        elapsed = time.perf_counter() - t0
        trials = [t for t in load_existing_study("overhead", storage).trials
                  if t.state == TrialState.COMPLETE and TrialRecord.read(t).trained]

    rows, overheads, walls, works = [], [], [], []
    for t in trials:
        record = TrialRecord.read(t)
        wall = (t.datetime_complete - t.datetime_start).total_seconds()
        parts = record.worker_seconds
        work = sum(parts.values())
        overheads.append(wall - work)
        walls.append(wall)
        works.append(work)
        rows.append([t.number, record.preset or record.arch_code[:40],
                     parts["measure"], parts["train"],
                     parts["evaluate"] + parts["save"], wall, wall - work,
                     f"{100 * (wall - work) / wall:.0f}%"])
    (o, o_iqr), (w, _) = median_iqr(overheads), median_iqr(walls)
    print(header("Per-trial overhead of Ray + Optuna + SQLite"))
    print(f"Search: `{Path(args.space).name}` on {Path(args.data).name}, {args.trials} trials, "
          f"{args.epochs} epochs max, {args.workers} workers, 1 torch thread each, local Ray started by "
          f"the run. Completed (trained) trials only; seconds.\n")
    print(table(["trial", "network", "measure (params, MACs, latency)", "train", "evaluate + save", "wall (ask to tell)",
                 "overhead", "overhead share"], rows))
    print(f"Median overhead per trial {o:.2f} s (IQR {o_iqr:.2f}) of a median trial wall time of "
          f"{w:.1f} s ({100 * o / w:.0f}%). Whole run: {elapsed:.0f} s for {summary.finished} finished trials "
          f"(Ray start-up and shutdown included); the sum of trial work divided by {args.workers} workers "
          f"is {sum(works) / args.workers:.0f} s.\n")


if __name__ == "__main__":
    main()

"""The quiet re-timing of a stored study's front, by protocol, side by side.

    python bench/retime_protocols.py --storage sqlite:///x.db --study NAME [--reps 8] [--gap 30]

The study is copied to a temporary database (the original is not changed) and its front is
re-timed with search.run.runs.retime_study_front (search.latency.retime.retime_front) ``--reps`` times under each protocol, alternating:

- ``2 passes, back to back``: what castsearch did before (a short front's two passes seconds
  apart);
- ``N passes, G s apart``: what it does now (search.latency.retime.RETIME_PASSES passes, a network's
  timings in successive passes at least ``--gap`` seconds apart).

For each protocol: how often a re-timed latency is off the trial's latency objective by more
than 15% (the objective's own timings can be slow too), and how often it is over the lowest
latency any re-timing or the objective found for that network by more than 15% (a re-timing
caught in one of the host's slow stretches). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import header, table  # noqa: E402

OFF = 0.15


def main() -> None:
    from search.latency.retime import RETIME_GAP_S, RETIME_PASSES

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--storage", required=True)
    p.add_argument("--study", required=True)
    p.add_argument("--reps", type=int, default=8)
    p.add_argument("--gap", type=float, default=RETIME_GAP_S)
    args = p.parse_args()
    if args.reps < 1:
        raise SystemExit(f"--reps must be >= 1, got {args.reps}")
    warnings.filterwarnings("ignore")

    import optuna

    from search.run import runs
    from search.study import storage as studylib

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    protocols = {"2 passes, back to back": {"passes": 2, "gap_s": 0.0},
                 f"{RETIME_PASSES} passes, {args.gap:g} s apart": {"passes": RETIME_PASSES, "gap_s": args.gap}}
    with tempfile.TemporaryDirectory() as tmp:
        copy = f"sqlite:///{tmp}/copy.db"
        try:
            optuna.copy_study(from_study_name=args.study, from_storage=args.storage, to_storage=copy)
        except KeyError as e:
            raise SystemExit(f"--study: no study {args.study!r} in {args.storage}") from e
        study = optuna.load_study(study_name=args.study, storage=copy)
        front = studylib.pareto_front(study)
        if not front:
            raise SystemExit(f"study {args.study!r} has no front to re-time")
        objective = {t.number: t.values[1] for t in front}
        rows, retimed = [], {name: [] for name in protocols}
        for rep in range(args.reps):
            for name, protocol in protocols.items():
                start = time.time()
                runs.retime_study_front(study, None, **protocol)
                got = {n: studylib.retimed(study, n)["latency_ms"] for n in objective}
                retimed[name].append(got)
                rows.append([rep + 1, name, f"{time.time() - start:.0f}",
                             *(f"{got[n]:.3f} ({got[n] / objective[n]:.2f})" for n in objective)])
    lowest = {n: min([objective[n], *(r[n] for rs in retimed.values() for r in rs)]) for n in objective}
    summary = []
    for name, rs in retimed.items():
        vs_objective = [r[n] / objective[n] for r in rs for n in objective]
        vs_lowest = [r[n] / lowest[n] for r in rs for n in objective]
        summary.append([name, len(vs_objective), f"{min(vs_objective):.2f}-{max(vs_objective):.2f}",
                        f"{sum(abs(x - 1) > OFF for x in vs_objective)}", f"{max(vs_lowest):.2f}",
                        f"{sum(x > 1 + OFF for x in vs_lowest)}"])
    print(header(f"The front's quiet re-timing by protocol ({args.study})"))
    print(f"{len(front)} front trials of {args.study} (#{', #'.join(map(str, objective))}), re-timed {args.reps} "
          f"times by each protocol, alternating, on a copy of the study. Latency objectives (ms): "
          + ", ".join(f"#{n} {v:.3f}" for n, v in objective.items()) + "; the lowest any timing found: "
          + ", ".join(f"#{n} {v:.3f}" for n, v in lowest.items()) + ".\n")
    print(table(["protocol", "re-timed latencies", "re-timed / objective", f"off the objective by > {OFF:.0%}",
                 "highest re-timed / lowest found", f"over the lowest found by > {OFF:.0%}"], summary))
    print(table(["rep", "protocol", "seconds", *(f"#{n} ms (/ objective)" for n in objective)], rows))


if __name__ == "__main__":
    main()

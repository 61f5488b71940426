"""Time stored trials again with castsearch's current latency protocol, against what the study holds.

    python bench/retime_trials.py --storage sqlite:///x.db --trials STUDY:NUMBER [STUDY:NUMBER ...]
                                  [--reference STUDY:NUMBER] [--passes 2] [--gap 60]

Each trial's network is rebuilt from the study (spec, surgery, input, classes) and timed in
its runtime on one thread: ``--passes`` passes over all of them, ``--gap`` seconds apart
(the core kept busy), each pass a full measurement (search.latency.measure.measure, three
single-image timings) and a re-check (search.latency.measure.time_single, three more). The table
gives the study's latency objective, its quiet re-timing (``retimed:<n>``, if any), the
lowest of the new timings and, with ``--reference``, that as a multiple of the reference
trial's lowest. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import header, table  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--storage", required=True)
    p.add_argument("--trials", nargs="+", required=True, help="STUDY:NUMBER of each trial to time")
    p.add_argument("--reference", help="STUDY:NUMBER of the trial the others are compared with")
    p.add_argument("--passes", type=int, default=2)
    p.add_argument("--gap", type=float, default=60.0)
    args = p.parse_args()
    warnings.filterwarnings("ignore")

    import optuna

    from search.latency.measure import busy_wait, export_for_timing, measure, time_single
    from search.study import storage as studylib
    from search.study.record import TrialRecord

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    studies: dict[str, optuna.Study] = {}
    picks = args.trials + ([args.reference] if args.reference and args.reference not in args.trials else [])
    nets = []
    for pick in picks:
        name, _, number = pick.rpartition(":")
        if not name or not number.isdigit():
            raise SystemExit(f"--trials/--reference: {pick!r} is not STUDY:NUMBER")
        if name not in studies:
            studies[name] = optuna.load_study(study_name=name, storage=args.storage)
        trial = studies[name].trials[int(number)]
        if trial.values is None:
            raise SystemExit(f"{pick}: trial {number} of {name} has no objective values ({trial.state.name})")
        record = TrialRecord.read(trial)
        model, shape = record.build_network(), record.input_shape()
        onnx = export_for_timing(model, shape) if record.runtime == "onnxruntime" else None
        nets.append((pick, studies[name], trial, record, model, shape, onnx))
    timings: dict[str, list[float]] = {pick: [] for pick, *_ in nets}
    for i in range(args.passes):
        if i:
            busy_wait(args.gap)
        for pick, _, _, record, model, shape, onnx in nets:
            m = measure(model, shape, threads=1, runtime=record.runtime, onnx=onnx)
            again = time_single(model, shape, threads=1, runtime=record.runtime, onnx=onnx)
            timings[pick] += [*m.latency_timings_ms, *again.spread_ms]
    reference = min(timings[args.reference]) if args.reference else None
    rows = []
    for pick, study, trial, record, *_ in nets:
        quiet = studylib.retimed(study, trial.number)
        lowest = min(timings[pick])
        rows.append([pick, record.preset or f"{int(trial.values[2]):,} params", f"{trial.values[1]:.3f}",
                     f"{quiet['latency_ms']:.3f}" if quiet else "-", f"{lowest:.3f}",
                     f"{lowest / reference:.2f}" if reference else "-",
                     ", ".join(f"{t:.3f}" for t in timings[pick])])
    print(header("Stored trials timed again with the current protocol"))
    print(f"{args.passes} passes {args.gap:.0f} s apart, each a full measurement and a re-check: "
          f"{len(next(iter(timings.values())))} single-image timings per network, one thread, in each trial's "
          f"runtime ({record.runtime}). Latencies in ms.\n")
    print(table(["trial", "network", "objective in the study", "quiet re-timing in the study", "lowest now",
                 f"x {args.reference}" if args.reference else "x reference", "timings now"], rows))


if __name__ == "__main__":
    main()

"""What ``castsearch`` prints: the live epoch line of training, the search's progress and
summary, the front, the confirmed figures, the baselines. Torch-free; libraries log, these print."""

from __future__ import annotations

import contextlib
import logging

from search.cli.common import fmt_int, fmt_time


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

def print_progress(p) -> None:
    budget = f"/{p.run_budget}" if p.run_budget is not None else ""
    best = f"{p.best_accuracy:.4f}" if p.best_accuracy is not None else "-"
    left = f" · {fmt_time(p.time_left_s)} left" if p.time_left_s is not None else ""
    floor = f" · below floor {p.below_floor}" if p.below_floor else ""
    print(f"  [{p.run_finished}{budget} this run] complete {p.complete} · running {p.running} · "
          f"pruned {p.pruned} · infeasible {p.infeasible}{floor} · failed {p.failed} · invalid {p.invalid} · "
          f"best accuracy {best} · "
          f"front {p.front_size} · {fmt_time(p.elapsed_s)} elapsed{left}", flush=True)


def format_plan(plan) -> str:
    """What a run will do with its budget (:class:`search.run.runner.RunPlan`), in one line."""
    workers = f"{plan.workers} worker{'' if plan.workers == 1 else 's'}"
    if plan.gpus_per_trial:
        workers += f", {plan.gpus_per_trial:g} GPU per trial (up to {1 / plan.gpus_per_trial:g} per GPU)" \
            if plan.gpus_per_trial < 1 else f", {plan.gpus_per_trial:g} GPU(s) per trial"
    if plan.timeout_s is None:
        budget = f"{plan.trials} trials on {workers}"
    else:
        cpu = plan.cpu_hours
        cpu = f"{cpu:.1f} CPU-hour{'' if cpu == 1 else 's'}" if cpu >= 1 else f"{cpu * 60:.0f} CPU-minutes"
        trials = f"{plan.trials} trials or " if plan.trials is not None else ""
        budget = f"{trials}{fmt_time(plan.timeout_s)} on {workers} ({cpu})"
    steps = []
    if plan.presets:
        seeds = f" ({plan.preset_seeds} seeds each)" if plan.preset_seeds > 1 else ""
        sizes = len(plan.image_sizes)
        at = f" at each of {', '.join(map(str, plan.image_sizes))} px" if sizes > 1 and plan.presets % sizes == 0 else ""
        count = plan.presets // sizes if at else plan.presets
        steps.append(f"the paper's {count} preset{'' if count == 1 else 's'}{at} first{seeds}")
    if plan.nearest:
        points = f"{plan.nearest} point{'' if plan.nearest == 1 else 's'} nearest to"
        steps.append(f"then {points} them" if steps else f"the space's {points} the presets first")
    if plan.trials is None:
        until = "the budget is spent"
    else:
        until = f"{plan.trials} trials have finished" + (" or the time is spent" if plan.timeout_s is not None else "")
    steps.append(f"{'then ' if steps else ''}the {plan.sampler} sampler until {until}")
    line = f"budget {budget}: {', '.join(steps)}"
    if plan.retime_s:
        inside = ", inside the budget" if plan.timeout_s is not None else ""
        line += (f"; the front is re-timed at the end (about {plan.retime_s:.0f} s for a front of {plan.front}"
                 f"{inside})")
    if plan.search_s is not None and plan.search_s <= 0:
        line += "; warning: that leaves the search no time: give a longer --timeout"
    return line


def print_plan(plan) -> None:
    print(f"  {format_plan(plan)}", flush=True)


def print_run_summary(summary) -> None:
    """How the run ended: what became of its sampled networks, what the front holds, which
    presets a searched network beat, and the time used against the budget."""
    resumed = f" (resumed run {summary.resumed_from})" if summary.resumed_from else ""
    budget = f" of {fmt_time(summary.timeout_s)}" if summary.timeout_s else ""
    print(f"run {summary.run_id}{resumed}: {summary.finished} trials finished in "
          f"{fmt_time(summary.elapsed_s)}{budget}")
    o = summary.outcome
    if o is None:
        return
    floor = f" · {o.below_floor} trained below the accuracy floor" if o.below_floor else ""
    sampled = f" ({o.sampled_reused} reused)" if o.sampled_reused else ""
    presets = f" ({o.presets_reused} reused)" if o.presets_reused else ""
    cut = f" · {o.cut} cut by the time budget" if o.cut else ""
    print(f"  sampled networks: {o.trained} trained{sampled}{floor} · {o.infeasible} infeasible · {o.invalid} "
          f"invalid · {o.pruned} stopped early · {o.failed} failed{cut}; presets trained {o.presets_trained}{presets}")
    if o.reused:
        print(f"  reused: {'; '.join(f'{name} {reused_from(runs)}' for name, runs in o.reused.items())}")
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

def reused_from(reused: list[dict]) -> str:
    """``3 seeds from study paper-a`` (``, 1 seed from study b`` per further study): where the
    reused trainings of one network were trained."""
    by_study: dict[str | None, int] = {}
    for run in reused:
        by_study[run.get("study")] = by_study.get(run.get("study"), 0) + 1
    return ", ".join(f"{n} seed{'' if n == 1 else 's'} from " + (f"study {study}" if study else "an earlier training")
                     for study, n in by_study.items())


def print_front(rows: list[dict]) -> None:
    """The front's rows (:func:`search.study.front.front_rows`) as a table, columns named as in
    ``front --json``: the objective (``val_<metric>``), then the test figures, never ranked by."""
    if not rows:
        print("the front is empty: no feasible trial has completed yet")
        return
    objective, split = rows[0]["objective"], rows[0]["split"]
    latency = f"{rows[0]['latency_runtime']} ms"
    print(f"{'trial':>5} {objective:>22} {'test_accuracy':>13} {'test_worst_class_recall':>24} {latency:>16} "
          f"{'params':>9} {'px':>4}  architecture  [enhancements]")
    for r in rows:
        mark = "" if r["latency_retimed"] else "~"
        flag = "!" if r["no_better_than_majority"] else ""
        test = f"{r['test_accuracy']:.4f}" if r["test_accuracy"] is not None else "-"
        worst = r["test_worst_class_recall"]
        worst = f"{worst['recall']:.3f} {worst['class'][:14]}" if worst else "-"
        name = f"{r['preset']}: " if r["preset"] else ""
        print(f"{r['trial']:>5} {flag + format(r[objective], '.4f'):>22} {test:>13} {worst:>24} "
              f"{mark + format(r['latency_ms'], '.3f'):>16} {fmt_int(r['params']):>9} {r.get('image_size') or '-':>4}  "
              f"{name}{r['arch']}  "
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
    if any(r["no_better_than_majority"] for r in rows):
        from search.study.front import figure_name  # optuna: not for --help

        majority = rows[0][figure_name(f"majority_{rows[0]['metric']}", split)]
        print(f"! no better than always answering the most common class ({objective} {majority:.4f}): "
              f"do not ship it")
    if any(not r["latency_retimed"] for r in rows):
        print("~ latency measured during the search, not yet re-timed in a quiet phase")
    paced = sorted({r["latency_paced_by"] for r in rows if r.get("latency_paced_by")})
    if paced:
        print(f"{latency}: at this machine's pace when the latency limit was set; each timing is divided by "
              f"how much slower than then {', '.join(paced)} ran when timed beside it")
    print_confirmed(rows, objective)


def mean_sd(mean: float, sd: float, ci: list[float] | None = None) -> str:
    interval = f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""
    return f"{mean:.4f} ± {sd:.4f}{interval}"


def print_confirmed(rows: list[dict], objective: str) -> None:
    """The seed-repeated figures of the front rows ``castsearch confirm`` retrained."""
    done = [r for r in rows if f"{objective}_mean" in r]
    if not done:
        return
    print("\nconfirmed with other seeds (castsearch confirm): mean ± sd [95% interval]")
    print(f"{'trial':>5} {objective + ' (objective)':>48} {'test_accuracy':>36} {'test_worst_class_recall':>23}  "
          "seeds")
    for r in done:
        worst = r.get("test_worst_class_recall_mean")
        print(f"{r['trial']:>5} {mean_sd(r[f'{objective}_mean'], r[f'{objective}_std'], r[f'{objective}_ci95']):>48} "
              f"{mean_sd(r['test_accuracy_mean'], r['test_accuracy_std'], r['test_accuracy_ci95']):>36} "
              f"{'-' if worst is None else format(worst, '.3f'):>23}  {','.join(map(str, r['seeds']))}")


def print_references(references: list[dict]) -> None:
    objective = references[0]["objective"]
    print(f"{'baseline':<13} {'pretrained':<10} {objective:>22} {'latency ms':>10} {'params':>11} {'size':>4}  "
          "weights")
    for ref in references:
        print(f"{ref['baseline']:<13} {'yes' if ref['pretrained'] else 'no':<10} {ref[ref['objective']]:>22.4f} "
              f"{ref['latency_ms']:>10.3f} {fmt_int(ref['params']):>11} {ref['image_size']:>4}  "
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

def print_baseline(result) -> None:
    ev, m = result.outcome.evaluation, result.outcome.measurement
    print(f"  {result.name:<13} {'pretrained' if result.pretrained else 'scratch':<10} accuracy {ev.accuracy:.4f}  "
          f"latency {m.latency_ms:.3f} ms  params {fmt_int(m.params)}  MACs {fmt_int(m.macs)}  "
          f"({result.outcome.epochs_run} epoch(s), {result.outcome.train_seconds:.0f} s; trial {result.trial_number})",
          flush=True)

def print_confirmed_trial(record, summary: dict) -> None:
    """One trial as ``castsearch confirm`` stored it (:func:`search.run.confirm.confirm_study`)."""
    from search.study.front import figure_name  # optuna: not for --help

    o, t = summary["objective"], summary["test_accuracy"]
    name = f" ({record.preset})" if record.preset else ""
    print(f"  trial {record.number}{name}: {figure_name(summary['metric'], summary['split'])} "
          f"{mean_sd(o['mean'], o['std'], o['ci95'])} (search run {record.accuracy:.4f}); "
          f"test_accuracy {mean_sd(t['mean'], t['std'])}, test_worst_class_recall "
          f"{summary['test_worst_class_recall']['mean']:.3f} (mean); seeds {','.join(map(str, summary['seeds']))}"
          + (f"; reused {reused_from(summary['reused'])}" if summary.get("reused") else ""), flush=True)


"""A self-contained HTML report of a study, with PNG plots.

``write_report(study, front, out_dir, baselines)`` writes ``report.html`` (plots embedded
as data URIs, so the one file can be mailed or archived) and the plots as PNG files:

- ``front.png``: every feasible trained trial as accuracy against CPU latency, marker area
  growing with parameters; the front highlighted, the paper's presets and the pretrained
  baselines (the ``<study>-baselines`` study, when there is one) marked;
- ``hypervolume.png``: the hypervolume of the feasible trials so far, over trial number, from
  0 on the y axis (with a note when it never changes);
- ``recall-<n>.png`` and ``confusion-<n>.png`` for the front's most accurate and fastest nets;

and a table of the front, which of the paper's presets a searched network dominates (single
and confirmed figures: :func:`search.study.front.headline`), the machine fingerprint(s) and
library versions.
``front`` is :func:`search.study.front.front_rows` of the study (latencies re-timed in the quiet
phase where the run did that) and ``baselines`` its :func:`search.study.storage.reference_rows`.
"""

from __future__ import annotations

import base64
import html
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from optuna.trial import FrozenTrial, TrialState

from search.study import front as frontlib
from search.study import storage as studylib
from search.study.record import TrialRecord

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
DPI = 110


@dataclass
class ReportFiles:
    html: Path
    plots: list[Path]


def _trained(study: optuna.Study) -> list[FrozenTrial]:
    """Feasible trained trials (COMPLETE, constraints met), by number."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if frontlib.is_feasible(t)]


def _size(params: np.ndarray | float, largest: float) -> np.ndarray:
    """Marker area: grows with the square root of the parameter count."""
    return 20 + 480 * np.sqrt(np.asarray(params, dtype=float) / largest)


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


# ---------------------------------------------------------------------------------------
# Plots


def front_figure(study: optuna.Study, front: list[dict], baselines: list[dict]) -> Figure:
    """Accuracy against latency: the feasible trials, the front, the presets and baselines.
    Every label taken from the study (preset and baseline names, the runtime, the objective's
    name) is drawn as written, never parsed as matplotlib math."""
    trials = _trained(study)
    on_front = {r["trial"]: r for r in front}
    largest = max([t.values[2] for t in trials] + [b["params"] for b in baselines])
    fig = Figure(figsize=(9, 6))
    ax = fig.subplots()
    rest = [t for t in trials if t.number not in on_front]
    if rest:
        ax.scatter([t.values[1] for t in rest], [t.values[0] for t in rest],
                   s=_size([t.values[2] for t in rest], largest), c="#bbbbbb", alpha=0.6,
                   edgecolors="#888888", label="other trials")
    ax.scatter([r["latency_ms"] for r in front], [r[r["objective"]] for r in front],
               s=_size([r["params"] for r in front], largest), c="#1f77b4", alpha=0.75,
               edgecolors="#0b3c66", label="Pareto front", zorder=3)
    for r in front:
        ax.annotate(f"#{r['trial']}", (r["latency_ms"], r[r["objective"]]), xytext=(6, 4),
                    textcoords="offset points", fontsize=8, color="#0b3c66")
    presets = [r for r in map(TrialRecord.read, trials) if r.preset]
    if presets:
        xs = [on_front[r.number]["latency_ms"] if r.number in on_front else r.latency_ms for r in presets]
        ax.scatter(xs, [r.accuracy for r in presets], marker="*", s=160, c="#ff7f0e",
                   edgecolors="#8a4500", label="paper presets", zorder=4)
        for x, r in zip(xs, presets, strict=True):
            ax.annotate(r.preset, (x, r.accuracy), xytext=(6, -10),
                        textcoords="offset points", fontsize=7, color="#8a4500", parse_math=False)
    if baselines:
        ax.scatter([b["latency_ms"] for b in baselines], [b[b["objective"]] for b in baselines], marker="D",
                   s=_size([b["params"] for b in baselines], largest) / 3, c="#d62728", edgecolors="#6b1010",
                   label="pretrained baselines", zorder=4)
        for b in baselines:
            ax.annotate(b["baseline"], (b["latency_ms"], b[b["objective"]]), xytext=(6, 4), textcoords="offset points",
                        fontsize=8, color="#6b1010", parse_math=False)
    latencies = ([t.values[1] for t in trials] + [r["latency_ms"] for r in front]
                 + [b["latency_ms"] for b in baselines])
    if max(latencies) > 10 * min(latencies):
        ax.set_xscale("log")
    ax.set_xlabel(f"CPU latency per image, ms ({front[0]['latency_runtime']}, one thread)", parse_math=False)
    ax.set_ylabel(front[0]["objective"], parse_math=False)
    ax.set_title(f"study {study.study_name}: accuracy against latency (marker area grows with parameters)",
                 parse_math=False)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, markerscale=0.6)
    return fig


def plot_front(study: optuna.Study, front: list[dict], baselines: list[dict], path: Path) -> Path:
    return _save(front_figure(study, front, baselines), path)


def hypervolume_curve(trials: list[FrozenTrial], n_trials: int) -> tuple[list[int], list[float]]:
    """Trial numbers and the hypervolume of the feasible trained trials up to each, as a
    fraction of the box accuracy [0, 1] x latency [0, ref] x params [0, ref], where ref is
    1.1 x the largest latency and parameter count of those trials."""
    ref = [0.0, 1.1 * max(t.values[1] for t in trials), 1.1 * max(t.values[2] for t in trials)]
    box = ref[1] * ref[2]
    by_number = {t.number: t.values for t in trials}
    numbers, volumes, points = [], [], []
    for n in range(n_trials):
        if n in by_number:
            points.append(by_number[n])
        numbers.append(n)
        volumes.append(frontlib.hypervolume(points, ref) / box if points else 0.0)
    return numbers, volumes


def hypervolume_figure(study: optuna.Study) -> Figure:
    """The hypervolume curve as a step plot with a marker per trial, on a y axis from 0 to a
    tenth above its largest value (a flat curve would otherwise sit on the axes' top edge)."""
    numbers, volumes = hypervolume_curve(_trained(study), len(study.get_trials(deepcopy=False)))
    fig = Figure(figsize=(8, 3.5))
    ax = fig.subplots()
    ax.plot(numbers, volumes, drawstyle="steps-post", c="#2ca02c", marker="o", markersize=3)
    ax.set_xlabel("trial number")
    ax.set_ylabel("hypervolume (fraction of box)")
    ax.set_title("hypervolume of the feasible trained trials so far")
    ax.set_ylim(0, max(1.1 * max(volumes), 1e-6))
    ax.set_xlim(-0.5, max(numbers) + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if min(volumes) == max(volumes):
        ax.text(0.5, 0.5, f"constant at {volumes[0]:.4g} over all {len(volumes)} trials", transform=ax.transAxes,
                ha="center", va="center", color="#555555")
    ax.grid(True, alpha=0.3)
    return fig


def plot_hypervolume(study: optuna.Study, path: Path) -> Path:
    return _save(hypervolume_figure(study), path)


def recall_figure(trial: TrialRecord) -> Figure:
    """Per-class recall as bars, the first class on top; class names drawn as written."""
    recall = trial.per_class_recall
    fig = Figure(figsize=(6, 0.35 * len(recall) + 1.2))
    ax = fig.subplots()
    names = list(recall)[::-1]
    ax.barh(range(len(names)), [recall[n] for n in names], color="#1f77b4")
    ax.set_yticks(range(len(names)), names, parse_math=False)
    for i, n in enumerate(names):
        ax.text(min(recall[n] + 0.01, 0.9), i, f"{recall[n]:.2f}", va="center", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("recall (test split)")
    ax.set_title(f"trial {trial.number}: per-class recall")
    return fig


def plot_recall(trial: TrialRecord, path: Path) -> Path:
    return _save(recall_figure(trial), path)


def confusion_figure(trial: TrialRecord) -> Figure:
    """The test split's confusion matrix, counts in the cells; class names drawn as written."""
    matrix = np.array(trial.confusion)
    names = trial.class_names
    side = 0.45 * len(names) + 2.5
    fig = Figure(figsize=(side, side))
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                color="white" if count > matrix.max() / 2 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8, parse_math=False)
    ax.set_yticks(range(len(names)), names, fontsize=8, parse_math=False)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"trial {trial.number}: confusion matrix (test split)")
    return fig


def plot_confusion(trial: TrialRecord, path: Path) -> Path:
    return _save(confusion_figure(trial), path)


# ---------------------------------------------------------------------------------------
# HTML
#
# Whatever a study holds (class names, the data's identity, architecture codes, machine
# fingerprints, library versions, notes) was written by whoever could write its database:
# every value goes into the page through _e, even those that should be numbers.


def _e(value: object) -> str:
    """``value`` as HTML text (quotes too, so it may stand in an attribute)."""
    return html.escape(str(value))


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def _table(header: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _worst_recall(trial: TrialRecord) -> str:
    worst = trial.worst_recall
    return f"{worst[1]:.3f} ({worst[0]})" if worst else "-"


def _front_table(study: optuna.Study, front: list[dict], trials: dict[int, TrialRecord]) -> str:
    rows = []
    for r in front:
        t = trials[r["trial"]]
        onnx = (studylib.exported(study, t.number) or {}).get("onnx")
        rows.append([
            r["trial"] if not r["preset"] else f"{r['trial']} ({r['preset']})",
            ("! " if r["no_better_than_majority"] else "") + f"{r[r['objective']]:.4f}"
            + _confirmed(r, r["objective"]),
            (f"{r['test_accuracy']:.4f}" if r["test_accuracy"] is not None else "-") + _confirmed(r, "test_accuracy"),
            f"{r['test_macro_f1']:.4f}" if r["test_macro_f1"] is not None else "-",
            _worst_recall(t),
            ("" if r["latency_retimed"] else "~") + f"{r['latency_ms']:.3f}",
            f"{onnx['latency_ms']:.3f}" if onnx else "-",
            f"{r['params']:,}",
            r["image_size"] or "-",
            t.arch_spec().summary(),
            r["enhancements"],
        ])
    return _table(["trial", f"{front[0]['objective']} (objective)", "test_accuracy",
                   "test_macro_f1", "test_worst_class_recall", f"latency ms ({front[0]['latency_runtime']})",
                   "exported ONNX Runtime ms",
                   "params", "px", "architecture", "enhancements"], rows)


def _confirmed(row: dict, key: str) -> str:
    """`` (seeds: mean ± sd)`` when ``castsearch confirm`` retrained the row's network."""
    if f"{key}_mean" not in row:
        return ""
    return f" ({len(row['seeds'])} more seeds: {row[f'{key}_mean']:.4f} ± {row[f'{key}_std']:.4f})"


def _objective_note(front: list[dict]) -> str:
    r = front[0]
    objective = r["objective"]
    majority = r[frontlib.figure_name(f"majority_{r['metric']}", r["split"])]
    note = (f"Every figure names its split (val_ or test_); {objective} is what the search ranked by; the "
            "test figures were computed after training and chose nothing." if r["split"] == "validation" else
            "This study ranked candidates on the test split (castsearch 0.1): its test figures are optimistic.")
    if majority is not None:
        note += f" Always answering the most common class scores {majority:.4f} on {objective}"
        note += "; ! marks a front network that does no better." if any(
            x["no_better_than_majority"] for x in front) else "."
    return _e(note)


def _headline(study: optuna.Study) -> str:
    """Which of the paper's presets a searched network dominates, on the search's single
    figures and on confirmed means (:func:`search.study.front.headline`)."""
    h = frontlib.headline(study)
    table = _table(["preset", "dominated on single figures", "dominated on confirmed means"],
                   frontlib.headline_rows(h)) if h.presets else ""
    return f"<h3>Against the paper's presets</h3>\n<p>{_e(frontlib.headline_summary(h))}</p>\n{table}"


def _machines(front_trials: list[TrialRecord]) -> str:
    """One table per distinct machine fingerprint and per distinct set of library versions."""
    parts = []
    for key, title in (("machine", "Machine"), ("versions", "Library versions")):
        seen: list[tuple[dict, list[int]]] = []
        for t in front_trials:
            value = getattr(t, key)
            if value is None:
                continue
            for known, numbers in seen:
                if known == value:
                    numbers.append(t.number)
                    break
            else:
                seen.append((value, [t.number]))
        for value, numbers in seen:
            parts.append(f"<h3>{title} (trials {_e(', '.join(map(str, numbers)))})</h3>")
            parts.append(_table(["name", "value"], [[k, v] for k, v in value.items()]))
    return "\n".join(parts)


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f4f8; } img { max-width: 100%; } .pair { display: flex; gap: 1em; flex-wrap: wrap; }
.note { color: #666; font-size: 0.85em; }
"""


def write_report(study: optuna.Study, front: list[dict], out_dir: str | Path,
                 baselines: list[dict] = ()) -> ReportFiles:
    """Write ``report.html`` and its PNG plots to ``out_dir``."""
    if not front:
        raise ValueError(f"study {study.study_name!r} has no completed feasible trial: nothing to report")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    all_trials = study.get_trials(deepcopy=False)
    trials = {t.number: TrialRecord.read(t) for t in all_trials}
    front_trials = [trials[r["trial"]] for r in front]
    best = front[0]
    fastest = min(front, key=lambda r: r["latency_ms"])
    picks = {best["trial"]: "most accurate"}
    picks[fastest["trial"]] = "most accurate and fastest" if fastest is best else "fastest"

    front_png = plot_front(study, front, list(baselines), out / "front.png")
    hv_png = plot_hypervolume(study, out / "hypervolume.png")
    plots = [front_png, hv_png]
    per_net = []
    for number, role in picks.items():
        t = trials[number]
        recall = plot_recall(t, out / f"recall-{number}.png")
        confusion = plot_confusion(t, out / f"confusion-{number}.png")
        plots += [recall, confusion]
        per_net.append(f"<h3>Trial {_e(number)}: {role} on the front</h3>"
                       f'<div class="pair">{_img(recall, "per-class recall")}{_img(confusion, "confusion matrix")}</div>')

    c = frontlib.counts(all_trials)
    data = front_trials[0].data
    split_sizes = " / ".join(f"{_e(n)} {_e(split)}" for split, n in data["counts"].items())
    baseline_table = _table(["baseline", "pretrained", baselines[0]["objective"] if baselines else "", "latency ms",
                             "params"],
                            [[b["baseline"], b["pretrained"], f"{b[b['objective']]:.4f}", f"{b['latency_ms']:.3f}",
                              f"{b['params']:,}"]
                             for b in baselines]) if baselines else "<p class='note'>no baselines study</p>"
    body = f"""
<h1>castsearch report: study {_e(study.study_name)}</h1>
<p>{len(trials)} trials: {c['complete']} complete, {c['infeasible']} infeasible, {c['below_floor']} below the accuracy floor, {c['pruned']} pruned,
{c['failed']} failed, {c['invalid']} invalid, {c['running']} running, {c['waiting']} waiting.
Data: {_e(data['source'])}, {len(data['class_names'])} classes
({_e(', '.join(map(str, data['class_names'])))}), {split_sizes} images, {_e(data['image_size'])} px,
{_e(data['channels'])} channel(s), normalisation {_e(data['normalisation'])}.
Written {time.strftime('%Y-%m-%d %H:%M:%S %Z')}.</p>
<h2>Pareto front</h2>
{_img(front_png, "accuracy against latency")}
<p class="note">{_objective_note(front)} Front latencies are the quiet-phase re-timings (~: measured during
the search); the other trials show the latency measured during the search. Grey: feasible trials off the front.</p>
{_front_table(study, front, trials)}
{_headline(study)}
<h3>Pretrained baselines</h3>
{baseline_table}
<h2>Hypervolume</h2>
{_img(hv_png, "hypervolume over trial number")}
<h2>Per-class results</h2>
{''.join(per_net)}
<h2>Where it was measured</h2>
{_machines(front_trials)}
"""
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>castsearch: {_e(study.study_name)}</title><style>{CSS}</style></head>"
            f"<body>{body}</body></html>\n")
    path = out / REPORT_FILE
    path.write_text(page, encoding="utf-8")
    log.debug("wrote %s", path)
    return ReportFiles(html=path, plots=plots)

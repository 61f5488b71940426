"""castsearch report: the HTML and its plots, the hypervolume curve, a real browser, bad input."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from search.cli import main
from search.study import storage as studylib
from search.study.record import DIRECTIONS
from search.view.report import hypervolume_curve, hypervolume_figure, plot_hypervolume

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report(tiny_study, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    assert main(["report", *tiny_study.args(), "--out", str(out)]) == 0
    return out


def test_report_writes_html_and_plots(tiny_study, report, capsys):
    front = [t.number for t in studylib.pareto_front(tiny_study.load())]
    for name in ("report.html", "front.png", "hypervolume.png"):
        assert (report / name).is_file(), name
    best = front[0]  # the most accurate front net always gets recall and confusion plots
    assert (report / f"recall-{best}.png").is_file() and (report / f"confusion-{best}.png").is_file()
    page = (report / "report.html").read_text()
    # self-contained: every image is inline, nothing is fetched
    sources = re.findall(r'<img src="([^"]{0,30})', page)
    assert len(sources) >= 4 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in page and "https://" not in page
    for text in ("test_worst_class_recall", "test_macro_f1", "val_balanced_accuracy (objective)", "enhancements", "tiny-preset", "resnet18", "cpu_model",
                 "Library versions", "blurpool", "x/255", "1 pruned", "1 failed", "1 infeasible", "<th>px</th>"):
        assert text in page, text


def test_baselines_come_from_the_baselines_study(tiny_study):
    (b,) = studylib.reference_rows("tiny", tiny_study.storage)
    assert (b["baseline"], b["pretrained"], b["params"]) == ("resnet18", True, 11_000_000)
    assert studylib.reference_rows("no-such-study", tiny_study.storage) == []


def test_hypervolume_grows_within_the_box(tiny_study):
    study = tiny_study.load()
    trained = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and studylib.is_feasible(t)]
    numbers, volumes = hypervolume_curve(trained, len(study.trials))
    assert numbers == list(range(len(study.trials)))
    assert all(0.0 <= v <= 1.0 for v in volumes)
    assert volumes == sorted(volumes) and volumes[-1] > 0


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="Debian's chromium is not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    shot = tmp_path / "shot.png"
    run = subprocess.run([sys.executable, str(REPO / "bench" / "report_screenshot.py"), str(report / "report.html"),
                          "--out", str(shot)], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("rendered:") and shot.is_file()


def test_report_bad_input(tiny_study, tmp_path, capsys):
    assert main(["report", "--study", "nope", "--storage", tiny_study.storage]) == 2
    assert "no study 'nope'" in capsys.readouterr().err
    url = f"sqlite:///{tmp_path}/empty.db"
    studylib.open_study("empty", url)
    assert main(["report", "--study", "empty", "--storage", url, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "castsearch: error: study 'empty' has no completed feasible trial: nothing to report"


def _study(*values: list[float] | None) -> optuna.Study:
    study = optuna.create_study(directions=list(DIRECTIONS))
    for v in values:
        study.add_trial(optuna.trial.create_trial(values=v) if v else
                        optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    return study


@pytest.mark.parametrize("constant", [True, False])
def test_hypervolume_plot_shows_the_curve(constant, tmp_path):
    if constant:  # the first trial is never improved on: a dominated trial, a failed one
        study = _study([0.9, 2.0, 1000.0], [0.8, 3.0, 2000.0], None)
    else:
        study = _study([0.5, 3.0, 2000.0], None, [0.9, 1.0, 1000.0])
    numbers, volumes = hypervolume_curve([t for t in study.trials if t.values], 3)
    assert (len(set(volumes)) == 1) == constant
    fig = hypervolume_figure(study)
    (ax,) = fig.axes
    (line,) = ax.lines
    assert list(line.get_xdata()) == numbers == [0, 1, 2] and list(line.get_ydata()) == volumes
    bottom, top = ax.get_ylim()
    assert bottom == 0 and top >= 1.1 * max(volumes) and max(volumes) > 0
    # every point is marked and lies inside the axes, well clear of the top edge
    assert line.get_marker() == "o"
    FigureCanvasAgg(fig).draw()
    ys = ax.transData.transform(list(zip(numbers, volumes, strict=True)))[:, 1]
    assert all(ax.bbox.y0 <= y < ax.bbox.y1 - 0.08 * ax.bbox.height for y in ys)
    notes = [t.get_text() for t in ax.texts]
    assert notes == ([f"constant at {volumes[0]:.4g} over all 3 trials"] if constant else [])
    assert plot_hypervolume(study, tmp_path / "hv.png").stat().st_size > 0


def test_a_crafted_study_is_escaped_everywhere(hostile_study, tmp_path):
    """Class names, data identity, machine, versions, preset, runtime and baseline name carrying
    HTML, table pipes and broken matplotlib math: the report is written, and no string of the
    study reaches the page as markup."""
    from tests.search.conftest import HOSTILE

    assert main(["report", *hostile_study.args(), "--out", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "<script>" not in page and "alert(" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # a class name
    assert "&lt;script&gt;alert(2)&lt;/script&gt;$\\frac{x}{$train" in page  # a split's name in data.counts
    for name in HOSTILE[1:4]:
        assert name in page, name
    best = studylib.front_rows(hostile_study.load())[0]["trial"]
    for plot in ("front.png", f"recall-{best}.png", f"confusion-{best}.png"):
        assert (tmp_path / plot).stat().st_size > 0, plot


def test_labels_from_the_data_are_drawn_as_written(hostile_study):
    """Class names, preset and baseline names and the runtime are drawn as they are stored:
    never parsed as matplotlib math, which raises on ``$\\frac{a}{$`` and would stop the report."""
    from matplotlib.figure import Figure

    from search.study.record import TrialRecord
    from search.view.report import confusion_figure, front_figure, recall_figure
    from tests.search.conftest import HOSTILE

    study = hostile_study.load()
    record = TrialRecord.read(study.trials[0])
    names = record.class_names
    assert names[:len(HOSTILE)] == list(HOSTILE)
    recall, confusion = recall_figure(record), confusion_figure(record)
    front = front_figure(study, studylib.front_rows(study), studylib.reference_rows("tiny", hostile_study.storage))
    for fig in (recall, confusion, front):
        FigureCanvasAgg(fig).draw()
    labels = recall.axes[0].get_yticklabels()
    assert [t.get_text() for t in labels] == list(record.per_class_recall)[::-1]
    assert sorted(t.get_text() for t in labels) == sorted(names)
    (ax,) = confusion.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == names == [t.get_text() for t in ax.get_yticklabels()]
    (ax,) = front.axes
    stored = [t for t in ax.texts if "$" in t.get_text()] + [ax.xaxis.label, ax.title]
    assert len(stored) == 4 and all("$\\frac{x}{$" in t.get_text() for t in stored[:3])
    for t in [*labels, *confusion.axes[0].get_xticklabels(), *confusion.axes[0].get_yticklabels(), *stored]:
        assert not t.get_parse_math(), t.get_text()
    parsed = Figure()
    parsed.text(0, 0, HOSTILE[2])
    with pytest.raises(ValueError):  # what drawing these labels as math would do
        FigureCanvasAgg(parsed).draw()

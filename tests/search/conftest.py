"""Shared fixtures: a small finished study in SQLite, built without Ray, and its export.

The study ``tiny`` holds, in this order: two trained trials (0: a paper-preset-marked net
with blurpool, 1: a plain one), a pruned trial (2), a failed trial (3) and an infeasible
one (4, measured but never trained). ``tiny-baselines`` beside it holds one baseline.

Beside it, fixtures that more than one test module uses: ``paper`` (spaces/paper.yaml, loaded
once per module) and ``cache`` (a data cache folder of the test's own).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from castmodels import ArchSpec
from search.data import DataConfig, Dataset, load_dataset
from search.space import load_space
from search.study import storage as studylib
from search.study.record import DIRECTIONS, Limits, TrialRecord
from search.training.recipe import TrainRecipe
from search.trial.pipeline import run_candidate
from tests.search.space_helpers import PAPER

REPO = Path(__file__).resolve().parents[2]


@dataclass
class TinyStudy:
    name: str
    storage: str
    root: Path
    cache: Path
    data: Dataset
    trained: list[int]
    pruned: int
    failed: int
    infeasible: int

    def load(self) -> optuna.Study:
        return optuna.load_study(study_name=self.name, storage=self.storage)

    def args(self) -> list[str]:
        return ["--study", self.name, "--storage", self.storage]


def _record(arch: ArchSpec, recipe: TrainRecipe, preset: str | None = None) -> TrialRecord:
    """What the searcher's suggest stores (see search.run.searcher)."""
    return TrialRecord(run_id="fixture", arch=arch.to_dict(), arch_code=arch.code(), recipe=recipe.to_dict(),
                       enhancements="+".join(recipe.enhancements) or "none", preset=preset)


def _ask(study: optuna.Study, arch: ArchSpec, recipe: TrainRecipe, preset: str | None = None) -> optuna.Trial:
    ot = study.ask()
    _record(arch, recipe, preset).write(ot)
    return ot


def _run(study, arch, recipe, data, out_dir, space, preset=None, limits: Limits | None = None) -> None:
    outcome = run_candidate(arch, recipe, data, out_dir=out_dir, limits=limits or Limits())
    studylib.tell_outcome(study, study.ask(), _record(arch, recipe, preset),
                          outcome.provenance(data), space.constraints)


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory) -> TinyStudy:
    root = tmp_path_factory.mktemp("study")
    cache = root / "cache"
    data = load_dataset(DataConfig(source="synthetic", image_size=16, synthetic_count=200), cache_dir=cache)
    space = load_space(REPO / "spaces" / "paper.yaml")
    storage = f"sqlite:///{root}/tiny.db"
    study = studylib.open_study("tiny", storage)
    recipe = TrainRecipe.named("paper", epochs=1, batch_size=32, image_size=16, channels=3)
    nets = [
        (ArchSpec.from_code("C8 P D16 A"), TrainRecipe(**{**recipe.to_dict(), "enhancements": ("blurpool",)}),
         "tiny-preset"),
        (ArchSpec.from_code("C8 C16s2 A"), recipe, None),
    ]
    for i, (arch, r, preset) in enumerate(nets):
        _run(study, arch, r, data, root / f"trial-{i}", space, preset)
    arch = ArchSpec.from_code("C8 A")
    pruned = _ask(study, arch, recipe)
    TrialRecord(pruned_at_epoch=1).write(pruned)
    study.tell(pruned, state=TrialState.PRUNED)
    failed = _ask(study, arch, recipe)
    TrialRecord(error="RuntimeError: injected for the tests").write(failed)
    study.tell(failed, state=TrialState.FAIL)
    _run(study, arch, recipe, data, None, space, limits=Limits(max_params=10))

    baselines = optuna.create_study(study_name="tiny-baselines", storage=storage,
                                    directions=list(DIRECTIONS))
    baselines.add_trial(optuna.trial.create_trial(values=[0.9, 25.0, 11_000_000.0],
                                                  user_attrs={"baseline": "resnet18", "pretrained": True}))
    return TinyStudy(name="tiny", storage=storage, root=root, cache=cache, data=data, trained=[0, 1],
                     pruned=2, failed=3, infeasible=4)


@pytest.fixture(scope="session")
def exported(tiny_study: TinyStudy, tmp_path_factory) -> tuple[Path, str]:
    """``castsearch export --quantize int8`` of trial 0: (the folder, what it printed)."""
    from search.cli import main

    out = tmp_path_factory.mktemp("export") / "trial-0"
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout):
        mp.setenv("CASTSEARCH_CACHE", str(tiny_study.cache))
        rc = main(["export", "--trial", "0", *tiny_study.args(), "--out", str(out), "--quantize", "int8"])
    assert rc == 0, stdout.getvalue()
    return out, stdout.getvalue()


@pytest.fixture
def cli_error(capsys):
    """Run ``castsearch ARGV`` in-process, assert it failed with exactly one clean error line
    (exit 2, no traceback) and return that line."""
    from search.cli import main

    def run(argv: list[str]) -> str:
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("castsearch: error:"), err
        return lines[0]

    return run


@pytest.fixture
def one_thread():
    """Train on one torch thread, as a search's Ray workers do: deterministic, and quick on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def paper():
    return load_space(PAPER)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


# Strings a crafted study may carry in any user attr: HTML, a markdown table's delimiter and
# line break, matplotlib math markup that does not parse (matplotlib raises drawing it) and
# some that does (drawn as math, not as written).
HOSTILE = ("<script>alert(1)</script>", "a|b", "$\\frac{a}{$", "a$b$c", "two\nlines")


@pytest.fixture(scope="session")
def hostile_study(tiny_study: TinyStudy, tmp_path_factory) -> TinyStudy:
    """A copy of ``tiny`` whose trained trials' user attrs (class names, data identity, machine,
    library versions, preset, enhancements, runtime) and baseline name carry :data:`HOSTILE`
    strings, as anyone who can write the database could store them."""
    import json
    import shutil
    import sqlite3

    root = tmp_path_factory.mktemp("hostile")
    shutil.copyfile(tiny_study.root / "tiny.db", root / "tiny.db")
    tag = "<script>alert(2)</script>$\\frac{x}{$"
    names = dict(zip(tiny_study.data.identity["class_names"][:len(HOSTILE)], HOSTILE, strict=True))
    db = sqlite3.connect(root / "tiny.db")
    with db:
        rows = db.execute("SELECT a.trial_id, a.key, a.value_json FROM trial_user_attributes a "
                          "JOIN trials t ON t.trial_id = a.trial_id WHERE t.number IN (0, 1) AND t.study_id = "
                          "(SELECT study_id FROM studies WHERE study_name = 'tiny')").fetchall()
        for trial_id, key, value_json in rows:
            value = json.loads(value_json)
            if key == "data":
                value = {**value, "class_names": [names.get(c, c) for c in value["class_names"]], "source": tag,
                         "image_size": tag, "channels": tag, "normalisation": tag,
                         "counts": {f"{tag}{split}": f"{tag}{n}" for split, n in value["counts"].items()}}
            elif key == "per_class_recall":
                value = {names.get(c, c): r for c, r in value.items()}
            elif key in ("machine", "versions"):
                value = {**value, tag: tag}
            elif key in ("preset", "enhancements", "latency_runtime"):
                value = f"{value}{tag}"
            else:
                continue
            db.execute("UPDATE trial_user_attributes SET value_json = ? WHERE trial_id = ? AND key = ?",
                       (json.dumps(value), trial_id, key))
        db.execute("UPDATE trial_user_attributes SET value_json = ? WHERE key = 'baseline'", (json.dumps(tag),))
    db.close()
    return TinyStudy(**{**tiny_study.__dict__, "storage": f"sqlite:///{root}/tiny.db", "root": root})

"""A damaged SQLite study database: one line naming it and saying what to do, in every command."""

from __future__ import annotations

import random
import shutil
import subprocess

import optuna
import pytest

from search.cli import main
from search.study import storage as studylib
from tests.search.infra_helpers import castsearch, env


@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
    """A small study "t" in SQLite: three completed trials."""
    db = tmp_path_factory.mktemp("healthy") / "t.db"
    study = studylib.open_study("t", f"sqlite:///{db}")
    for i in range(3):
        study.add_trial(optuna.trial.create_trial(values=[0.5 + i / 10, 1.0 + i, 100.0 * (i + 1)]))
    return db


def damaged_copy(healthy, folder, where: str):
    """A copy of the healthy database with 4 KB overwritten by (seeded) random bytes: the
    header, the second page, or the middle of the file."""
    db = folder / f"{where}.db"
    shutil.copy(healthy, db)
    offset = {"header": 0, "page2": 4096, "middle": db.stat().st_size // 2}[where]
    with open(db, "r+b") as f:
        f.seek(offset)
        f.write(random.Random(where).randbytes(4096))
    return db


@pytest.mark.parametrize("where", ["header", "page2", "middle"])
def test_front_on_a_damaged_database(healthy, tmp_path, where, cli_error):
    db = damaged_copy(healthy, tmp_path, where)
    line = cli_error(["front", "--study", "t", "--storage", f"sqlite:///{db}"])
    assert line.startswith(f"castsearch: error: the study database {db} is damaged (")
    assert "restore it from a backup" in line and f"sqlite3 {db} .recover" in line


@pytest.mark.parametrize("command", [["export", "--trial", "0"], ["report"], ["dashboard", "--port", "0"],
                                     ["confirm"]])
def test_every_command_that_reads_a_study_says_so(healthy, tmp_path, command, cli_error):
    db = damaged_copy(healthy, tmp_path, "page2")
    line = cli_error([*command, "--study", "t", "--storage", f"sqlite:///{db}"])
    assert f"the study database {db} is damaged" in line and ".recover" in line


def test_opening_a_study_to_run_says_so(healthy, tmp_path):
    """What castsearch run and castsearch baselines do first."""
    db = damaged_copy(healthy, tmp_path, "header")
    with pytest.raises(ValueError, match=r"is damaged \(file is not a database\).*\.recover"):
        studylib.open_study("t", f"sqlite:///{db}")


def test_no_traceback_from_the_command_line(healthy, tmp_path):
    db = damaged_copy(healthy, tmp_path, "page2")
    run = subprocess.run(castsearch("front", "--study", "t", "--storage", f"sqlite:///{db}"),
                         capture_output=True, text=True, env=env(), timeout=120)
    assert run.returncode == 2 and run.stdout == ""
    assert "Traceback" not in run.stderr
    [line] = run.stderr.splitlines()
    assert f"the study database {db} is damaged" in line and ".recover" in line


def test_a_healthy_database_and_a_missing_study_are_as_before(healthy, capsys, cli_error):
    assert main(["front", "--study", "t", "--storage", f"sqlite:///{healthy}"]) == 0
    assert len(capsys.readouterr().out.splitlines()) >= 4  # heading and three trials
    line = cli_error(["front", "--study", "nope", "--storage", f"sqlite:///{healthy}"])
    assert "no study 'nope'" in line and "studies there: t" in line
    line = cli_error(["front", "--study", "t", "--storage", f"sqlite:///{healthy.parent}/none.db"])
    assert "does not exist" in line

"""What the run-bookkeeping tests share: a study in a SQLite file of the test's own. Used by
test_runs.py and test_runs_presets.py."""

from __future__ import annotations

from search.study import storage as studylib


def _study(tmp_path, name="s"):
    url = f"sqlite:///{tmp_path}/{name}.db"
    return studylib.open_study(name, url), url

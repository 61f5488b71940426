"""Security rules over the product code (castmodels/, search/, bench/), checked on its syntax
tree, plus the inputs that would break them: weights load with ``torch.load(weights_only=True)``,
YAML with ``safe_load``, no shell and no command built from a string, no pickle or eval.

(optuna-dashboard's loopback default and the HTML escaping of the report are tested with
those commands, in test_dashboard.py and test_report.py; the dashboard's writes over HTTP,
the pixel limit on images and the model card checks in test_dashboard.py, test_imageio.py
and test_predict.py. Here: which of optuna-dashboard's routes ``--allow-writes`` lets through.)
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import optuna
import optuna_dashboard
import pytest
import torch

from search.run.references import read_state_dict
from search.space import SpaceError, load_space
from search.view.dashboard import READ_METHODS, is_note_write
from tests.search.infra_helpers import REPO

PACKAGES = ("castmodels", "search", "bench")
SOURCES = sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py"))


def _calls():
    """(file:line, dotted callee name, call node) for every call in the product code."""
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                yield f"{path.relative_to(REPO)}:{node.lineno}", _dotted(node.func), node


def _dotted(func: ast.expr) -> str:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    parts.append(func.id if isinstance(func, ast.Name) else "?")  # "?": a call result, a subscript...
    return ".".join(reversed(parts))


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def test_the_checks_see_the_product_code():
    assert len(SOURCES) > 10
    names = {name for _, name, _ in _calls()}
    assert {"torch.load", "yaml.safe_load"} <= names


def test_every_torch_load_passes_weights_only_true():
    bad = []
    for where, name, call in _calls():
        if name == "torch.load":
            value = _keyword(call, "weights_only")
            if not (isinstance(value, ast.Constant) and value.value is True):
                bad.append(where)
    assert bad == [], f"torch.load without weights_only=True at {bad}"


def test_yaml_is_only_read_with_safe_load():
    unsafe = {"yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.unsafe_load_all", "yaml.full_load",
              "yaml.full_load_all"}
    bad = [where for where, name, _ in _calls() if name in unsafe]
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        for loader in ("yaml.Loader", "yaml.UnsafeLoader", "yaml.FullLoader", "yaml.CLoader"):
            if loader in text:
                bad.append(f"{path.relative_to(REPO)}: {loader}")
    assert bad == [], f"YAML read without safe_load at {bad}"


def test_no_shell_and_no_command_lines_built_from_strings():
    shells = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput", "commands.getoutput",
              "pty.spawn"}
    runners = {"subprocess.run", "subprocess.Popen", "subprocess.call", "subprocess.check_call",
               "subprocess.check_output"}
    bad = []
    for where, name, call in _calls():
        if name in shells or name.startswith(("os.exec", "os.spawn")):
            bad.append(f"{where} {name}")
        shell = _keyword(call, "shell")
        if shell is not None and not (isinstance(shell, ast.Constant) and shell.value is False):
            bad.append(f"{where} shell=")
        if name in runners and call.args and isinstance(call.args[0], (ast.Constant, ast.JoinedStr, ast.BinOp)):
            bad.append(f"{where} {name} with a command string")  # argv lists only
    assert bad == [], f"shell commands at {bad}"


def test_no_pickle_eval_or_exec_on_data():
    banned = {"pickle.load", "pickle.loads", "pickle.Unpickler", "marshal.load", "marshal.loads", "eval", "exec",
              "dill.load", "dill.loads", "cloudpickle.load", "cloudpickle.loads", "shelve.open"}
    bad = [f"{where} {name}" for where, name, _ in _calls() if name in banned]
    assert bad == [], f"unsafe deserialisation or evaluation at {bad}"


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_weights_file_that_runs_code_when_unpickled_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(1), "payload": _Exploit(marker)}, path)
    with pytest.raises(ValueError, match="not a loadable state dict"):
        read_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system", "!!python/object/new:os.system",
                                 "!!python/name:os.system"])
def test_a_space_file_with_python_tags_is_a_clean_error(tmp_path, tag):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(f'study: evil\nbudget: {tag} ["touch {marker}"]\n')
    with pytest.raises(SpaceError) as e:
        load_space(path)
    assert str(e.value).startswith(f"{path}: ") and "\n" not in str(e.value)
    assert not marker.exists()


def test_the_dashboard_lets_through_note_writes_only():
    """Of every route the installed optuna-dashboard serves, ``--allow-writes`` passes the GETs
    and the two note saves, nothing else (renaming, telling and user attributes among them)."""
    app = optuna_dashboard.wsgi(optuna.storages.InMemoryStorage())
    passed = set()
    for route in app.routes:
        if route.method in READ_METHODS:
            continue
        path = route.rule
        for arg, value in (("<study_id:int>", "1"), ("<trial_id:int>", "2"), ("<history_id>", "3"),
                           ("<artifact_id:re:[0-9a-fA-F-]+>", "0a1b")):
            path = path.replace(arg, value)
        assert "<" not in path, route.rule  # a route argument this test does not fill in
        for method in (route.method, route.method.lower()):
            if is_note_write(method, path):
                passed.add((route.method, route.rule))
    assert passed == {("PUT", "/api/studies/<study_id:int>/note"),
                      ("PUT", "/api/studies/<study_id:int>/<trial_id:int>/note")}
    assert len([r for r in app.routes if r.method not in READ_METHODS]) >= 15


@pytest.mark.parametrize("url, secret", [
    ("postgresql://u:SECRET1@db.example/castsearch", "SECRET1"),
    ("postgresql+psycopg2://u:p%40ss@h:5432/db", "p%40ss"),
    ("postgresql//u:SECRET2@h/db", "SECRET2"),  # does not parse as a URL
    ("postgresql://u@h/db?password=SECRET3", "SECRET3"),
    ("postgresql://u@h/db?sslmode=require&PASSWORD=SECRET4&x=1", "SECRET4"),
    ("u:SECRET5@h", "SECRET5"),
])
def test_redact_url_hides_every_password(url, secret):
    from search.study.storage import redact_url

    shown = redact_url(url)
    assert secret not in shown, shown
    assert "***" in shown, shown


def test_redact_url_keeps_what_is_not_a_secret():
    from search.study.storage import redact_url

    assert redact_url("sqlite:///studies/x.db") == "sqlite:///studies/x.db"
    assert redact_url("postgresql://u:pw@h:5432/db?sslmode=require") == "postgresql://u:***@h:5432/db?sslmode=require"


@pytest.mark.parametrize("write", ["torch-zip", "torch-legacy", "plain-pickle"])
def test_a_trials_weights_file_that_runs_code_when_unpickled_is_refused(tmp_path, write):
    """record.read_weights (how a trial's model.pt is read, by export among others, and a kept
    training's weights by their reuse) refuses a file whose unpickling would run a command, whatever its
    container, with an error naming the file, and the command never runs."""
    import pickle

    from search.study.record import read_weights

    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    payload = {"weight": torch.zeros(1), "payload": _Exploit(marker)}
    if write == "plain-pickle":
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=write == "torch-zip")
    with pytest.raises(ValueError) as e:
        read_weights(str(path))
    assert str(e.value) == f"cannot read trained weights {path}: file is truncated or not a castsearch checkpoint"
    assert not marker.exists()

"""castsearch dashboard: serves the study through optuna-dashboard's HTTP API; bad input."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from search.cli import main

REPO = Path(__file__).resolve().parents[2]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_dashboard_serves_the_study(tiny_study):
    proc = subprocess.Popen([sys.executable, "-m", "search.cli", "dashboard", *tiny_study.args(), "--port", "0"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        line = proc.stdout.readline()  # printed once the server is bound
        assert "optuna-dashboard for study 'tiny': http://127.0.0.1:" in line, line + proc.stderr.read()
        url = line.split(": ", 1)[1].split()[0]
        root = url.split("/dashboard/")[0]
        deadline = time.monotonic() + 30
        while True:
            try:
                studies = _get(f"{root}/api/studies")["study_summaries"]
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        (study,) = [s for s in studies if s["study_name"] == "tiny"]
        assert url.endswith(f"/dashboard/studies/{study['study_id']}")
        detail = _get(f"{root}/api/studies/{study['study_id']}")
        assert detail["name"] == "tiny"
        assert detail["objective_names"] == ["val_balanced_accuracy", "latency_ms", "params"]
        assert detail["directions"] == ["maximize", "minimize", "minimize"]
        assert [t["number"] for t in detail["trials"]] == [0, 1, 2, 3, 4]
        assert {t["state"] for t in detail["trials"]} == {"Complete", "Pruned", "Fail"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_dashboard_bad_input(tiny_study, tmp_path, capsys):
    assert main(["dashboard", "--study", "nope", "--storage", tiny_study.storage]) == 2
    assert "no study 'nope'" in capsys.readouterr().err
    assert main(["dashboard", "--study", "x", "--storage", f"sqlite:///{tmp_path}/none.db"]) == 2
    assert "does not exist" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["dashboard", *tiny_study.args(), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"castsearch: error: cannot serve the dashboard on 127.0.0.1:{port}:") and "\n" not in err


def test_dashboard_storage_needs_a_study(capsys):
    assert main(["dashboard", "--storage", "sqlite:///x.db"]) == 2
    assert "--storage needs --study NAME too" in capsys.readouterr().err

"""castsearch dashboard: serves the study through optuna-dashboard's HTTP API, only to requests
addressed to it and read-only unless writes are allowed; bad input."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import optuna
import pytest

from search.cli import main
from search.view.dashboard import dashboard_server, served_hosts

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


@pytest.fixture
def served(tmp_path):
    """Start a dashboard server on a study of its own (the tests write to it); return a function
    ``(allow_writes) -> (port, study id, storage URL)``."""
    storage = f"sqlite:///{tmp_path}/guard.db"
    study = optuna.create_study(study_name="guarded", storage=storage, directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(values=[0.9, 3.0]))
    servers = []

    def start(allow_writes: bool = False) -> tuple[int, int, str]:
        server, url = dashboard_server(storage, "guarded", port=0, allow_writes=allow_writes)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server.server_port, study._study_id, storage

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _request(port: int, method: str, path: str, host: str | None = None, body: dict | None = None,
             headers: dict | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Host": host or f"127.0.0.1:{port}", **(headers or {})}
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def _study_intact(storage: str) -> None:
    (study,) = optuna.get_all_study_summaries(storage)
    assert study.study_name == "guarded" and study.n_trials == 1


def test_dashboard_refuses_a_foreign_host(served):
    port, study_id, storage = served()
    for method in ("GET", "DELETE"):
        status, text = _request(port, method, f"/api/studies/{study_id}", host=f"evil.example:{port}")
        assert status == 403 and "Host" in text, (method, status, text)
    assert _request(port, "GET", "/api/studies", host="evil.example")[0] == 403
    assert _request(port, "GET", "/api/studies", host=f"127.0.0.1:{port + 1}")[0] == 403
    _study_intact(storage)
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}"):
        status, text = _request(port, "GET", f"/api/studies/{study_id}", host=host)
        assert status == 200 and json.loads(text)["name"] == "guarded", host


def test_dashboard_is_read_only_by_default(served):
    port, study_id, storage = served()
    status, text = _request(port, "DELETE", f"/api/studies/{study_id}")
    assert status == 405 and "--allow-writes" in text
    status, text = _request(port, "PUT", f"/api/studies/{study_id}/note", body={"version": 1, "body": "hi"})
    assert status == 405 and "--allow-writes" in text
    assert _request(port, "POST", f"/api/studies/{study_id}/rename", body={"study_name": "x"})[0] == 405
    _study_intact(storage)
    assert _request(port, "GET", f"/api/studies/{study_id}")[0] == 200
    assert _request(port, "GET", f"/dashboard/studies/{study_id}")[0] == 200
    assert _request(port, "HEAD", "/api/studies")[0] == 200


def test_dashboard_writes_when_allowed_but_never_deletes(served):
    port, study_id, storage = served(allow_writes=True)
    note = {"version": 1, "body": "a note"}
    assert _request(port, "PUT", f"/api/studies/{study_id}/note", host=f"evil.example:{port}", body=note)[0] == 403
    assert _request(port, "PUT", f"/api/studies/{study_id}/note", body=note,
                    headers={"Origin": "http://evil.example"})[0] == 403
    status, text = _request(port, "PUT", f"/api/studies/{study_id}/note", body=note,
                            headers={"Origin": f"http://localhost:{port}"})
    assert status == 204, text
    assert json.loads(_request(port, "GET", f"/api/studies/{study_id}")[1])["note"] == note
    for host in (f"evil.example:{port}", None):
        status, text = _request(port, "DELETE", f"/api/studies/{study_id}", host=host)
        assert status == 403, (host, status, text)
    assert "delete-study" in text
    _study_intact(storage)


def test_served_hosts():
    assert served_hosts("127.0.0.1", 8080) == {"127.0.0.1:8080", "localhost:8080", "[::1]:8080"}
    assert "192.168.1.5:9000" in served_hosts("192.168.1.5", 9000)
    assert "localhost" in served_hosts("127.0.0.1", 80)
    assert f"{socket.gethostname().lower()}:8080" in served_hosts("0.0.0.0", 8080)

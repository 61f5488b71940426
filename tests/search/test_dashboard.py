"""castsearch dashboard: serves the study through optuna-dashboard's HTTP API, only to requests
addressed to it, read-only unless writes are allowed and then saving notes only (every write
route of the installed optuna-dashboard tried); writes on a network address; bad input."""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import optuna
import optuna_dashboard
import pytest

from search.cli import main
from search.view.dashboard import dashboard_server, is_loopback, is_note_write, served_hosts

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
    """Start a dashboard server on a study of its own (the tests write to it): one COMPLETE
    trial and one RUNNING; return a function ``(allow_writes) -> (port, study id, storage URL)``."""
    storage = f"sqlite:///{tmp_path}/guard.db"
    study = optuna.create_study(study_name="guarded", storage=storage, directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(values=[0.9, 3.0]))
    study.ask()
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
    """The served study as the fixture made it: its name, its two trials and what they hold."""
    (summary,) = optuna.get_all_study_summaries(storage)
    assert summary.study_name == "guarded"
    trials = optuna.load_study(study_name="guarded", storage=storage).get_trials(deepcopy=False)
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING]
    assert trials[0].values == [0.9, 3.0] and trials[1].values is None
    assert [t.user_attrs for t in trials] == [{}, {}]


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


# A body for each write route that it would accept: refused, they must fail at the guard.
WRITE_BODIES = {
    "/api/studies": {"study_name": "created", "directions": ["minimize"]},
    "/api/studies/<study_id:int>/rename": {"study_name": "renamed"},
    "/api/trials/<trial_id:int>/tell": {"state": "Complete", "values": [1.0, 0.1]},
    "/api/trials/<trial_id:int>/user-attrs": {"user_attrs": {"weights_path": "/etc/passwd"}},
    "/api/studies/<study_id:int>/preference": {"mode": "ChooseWorst", "candidates": [0, 1], "clicked": 0},
    "/api/studies/<study_id:int>/note": {"version": 1, "body": "a study note"},
    "/api/studies/<study_id:int>/<trial_id:int>/note": {"version": 1, "body": "a trial note"},
}


def _write_routes(storage: str) -> list[tuple[str, str]]:
    """(method, rule) of every route of the installed optuna-dashboard that is not a GET."""
    return [(route.method, route.rule) for route in optuna_dashboard.wsgi(storage).routes if route.method != "GET"]


def _concrete(rule: str, study_id: int, trial_id: int) -> str:
    path = rule.replace("<study_id:int>", str(study_id)).replace("<trial_id:int>", str(trial_id))
    path = path.replace("<history_id>", "0")
    return path.replace("<artifact_id:re:[0-9a-fA-F-]+>", "0123abcd")


def test_dashboard_with_writes_saves_notes_and_refuses_every_other_write(served):
    port, study_id, storage = served(allow_writes=True)
    running = optuna.load_study(study_name="guarded", storage=storage).trials[1]._trial_id
    routes = _write_routes(storage)
    assert {("POST", "/api/studies/<study_id:int>/rename"), ("POST", "/api/trials/<trial_id:int>/tell"),
            ("POST", "/api/trials/<trial_id:int>/user-attrs"), ("DELETE", "/api/studies/<study_id:int>"),
            ("PUT", "/api/studies/<study_id:int>/note"), ("PUT", "/api/studies/<study_id:int>/<trial_id:int>/note"),
            } <= set(routes) and len(routes) >= 15
    same_site = {"Origin": f"http://127.0.0.1:{port}"}
    for method, rule in routes:
        path = _concrete(rule, study_id, running)
        status, text = _request(port, method, path, body=WRITE_BODIES.get(rule, {}), headers=same_site)
        if rule.endswith("/note"):
            assert status == 204, (method, rule, status, text)
        elif method == "DELETE":
            assert status == 403 and "delete-study" in text, (method, rule, status, text)
        else:
            assert status == 403 and "saves notes only" in text, (method, rule, status, text)
        for case in (method.lower(), method.title()):  # bottle routes methods in any case
            if not rule.endswith("/note"):
                status, text = _request(port, case, path, body=WRITE_BODIES.get(rule, {}), headers=same_site)
                assert status == 403, (case, rule, status, text)
    _study_intact(storage)
    detail = json.loads(_request(port, "GET", f"/api/studies/{study_id}")[1])
    assert detail["note"] == {"version": 1, "body": "a study note"}
    assert [t["note"]["body"] for t in detail["trials"]] == ["", "a trial note"]


def test_dashboard_writes_only_from_its_own_site_and_never_deletes(served):
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
    assert _request(port, "delete", f"/api/studies/{study_id}")[0] == 403
    _study_intact(storage)


def test_note_routes_are_matched_whole():
    assert is_note_write("PUT", "/api/studies/1/note") and is_note_write("put", "/api/studies/12/3/note")
    for method, path in [("POST", "/api/studies/1/note"), ("PUT", "/api/studies/1/note/"),
                         ("PUT", "/api/studies/1/note\n"), ("PUT", "/api/studies/1/rename"),
                         ("PUT", "/api/studies/-1/note"), ("PUT", "/api/studies/\u0661/note"),
                         ("PUT", "//api/studies/1/note"), ("PUT", "/api/studies/1/2/3/note"), ("PUT", "")]:
        assert not is_note_write(method, path), (method, path)


def test_writes_on_a_network_address_need_a_second_yes(served, caplog, tiny_study, capsys):
    port, study_id, storage = served()
    with pytest.raises(ValueError, match=r"--allow-writes with --host 0\.0\.0\.0 .*unauthenticated"):
        dashboard_server(storage, "guarded", host="0.0.0.0", port=0, allow_writes=True)
    for host in ("0.0.0.0", "127.0.0.2", "localhost"):  # read-only anywhere; writes on loopback
        server, _ = dashboard_server(storage, "guarded", host=host, port=0, allow_writes=host != "0.0.0.0")
        server.server_close()
    with caplog.at_level(logging.WARNING, logger="search.view.dashboard"):
        server, _ = dashboard_server(storage, "guarded", host="0.0.0.0", port=0, allow_writes=True,
                                     allow_remote_writes=True)
        server.server_close()
    assert "unauthenticated writes" in caplog.text
    assert main(["dashboard", *tiny_study.args(), "--host", "0.0.0.0", "--port", "0", "--allow-writes"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("castsearch: error: --allow-writes with --host 0.0.0.0") and "\n" not in err


def test_is_loopback():
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "LOCALHOST", "::1", "[::1]"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "", "::", "192.168.1.5", "example.com", "localhost.example.com"):
        assert not is_loopback(host), host


def test_served_hosts():
    assert served_hosts("127.0.0.1", 8080) == {"127.0.0.1:8080", "localhost:8080", "[::1]:8080"}
    assert "192.168.1.5:9000" in served_hosts("192.168.1.5", 9000)
    assert "localhost" in served_hosts("127.0.0.1", 80)
    assert f"{socket.gethostname().lower()}:8080" in served_hosts("0.0.0.0", 8080)

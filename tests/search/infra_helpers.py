"""Test infrastructure for the scale-out and crash tests: a private PostgreSQL server, a
two-node Ray cluster started with the ``ray`` CLI, ``castsearch`` as a subprocess, a tiny
space and a tiny image folder.

Everything is addressed as 127.0.0.1 on free ports and lives in a temporary directory
(PostgreSQL listens on 127.0.0.1 only; Ray's gRPC servers listen on every interface
whatever the node IP, so the cluster requires a token of its own). Every process a helper
starts runs in a session of its own and is ended through that session, never by process
name: other test runs on the same machine have Ray processes too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

TINY_SPACE = """
study: {study}
seed_presets: false
sampler: {{name: random, seed: {seed}}}
budget: {{trials: {trials}}}
data: {{source: {data}, cache_dir: {cache}}}
architecture:
  stages: {{low: 1, high: 2}}
  blocks_per_stage: 1
  channels: {{low: 4, high: 12}}
  conv: [conv3x3, dwsep]
  last_block: [plain]
  dropout: 0.0
  pool: [true]
  head: [gap]
training:
  epochs: {epochs}
  batch_size: 16
  image_size: [16]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_space(folder: Path, *, study: str, data: Path | str, trials: int = 2, epochs: int = 1,
                seed: int = 0) -> Path:
    """A tiny search space (1-2 stages of 4-12 channels, 16 px) as a YAML file in ``folder``."""
    path = folder / f"{study}.yaml"
    path.write_text(TINY_SPACE.format(study=study, data=data, trials=trials, epochs=epochs, seed=seed,
                                      cache=folder / "cache"))
    return path


def make_image_folder(root: Path, classes: int = 3, per_class: int = 12, size: int = 16) -> Path:
    """``root/<class>/<i>.png``: small noisy grey images, each class at its own brightness."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            level = 40 + 80 * c
            pixels = np.clip(level + rng.integers(-20, 21, (size, size)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, "L").save(folder / f"{i:03d}.png")
    return root


def env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess: this repository importable, no inherited Ray address."""
    out = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "CASTSEARCH_INJECT_FAULT")}
    out["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    out["RAY_USAGE_STATS_ENABLED"] = "0"
    out["PYTHONUNBUFFERED"] = "1"
    out.update(extra)
    return out


def castsearch(*args: str) -> list[str]:
    """The ``castsearch`` command line, run by this interpreter (whatever venv it is in)."""
    return [sys.executable, "-m", "search.cli", *args]


# ---------------------------------------------------------------------------------------
# Processes in sessions of their own


@dataclass(frozen=True)
class Proc:
    pid: int
    name: str


def _read_proc(pid: int) -> tuple[int, str, str] | None:
    """(session id, state, name) of ``pid`` from /proc, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return None
    comm, rest = stat[stat.index("(") + 1: stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
    name = os.path.basename(argv0.split(" ")[0]) if argv0 else comm  # Ray retitles its processes
    return int(rest[3]), rest[0], name  # fields after (comm): state ppid pgrp session


def session_members(sid: int) -> list[Proc]:
    """Live (non-zombie) processes of session ``sid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            info = _read_proc(int(entry.name))
            if info is not None and info[0] == sid and info[1] != "Z":
                out.append(Proc(int(entry.name), info[2]))
    return out


def session_names(sid: int) -> list[str]:
    """Names of the live processes of session ``sid``."""
    return [p.name for p in session_members(sid)]


def end_session(sid: int, grace_s: float = 10.0) -> None:
    """SIGTERM every process of session ``sid`` (one a helper started), then SIGKILL the rest."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        members = session_members(sid)
        for p in members:
            with contextlib.suppress(OSError):
                os.kill(p.pid, sig)
        deadline = time.time() + (grace_s if sig == signal.SIGTERM else 5.0)
        while time.time() < deadline and session_members(sid):
            time.sleep(0.2)
        if not session_members(sid):
            return


@contextlib.contextmanager
def started(argv: list[str], log: Path, **kwargs) -> Iterator[subprocess.Popen]:
    """Popen ``argv`` in a new session, output to ``log``; end the whole session afterwards."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)
    try:
        yield proc
    finally:
        end_session(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def wait_for(predicate, timeout_s: float, what: str, poll_s: float = 0.2):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


# ---------------------------------------------------------------------------------------
# PostgreSQL


def postgres_bindir() -> Path | None:
    """The bin folder of an installed PostgreSQL server (15 preferred), if any."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: p.parent.name != "15")
    which = shutil.which("pg_ctl")
    if which:
        candidates.append(Path(which).parent)
    return next((c for c in candidates if (c / "initdb").is_file() and (c / "pg_ctl").is_file()), None)


def _as_postgres_user() -> list[str] | None:
    """How to run a command as a non-root user (initdb refuses root); [] when not root."""
    if os.geteuid() != 0:
        return []
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        return None
    runuser = shutil.which("runuser")
    return [runuser, "-u", "postgres", "--"] if runuser else None


def postgres_unavailable() -> str | None:
    """Why a private PostgreSQL server cannot be started here, or None."""
    if postgres_bindir() is None:
        return "no PostgreSQL server binaries (initdb, pg_ctl) installed"
    if _as_postgres_user() is None:
        return "running as root without a 'postgres' user to run initdb as"
    return None


@dataclass
class Postgres:
    root: Path
    port: int
    url: str

    def database_url(self, name: str) -> str:
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def create_database(self, name: str) -> str:
        import sqlalchemy as sa

        engine = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.database_url(name)


@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    """A private PostgreSQL cluster in a temporary folder on a free loopback port; removed afterwards."""
    bindir = postgres_bindir()
    prefix = _as_postgres_user()
    assert bindir is not None and prefix is not None, postgres_unavailable()
    root = Path(tempfile.mkdtemp(prefix="cs-pg-", dir="/tmp"))
    data = root / "data"
    port = free_port()
    if prefix:
        shutil.chown(root, "postgres")
    pg_ctl = [*prefix, str(bindir / "pg_ctl"), "-D", str(data)]
    try:
        subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True, timeout=120)
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=200"
        subprocess.run([*pg_ctl, "-l", str(root / "server.log"), "-w", "-t", "60", "-o", options, "start"],
                       check=True, capture_output=True, timeout=90)
        yield Postgres(root, port, f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres")
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*pg_ctl, "-m", "immediate", "-w", "-t", "30", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# A Ray cluster started with the ``ray`` CLI


@dataclass
class RayCluster:
    root: Path
    address: str
    env: dict[str, str]
    nodes: list[subprocess.Popen] = field(default_factory=list)
    node_ids: list[str] = field(default_factory=list)


def _node_ports() -> list[str]:
    ports = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port")
    return [a for name in ports for a in (name, str(free_port()))]


def _wait_started(proc: subprocess.Popen, log: Path, timeout_s: float) -> None:
    def up():
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        return "Ray runtime started" in log.read_text()
    wait_for(up, timeout_s, f"ray start ({log})", poll_s=0.5)


@contextlib.contextmanager
def ray_cluster(cpus_per_node: tuple[int, ...] = (1, 1), timeout_s: float = 120) -> Iterator[RayCluster]:
    """``ray start --head`` plus ``ray start --address`` per further node, all on 127.0.0.1.

    The cluster uses token authentication with a token of its own (``RAY_AUTH_MODE=token``,
    ``RAY_AUTH_TOKEN``), as a real cluster should; a driver joins with ``cluster.env``.
    """
    root = Path(tempfile.mkdtemp(prefix="cs-ray-", dir="/tmp"))  # short: Ray's socket paths have a limit
    port = free_port()
    address = f"127.0.0.1:{port}"
    cluster_env = env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    common = ["--node-ip-address", "127.0.0.1", "--object-store-memory", str(80 * 1024**2),
              "--disable-usage-stats", "--block"]
    ray = str(BIN / "ray")
    with contextlib.ExitStack() as stack:
        try:
            cluster = RayCluster(root, address, cluster_env)
            for i, cpus in enumerate(cpus_per_node):
                argv = [ray, "start", "--num-cpus", str(cpus), *common, *_node_ports()]
                if i == 0:
                    argv += ["--head", "--port", str(port), "--temp-dir", str(root / "tmp"),
                             "--include-dashboard", "false", "--dashboard-host", "127.0.0.1",
                             "--dashboard-port", str(free_port())]
                else:
                    argv += ["--address", address]
                log = root / f"node{i}.log"
                proc = stack.enter_context(started(argv, log, env=cluster_env, cwd=root))
                cluster.nodes.append(proc)
                _wait_started(proc, log, timeout_s)
            cluster.node_ids = wait_nodes(cluster, len(cpus_per_node), timeout_s)
            yield cluster
        finally:
            stack.close()
            shutil.rmtree(root, ignore_errors=True)


def wait_nodes(cluster: RayCluster, count: int, timeout_s: float) -> list[str]:
    """Block until ``count`` nodes are alive in the cluster (asked by a short-lived driver); their ids."""
    code = ("import ray, sys, time\n"
            f"ray.init(address={cluster.address!r}, log_to_driver=False)\n"
            f"deadline = time.time() + {timeout_s}\n"
            f"while len([n for n in ray.nodes() if n['Alive']]) < {count}:\n"
            "    if time.time() > deadline: sys.exit('nodes missing: %s' % ray.nodes())\n"
            "    time.sleep(0.5)\n"
            "print(' '.join(n['NodeID'] for n in ray.nodes() if n['Alive']))\n")
    done = subprocess.run([sys.executable, "-c", code], env=cluster.env, timeout=timeout_s + 60,
                          capture_output=True, text=True, cwd=cluster.root)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.split()


class QuietSlot:
    """A stand-in for search.latency.quiet.Workers.paused that records when it is entered."""

    def __init__(self):
        self.inside, self.entered = False, 0

    @contextlib.contextmanager
    def __call__(self):
        self.inside, self.entered = True, self.entered + 1
        try:
            yield 0
        finally:
            self.inside = False

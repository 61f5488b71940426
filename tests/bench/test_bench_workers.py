"""The benchmarks' training processes end with the benchmark that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from bench.common import REPO

BENCHMARK = textwrap.dedent("""
    import os, sys, time
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context
    sys.path.insert(0, {repo!r})
    from bench.common import training_worker

    def train(path):
        import torch
        open(path, "w").write(f"{{os.getpid()}} {{torch.get_num_threads()}}")
        time.sleep(120)

    if __name__ == "__main__":
        with ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=training_worker) as pool:
            pool.submit(train, sys.argv[1])
            time.sleep(120)
""")


def gone(pid: int) -> bool:
    """No such process, or only its exit status is left (a zombie nobody has reaped yet)."""
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, IndexError):
        return True


def test_a_killed_benchmark_leaves_no_training_process_behind(tmp_path):
    script, marker = tmp_path / "bench.py", tmp_path / "worker"
    script.write_text(BENCHMARK.format(repo=str(REPO)))
    benchmark = subprocess.Popen([sys.executable, str(script), str(marker)], cwd=tmp_path)
    pid = None
    try:
        deadline = time.monotonic() + 60
        while not (marker.exists() and marker.read_text()) and time.monotonic() < deadline:
            time.sleep(0.2)
        pid, threads = map(int, marker.read_text().split())
        assert threads == 1
        assert not gone(pid)
        os.kill(benchmark.pid, signal.SIGKILL)
        benchmark.wait()
        deadline = time.monotonic() + 15
        while not gone(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert gone(pid), f"training process {pid} outlived its benchmark"
    finally:
        benchmark.kill()
        if pid is not None and not gone(pid):  # the defect under test: end it here, not two minutes later
            os.kill(pid, signal.SIGKILL)

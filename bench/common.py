"""Shared bits of the benchmark scripts: the machine header, markdown tables and training processes."""

from __future__ import annotations

import os
import shlex
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
DATASETS = SHARED / "datasets"


def header(title: str) -> str:
    """Section title, the command that produced it, date, machine and library versions."""
    from search.latency.measure import library_versions, machine_fingerprint

    fp = machine_fingerprint()
    versions = ", ".join(f"{k} {v}" for k, v in library_versions().items())
    script = Path(sys.argv[0]).resolve()
    script = script.relative_to(REPO) if script.is_relative_to(REPO) else script
    command = shlex.join(["python", str(script), *sys.argv[1:]])  # quoted as a shell takes it back
    return (
        f"## {title}\n\n"
        f"Command: `{command}`  \n"
        f"Date: {time.strftime('%Y-%m-%d %H:%M %Z')}  \n"
        f"Machine: {fp.get('cpu_model')}, {fp.get('logical_cores')} logical cores, "
        f"{fp.get('platform')}, Python {fp.get('python')}  \n"
        f"Versions: {versions}\n"
    )


def table(columns: list[str], rows: list[list]) -> str:
    def cell(v) -> str:
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.1f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def median_iqr(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], 0.0
    q1, med, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return med, q3 - q1


def training_worker() -> None:
    """Initializer of a benchmark's training processes (ProcessPoolExecutor): one torch thread
    each, and an exit once the benchmark that started them is gone. A killed benchmark resumes
    from the training store, but its pool's processes would otherwise train on, orphaned, and
    take CPU from whatever is timed next."""
    import torch

    torch.set_num_threads(1)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()

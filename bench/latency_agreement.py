"""Whether a network's latency objective is the same when the driver screens it during a
search and when the front is re-timed on a quiet machine, by timing protocol.

    python bench/latency_agreement.py [--points 30] [--seed 0] [--classes 6] [--presets a,b]

The networks: the six paper presets (or ``--presets``) and ``--points`` random draws of spaces/paper.yaml at
32x32 that meet its parameter limit, each exported to ONNX and run by ONNX Runtime on one
thread, as the screen times them. Four passes over all of them, one after the other (a pass
lasts minutes):

- ``loaded 1``, ``loaded 2``: as the driver times during a search, while two processes train
  a network (torch, one thread each) at the niceness Ray workers train at
  (search.run.worker.WORKER_NICE);
- ``quiet 1``, ``quiet 2``: nothing else running, as the front is re-timed at the end of a run.

In each pass a network gets search.latency.measure's full protocol, in its order (eager torch, two
ONNX Runtime single-image timings, the batch of 50, one more single-image timing). From
the same timings, the single-image latency by protocol:

- ``one timing``: the first single-image timing of the first pass (what the search used before);
- ``lowest of 3``: the lowest of the first pass's three (search.latency.measure.measure);
- ``lowest of 3, twice``: the lowest of both passes' six, the second set minutes after the
  first (the screen and its re-check once a network has trained, search.latency.screen.Screen.recheck;
  the front's re-timing passes, search.latency.retime.retime_front).

For each protocol: the screen under load against the quiet re-timing (loaded / quiet), and,
for the first two, the quiet machine against itself (quiet 2 / quiet 1): median ratio,
range, and the share of networks off by more than 15%.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, header, table  # noqa: E402
from search.run.worker import WORKER_NICE  # noqa: E402

LOAD = """
import os, torch
os.nice({nice})
torch.set_num_threads(1)
from castmodels import PRESETS
from castmodels.builder import build_model
model = build_model(PRESETS["custom-590k-dw"], 3, 6, image_size=32)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.rand(64, 3, 32, 32), torch.randint(0, 6, (64,))
while True:
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
"""

PASSES = ("loaded 1", "loaded 2", "quiet 1", "quiet 2")
PROTOCOLS = ("one timing", "lowest of 3", "lowest of 3, twice")


def networks(presets: list[str], points: int, seed: int, classes: int) -> list[tuple[str, object]]:
    """(label, model) of the presets and ``points`` buildable draws within max_params."""
    import optuna
    import yaml

    from castmodels import PRESETS
    from search.latency.measure import count_params
    from search.space import InvalidCandidate, space_from_dict, suggest
    from search.training.recipe import TrainRecipe
    from search.trial.build import build_candidate

    doc = yaml.safe_load((REPO / "spaces" / "paper.yaml").read_text())
    doc["training"]["image_size"] = [32]
    space = space_from_dict(doc, "paper.yaml")
    out = [(name, build_candidate(PRESETS[name], TrainRecipe(image_size=32), classes))
           for name in presets]
    study = optuna.create_study(directions=space.directions, sampler=optuna.samplers.RandomSampler(seed=seed))
    while len(out) < len(presets) + points:
        try:
            cand = suggest(space, study.ask())
        except InvalidCandidate:
            continue
        model = build_candidate(cand.arch, cand.recipe, classes)
        if space.constraints.max_params is None or count_params(model) <= space.constraints.max_params:
            out.append((f"draw {len(out) - len(presets) + 1}", model))
    return out


def timings(model, session, shape) -> list[float]:
    """The three single-image figures (ms) of search.latency.measure's full protocol for ``session``."""
    from search.latency.measure import TIMING, measure_latency, measure_ort

    measure_latency(model, shape, threads=1, **TIMING["full"])  # eager torch, as measure() times it first
    single, _ = measure_ort(session, shape)
    return single.spread_ms


def latency(first: list[float], second: list[float], protocol: str) -> float:
    """The single-image latency by ``protocol`` from two passes' three timings each."""
    if protocol == "one timing":
        return first[0]
    return min(first if protocol == "lowest of 3" else first + second)


def compare(a: list[float], b: list[float], protocol: str) -> list:
    ratios = [x / y for x, y in zip(a, b, strict=True)]
    off = sum(abs(r - 1) > 0.15 for r in ratios)
    return [protocol, f"{statistics.median(ratios):.2f}", f"{min(ratios):.2f}-{max(ratios):.2f}",
            f"{off} of {len(ratios)} ({off / len(ratios):.0%})"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--classes", type=int, default=6)
    p.add_argument("--presets", default="custom-140k-3x3,custom-140k-dw,custom-340k-3x3,custom-340k-dw,"
                                        "custom-590k-3x3,custom-590k-dw", help="comma-separated paper networks")
    args = p.parse_args()
    warnings.filterwarnings("ignore")

    import torch

    from search.latency.measure import busy_wait
    from search.latency.onnxrt import export_onnx, ort_session

    shape = (3, 32, 32)
    presets = [name for name in args.presets.split(",") if name]
    nets = networks(presets, args.points, args.seed, args.classes)
    onnx = [export_onnx(m, torch.rand(2, *shape)) for _, m in nets]
    passes: dict[str, list[list[float]]] = {}
    started = time.time()
    for name in PASSES:
        load = []
        if name.startswith("loaded"):
            load = [subprocess.Popen([sys.executable, "-c", LOAD.format(nice=WORKER_NICE)], cwd=REPO)
                    for _ in range(2)]
            time.sleep(5.0)  # the trainers import torch and start
        try:
            busy_wait(0.5)
            passes[name] = [timings(m, ort_session(b, 1), shape) for (_, m), b in zip(nets, onnx, strict=True)]
        finally:
            for proc in load:
                proc.kill()
                proc.wait()
        time.sleep(2.0)

    def by(protocol: str, first: str, second: str) -> list[float]:
        return [latency(x, y, protocol) for x, y in zip(passes[first], passes[second], strict=True)]

    print(header("Latency agreement between the screen under load and the quiet re-timing, by protocol"))
    print(f"{len(nets)} networks ({len(presets)} paper presets and {args.points} draws of spaces/paper.yaml within "
          f"max_params, seed {args.seed}) at 32x32, ONNX Runtime, one thread; {len(passes)} passes one after "
          f"the other, {time.time() - started:.0f} s in all. The loaded passes: two processes training "
          f"custom-590k-dw (torch, one thread each) at niceness {WORKER_NICE}, as Ray workers train during a "
          f"search.\n")
    cols = ["protocol", "median ratio", "range", "off by > 15%"]
    print("The screen under load against the quiet re-timing (loaded / quiet):\n")
    print(table(cols, [compare(by(pr, "loaded 1", "loaded 2"), by(pr, "quiet 1", "quiet 2"), pr) for pr in PROTOCOLS]))
    print("\nThe quiet machine against itself (quiet 2 / quiet 1):\n")
    print(table(cols, [compare(by(pr, "quiet 2", "quiet 1"), by(pr, "quiet 1", "quiet 2"), pr)
                       for pr in PROTOCOLS[:2]]))
    print("\nPer network, single-image ms by pass (one timing / lowest of 3):\n")
    print(table(["network", *PASSES],
                [[label, *[f"{passes[n][i][0]:.3f} / {min(passes[n][i]):.3f}"
                           for n in PASSES]] for i, (label, _) in enumerate(nets)]))


if __name__ == "__main__":
    main()

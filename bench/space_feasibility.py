"""How many points of a search space can be built and meet its limits.

    python bench/space_feasibility.py [--points 60] [--seed 0] [--classes 6]

Draws ``--points`` random points (Optuna's RandomSampler) at 32x32 from forms of the
architecture section of spaces/paper.yaml, everything else as in the file: the growing
form the file uses (stage widths that never shrink, a downsampling plan valid by
construction) at its ``max_channels`` and at the others of 256, 384 and 512, and the per-block
form it used before (each block its own width, log-uniform 16-512). For each growing form, the
point nearest custom-590k-dw (598K parameters, up to 415 channels; what ``seed_nearest`` queues):
can the space reach the most accurate preset within the limits? Each point is screened as a search's driver screens it (search.latency.screen): invalid
(cannot be built), over max_params (exact), or timed in ONNX Runtime on one thread against
the file's latency limit (relative to custom-590k-dw, resolved on this machine).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, header, table  # noqa: E402

PER_BLOCK = {
    "stages": {"low": 3, "high": 6},
    "blocks_per_stage": {"low": 1, "high": 3},
    "channels": {"low": 16, "high": 512, "log": True},
    "conv": ["conv3x3", "dwsep"],
    "last_block": ["plain", "stride2", "dilation2"],
    "dropout": {"low": 0.0, "high": 0.1, "step": 0.01},
    "pool": [True, False],
    "head": ["gap", "flatten"],
}


def screen_form(name: str, doc: dict, points: int, seed: int, classes: int) -> list:
    import optuna

    from search.latency.screen import Screen, resolve_limits
    from search.latency.timer import Timer
    from search.space import InvalidCandidate, space_from_dict, suggest

    space = space_from_dict(doc, name)
    study = optuna.create_study(directions=space.directions, sampler=optuna.samplers.RandomSampler(seed=seed))
    screen = Screen(study, Timer(space.latency_runtime), classes)
    limits = resolve_limits(space.constraints, space.relative_latency, screen, 32, space.input_channels)
    counts = {"invalid": 0, "params": 0, "latency": 0, "feasible": 0}
    latencies, params = [], []
    for _ in range(points):
        try:
            cand = suggest(space, study.ask())
        except InvalidCandidate:
            counts["invalid"] += 1
            continue
        verdict = screen.check(cand.arch, cand.recipe, limits)
        if verdict.feasible:
            counts["feasible"] += 1
            latencies.append(verdict.measurement.latency_ms)
            params.append(verdict.params)
        elif verdict.measurement is None:
            counts["params"] += 1
        else:
            counts["latency"] += 1
    share = {k: f"{v / points:.0%} ({v})" for k, v in counts.items()}
    return [name, share["invalid"], share["params"], share["latency"], share["feasible"],
            f"{limits.max_latency_ms:.2f}",
            f"{statistics.median(latencies):.2f}" if latencies else "-",
            f"{statistics.median(params) / 1000:.0f}K" if params else "-", reach(space, screen, limits)]


def reach(space, screen, limits, preset: str = "custom-590k-dw") -> str:
    """The growing form's point nearest ``preset`` (what seed_nearest queues): its parameters and
    latency against the limit. The per-block form expresses the presets themselves."""
    from search.space import decode, nearest_trials

    if preset not in nearest_trials(space):
        return "the preset itself"
    cand = decode(space, nearest_trials(space)[preset])
    verdict = screen.check(cand.arch, cand.recipe, limits)
    if verdict.measurement is None:
        return f"{verdict.params / 1000:.0f}K params: over max_params"
    return (f"{verdict.params / 1000:.0f}K params, {verdict.measurement.latency_ms / limits.max_latency_ms:.2f}x "
            f"the limit ({'feasible' if verdict.feasible else 'over it'})")


def forms() -> dict[str, dict]:
    """The two space documents compared: spaces/paper.yaml at 32 px, and the same with the
    per-block architecture (which expresses the presets, so it takes no seed_nearest)."""
    import yaml

    paper = yaml.safe_load((REPO / "spaces" / "paper.yaml").read_text())
    paper["training"]["image_size"] = [32]
    widths = {f"growing, max_channels {c}": {**paper, "architecture": {**paper["architecture"], "max_channels": c}}
              for c in (256, 384, 512) if c != paper["architecture"]["max_channels"]}
    return {f"growing (paper.yaml, max_channels {paper['architecture']['max_channels']})": paper, **widths,
            "per-block (before)": {**paper, "architecture": PER_BLOCK, "seed_nearest": False}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--classes", type=int, default=6)
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    t0 = time.time()
    rows = [screen_form(name, doc, args.points, args.seed, args.classes) for name, doc in forms().items()]
    print(header("Feasible points of the search space at 32x32"))
    print(f"{args.points} random points per form, seed {args.seed}, {args.classes} classes; "
          f"{time.time() - t0:.0f} s. Limits as in spaces/paper.yaml: max_params 1M, "
          f"max_latency_ms = custom-590k-dw's ONNX Runtime latency (1 thread) on this machine. "
          f"Latency and params columns: medians over the feasible points.\n")
    print(table(["architecture form", "invalid", "over max_params", "over max_latency_ms", "feasible",
                 "limit ms", "latency ms", "params", "nearest point to custom-590k-dw"], rows))


if __name__ == "__main__":
    main()

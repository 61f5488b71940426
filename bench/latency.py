"""CPU latency of the paper's presets and of a search front's networks, by runtime.

    python bench/latency.py [--storage sqlite:///studies/search-vs-random.db] [--study svr-default svr-random] [--front 4]

Runtimes: PyTorch eager (inference mode), TorchScript (``torch.jit.trace``, what
``castsearch export`` ships), ONNX Runtime fp32 and ONNX Runtime int8 (static QDQ,
calibrated on real training images of the study's dataset, as ``castsearch export
--quantize int8`` makes it). For batch 1 and 50 on 1 and 2 threads, each network is timed
in every runtime back to back with castsearch's latency protocol (warm-up, then the
median of many timed calls), so the ratios against eager are measured side by side.

MACs per image (torch's FLOP counter / 2) give the arithmetic rate each runtime reaches,
in GMAC/s, against what a large float32 matrix product (``torch.mm`` of 1024x1024
matrices) reaches on the same number of threads: a practical fp32 ceiling.
Latency does not depend on the weights, so networks are built with random weights; the
front's networks are rebuilt from the specs and recipes stored in the study.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import DATASETS, REPO, header, table  # noqa: E402
from castmodels import PRESETS  # noqa: E402
from search.deploy.export import export_onnx, ort_session, quantize_int8  # noqa: E402
from search.latency.measure import count_macs, time_calls  # noqa: E402
from search.study import storage as studylib  # noqa: E402
from search.study.record import TrialRecord  # noqa: E402
from search.training.recipe import TrainRecipe  # noqa: E402
from search.trial.build import build_candidate  # noqa: E402

RUNTIMES = ("eager", "torchscript", "ort fp32", "ort int8")
TIMING = {"warmup": 10, "repeats": 30, "min_seconds": 0.3, "max_seconds": 3.0}


def peak_gmacs(threads: int, n: int = 1024) -> float:
    """fp32 multiply-accumulates per second (in G) of a large matrix product on ``threads`` threads."""
    torch.set_num_threads(threads)
    a, b = torch.rand(n, n), torch.rand(n, n)
    r = time_calls(lambda: torch.mm(a, b), threads=threads, warmup=3, repeats=10, min_seconds=1.0)
    return n**3 / (r.median_ms / 1000) / 1e9


def networks(args) -> tuple[dict[str, tuple[torch.nn.Module, tuple[int, int, int]]], int, str, int]:
    """name -> (network, input shape); the class count, the dataset folder used for
    calibration, and how many front networks are among them."""
    recipe = TrainRecipe(image_size=32)
    classes, source, front = 10, str(DATASETS / "x-sdd"), []
    for name in args.study:
        study = studylib.load_existing_study(name, args.storage)
        records = [TrialRecord.read(t) for t in studylib.pareto_front(study)]
        front += [(name, r) for r in records if not r.preset][:args.front]
    if front:
        classes = len(front[0][1].class_names)
        source = front[0][1].data["source"]
    torch.manual_seed(0)
    nets = {name: (build_candidate(spec, recipe, classes).eval(), (3, 32, 32)) for name, spec in PRESETS.items()}
    for study, r in front:
        label = f"{study} #{r.number} ({100 * r.accuracy:.1f}%)"
        nets[label] = (r.build_network().eval(), r.input_shape())
    return nets, classes, source, len(front)


def calibration_images(source: str, shape: tuple[int, int, int]) -> torch.Tensor:
    from search.data import DataConfig, load_dataset

    return load_dataset(DataConfig(source=source, image_size=shape[1], channels=shape[0])).train_x


def runners(model: torch.nn.Module, shape, calib: torch.Tensor, tmp: Path, batch: int, threads: int) -> dict:
    """runtime -> a zero-argument call running one inference of a batch of ``batch`` images."""
    x = torch.rand((batch, *shape), generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, x[:1])
    fp32, int8 = tmp / "model.onnx", tmp / "model.int8.onnx"
    if not fp32.exists():
        export_onnx(model, torch.rand((2, *shape)), fp32)  # batch 2: a batch of 1 would fix the axis
        quantize_int8(fp32, int8, calib)
    sessions = {"ort fp32": ort_session(fp32, threads), "ort int8": ort_session(int8, threads)}
    xn = x.numpy().astype(np.float32)
    name = sessions["ort fp32"].get_inputs()[0].name

    def torch_call(fn):
        def call():
            with torch.inference_mode():
                fn(x)
        return call

    return {
        "eager": torch_call(model),
        "torchscript": torch_call(traced),
        "ort fp32": lambda: sessions["ort fp32"].run(None, {name: xn}),
        "ort int8": lambda: sessions["ort int8"].run(None, {name: xn}),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--storage", default=f"sqlite:///{REPO / 'studies' / 'search-vs-random.db'}")
    p.add_argument("--study", nargs="*", default=["svr-default", "svr-random"],
                   help="studies whose fronts to time (none: the presets only)")
    p.add_argument("--front", type=int, default=4,
                   help="at most this many non-preset front networks per study, most accurate first")
    args = p.parse_args()

    nets, classes, source, n_front = networks(args)
    calib = {}
    peaks = {t: peak_gmacs(t) for t in (1, 2)}
    results: dict = {}  # (threads, batch) -> name -> runtime -> ms
    with tempfile.TemporaryDirectory() as tmp:
        for name, (model, shape) in nets.items():
            if shape not in calib:
                calib[shape] = calibration_images(source, shape)
            folder = Path(tmp) / f"net{len(results)}-{abs(hash(name))}"
            folder.mkdir()
            for threads in (1, 2):
                torch.set_num_threads(threads)
                for batch in (1, 50):
                    calls = runners(model, shape, calib[shape], folder, batch, threads)
                    results.setdefault((threads, batch), {})[name] = {
                        rt: time_calls(call, batch, threads, **TIMING).median_ms for rt, call in calls.items()}
            print(f"timed {name}", file=sys.stderr, flush=True)
    macs = {name: count_macs(model, shape) for name, (model, shape) in nets.items()}

    print(header("Latency by runtime: presets and a search front"))
    studies = ", ".join(f"`{s}`" for s in args.study) or "none"
    print(f"Networks: the six presets at 32x32 and the non-preset networks on the fronts of the studies "
          f"{studies} (at most {args.front} per study, most accurate first; here {n_front}), {classes} "
          f"classes, random weights. int8 calibration: training images of {Path(source).name}. Every cell is "
          f"the median of one measurement (>= 30 timed calls and >= 0.3 s, at most 3 s); within a row the "
          f"four runtimes ran back to back. x: speed-up over eager (eager ms / runtime ms). The fp32 "
          f"reference rate is what a large matrix product (torch.mm, 1024x1024, float32) reaches here: "
          f"{peaks[1]:.1f} GMAC/s on 1 thread, {peaks[2]:.1f} GMAC/s on 2. It is a practical ceiling for "
          f"fp32 convolutions, not the chip's peak; a small network whose data stays in cache can pass it, "
          f"and int8 kernels can too.\n")
    for (threads, batch), by_name in results.items():
        rows = []
        for name, ms in by_name.items():
            rate = {rt: macs[name] * batch / (ms[rt] / 1000) / 1e9 for rt in RUNTIMES}
            best = max(rate, key=rate.get)
            rows.append([name, f"{macs[name] / 1e6:.1f}", f"{ms['eager']:.2f}",
                         *(f"{ms[rt]:.2f} ({ms['eager'] / ms[rt]:.1f}x)" for rt in RUNTIMES[1:]),
                         f"{rate['eager']:.2f}", f"{rate[best]:.2f} ({best}, {100 * rate[best] / peaks[threads]:.0f}%)"])
        speedups = {rt: statistics.median(ms["eager"] / ms[rt] for ms in by_name.values()) for rt in RUNTIMES[1:]}
        print(f"**{threads} thread(s), batch of {batch}**\n")
        print(table(["network", "MMACs/image", "eager ms", "TorchScript ms", "ORT fp32 ms", "ORT int8 ms",
                     "eager GMAC/s", "best GMAC/s (runtime, % of the matmul rate)"], rows))
        print("Median speed-up over eager: " + ", ".join(f"{rt} {v:.1f}x" for rt, v in speedups.items()) + "\n")


if __name__ == "__main__":
    main()

"""bench/resolution.py end to end on generated images: sizes, seeds, the store, overrides."""

import re
import subprocess
import sys

from bench.common import REPO


def test_resolution_bench_trains_each_network_at_each_size_and_resumes_from_the_store(tmp_path):
    """bench/resolution.py at its smallest: one network at 16 and 24 px, two seeds of one epoch
    on generated images; run again, it trains nothing (the store has every training) and
    prints the same accuracies; with --class-balance or --epochs, every network trains anew
    with that recipe."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(("dark", "bright")):
        (tmp_path / "img" / name).mkdir(parents=True)
        for i in range(15):
            pixels = np.clip(rng.normal(60 + 120 * k, 25, (24, 24)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "img" / name / f"{i}.png")
    space = tmp_path / "s.yaml"
    space.write_text((REPO / "spaces" / "paper.yaml").read_text().replace("cache_dir: null", f"cache_dir: {tmp_path}/c")
                     .replace("epochs: 10 ", "epochs: 1 "))
    argv = [sys.executable, str(REPO / "bench" / "resolution.py"), "--space", str(space), "--data",
            str(tmp_path / "img"), "--sizes", "24", "16", "--seeds", "2", "--codes", "C8 P C8 A", "--jobs", "1",
            "--rounds", "1"]
    first = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    row = r"^\| C8 P C8 A \| (\d+) \| [\d,]+ \| (\d\.\d{3} ± \d\.\d{3} \| 2 \| [\d.]+ \| [\d.]+ \| [\d.]+) \|"
    rows = re.findall(row, first.stdout, re.M)  # the same figures, seconds per epoch included
    assert [size for size, _ in rows] == ["16", "24"], first.stdout
    assert first.stderr.count("(reused)") == 0 and "seed 556" in first.stderr
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert re.findall(row, again.stdout, re.M) == rows
    unweighted = subprocess.run([*argv, "--class-balance", "none"], capture_output=True, text=True, timeout=300)
    assert len(re.findall(row, unweighted.stdout, re.M)) == 2, unweighted.stderr
    assert "`class_balance: none` for every network" in unweighted.stdout
    longer = subprocess.run([*argv, "--epochs", "2"], capture_output=True, text=True, timeout=300)
    assert len(re.findall(row, longer.stdout, re.M)) == 2 and "**2 epochs**" in longer.stdout, longer.stderr
    assert longer.stderr.count("(reused)") == 0  # trained anew: the epochs are part of a training's identity
    assert len(list((tmp_path / "c" / "trainings").glob("*.json"))) == 12  # two sizes x two seeds, each recipe trained
    zero = subprocess.run([*argv, "--epochs", "0"], capture_output=True, text=True, timeout=60)
    assert zero.returncode != 0 and "--epochs: 0" in zero.stderr
    bad = subprocess.run([*argv[:2], "--data", str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--data: no folder" in bad.stderr

"""Render a castsearch report in headless Chromium and check that it drew.

    python bench/report_screenshot.py studies/STUDY/report/report.html [--out shot.png]

Takes a screenshot of the report with Debian's ``chromium`` and checks the picture: the
window size, enough non-white pixels (text and tables), and enough strongly coloured
pixels, which only the embedded plots have (an image that failed to load draws none).
Prints one line with the measurements; exit status 0 when it rendered, 1 when not.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

WINDOW = (1280, 3000)  # tall enough for the front, the headline, the hypervolume and a recall plot
MIN_INK = 0.02  # fraction of pixels that are not white (text, tables, plots)
MIN_COLOUR = 0.002  # fraction whose channels differ by > 60: plot markers and bars (~5000 px)


def screenshot(html: Path, png: Path, chromium: str = "chromium", window: tuple[int, int] = WINDOW) -> Path:
    """Screenshot ``html`` with headless Chromium (no network, no GPU, a throwaway profile)."""
    with tempfile.TemporaryDirectory() as profile:
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
               f"--user-data-dir={profile}", f"--screenshot={png}", f"--window-size={window[0]},{window[1]}",
               html.resolve().as_uri()]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if run.returncode != 0 or not png.is_file():
        raise RuntimeError(f"{chromium} made no screenshot (exit {run.returncode}): {run.stderr.strip()[-500:]}")
    return png


def measure(png: Path) -> dict:
    pixels = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)
    spread = pixels.max(axis=2) - pixels.min(axis=2)
    return {"size": (pixels.shape[1], pixels.shape[0]),
            "ink": float((pixels.min(axis=2) < 235).mean()),
            "colour": float((spread > 60).mean())}


def rendered(m: dict, window: tuple[int, int] = WINDOW) -> bool:
    return m["size"] == window and m["ink"] >= MIN_INK and m["colour"] >= MIN_COLOUR


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("html", type=Path, help="report.html written by castsearch report")
    p.add_argument("--out", type=Path, help="screenshot PNG (default: beside the report)")
    p.add_argument("--chromium", default="chromium", help="browser executable (default: chromium)")
    args = p.parse_args(argv)
    if shutil.which(args.chromium) is None:
        print(f"{args.chromium} not found on PATH (Debian: apt-get install -y chromium)", file=sys.stderr)
        return 2
    if not args.html.is_file():
        print(f"no report at {args.html}", file=sys.stderr)
        return 2
    png = screenshot(args.html, args.out or args.html.with_name("screenshot.png"), args.chromium)
    m = measure(png)
    ok = rendered(m)
    print(f"{'rendered' if ok else 'NOT rendered'}: {png} {m['size'][0]}x{m['size'][1]}, "
          f"ink {m['ink']:.1%} (>= {MIN_INK:.0%}), coloured {m['colour']:.2%} (>= {MIN_COLOUR:.1%})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

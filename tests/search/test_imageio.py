"""search.data.imageio against oversized images: a file whose header claims more than
MAX_PIXELS pixels is refused before decoding, by name and size, and skipped by the loader as
unreadable; the grey check of a colour image wanted as one channel looks at the resized
image, never the full-size one. The files are tiny PNGs with huge headers."""

from __future__ import annotations

import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from search.data import DataConfig, imageio, load_dataset
from search.data.imageio import DECODE_ERRORS, MAX_PIXELS, ImageTooLarge, decode


def huge_png(path: Path, width: int, height: int, mode: str = "RGB") -> Path:
    """A valid PNG of ``width`` x ``height`` black pixels in a few hundred KB (zlib packs the
    zero rows about 1000:1), written without ever holding the image."""
    colour_type, channels = {"L": (0, 1), "RGB": (2, 3)}[mode]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer, row = zlib.compressobj(9), bytes(1 + width * channels)  # filter byte 0, then the pixels
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def test_the_limit_sits_well_below_pillows():
    assert MAX_PIXELS <= 50_000_000 < Image.MAX_IMAGE_PIXELS
    assert 8192 * 4096 <= MAX_PIXELS  # an 8K line-scan camera's frame still decodes


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("channels", [1, 3])
def test_an_image_over_the_limit_is_refused_before_decoding(tmp_path, mode, channels):
    """10000x10000 in 100-300 KB: decoded, it took 2-7 s and 0.8-1.7 GB; now refused from its header."""
    path = huge_png(tmp_path / f"huge-{mode}.png", 10000, 10000, mode)
    assert path.stat().st_size < 300_000
    start = time.perf_counter()
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(ImageTooLarge) as e:
        decode(path, 16, channels)  # Pillow warns above its own limit (89 megapixels), then castsearch refuses
    assert time.perf_counter() - start < 1.0
    kb = round(path.stat().st_size / 1000)
    assert str(e.value) == (f"{path}: 10000x10000 pixels (100.0 megapixels, from a file of {kb} KB) is over "
                            f"the 36-megapixel limit on images")
    assert isinstance(e.value, DECODE_ERRORS) and e.value.path == path


def test_the_limit_counts_decoded_pixels(tmp_path, monkeypatch):
    """At the limit an image decodes, one pixel over it does not; a JPEG counts at the reduced
    scale libjpeg decodes it (enough for image_size)."""
    monkeypatch.setattr(imageio, "MAX_PIXELS", 400)
    Image.new("RGB", (20, 20), (9, 9, 9)).save(tmp_path / "at.png")
    Image.new("RGB", (21, 20), (9, 9, 9)).save(tmp_path / "over.png")
    assert decode(tmp_path / "at.png", 16, 3).pixels.shape == (3, 16, 16)
    with pytest.raises(ImageTooLarge, match=r"over\.png: 21x20 pixels \(0\.0 megapixels, from a file of \d+ B\) "
                                            r"is over the 0\.0004-megapixel limit"):
        decode(tmp_path / "over.png", 16, 3)
    Image.new("RGB", (160, 160), (9, 9, 9)).save(tmp_path / "big.jpg")
    assert decode(tmp_path / "big.jpg", 8, 3).width == 160  # decoded at 1/8: 20x20
    with pytest.raises(ImageTooLarge, match=r"big\.jpg: 160x160 pixels, 40x40 at the reduced scale \(0\.0 megapixels"):
        decode(tmp_path / "big.jpg", 40, 3)  # 1/4: 40x40


def test_the_loader_skips_an_image_over_the_limit(tmp_path):
    root = tmp_path / "d"
    for name, value in {"a": 60, "b": 190}.items():
        (root / name).mkdir(parents=True)
        for i in range(5):
            Image.new("L", (20 + i, 18), value).save(root / name / f"{i}.png")
    huge = huge_png(root / "a" / "huge.png", 7000, 7000)
    ds = load_dataset(DataConfig(source=str(root), image_size=16), tmp_path / "cache")
    ((path, reason),) = [(s["path"], s["reason"]) for s in ds.identity["skipped"]]
    assert path == str(huge.resolve())
    assert "7000x7000 pixels (49.0 megapixels" in reason and "36-megapixel limit" in reason
    assert sum(ds.identity["counts"].values()) == 10


@pytest.mark.parametrize(("colour", "grey"), [((90, 90, 90), True), ((90, 120, 30), False)])
def test_the_grey_check_looks_at_the_resized_image(tmp_path, colour, grey):
    """One channel wanted of a colour file: the grey check no longer converts the full-size
    image to an RGB array (36 MB of numpy for 3000x2000, 1.7 GB for 10000x10000)."""
    path = tmp_path / "photo.png"
    Image.new("RGB", (3000, 2000), colour).save(path)
    tracemalloc.start()
    try:
        decoded = decode(path, 16, 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoded.grey is grey and decoded.grey == decode(path, 16, 3).grey
    assert peak < 1_000_000, peak
    with Image.open(path) as im:  # the pixels: unchanged, converted to grey and then resized
        expected = np.asarray(im.convert("L").resize((16, 16), Image.BILINEAR, reducing_gap=2.0))
    assert np.array_equal(decoded.pixels[0], expected)

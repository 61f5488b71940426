"""The tensor cache is visible: the load that writes it says where, ``castsearch cache`` lists
it and ``--clear`` empties it, touching nothing castsearch did not write."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from search.cli import main
from search.data import DataConfig, load_dataset
from search.data import cache as tensorcache
from tests.search.data_helpers import make_folder

CLASSES = {"crack": 40, "pit": 120, "scale": 200}


@pytest.fixture
def images(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "line-camera", CLASSES, per_class=10)


def _load(images: Path, cache: Path, size: int = 16):
    return load_dataset(DataConfig(source=str(images), image_size=size), cache_dir=cache)


def test_the_load_that_writes_the_cache_says_where_once(images: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _load(images, cache)
    [line] = [n for n in first.notices() if n.startswith("cache:")]
    written = first.cache_written
    assert written is not None and written.parent == cache and written.is_file()
    assert str(written) in line and "castsearch cache --clear" in line
    assert tensorcache.human_bytes(written.stat().st_size) in line

    again = _load(images, cache)  # read from the cache: nothing written, nothing said
    assert again.cache_written is None
    assert not [n for n in again.notices() if n.startswith("cache:")]


def test_cache_lists_what_is_there(images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    _load(images, cache, 16)
    _load(images, cache, 24)
    assert main(["cache", "--dir", str(cache)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"cache {cache}: 2 decoded dataset(s), ")
    assert sorted(line.split()[2] for line in out[1:3]) == ["16", "24"]  # image sizes
    assert all(str(images) in line for line in out[1:3])

    assert main(["cache", "--dir", str(cache), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["folder"] == str(cache)
    assert sorted(d["image_size"] for d in listing["datasets"]) == [16, 24]
    assert {d["source"] for d in listing["datasets"]} == {str(images)}
    assert {d["channels"] for d in listing["datasets"]} == {1}  # grey images, channels: auto
    assert listing["bytes"] == sum(p.stat().st_size for p in cache.iterdir())


def test_clear_removes_only_castsearch_files_and_no_write_in_progress(images: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    _load(images, cache)
    written = {p.name for p in cache.iterdir()}
    assert {Path(n).suffix for n in written} >= {".pt", ".json"}
    interrupted = cache / ".line-camera-16px-c1-0123456789abcdef.pt.x1y2.tmp"
    interrupted.write_bytes(b"half")
    an_hour_ago = time.time() - 3600
    os.utime(interrupted, (an_hour_ago, an_hour_ago))
    writing = cache / ".line-camera-24px-c1-0123456789abcdef.pt.k2j3.tmp"  # another run's write, in progress
    writing.write_bytes(b"half")
    (cache / "notes.txt").write_text("mine")
    (cache / "model.pt").write_bytes(b"not castsearch's")

    assert main(["cache", "--dir", str(cache), "--clear"]) == 0
    out = capsys.readouterr().out
    assert f"removed {len(written) + 1} file(s)" in out and str(cache) in out
    assert "left 2 file(s) castsearch did not write" in out
    assert sorted(p.name for p in cache.iterdir()) == sorted(["model.pt", "notes.txt", writing.name])

    assert _load(images, cache).cache_written is not None  # decoded again, and said again


def test_cache_follows_the_environment_and_an_absent_folder_is_empty(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CASTSEARCH_CACHE", str(tmp_path / "nowhere"))
    assert main(["cache"]) == 0
    assert capsys.readouterr().out.strip() == f"cache {tmp_path / 'nowhere'}: empty"
    assert main(["cache", "--clear"]) == 0
    assert "removed 0 file(s)" in capsys.readouterr().out
    assert not (tmp_path / "nowhere").exists()  # listing or clearing creates nothing


def test_a_cache_folder_that_is_a_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f").write_text("x")
    assert main(["cache", "--dir", str(tmp_path / "f")]) == 2
    assert f"cache folder is a file: {tmp_path / 'f'}" in capsys.readouterr().err


@pytest.mark.parametrize("name, ours", [
    ("neu-cls-32px-c3-8cb35f72653aaf51.pt", True),
    ("neu-cls-32px-c3-8cb35f72653aaf51.split.json", True),
    ("x-sdd-32px-auto-0123456789abcdef.json", True),
    (".x-sdd-32px-c1-0123456789abcdef.pt.k2j3.tmp", True),
    ("neu-cls-32px-c3-8cb35f72.pt", False),
    ("resnet18-f37072fd.pth", False),
    ("notes.json", False),
])
def test_cache_file_names(name: str, ours: bool) -> None:
    assert tensorcache.is_cache_file(name) is ours


class _HeaderPrinted(Exception):
    pass


def test_run_says_where_each_image_size_was_cached(images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A search at two image sizes decodes and caches each; its header names both files, once."""
    from search.run import runner

    def stop(*args, **kwargs):
        raise _HeaderPrinted

    monkeypatch.setattr(runner, "run_search", stop)  # the header is printed before the search starts
    monkeypatch.setenv("CASTSEARCH_CACHE", str(tmp_path / "cache"))
    space = tmp_path / "two.yaml"
    space.write_text(f"""study: two
seed_presets: false
budget: {{trials: 1}}
data: {{source: {images}}}
architecture:
  stages: {{low: 1, high: 1}}
  blocks_per_stage: 1
  channels: {{low: 4, high: 8}}
  conv: [conv3x3]
  last_block: [plain]
  dropout: 0.0
  pool: [true]
  head: [gap]
training: {{epochs: 1, image_size: [16, 24]}}
""")
    argv = ["run", str(space), "--storage", f"sqlite:///{tmp_path}/two.db"]
    with pytest.raises(_HeaderPrinted):
        main(argv)
    cached = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  cache:")]
    assert len(cached) == 2 and "-16px-" in cached[0] and "-24px-" in cached[1]
    with pytest.raises(_HeaderPrinted):
        main(argv)  # both read from the cache now: nothing to say
    assert "cache:" not in capsys.readouterr().out

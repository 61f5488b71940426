"""What the search-space tests share: paper.yaml's path, its document in the per-block form
with every enhancement and augmentation searched (``PAPER_DICT``), ways to edit that document,
a seeded random study to sample a space with, and every key path of a document. Used by
test_space.py, test_space_reader.py, test_space_growing.py, test_space_fuzz.py and the tests
of other modules that build a space."""

import copy
from pathlib import Path

import optuna
import yaml

from castmodels import ArchSpec

PAPER = Path(__file__).resolve().parents[2] / "spaces" / "paper.yaml"
# paper.yaml with its architecture in the per-block form, which expresses all six presets
# (paper.yaml itself uses the growing form; see test_space_growing.py)
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
# ... and every enhancement and augmentation searched (paper.yaml fixes most of them)
EVERY_SWITCH = {
    "enhancements": {"blurpool": [False, True], "squeeze_excite": [False, True], "swa": [False, True],
                     "label_smoothing": [0.0, 0.1], "mixup": [0.0, 0.2], "cutout": [False, True]},
    "augmentations": {name: [False, True] for name in ("hflip", "vflip", "rotate", "gaussian_blur",
                                                       "shift_scale_rotate", "random_crop", "brightness_contrast")},
}
PAPER_DICT = {**yaml.safe_load(PAPER.read_text()), "architecture": PER_BLOCK, "seed_nearest": False, **EVERY_SWITCH}


def with_changes(*changes):
    """A copy of paper.yaml's dict; each change is (key path, value), value DELETE removes the key."""
    doc = copy.deepcopy(PAPER_DICT)
    for path, value in changes:
        node = doc
        for key in path[:-1]:
            node = node.setdefault(key, {})
        if value is DELETE:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return doc


DELETE = object()


def same_network(a: ArchSpec, b: ArchSpec) -> bool:
    return a.layers == b.layers and a.head == b.head


def random_study():
    return optuna.create_study(directions=["maximize", "minimize", "minimize"],
                               sampler=optuna.samplers.RandomSampler(seed=0))


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, prefix + (i,))

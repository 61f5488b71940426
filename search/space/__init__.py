"""The search space: a YAML file validated into a :class:`SearchSpace`, and the walk that
turns Optuna parameters into a :class:`Candidate` (an ArchSpec plus a TrainRecipe).

``spaces/paper.yaml`` is the paper's space and documents every key. In short, each
searchable value is one of

- a scalar: fixed, never an Optuna parameter;
- a list: a categorical choice (non-empty, no duplicates);
- a range ``{low, high, log?, step?}`` (numeric keys only): an int range for integer
  keys, a float range for the others; ``low <= high``, ``log`` needs ``low > 0``,
  ``log`` and ``step`` do not go together.

The network is a sequence of stages; a stage is ``blocks`` conv blocks (each conv ->
ReLU -> BatchNorm), its last block is plain, stride 2 or dilation 2, and the stage's
dropout and 2x2 max-pool follow that last block. The Optuna parameters are named

    stages, s{i}_blocks, s{i}_b{j}_conv, s{i}_b{j}_channels, s{i}_last, s{i}_dropout,
    s{i}_pool, head                                          (i, j count from 1)
    epochs, batch_size, optimizer, lr, weight_decay, image_size
    blurpool, squeeze_excite, swa, label_smoothing, mixup, cutout, aug_<augmentation>

and a parameter exists only where the point has it (stage 5's parameters only when
``stages >= 5``). :func:`suggest` (an Optuna trial) and :func:`decode` (a dict of
params) share one walk, so a stored trial decodes to the candidate it trained.
:func:`encode` goes the other way and :func:`preset_params` uses it to put the
paper's six networks first in a study.

Every candidate trains with seed ``sampler.seed`` (0 when unset): all trials see the
same initialisation and batch order, so their differences come from the point.

A bad file fails here, before a study exists, with one line that names the file and the key
path: the reader (:class:`~search.space.yamlfile._SpaceLoader`, a ``yaml.SafeLoader``)
refuses files over 1 MiB, nesting deeper than 32 levels, a key written twice; the checks
bound every number a file gives (``MAX_*``), refuse NaN and inf, stepped ranges of more than
a million points and a per-block space whose least downsampling point leaves no feature map.

The modules, one concern each:

- :mod:`~search.space.values`: Fixed, Choice and Range, and the errors SpaceError and
  InvalidCandidate;
- :mod:`~search.space.schema`: SearchSpace, its sections and Candidate, and the names a
  file may use (samplers, early stopping, last blocks, ...);
- :mod:`~search.space.checks`: the check of each kind of value, and the bounds ``MAX_*``;
- :mod:`~search.space.reader`: the reader of a document's mappings, keys and values;
- :mod:`~search.space.sections`: each section of a document validated into a SearchSpace;
- :mod:`~search.space.yamlfile`: the file's text and its YAML, read by the hardened loader;
- :mod:`~search.space.load`: :func:`load_space` and :func:`space_from_dict`;
- :mod:`~search.space.walk`: :func:`suggest` and :func:`decode` (params to a Candidate);
- :mod:`~search.space.encoding`: :func:`encode` and :func:`nearest` (a network to params);
- :mod:`~search.space.presets`: the paper's networks in a study (:func:`preset_trials`,
  :func:`nearest_trials`, :func:`preset_params`), and any network as a point of the space
  (:func:`point_of`: an earlier study's front in a warm start, ``seed_from``).
"""

from search.space.checks import parse_duration
from search.space.encoding import encode, nearest
from search.space.load import load_space, space_from_dict
from search.space.presets import PresetTrial, nearest_trials, point_of, preset_params, preset_trials
from search.space.schema import (
    ArchitectureSpace,
    Budget,
    Candidate,
    DataSettings,
    GrowingArchitecture,
    SamplerConfig,
    SearchSpace,
)
from search.space.sections import valid_study_name
from search.space.values import Choice, Fixed, InvalidCandidate, Param, Range, SpaceError
from search.space.walk import decode, suggest

__all__ = [
    "ArchitectureSpace",
    "Budget",
    "Candidate",
    "Choice",
    "DataSettings",
    "Fixed",
    "GrowingArchitecture",
    "InvalidCandidate",
    "Param",
    "PresetTrial",
    "Range",
    "SamplerConfig",
    "SearchSpace",
    "SpaceError",
    "decode",
    "encode",
    "load_space",
    "nearest",
    "nearest_trials",
    "parse_duration",
    "point_of",
    "preset_params",
    "preset_trials",
    "space_from_dict",
    "suggest",
    "valid_study_name",
]

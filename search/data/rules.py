"""What every data input must satisfy, importable without torch: the smallest image side,
the ways an image is made square, the channel counts, and the error that bad input raises.

Shared by the dataset loader (:mod:`search.data`), the synthetic generator
(:mod:`search.data.synthetic`) and the search-space file check (:mod:`search.space`), which
must not import torch.
"""

from __future__ import annotations

MIN_IMAGE_SIZE = 8
RESIZES = ("squash", "pad", "center-crop")  # how an image is made square (search.data.imageio)
AUTO = "auto"  # channels decided from the images when they are loaded (search.data)
CHANNELS = (AUTO, 1, 3)  # what data.channels may be: auto, grey or RGB
SYNTHETIC_CHANNELS = 3  # what auto means for the synthetic set: 3, as before auto existed


def valid_channels(value: object) -> bool:
    """Whether ``value`` is one of CHANNELS (``True`` is not 1 here: a YAML typo must not pass)."""
    return value == AUTO or (isinstance(value, int) and not isinstance(value, bool) and value in (1, 3))


class DataError(ValueError):
    """Bad data input; str(e) is a one-line message naming the path and what is wrong."""

"""What every data input must satisfy, importable without torch: the smallest image side,
the ways an image is made square, and the error that bad input raises.

Shared by the dataset loader (:mod:`search.data`), the synthetic generator
(:mod:`search.synthetic`) and the search-space file check (:mod:`search.space`), which
must not import torch.
"""

from __future__ import annotations

MIN_IMAGE_SIZE = 8
RESIZES = ("squash", "pad", "center-crop")  # how an image is made square (search.imageio)


class DataError(ValueError):
    """Bad data input; str(e) is a one-line message naming the path and what is wrong."""

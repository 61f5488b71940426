"""A search space's data at each of its image sizes, loaded as ``castsearch run`` loads it."""

from __future__ import annotations

from search.data.dataset import Dataset
from search.data.sources import load_dataset


def load_sizes(space) -> dict[int, Dataset]:
    """The data of ``space`` (a :class:`search.space.SearchSpace`) at each of its image sizes.
    ``channels: auto`` is decided at the first size and the others load with what it decided,
    so every network of a study takes one input."""
    first, *rest = space.image_sizes
    datasets = {first: load_dataset(space.data.config(first), cache_dir=space.data.cache_dir)}
    decided = space.with_channels(datasets[first].in_channels).data
    datasets.update({size: load_dataset(decided.config(size), cache_dir=decided.cache_dir) for size in rest})
    return datasets

"""Datasets: image folders, GC10-DET layouts, the built-in synthetic set, split, cache.

``load_dataset(DataConfig(...))`` turns a source into a :class:`Dataset` of
uint8 tensors ``[N, C, H, W]`` split into train / val / test. Models read
``x.float() / 255``; nothing is normalised further.

Sources:

- a folder of class sub-folders ``<root>/<class>/<image>`` (any image Pillow
  reads; class names are the sorted folder names);
- GC10-DET as distributed: folders ``1``..``10`` beside a ``lable/`` (or
  ``label/``) folder of VOC XML, which is ignored; the classes get GC10's
  names, ordered by folder number;
- the Kaggle copy of GC10-DET: ``<root>/images/images/<class>/`` (or
  ``<root>/images/<class>/`` when ``images/`` holds only class folders);
- split folders, as most public defect sets ship: ``<root>/train/<class>/``,
  ``<root>/test/<class>/`` and optionally ``<root>/val/<class>/`` (or ``valid``,
  ``validation``; any case), each with the same class folders and nothing but these
  folders under ``<root>``. The test split is the supplied one; so is the validation
  split when there is one, else it is split off ``train/`` as below;
- ``"synthetic"``: grey steel-strip textures with drawn defects, generated
  with numpy (:func:`search.data.synthetic.generate_synthetic`), no files shipped.

The split is stratified and seeded (default: 10% test, then 20% of the rest
for validation, seed 555) and computed on sorted file lists, so it does not
depend on filesystem order. Images are made square by ``resize``
(:mod:`search.data.imageio`: squash, pad or center-crop). Decoded tensors are cached
under ``cache_dir`` keyed by the source, its layout, a fingerprint of its files,
the image size, channels, resize and split; the per-split file lists are written
beside the cache as JSON (file names, listing and clearing: :mod:`search.data.cache`,
``castsearch cache``). The load that writes a cache file says where in its notices.

``channels`` is 1 (grey), 3 (RGB) or ``auto`` (the default): decided once per dataset
when it is loaded, 1 when every image is grey, otherwise 3. An image is grey when its
file holds a grey mode (1, L, LA, I, I;16, F: read from the header alone) or when its
red, green and blue are equal (within 2 levels, after resizing: :attr:`Decoded.grey`, which
decoding at 3 channels works out anyway), as in grey images saved as RGB JPEGs. Only
when some file holds a colour mode are the images decoded to decide; when they all turn
out grey they are decoded once more, as one channel. The decision is kept beside the cache
(keyed by the files' fingerprint, the size and resize), and the resolved count keys the
tensor cache and the identity exactly as the explicit value would, so ``auto`` that
resolved to 1 shares the ``channels: 1`` cache and never reads a 3-channel one. For the
synthetic set ``auto`` means 3, what it always gave (its textures are grey: write 1 to
train on one channel).

What decoding changed (images upscaled, squashed, grey copied to three channels or
colour made grey) is counted in ``identity["input"]``; what ``auto`` chose, and why, is
``identity["channels_auto"]``. :meth:`Dataset.notices` says these, the layout and the
classes too small to measure, in one line each.
Modules, one concern each (the names below are re-exported here):

- :mod:`~search.data.config`: :class:`DataConfig`, what a load is asked for;
- :mod:`~search.data.dataset`: :class:`Dataset`, what a load returns;
- :mod:`~search.data.sources`: :func:`load_dataset`, a folder or the synthetic set;
- :mod:`~search.data.sizes`: :func:`load_sizes`, a search space's data at each image size;
- :mod:`~search.data.layout`: the folder layouts above;
- :mod:`~search.data.decoding`: decoding many files on threads, what decoding changed;
- :mod:`~search.data.channels`: ``channels: auto``;
- :mod:`~search.data.split`: the seeded stratified split;
- :mod:`~search.data.notices`: the lines :meth:`Dataset.notices` says;
- :mod:`~search.data.store`: the decoded tensors in the cache folder, and
  :mod:`~search.data.cache`: its file names, listing and clearing (torch-free);
- :mod:`~search.data.imageio` (one image), :mod:`~search.data.rules` (what input must
  satisfy, torch-free), :mod:`~search.data.synthetic` (the synthetic generator).
"""

from __future__ import annotations

from castmodels.registry import lazy_exports

# Imported on first use, so that reading a space (search.data.rules) or listing the cache
# (search.data.cache) never pays for torch.
_EXPORTS = {  # module -> the names it exports
    "search.data.cache": ("default_cache_dir",),
    "search.data.config": ("DataConfig",),
    "search.data.dataset": ("Dataset",),
    "search.data.rules": ("DataError",),
    "search.data.sizes": ("load_sizes",),
    "search.data.sources": ("load_dataset",),
}

__all__ = sorted(name for names in _EXPORTS.values() for name in names)

__getattr__ = lazy_exports(__name__, _EXPORTS)

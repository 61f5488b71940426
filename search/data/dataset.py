"""What a load returns: :class:`Dataset`, decoded uint8 tensors per split and where they came from."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from search.data.notices import notices


@dataclass
class Dataset:
    """Decoded uint8 images ``[N, C, H, W]`` and int64 labels per split, plus where they came from."""

    class_names: list[str]
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    identity: dict
    cache_written: Path | None = None  # the tensor file this load wrote; None when it read one or wrote none

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def layout(self) -> str:
        """How the source was laid out: folders, gc10, kaggle, synthetic, train/test or train/val/test."""
        return self.identity["layout"]

    def notices(self) -> list[str]:
        """One line each, for a command's header: how the data was split, what ``channels:
        auto`` chose, what decoding changed, where the decoded tensors were cached (by the load
        that wrote them), and the classes with too few val or test images to measure
        (:mod:`search.data.notices`)."""
        return notices(self.identity, self.cache_written)

    def to(self, device: str) -> Dataset:
        """A copy whose tensors live on ``device`` (a trial on a GPU moves its data there once,
        and every batch and evaluation indexes it in place); this dataset itself, on "cpu"."""
        if device == "cpu":
            return self
        moved = {name: getattr(self, name).to(device) for name in
                 ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")}
        copy = replace(self, **moved)
        if hasattr(self, "_content_digest"):  # the identity of the images, not of where they are
            copy._content_digest = self._content_digest
        return copy

"""What a dataset load is asked for: :class:`DataConfig`, which checks itself on creation."""

from __future__ import annotations

from dataclasses import dataclass

from search.data.rules import AUTO, MIN_IMAGE_SIZE, RESIZES, DataError, valid_channels


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from, how they are decoded and how they are split."""

    source: str = "synthetic"  # "synthetic" or a folder path
    image_size: int = 32  # images resized to image_size x image_size
    channels: int | str = AUTO  # 1 (grey), 3 (RGB) or "auto": 1 when every image is grey (search.data docstring)
    test_fraction: float = 0.1
    val_fraction: float = 0.2  # fraction of the non-test part; it ranks candidates (see spaces/paper.yaml)
    split_seed: int = 555
    synthetic_count: int = 2000  # only for source == "synthetic"
    synthetic_seed: int = 0  # only for source == "synthetic"
    resize: str = "squash"  # how images are made square: squash | pad | center-crop

    @classmethod
    def from_identity(cls, identity: dict) -> DataConfig:
        """The config that loads the data a :attr:`search.data.Dataset.identity` describes."""
        synthetic = {k: identity[k] for k in ("synthetic_count", "synthetic_seed") if k in identity}
        return cls(source=identity["source"], image_size=identity["image_size"], channels=identity["channels"],
                   test_fraction=identity["test_fraction"], val_fraction=identity["val_fraction"],
                   split_seed=identity["split_seed"], resize=identity.get("resize", "squash"), **synthetic)

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source:
            raise DataError(
                f"source must be 'synthetic' or a folder path, got {self.source!r} (DataConfig.source)"
            )
        if not isinstance(self.image_size, int) or self.image_size < MIN_IMAGE_SIZE:
            raise DataError(
                f"image_size must be an integer >= {MIN_IMAGE_SIZE}, got {self.image_size!r} (DataConfig.image_size)"
            )
        if not valid_channels(self.channels):
            raise DataError(
                f"channels must be auto, 1 (grey) or 3 (RGB), got {self.channels!r} (DataConfig.channels)"
            )
        for name in ("test_fraction", "val_fraction"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
                raise DataError(f"{name} must be in (0, 1), got {value!r} (DataConfig.{name})")
        if self.resize not in RESIZES:
            raise DataError(
                f"resize must be one of {', '.join(RESIZES)}, got {self.resize!r} (DataConfig.resize)"
            )
        if not isinstance(self.synthetic_count, int) or self.synthetic_count < 1:
            raise DataError(
                f"synthetic_count must be an integer >= 1, got {self.synthetic_count!r} (DataConfig.synthetic_count)"
            )

"""What a load says to the user, one line each (:meth:`search.data.Dataset.notices`): how the
data was split, what ``channels: auto`` chose, what decoding changed, where the decoded tensors
were cached, and the classes too small to measure. Each line is built from a dataset's
identity alone (or the cache file a load wrote), so a cached load says the same.
"""

from __future__ import annotations

from pathlib import Path

from search.data.cache import human_bytes
from search.data.decoding import ASPECT_TOLERANCE
from search.data.layout import LAYOUT_NAMES

MIN_MEASURABLE = 5  # fewer val or test images of a class than this: its accuracy is noise


def notices(identity: dict, cache_written: Path | None) -> list[str]:
    """The lines that apply, in the order a command's header shows them."""
    lines = [describe_layout(identity), describe_channels(identity), describe_input(identity),
             describe_cache(cache_written), describe_small(identity)]
    return [line for line in lines if line]


def _percent(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def describe_layout(identity: dict) -> str:
    seed = identity["split_seed"]
    folders = identity.get("split_folders")
    if not folders:
        name = LAYOUT_NAMES.get(identity["layout"], identity["layout"])
        return (f"layout: {name}; split here: {_percent(identity['test_fraction'])} test, then "
                f"{_percent(identity['val_fraction'])} of the rest val (seed {seed})")
    if "val" in folders:
        val = f"val = {folders['val']}/ as supplied"
    else:
        val = f"val = {_percent(identity['val_fraction'])} of {folders['train']}/ (seed {seed})"
    return f"layout: {identity['layout']} folders; test = {folders['test']}/ as supplied, {val}"


def describe_channels(identity: dict) -> str | None:
    """E.g. ``channels: auto -> 1 (all 1,800 images are grey)``; None when the count was given."""
    why = identity.get("channels_auto")
    return f"channels: auto -> {identity['channels']} ({why})" if why else None


def describe_input(identity: dict) -> str | None:
    counts = identity.get("input")
    if not counts:
        return None
    done = {
        "upscaled": f"upscaled to {identity['image_size']} px",
        "squashed": f"squashed to square (aspect ratio off by more than {_percent(ASPECT_TOLERANCE)})",
        "padded": "padded to square",
        "cropped": "center-cropped to square",
        "grey_to_rgb": "grey copied to 3 channels",
        "colour_to_grey": "colour made grey",
    }
    parts = [f"{counts[k]} {text}" for k, text in done.items() if counts.get(k)]
    if not parts:
        return None
    return f"input: of {counts['images']} images, {', '.join(parts)} (resize {identity['resize']})"


def describe_cache(cache_written: Path | None) -> str | None:
    """Said once, by the load that wrote the decoded tensors: where they went and how to remove them."""
    if cache_written is None:
        return None
    try:
        size = human_bytes(cache_written.stat().st_size)
    except OSError:
        size = "size unknown"
    return (f"cache: decoded images saved for later runs in {cache_written} ({size}); "
            f"`castsearch cache` lists the cache, `castsearch cache --clear` empties it")


def describe_small(identity: dict) -> str | None:
    names = identity["class_names"]
    small = []
    for split in ("val", "test"):
        few = [f"{name} {n}" for name, n in zip(names, identity["class_counts"][split], strict=True)
               if n < MIN_MEASURABLE]
        if few:
            small.append(f"{split} {', '.join(few)}")
    if not small:
        return None
    return (f"warning: too few images to measure these classes (fewer than {MIN_MEASURABLE}): "
            f"{'; '.join(small)}")

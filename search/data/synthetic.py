"""The built-in synthetic data: grey steel-strip textures with one drawn defect each, numpy only.

:func:`generate_synthetic` renders the images; :mod:`search.data` splits and caches them
as the ``"synthetic"`` source.

Every drawing works in unit coordinates (X, Y in [0, 1], one pixel = px), so
the same generator renders at any size. The strip is rolled along x: the
background has streaks along x; defects vary in position, size, contrast and
orientation, and low-contrast instances, texture noise and distractor
streaks/stains make the classes overlap (a small CNN should not reach 100%).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from search.data.rules import MIN_IMAGE_SIZE, DataError

SYNTHETIC_VERSION = 1  # bump when the generator's output changes, so caches are rebuilt


def _uniform(rng: np.random.Generator, low: float, high: float, n: int) -> np.ndarray:
    """One value per image, shaped [n, 1, 1] to broadcast over [n, H, W]."""
    return rng.uniform(low, high, (n, 1, 1)).astype(np.float32)


def _sign(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice(np.array([-1.0, 1.0], dtype=np.float32), (n, 1, 1))


def _inside(distance: np.ndarray, half_width: np.ndarray | float, px: float) -> np.ndarray:
    """Antialiased indicator of ``distance < half_width`` (1 inside, 0 outside, a one-pixel ramp)."""
    return np.clip((half_width - distance) / px + 0.5, 0.0, 1.0)


def _soft_inside(r: np.ndarray, softness: np.ndarray | float) -> np.ndarray:
    """Soft indicator of ``r < 1`` with an edge ``softness`` wide (a logistic step)."""
    return 1 / (1 + np.exp(np.clip((r - 1) / softness, -30, 30)))


def _segment_distance(X, Y, cx, cy, angle, length) -> np.ndarray:
    """Distance from each pixel to the segment of ``length`` centred on (cx, cy) at ``angle``."""
    dx, dy = np.cos(angle), np.sin(angle)
    t = np.clip((X - cx) * dx + (Y - cy) * dy, -length / 2, length / 2)
    return np.hypot(X - cx - t * dx, Y - cy - t * dy)


def _blob_radius(
    rng: np.random.Generator, X, Y, n: int, low: float, high: float
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised radius r/R of a rotated ellipse at a random place (1 on its edge) and its radius R."""
    cx, cy = _uniform(rng, 0.2, 0.8, n), _uniform(rng, 0.2, 0.8, n)
    radius, aspect = _uniform(rng, low, high, n), _uniform(rng, 0.7, 1.4, n)
    angle = _uniform(rng, 0, np.pi, n)
    u = (X - cx) * np.cos(angle) + (Y - cy) * np.sin(angle)
    v = (Y - cy) * np.cos(angle) - (X - cx) * np.sin(angle)
    return np.hypot(u / aspect, v * aspect) / radius, radius


def _steel_background(rng: np.random.Generator, n: int, X, Y, px: float) -> np.ndarray:
    size = X.shape[-1]
    level = _uniform(rng, 0.35, 0.65, n)
    angle = _uniform(rng, 0, 2 * np.pi, n)
    illumination = _uniform(rng, 0.0, 0.25, n) * (
        (X - 0.5) * np.cos(angle) + (Y - 0.5) * np.sin(angle)
    )
    # rolling streaks: a smoothed random profile across the strip, modulated slowly along it
    rows = rng.normal(0, 1, (n, size, 1)).astype(np.float32)
    rows = (rows + np.roll(rows, 1, axis=1) + np.roll(rows, -1, axis=1)) / 3
    along = 1 + 0.5 * np.sin(2 * np.pi * (X * _uniform(rng, 0.5, 2.0, n) + _uniform(rng, 0, 1, n)))
    streaks = _uniform(rng, 0.01, 0.05, n) * rows * along
    grain = _uniform(rng, 0.008, 0.035, n) * rng.normal(0, 1, (n, size, size)).astype(np.float32)
    img = level + illumination + streaks + grain
    # distractors shared by all classes: a faint streak along the rolling direction, a faint stain
    streak = rng.random((n, 1, 1)) < 0.35
    y0, length = _uniform(rng, 0.05, 0.95, n), _uniform(rng, 0.3, 1.2, n)
    x0 = _uniform(rng, 0.2, 0.8, n)
    line = _inside(_segment_distance(X, Y, x0, y0, 0.0, length), 0.6 * px, px)
    img += streak * _sign(rng, n) * _uniform(rng, 0.02, 0.1, n) * line
    stain = rng.random((n, 1, 1)) < 0.25
    r, _ = _blob_radius(rng, X, Y, n, 0.1, 0.3)
    img += stain * _sign(rng, n) * _uniform(rng, 0.02, 0.06, n) * np.exp(-(r**2))
    return img


def _draw_crazing(img, rng, X, Y, px) -> None:
    """A network of fine dark cracks: the edges of a random Voronoi tessellation, fading out from a centre."""
    n, seeds = len(img), 10
    sx = rng.uniform(-0.1, 1.1, (n, seeds, 1, 1)).astype(np.float32)
    sy = rng.uniform(-0.1, 1.1, (n, seeds, 1, 1)).astype(np.float32)
    d2 = (X[:, None] - sx) ** 2 + (Y[:, None] - sy) ** 2
    nearest = np.argpartition(d2, 1, axis=1)[:, :2]
    d2_a, d2_b = np.moveaxis(np.take_along_axis(d2, nearest, axis=1), 1, 0)
    ax, bx = np.moveaxis(np.take_along_axis(sx, nearest, axis=1), 1, 0)
    ay, by = np.moveaxis(np.take_along_axis(sy, nearest, axis=1), 1, 0)
    # distance to the bisector of the two nearest seeds, i.e. to the cell edge
    to_edge = np.abs(d2_b - d2_a) / (2 * np.hypot(ax - bx, ay - by))
    cracks = _inside(to_edge, _uniform(rng, 0.4, 1.0, n) * px, px)
    r, _ = _blob_radius(rng, X, Y, n, 0.4, 1.0)
    img -= _uniform(rng, 0.15, 0.35, n) * cracks * np.exp(-(r**2))


def _draw_crease(img, rng, X, Y, px) -> None:
    """A wavy fold across the strip: bright on one side, dark on the other."""
    n = len(img)
    centre = _uniform(rng, 0.15, 0.85, n) + _uniform(rng, 0.0, 0.08, n) * np.sin(
        2 * np.pi * (Y * _uniform(rng, 0.5, 2.5, n) + _uniform(rng, 0, 1, n))
    )
    d = (X - centre) / _uniform(rng, 0.02, 0.07, n)
    img += _sign(rng, n) * _uniform(rng, 0.15, 0.4, n) * d * np.exp(-(d**2))


def _draw_inclusion(img, rng, X, Y, px) -> None:
    """A few small dark specks elongated along the rolling direction, loosely grouped."""
    n, most = len(img), 6
    count = rng.integers(2, most + 1, (n, 1, 1))
    cx, cy = _uniform(rng, 0.2, 0.8, n), _uniform(rng, 0.2, 0.8, n)
    contrast = _uniform(rng, 0.15, 0.4, n)
    for k in range(most):
        x0, y0 = cx + _uniform(rng, -0.2, 0.2, n), cy + _uniform(rng, -0.08, 0.08, n)
        half_length, half_width = _uniform(rng, 0.02, 0.08, n), _uniform(rng, 0.8, 1.8, n) * px
        speck = np.exp(-(((X - x0) / half_length) ** 2) - ((Y - y0) / half_width) ** 2)
        img -= (k < count) * contrast * speck


def _draw_oil_spot(img, rng, X, Y, px) -> None:
    """A soft-edged dark blob, darker in the middle."""
    n = len(img)
    r, _ = _blob_radius(rng, X, Y, n, 0.08, 0.25)
    softness = _uniform(rng, 0.05, 0.3, n)
    img -= _uniform(rng, 0.08, 0.25, n) * _soft_inside(r, softness) * (1.3 - 0.3 * r.clip(0, 1))


def _draw_water_spot(img, rng, X, Y, px) -> None:
    """A faint blob, slightly lighter inside, with a darker tide mark at its edge."""
    n = len(img)
    r, radius = _blob_radius(rng, X, Y, n, 0.08, 0.25)
    ring_width = _uniform(rng, 1.0, 3.0, n) * px / radius
    lighter = _uniform(rng, -0.03, 0.08, n) * _soft_inside(r, 0.1)
    tide_mark = _uniform(rng, 0.08, 0.2, n) * np.exp(-(((r - 1) / ring_width) ** 2))
    img += lighter - tide_mark


def _draw_punching_hole(img, rng, X, Y, px) -> None:
    """A dark round hole with a bright rim."""
    n = len(img)
    cx, cy = _uniform(rng, 0.15, 0.85, n), _uniform(rng, 0.15, 0.85, n)
    radius = _uniform(rng, 0.03, 0.12, n)
    d = np.hypot(X - cx, Y - cy)
    hole = _inside(d, radius, px) * _uniform(rng, 0.4, 1.0, n)
    rim = _inside(np.abs(d - radius - 1.5 * px), _uniform(rng, 0.5, 1.5, n) * px, px)
    inner, rim_contrast = _uniform(rng, 0.0, 0.25, n), _uniform(rng, 0.0, 0.15, n)
    img[:] = img * (1 - hole) + inner * hole + rim_contrast * rim


def _draw_rolled_pit(img, rng, X, Y, px) -> None:
    """A cluster of small round dark pits."""
    n, most = len(img), 10
    count = rng.integers(3, most + 1, (n, 1, 1))
    cx, cy = _uniform(rng, 0.2, 0.8, n), _uniform(rng, 0.2, 0.8, n)
    spread = _uniform(rng, 0.05, 0.2, n)
    contrast = _uniform(rng, 0.15, 0.4, n)
    for k in range(most):
        x0 = cx + spread * rng.normal(0, 1, (n, 1, 1)).astype(np.float32)
        y0 = cy + spread * rng.normal(0, 1, (n, 1, 1)).astype(np.float32)
        pit = _inside(np.hypot(X - x0, Y - y0), _uniform(rng, 1.0, 2.5, n) * px, px)
        img -= (k < count) * contrast * pit


def _draw_scratch(img, rng, X, Y, px) -> None:
    """A thin bright or dark straight line at a random angle."""
    n = len(img)
    cx, cy = _uniform(rng, 0.25, 0.75, n), _uniform(rng, 0.25, 0.75, n)
    angle, length = _uniform(rng, 0, np.pi, n), _uniform(rng, 0.3, 1.0, n)
    line = _inside(
        _segment_distance(X, Y, cx, cy, angle, length), _uniform(rng, 0.7, 1.5, n) * px, px
    )
    img += _sign(rng, n) * _uniform(rng, 0.15, 0.45, n) * line


def _draw_welding_line(img, rng, X, Y, px) -> None:
    """A straight seam across the whole strip: a band with a rippled bead and dark edges."""
    n = len(img)
    angle = np.pi / 2 + _uniform(rng, -0.15, 0.15, n)
    d = _segment_distance(X, Y, _uniform(rng, 0.15, 0.85, n), 0.5, angle, 3.0)
    half_width = _uniform(rng, 1.5, 4.0, n) * px
    along = (X * np.cos(angle) + Y * np.sin(angle)) / px
    ripple = 1 + 0.4 * np.sin(along * _uniform(rng, 0.8, 1.6, n))
    band = _inside(d, half_width, px) * ripple
    edges = _inside(np.abs(d - half_width), 0.5 * px, px)
    img += _sign(rng, n) * _uniform(rng, 0.08, 0.2, n) * band - _uniform(rng, 0.03, 0.12, n) * edges


_DEFECTS: dict[str, Callable[..., None]] = {
    "crazing": _draw_crazing,
    "crease": _draw_crease,
    "inclusion": _draw_inclusion,
    "oil_spot": _draw_oil_spot,
    "punching_hole": _draw_punching_hole,
    "rolled_pit": _draw_rolled_pit,
    "scratch": _draw_scratch,
    "water_spot": _draw_water_spot,
    "welding_line": _draw_welding_line,
}


def generate_synthetic(
    count: int = 2000, image_size: int = 64, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Grey steel-strip images with one drawn defect each: (images uint8 [N, H, W], labels int64 [N], class names).

    Classes are balanced (sizes differ by at most one) and in shuffled order;
    the result depends only on (count, image_size, seed).
    """
    if count < 1 or image_size < MIN_IMAGE_SIZE:
        raise DataError(
            f"synthetic data needs count >= 1 and image_size >= {MIN_IMAGE_SIZE}, got {count} and {image_size}"
        )
    rng = np.random.default_rng(seed)
    class_names = list(_DEFECTS)
    labels = rng.permutation(np.arange(count) % len(class_names)).astype(np.int64)
    px = 1.0 / image_size
    axis = (np.arange(image_size, dtype=np.float32) + 0.5) * px
    X, Y = axis[None, None, :], axis[None, :, None]
    images = np.empty((count, image_size, image_size), dtype=np.uint8)
    for c, draw in enumerate(_DEFECTS.values()):
        members = np.flatnonzero(labels == c)
        img = _steel_background(rng, len(members), X, Y, px)
        draw(img, rng, X, Y, px)
        images[members] = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    return images, labels, class_names

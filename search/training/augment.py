"""The paper's baseline augmentations: per-sample random, vectorised transforms of float batches.

Each function maps (batch ``[N, C, H, W]`` float in [0, 1], generator) to a batch of the same
shape. Each sample is transformed with probability AUGMENT_PROBABILITY and its own random
parameters. Parameter ranges follow common defaults (Albumentations / torchvision).
``AUGMENTATION_FUNCTIONS`` maps each name in :data:`search.training.recipe.AUGMENTATIONS` to its
function; :mod:`search.training.train` applies them to training batches only. The random
parameters are drawn on the CPU from the CPU generator wherever the batch is (a GPU's batch is
augmented as the same batch on the CPU would be).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

AUGMENT_PROBABILITY = 0.5
ROTATE_DEGREES = 30.0
SSR_SHIFT, SSR_SCALE, SSR_DEGREES = 0.0625, 0.1, 45.0  # shift_scale_rotate limits
CROP_PAD_FRACTION = 0.125  # random_crop: pad by this fraction of the side, crop back
BLUR_KERNEL, BLUR_SIGMA = 5, (0.1, 2.0)
BRIGHTNESS, CONTRAST = 0.2, 0.2


def _chosen(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Per-sample bool mask [N, 1, 1, 1]: which samples this augmentation transforms."""
    return (torch.rand(x.shape[0], generator=g) < AUGMENT_PROBABILITY).view(-1, 1, 1, 1).to(x.device)


def _uniform(n: int, low: float, high: float, g: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g)


def _affine(x: torch.Tensor, g: torch.Generator, degrees: torch.Tensor, scale: torch.Tensor,
            shift: torch.Tensor, padding_mode: str) -> torch.Tensor:
    """Rotate (degrees [N]), zoom (scale [N]) and shift (shift [N, 2], fraction of the side)
    each chosen sample; bilinear sampling, so values stay in [0, 1]."""
    a = torch.deg2rad(degrees)
    cos, sin = torch.cos(a) / scale, torch.sin(a) / scale
    theta = torch.stack([
        torch.stack([cos, -sin, 2 * shift[:, 0]], dim=1),
        torch.stack([sin, cos, 2 * shift[:, 1]], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    moved = F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    return torch.where(_chosen(x, g), moved.clamp(0, 1), x)


def hflip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return torch.where(_chosen(x, g), x.flip(-1), x)


def vflip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return torch.where(_chosen(x, g), x.flip(-2), x)


def rotate(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    return _affine(x, g, _uniform(n, -ROTATE_DEGREES, ROTATE_DEGREES, g), torch.ones(n),
                   torch.zeros(n, 2), "reflection")


def shift_scale_rotate(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    return _affine(x, g, _uniform(n, -SSR_DEGREES, SSR_DEGREES, g),
                   _uniform(n, 1 - SSR_SCALE, 1 + SSR_SCALE, g),
                   _uniform(2 * n, -SSR_SHIFT, SSR_SHIFT, g).view(n, 2), "reflection")


def random_crop(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Zero-pad by CROP_PAD_FRACTION of the side and crop back at a random whole-pixel offset."""
    n, side = x.shape[0], x.shape[-1]
    pad = max(1, round(side * CROP_PAD_FRACTION))
    pixels = torch.randint(-pad, pad + 1, (n, 2), generator=g)
    return _affine(x, g, torch.zeros(n), torch.ones(n), pixels / side, "zeros")


def gaussian_blur(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Separable Gaussian blur, one sigma per sample, reflected borders."""
    n, c, h, w = x.shape
    sigma = _uniform(n, *BLUR_SIGMA, g).view(n, 1)
    t = torch.arange(BLUR_KERNEL, dtype=x.dtype) - BLUR_KERNEL // 2
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0).to(x.device)  # [N*C, K]
    r = BLUR_KERNEL // 2
    y = F.pad(x.reshape(1, n * c, h, w), (r, r, r, r), mode="reflect")
    y = F.conv2d(y, kernel.view(n * c, 1, 1, BLUR_KERNEL), groups=n * c)
    y = F.conv2d(y, kernel.view(n * c, 1, BLUR_KERNEL, 1), groups=n * c)
    return torch.where(_chosen(x, g), y.view(n, c, h, w).clamp(0, 1), x)


def brightness_contrast(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Contrast around each image's mean, then a brightness offset; clipped to [0, 1]."""
    n = x.shape[0]
    contrast = _uniform(n, 1 - CONTRAST, 1 + CONTRAST, g).view(n, 1, 1, 1).to(x.device)
    brightness = _uniform(n, -BRIGHTNESS, BRIGHTNESS, g).view(n, 1, 1, 1).to(x.device)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    changed = ((x - mean) * contrast + mean + brightness).clamp(0, 1)
    return torch.where(_chosen(x, g), changed, x)


AUGMENTATION_FUNCTIONS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "hflip": hflip,
    "vflip": vflip,
    "rotate": rotate,
    "gaussian_blur": gaussian_blur,
    "shift_scale_rotate": shift_scale_rotate,
    "random_crop": random_crop,
    "brightness_contrast": brightness_contrast,
}

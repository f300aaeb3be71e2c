"""Image priors: what keeps optimized images from becoming adversarial noise.

* pixel range: the parameterizations squash through a sigmoid; :func:`range_penalty` is the
  soft alternative for images produced some other way (penalizes values outside [0, 1]);
* transform robustness: :func:`jitter` shifts the whole batch by a random offset each step, so
  the images must work at every position instead of exploiting one pixel grid alignment;
* smoothness: :func:`total_variation` penalizes differences between neighbouring pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field


class PriorConfig(BaseModel):
    """Weights and sizes of the image priors (0 switches one off)."""

    jitter: int = Field(4, ge=0, description="max random shift in pixels per step")
    tv_weight: float = Field(0.0, ge=0.0, description="weight of the total-variation penalty")
    range_weight: float = Field(0.0, ge=0.0, description="weight of the out-of-[0,1] penalty")


def jitter(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift the batch (n, C, H, W) by one random (dy, dx) in [-max_shift, max_shift].

    Reflection padding then cropping (rather than a circular roll) avoids wrap-around seams.
    """
    if max_shift <= 0:
        return images
    dy, dx = (
        int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=generator)
    )
    s = max_shift
    padded = F.pad(images, (s, s, s, s), mode="reflect")
    h, w = images.shape[-2:]
    return padded[..., s + dy : s + dy + h, s + dx : s + dx + w]


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between vertically and horizontally adjacent pixels."""
    dh = (images[..., 1:, :] - images[..., :-1, :]).abs().mean()
    dw = (images[..., :, 1:] - images[..., :, :-1]).abs().mean()
    return dh + dw


def range_penalty(images: torch.Tensor, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """Mean squared excursion of pixel values outside [low, high]."""
    return (F.relu(images - high) ** 2 + F.relu(low - images) ** 2).mean()

"""Many natural images from few photographs: random crops of the bundled set.

Regression analyses (universal dimensions) need hundreds of natural images; the bundled set has
16 photographs, so we draw random square crops at random scales, positions and mirror flips.
"""

from __future__ import annotations

import numpy as np

from cortexmap.errors import CortexmapError
from cortexmap.stimuli.base import StimulusSet, resize_images
from cortexmap.stimuli.bundled import load_bundled


def natural_crops(
    n: int, size: int = 64, min_scale: float = 0.3, seed: int = 0, source_size: int = 256
) -> StimulusSet:
    """``n`` random crops (size x size) of the bundled photographs, deterministic from ``seed``.

    Each crop covers a random fraction in [min_scale, 1] of a photograph's side; half are
    mirrored. ids are ``crop0000``...; categories are those of the source photograph.
    """
    if n < 1:
        raise CortexmapError(f"n must be a positive number of crops; got {n}.")
    if not 0 < min_scale <= 1:
        raise CortexmapError(f"min_scale must be in (0, 1]; got {min_scale}.")
    photos = load_bundled(size=source_size)
    rng = np.random.default_rng(seed)
    src = rng.integers(0, len(photos), n)
    sides = (rng.uniform(min_scale, 1.0, n) * source_size).astype(int).clip(8, source_size)
    crops = np.empty((n, size, size, 3), np.float32)
    for i, (s, side) in enumerate(zip(src, sides, strict=True)):
        top, left = rng.integers(0, source_size - side + 1, 2)
        patch = photos.images[s, top : top + side, left : left + side]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        crops[i] = resize_images(patch[None], (size, size))[0]
    categories = [photos.categories[s] for s in src] if photos.categories else None
    return StimulusSet(
        crops, [f"crop{i:04d}" for i in range(n)], categories=categories, name="natural-crops"
    )

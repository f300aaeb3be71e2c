"""Spatial unit masks: choose the units of a convolutional map by where they look.

A feature map of H x W positions is taken to tile the model's input image evenly: position
(i, j) looks at the image around ((i + 0.5) / H, (j + 0.5) / W) of the input height/width.
(This ignores padding and receptive-field size, the usual first approximation; centre-bias
analyses that need receptive fields can pass an explicit image-coordinate map.)

- :func:`center_disk` selects positions within ``radius_frac`` of the image centre,
- :func:`periphery_ring` selects positions at least ``inner_frac`` from it,
- :func:`image_mask` takes any bool (H, W) map in model-input coordinates and projects it onto
  each layer's grid: the fraction of every grid cell it covers (area resampling) is thresholded.

Distances are in units of half the image side (1.0 = the middle of an edge).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from cortexmap.errors import CortexmapError


class SpatialMask:
    """Base class: ``grid(h, w, input_size) -> bool (h, w)`` positions to keep."""

    name: str = "mask"

    def grid(self, h: int, w: int, input_size: int | None = None) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"kind": type(self).__name__, "name": self.name}


def _radius(h: int, w: int) -> np.ndarray:
    """Distance of each grid-cell centre from the image centre, in half-sides."""
    y = ((np.arange(h) + 0.5) / h - 0.5) * 2
    x = ((np.arange(w) + 0.5) / w - 0.5) * 2
    return np.hypot(y[:, None], x[None, :])


@dataclass
class CenterDisk(SpatialMask):
    """Positions whose centre lies within ``radius_frac`` of the image centre. On a grid too
    coarse for any centre to fall inside, the position(s) nearest the centre are used."""

    radius_frac: float = 0.25
    name: str = "center"

    def __post_init__(self) -> None:
        if not 0 < self.radius_frac <= np.sqrt(2):
            raise CortexmapError(
                f"center_disk radius_frac must be in (0, 1.41]; got {self.radius_frac}."
            )

    def grid(self, h: int, w: int, input_size: int | None = None) -> np.ndarray:
        r = _radius(h, w)
        m = r <= self.radius_frac
        if not m.any():
            m = np.isclose(r, r.min())
        return m

    def describe(self) -> dict:
        return super().describe() | {"radius_frac": self.radius_frac}


@dataclass
class PeripheryRing(SpatialMask):
    """Positions whose centre lies at least ``inner_frac`` (and at most ``outer_frac``, if
    given) from the image centre."""

    inner_frac: float = 0.5
    outer_frac: float | None = None
    name: str = "periphery"

    def __post_init__(self) -> None:
        if not 0 <= self.inner_frac < np.sqrt(2):
            raise CortexmapError(
                f"periphery_ring inner_frac must be in [0, 1.41); got {self.inner_frac}."
            )
        if self.outer_frac is not None and self.outer_frac <= self.inner_frac:
            raise CortexmapError("periphery_ring outer_frac must be larger than inner_frac.")

    def grid(self, h: int, w: int, input_size: int | None = None) -> np.ndarray:
        r = _radius(h, w)
        m = r >= self.inner_frac
        if self.outer_frac is not None:
            m &= r <= self.outer_frac
        if not m.any():
            raise CortexmapError(
                f"periphery_ring(inner_frac={self.inner_frac}) selects no position of a {h}x{w} "
                "map; lower inner_frac or use an earlier layer."
            )
        return m

    def describe(self) -> dict:
        return super().describe() | {"inner_frac": self.inner_frac, "outer_frac": self.outer_frac}


@dataclass
class ImageMask(SpatialMask):
    """Any bool (H, W) map in model-input coordinates (after preprocessing: H = W = the
    model's input size), projected on each grid by area fraction >= ``threshold``."""

    mask: np.ndarray = field(repr=False, default_factory=lambda: np.ones((1, 1), bool))
    threshold: float = 0.5
    name: str = "mask"

    def __post_init__(self) -> None:
        m = np.asarray(self.mask)
        if m.ndim != 2:
            raise CortexmapError(
                f"An image mask must be a 2-D bool (H, W) array; got shape {m.shape}."
            )
        if not m.any():
            raise CortexmapError(
                "The image mask is empty (no True pixel); it would select no unit."
            )
        if not 0 < self.threshold <= 1:
            raise CortexmapError(f"Mask threshold must be in (0, 1]; got {self.threshold}.")
        self.mask = m.astype(bool)

    def grid(self, h: int, w: int, input_size: int | None = None) -> np.ndarray:
        if input_size is not None and self.mask.shape != (input_size, input_size):
            raise CortexmapError(
                f"Unit mask {self.name!r} is {self.mask.shape[0]}x{self.mask.shape[1]} but the "
                f"model input is {input_size}x{input_size}; give the mask in model-input "
                "coordinates (resize it with cortexmap.stimuli.masks.resize_mask)."
            )
        frac = coverage(self.mask, h, w)
        m = frac >= self.threshold
        if not m.any():
            raise CortexmapError(
                f"Unit mask {self.name!r} covers no position of a {h}x{w} map at threshold "
                f"{self.threshold} (max coverage {frac.max():.2f}); lower the threshold."
            )
        return m

    def describe(self) -> dict:
        return super().describe() | {
            "threshold": self.threshold,
            "shape": list(self.mask.shape),
            "coverage": float(self.mask.mean()),
        }


def coverage(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    """Fraction (h, w) of each grid cell covered by the bool image ``mask`` (area resampling)."""
    t = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None, None]
    if h <= mask.shape[0] and w <= mask.shape[1]:
        # adaptive average pooling = exact area fraction for uneven cell borders too
        return F.adaptive_avg_pool2d(t, (h, w))[0, 0].numpy()
    return F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()


def center_disk(radius_frac: float = 0.25, name: str = "center") -> CenterDisk:
    """Positions within ``radius_frac`` half-sides of the image centre."""
    return CenterDisk(radius_frac, name)


def periphery_ring(
    inner_frac: float = 0.5, outer_frac: float | None = None, name: str = "periphery"
) -> PeripheryRing:
    """Positions at least ``inner_frac`` (at most ``outer_frac``) half-sides from the centre."""
    return PeripheryRing(inner_frac, outer_frac, name)


def image_mask(mask: np.ndarray, threshold: float = 0.5, name: str = "mask") -> ImageMask:
    """A bool (S, S) map in model-input coordinates, projected onto each layer's grid."""
    return ImageMask(np.asarray(mask), threshold, name)


def as_unit_masks(masks) -> dict[str, SpatialMask] | None:
    """Normalise None / one mask / a list / a {name: mask} dict (bool arrays accepted)."""
    if masks is None:
        return None
    if isinstance(masks, (SpatialMask, np.ndarray)):
        masks = [masks]
    if isinstance(masks, dict):
        items = list(masks.items())
    else:
        items = []
        for m in masks:
            m = m if isinstance(m, SpatialMask) else image_mask(m)
            items.append((m.name, m))
    out: dict[str, SpatialMask] = {}
    for name, m in items:
        if not isinstance(m, SpatialMask):
            m = image_mask(m, name=str(name))
        if "/" in str(name) or not str(name):
            raise CortexmapError(f"Unit-mask name {name!r} must be non-empty and without '/'.")
        if name in out:
            raise CortexmapError(f"Two unit masks are named {name!r}; give them distinct names.")
        out[str(name)] = m
    return out

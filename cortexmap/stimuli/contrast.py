"""Contrast manipulation around mean luminance (RMS or Michelson).

Each image is scaled about its own mean luminance ``m``: ``I' = m + k (I - m)`` on every RGB
channel, with the gain ``k`` solved so the luminance image reaches the requested contrast.
Because luminance is a weighted sum of the channels with weights summing to 1, the mean
luminance is unchanged and hue is preserved.

Definitions (luminance ``L`` = Rec. 709 weights on the [0, 1] RGB values):

- RMS contrast = std(L) / mean(L)  (Peli's normalised RMS contrast).
- Michelson contrast = (max(L) - min(L)) / (max(L) + min(L)).
"""

from __future__ import annotations

from typing import Literal, overload

import numpy as np

from cortexmap.errors import CortexmapError
from cortexmap.stimuli.base import StimulusSet

LUMA_WEIGHTS = np.array([0.2126, 0.7152, 0.0722], dtype=np.float64)
ContrastKind = Literal["rms", "michelson"]


def luminance(images: np.ndarray) -> np.ndarray:
    """Luminance (..., H, W) of RGB images (..., H, W, 3); grey images pass through."""
    arr = np.asarray(images, dtype=np.float64)
    if arr.shape[-1] == 3:
        return arr @ LUMA_WEIGHTS
    return arr


def measure_contrast(images: np.ndarray | StimulusSet, kind: ContrastKind = "rms") -> np.ndarray:
    """Contrast of each image: (n,) for (n, H, W, 3) images, a 0-d array for one image."""
    imgs = images.images if isinstance(images, StimulusSet) else np.asarray(images)
    lum = luminance(imgs)
    axes = (-2, -1)
    if kind == "rms":
        mean = lum.mean(axis=axes)
        with np.errstate(divide="ignore", invalid="ignore"):
            return lum.std(axis=axes) / mean
    if kind == "michelson":
        hi, lo = lum.max(axis=axes), lum.min(axis=axes)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (hi - lo) / (hi + lo)
    raise CortexmapError(f"Unknown contrast kind {kind!r}; use 'rms' or 'michelson'.")


@overload
def set_contrast(
    images: StimulusSet, contrast: float, kind: ContrastKind = ..., clip: bool = ...
) -> StimulusSet: ...
@overload
def set_contrast(
    images: np.ndarray, contrast: float, kind: ContrastKind = ..., clip: bool = ...
) -> np.ndarray: ...


def set_contrast(images, contrast: float, kind: ContrastKind = "rms", clip: bool = False):
    """Scale each image about its mean luminance to a target contrast.

    Parameters
    ----------
    images : StimulusSet, (n, H, W, 3) or (H, W, 3) float array in [0, 1].
    contrast : target contrast, 0 < contrast <= 1 (e.g. 0.01 for 1 %).
    kind : "rms" (std/mean of luminance) or "michelson" ((max-min)/(max+min)).
    clip : a target above what fits in [0, 1] raises an error by default; with ``clip=True``
        the result is clipped to [0, 1] instead (the reached contrast is then lower).

    Returns the same type as ``images`` (a new StimulusSet keeps ids, masks and metadata and
    records the contrast in ``metadata["contrast_<kind>"]``).
    """
    if kind not in ("rms", "michelson"):
        raise CortexmapError(f"Unknown contrast kind {kind!r}; use 'rms' or 'michelson'.")
    c = float(contrast)
    if not np.isfinite(c) or not 0 < c <= 1:
        raise CortexmapError(
            f"contrast must be in (0, 1] (a fraction: 0.05 = 5 %); got {contrast!r}."
        )
    if isinstance(images, StimulusSet):
        out = _scale(images.images, c, kind, clip)
        meta = images.metadata.copy() if images.metadata is not None else None
        if meta is None:
            import pandas as pd

            meta = pd.DataFrame(index=range(len(images)))
        meta[f"contrast_{kind}"] = c
        return StimulusSet(
            images=out,
            ids=list(images.ids),
            categories=images.categories,
            masks=images.masks,
            metadata=meta,
            name=images.name,
        )
    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim == 3:
        return _scale(arr[None], c, kind, clip)[0]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise CortexmapError(
            f"set_contrast needs images of shape (n, H, W, 3) or (H, W, 3); got {arr.shape}."
        )
    return _scale(arr, c, kind, clip)


def _scale(images: np.ndarray, c: float, kind: str, clip: bool) -> np.ndarray:
    """Apply ``I' = m + k (I - m)`` per image; images (n, H, W, 3) float."""
    imgs = images.astype(np.float64)
    lum = luminance(imgs)  # (n, H, W)
    m = lum.mean(axis=(1, 2))
    out = np.empty_like(imgs)
    for i in range(len(imgs)):
        if m[i] <= 0:
            raise CortexmapError(
                f"Image {i} is black (mean luminance 0), so its contrast relative to the mean "
                "is undefined; remove it or add a luminance offset."
            )
        if kind == "rms":
            current = lum[i].std()
            if current <= 1e-12:
                raise CortexmapError(
                    f"Image {i} is uniform (no contrast to scale); remove it from the set."
                )
            k = c * m[i] / current
        else:
            hi, lo = lum[i].max(), lum[i].min()
            d, s0 = hi - lo, hi + lo - 2 * m[i]
            if d <= 1e-12:
                raise CortexmapError(
                    f"Image {i} is uniform (no contrast to scale); remove it from the set."
                )
            denom = d - c * s0
            if denom <= 0:
                raise CortexmapError(
                    f"Image {i} cannot reach Michelson contrast {c} by scaling about its mean "
                    "(its luminance histogram is too skewed); use kind='rms' or a lower target."
                )
            k = 2 * m[i] * c / denom
        out[i] = m[i] + k * (imgs[i] - m[i])
    lo, hi = out.min(), out.max()
    if lo < -1e-6 or hi > 1 + 1e-6:
        if not clip:
            raise CortexmapError(
                f"Contrast {c} ({kind}) needs pixel values in [{lo:.3f}, {hi:.3f}], outside "
                "[0, 1]; choose a lower contrast or pass clip=True to clip (the reached contrast "
                "is then lower than requested)."
            )
    return np.clip(out, 0, 1).astype(np.float32)

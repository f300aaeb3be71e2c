"""Foreground masks: from files, by thresholding/segmentation, or drawn from shapes.

A foreground mask is a bool (H, W) array, True on the object. The bundled photographs get
theirs from the recipes in :mod:`cortexmap.stimuli.bundled`, built with the helpers here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from cortexmap.errors import CortexmapError
from cortexmap.stimuli.base import resize_masks

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def resize_mask(mask: np.ndarray, size: int | tuple[int, int], threshold: float = 0.5):
    """Resize one (H, W) or many (n, H, W) bool masks to ``size`` by area fraction >= threshold."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    m = np.asarray(mask, dtype=bool)
    return (
        resize_masks(m[None], hw, threshold)[0] if m.ndim == 2 else resize_masks(m, hw, threshold)
    )


def threshold_mask(
    gray: np.ndarray,
    polarity: str = "bright",
    threshold: float | None = None,
    largest: bool = True,
    fill_holes: bool = True,
    opening: int = 1,
    closing: int = 1,
    min_frac: float = 0.0,
) -> np.ndarray:
    """Otsu (or fixed) threshold of a grey image -> cleaned bool mask.

    polarity "bright": object brighter than background; "dark": darker. ``largest`` keeps the
    biggest connected component; otherwise components smaller than ``min_frac`` of the image
    are dropped. ``opening``/``closing``: iterations of binary opening/closing (3x3) to remove
    specks and bridge thin gaps.
    """
    from skimage.filters import threshold_otsu

    g = np.asarray(gray, dtype=np.float64)
    t = threshold_otsu(g) if threshold is None else threshold
    m = g > t if polarity == "bright" else g < t
    return clean_mask(
        m,
        largest=largest,
        fill_holes=fill_holes,
        opening=opening,
        closing=closing,
        min_frac=min_frac,
    )


def clean_mask(
    mask: np.ndarray,
    largest: bool = True,
    fill_holes: bool = True,
    opening: int = 1,
    closing: int = 1,
    min_frac: float = 0.0,
) -> np.ndarray:
    """Morphological clean-up of a bool mask (see :func:`threshold_mask`)."""
    m = np.asarray(mask, dtype=bool)
    if closing:
        m = ndi.binary_closing(m, iterations=closing, border_value=0)
    if opening:
        m = ndi.binary_opening(m, iterations=opening)
    labels, n = ndi.label(m)
    if n:
        sizes = ndi.sum(m, labels, index=np.arange(1, n + 1))
        if largest:
            m = labels == (1 + int(np.argmax(sizes)))
        elif min_frac > 0:
            keep = np.flatnonzero(sizes >= min_frac * m.size) + 1
            m = np.isin(labels, keep)
    if fill_holes:
        m = ndi.binary_fill_holes(m)
    return m


def polygon_mask(shape: tuple[int, int], vertices: Sequence[tuple[float, float]]) -> np.ndarray:
    """Filled polygon; vertices as (x, y) fractions of width/height (0,0 = top-left)."""
    from skimage.draw import polygon

    h, w = shape
    xs = np.array([v[0] for v in vertices]) * w
    ys = np.array([v[1] for v in vertices]) * h
    m = np.zeros(shape, bool)
    rr, cc = polygon(ys, xs, shape=shape)
    m[rr, cc] = True
    return m


def ellipse_mask(
    shape: tuple[int, int], center: tuple[float, float], radii: tuple[float, float]
) -> np.ndarray:
    """Filled axis-aligned ellipse; center (x, y) and radii (rx, ry) as fractions of W/H."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    return (((xx + 0.5) / w - center[0]) / radii[0]) ** 2 + (
        ((yy + 0.5) / h - center[1]) / radii[1]
    ) ** 2 <= 1


def read_mask_file(path: str | os.PathLike) -> np.ndarray:
    """Read a mask image (any non-zero / non-black pixel = foreground; alpha is ignored)."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    try:
        with Image.open(p) as im:
            arr = np.asarray(im.convert("L"))
    except (OSError, UnidentifiedImageError) as exc:
        raise CortexmapError(
            f"Cannot read mask image {p}: {exc}. Masks must be PNG/JPEG/TIFF files "
            "(non-zero pixels = foreground)."
        ) from exc
    return arr > 127 if arr.max() > 1 else arr > 0


def load_masks(
    masks_dir: str | os.PathLike, ids: Sequence[str], shapes: Sequence[tuple[int, int]]
) -> list[np.ndarray]:
    """One mask per id from ``masks_dir/<id>.<png|jpg|...>``; each must match its image shape."""
    root = Path(masks_dir)
    if not root.is_dir():
        raise CortexmapError(f"Masks folder {root} does not exist; pass an existing folder.")
    out = []
    for sid, shape in zip(ids, shapes, strict=True):
        cands = [root / f"{sid}{s}" for s in IMAGE_SUFFIXES]
        cands += [root / f"{sid}{s.upper()}" for s in IMAGE_SUFFIXES]
        found = next((c for c in cands if c.is_file()), None)
        if found is None:
            raise CortexmapError(
                f"No mask for image {sid!r} in {root}; expected a file named {sid}.png (same "
                "name as the image, any image format)."
            )
        m = read_mask_file(found)
        if m.shape != tuple(shape):
            raise CortexmapError(
                f"Mask {found} has size {m.shape[1]}x{m.shape[0]} (WxH) but its image is "
                f"{shape[1]}x{shape[0]}; masks must have the image's size."
            )
        out.append(m)
    return out

"""`StimulusSet`: the one container every experiment passes around.

Images are float32 RGB in [0, 1] with shape (n, H, W, 3); optional per-image category labels,
boolean foreground masks (n, H, W) and a metadata table (one row per image, e.g. the grating
parameters). Keeping everything in one small dataclass means subsetting, resizing or
re-ordering can never leave labels and masks out of step with the images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from cortexmap.errors import CortexmapError


@dataclass
class StimulusSet:
    """A set of images with ids, optional categories, foreground masks and metadata.

    Attributes
    ----------
    images : float32 ndarray (n, H, W, 3) in [0, 1].
    ids : list of n unique strings (stable names used in stores and tables).
    categories : list of n labels, or None.
    masks : bool ndarray (n, H, W) (True = foreground/object), or None.
    metadata : DataFrame with n rows (e.g. grating parameters), or None.
    name : short label of the set (recorded in stores and reports).
    """

    images: np.ndarray
    ids: list[str]
    categories: list[str] | None = None
    masks: np.ndarray | None = None
    metadata: pd.DataFrame | None = None
    name: str = "stimuli"

    def __post_init__(self) -> None:
        images = np.asarray(self.images)
        if images.ndim == 3:  # grey (n, H, W) -> RGB
            images = np.repeat(images[..., None], 3, axis=-1)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise CortexmapError(
                f"StimulusSet images must have shape (n, H, W, 3); got {images.shape}. "
                "Convert grey images with np.repeat(img[..., None], 3, -1)."
            )
        if images.dtype == np.uint8:
            images = images.astype(np.float32) / 255.0
        images = images.astype(np.float32, copy=False)
        if images.size and (not np.isfinite(images).all() or images.min() < 0 or images.max() > 1):
            raise CortexmapError(
                "StimulusSet images must be finite floats in [0, 1] (or uint8); rescale them, "
                "e.g. images / 255."
            )
        self.images = images
        n = images.shape[0]
        self.ids = [str(i) for i in self.ids]
        if len(self.ids) != n:
            raise CortexmapError(f"StimulusSet has {n} images but {len(self.ids)} ids.")
        if len(set(self.ids)) != n:
            dup = sorted({i for i in self.ids if self.ids.count(i) > 1})[:5]
            raise CortexmapError(f"StimulusSet ids must be unique; duplicated: {dup}.")
        if self.categories is not None:
            self.categories = [str(c) for c in self.categories]
            if len(self.categories) != n:
                raise CortexmapError(
                    f"StimulusSet has {n} images but {len(self.categories)} categories."
                )
        if self.masks is not None:
            masks = np.asarray(self.masks)
            if masks.shape != images.shape[:3]:
                raise CortexmapError(
                    f"Foreground masks have shape {masks.shape} but the images need "
                    f"{images.shape[:3]} (one H x W mask per image); resize the masks to the "
                    "images (cortexmap.stimuli.masks.resize_mask)."
                )
            self.masks = masks.astype(bool)
        if self.metadata is not None:
            if len(self.metadata) != n:
                raise CortexmapError(
                    f"StimulusSet metadata has {len(self.metadata)} rows for {n} images."
                )
            self.metadata = self.metadata.reset_index(drop=True)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the images."""
        return self.images.shape[1], self.images.shape[2]

    def _index(self, idx) -> np.ndarray:
        if isinstance(idx, slice):
            return np.arange(len(self))[idx]
        arr = np.asarray(idx)
        if arr.dtype == bool:
            if arr.shape != (len(self),):
                raise CortexmapError(f"Boolean index needs {len(self)} entries; got {arr.shape}.")
            return np.flatnonzero(arr)
        if arr.dtype.kind in "US":  # select by id
            pos = {s: i for i, s in enumerate(self.ids)}
            missing = [s for s in arr.ravel() if s not in pos]
            if missing:
                raise CortexmapError(
                    f"Unknown stimulus ids {missing[:5]}; valid: {self.ids[:10]}..."
                )
            return np.array([pos[s] for s in arr.ravel()], dtype=int)
        return np.atleast_1d(arr.astype(int))

    def subset(self, idx: slice | Sequence[int] | Sequence[str] | np.ndarray) -> StimulusSet:
        """Return the images at ``idx`` (integers, a slice, a boolean vector, or ids)."""
        ix = self._index(idx)
        return StimulusSet(
            images=self.images[ix],
            ids=[self.ids[i] for i in ix],
            categories=None if self.categories is None else [self.categories[i] for i in ix],
            masks=None if self.masks is None else self.masks[ix],
            metadata=None if self.metadata is None else self.metadata.iloc[ix],
            name=self.name,
        )

    def resized(self, size: int | tuple[int, int]) -> StimulusSet:
        """Return a copy resized to ``size`` (antialiased images, area-thresholded masks)."""
        hw = (size, size) if isinstance(size, int) else tuple(size)
        return StimulusSet(
            images=resize_images(self.images, hw),
            ids=list(self.ids),
            categories=None if self.categories is None else list(self.categories),
            masks=None if self.masks is None else resize_masks(self.masks, hw),
            metadata=None if self.metadata is None else self.metadata.copy(),
            name=self.name,
        )

    @staticmethod
    def concat(sets: Sequence[StimulusSet], name: str | None = None) -> StimulusSet:
        """Stack several sets of the same image size (ids must stay unique)."""
        if not sets:
            raise CortexmapError("concat needs at least one StimulusSet.")
        sizes = {s.size for s in sets}
        if len(sizes) > 1:
            raise CortexmapError(f"Cannot concat image sizes {sorted(sizes)}; use .resized().")
        cats = [s.categories for s in sets]
        masks = [s.masks for s in sets]
        metas = [s.metadata for s in sets]
        return StimulusSet(
            images=np.concatenate([s.images for s in sets]),
            ids=[i for s in sets for i in s.ids],
            categories=None if any(c is None for c in cats) else [c for cs in cats for c in cs],
            masks=None if any(m is None for m in masks) else np.concatenate(masks),
            metadata=None if any(m is None for m in metas) else pd.concat(metas, ignore_index=True),
            name=name or "+".join(s.name for s in sets),
        )

    def __getitem__(self, idx) -> np.ndarray:
        """Images at ``idx``; lets a StimulusSet act as a batch source for the Extractor."""
        return self.images[idx]


def resize_images(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Antialiased bilinear resize of (n, H, W, 3) float images to ``size`` = (H', W')."""
    if images.shape[1:3] == tuple(size):
        return images.astype(np.float32, copy=True)
    t = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).permute(0, 3, 1, 2)
    out = F.interpolate(t, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
    return out.clamp_(0, 1).permute(0, 2, 3, 1).contiguous().numpy()


def resize_masks(masks: np.ndarray, size: tuple[int, int], threshold: float = 0.5) -> np.ndarray:
    """Resize (n, H, W) bool masks by area averaging, then threshold the covered fraction."""
    if masks.shape[1:3] == tuple(size):
        return masks.astype(bool, copy=True)
    t = torch.from_numpy(np.ascontiguousarray(masks, dtype=np.float32))[:, None]
    if size[0] <= masks.shape[1] and size[1] <= masks.shape[2]:
        frac = F.interpolate(t, size=tuple(size), mode="area")
    else:  # upsampling: bilinear gives the covered fraction at each new pixel
        frac = F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)
    return (frac[:, 0] >= threshold).numpy()


def center_crop_square(arr: np.ndarray) -> np.ndarray:
    """Crop an (H, W, ...) array to its central square."""
    h, w = arr.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return arr[top : top + s, left : left + s]


def to_rgb_float(img: np.ndarray) -> np.ndarray:
    """Any image (uint8/uint16/bool/float; grey, RGB or RGBA) -> float32 (H, W, 3) in [0, 1]."""
    arr = np.asarray(img)
    if arr.dtype == bool:
        arr = arr.astype(np.float32)
    elif arr.dtype.kind in "ui":
        arr = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
    else:
        arr = arr.astype(np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0 or hi > 1:  # float images outside [0, 1]: rescale to the range
            arr = (arr - lo) / (hi - lo if hi > lo else 1.0)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    elif arr.ndim == 3 and arr.shape[-1] == 4:  # RGBA: composite over white
        arr = arr[..., :3] * arr[..., 3:] + (1 - arr[..., 3:])
    elif arr.ndim == 3 and arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise CortexmapError(f"Cannot interpret an image of shape {np.shape(img)} as RGB.")
    return np.clip(arr, 0, 1)

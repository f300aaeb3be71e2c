"""Model-matched preprocessing: resize, centre crop, normalise.

Every model returned by :func:`cortexmap.models.load` carries a ``cortexmap_preprocessing``
attribute, so stimuli are always fed the way the network was trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cortexmap.errors import CortexmapError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """How images in [0, 1] become model input.

    size : side of the square model input (after the crop).
    mean, std : per-channel normalisation, ``(x - mean) / std``.
    resize : the shorter image side is first resized to this (torchvision's "resize 256 then
        crop 224" is ``Preprocessing(224, resize=256)``); None = ``size`` (no border cropped
        from a square image).
    """

    size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize: int | None = None
    interpolation: str = field(default="bilinear")

    def __post_init__(self) -> None:
        if int(self.size) != self.size or self.size < 1:
            raise CortexmapError(f"Preprocessing size must be a positive integer; got {self.size}.")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise CortexmapError("Preprocessing mean/std need 3 values each, std > 0.")
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if self.resize is not None and self.resize < self.size:
            raise CortexmapError(
                f"Preprocessing resize ({self.resize}) must be >= size ({self.size})."
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})

    def __call__(self, images) -> torch.Tensor:
        return preprocess(images, self)


def preprocess(stimuli, preprocessing: Preprocessing | None = None) -> torch.Tensor:
    """Stimuli -> normalised model input.

    Parameters
    ----------
    stimuli : StimulusSet, or float array (n, H, W, 3) / (H, W, 3) in [0, 1] (uint8 accepted).
    preprocessing : a :class:`Preprocessing` (e.g. ``model.cortexmap_preprocessing``);
        default ImageNet at 224 px.

    Returns
    -------
    float32 tensor (n, 3, size, size).
    """
    p = preprocessing or Preprocessing()
    images = getattr(stimuli, "images", stimuli)
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise CortexmapError(
            f"preprocess needs images of shape (n, H, W, 3) in [0, 1]; got {arr.shape}."
        )
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(0, 3, 1, 2)
    t = resize_crop(t, p.resize or p.size, p.size, p.interpolation)
    mean = torch.tensor(p.mean, dtype=t.dtype).view(1, 3, 1, 1)
    std = torch.tensor(p.std, dtype=t.dtype).view(1, 3, 1, 1)
    return (t - mean) / std


def resize_crop(t: torch.Tensor, resize: int, size: int, mode: str = "bilinear") -> torch.Tensor:
    """Resize (n, C, H, W) so the shorter side is ``resize`` (antialiased), then centre-crop."""
    h, w = t.shape[-2:]
    scale = resize / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if (nh, nw) != (h, w):
        kw = {"antialias": True, "align_corners": False} if mode in ("bilinear", "bicubic") else {}
        t = F.interpolate(t, size=(nh, nw), mode=mode, **kw)
    top, left = (nh - size) // 2, (nw - size) // 2
    return t[..., top : top + size, left : left + size]


def input_size_of(model: torch.nn.Module, default: int = 224) -> int:
    """The square input side a loaded model expects (from its ``cortexmap_preprocessing``);
    ``default`` for a bare torch module without one (224: the ImageNet convention)."""
    size = getattr(getattr(model, "cortexmap_preprocessing", None), "size", None)
    if isinstance(size, (tuple, list)):
        size = size[0]
    return int(size) if size else default


def as_tuple3(x: float | Sequence[float]) -> tuple[float, float, float]:
    vals = tuple(float(v) for v in (x if isinstance(x, Sequence) else (x, x, x)))
    if len(vals) != 3:
        raise CortexmapError(f"Expected 3 channel values; got {x!r}.")
    return vals  # type: ignore[return-value]

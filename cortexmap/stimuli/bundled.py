"""The bundled natural-image set: photographs shipped with scikit-image (no download).

Only the scikit-image images that ship inside the wheel are used (those needing ``pooch`` are
skipped), so the set loads offline. Each image gets a category and a foreground mask:

====================  ==========  =====================================================
image                 category    foreground mask (recipe)
====================  ==========  =====================================================
astronaut             person      hand-drawn polygon: the astronaut and her helmet
camera                person      dark pixels (Otsu), largest component: man + camera
chelsea               animal      hand-drawn polygon: the cat; grey letterbox = background
horse                 animal      the silhouette itself
coffee                object      hand-drawn ellipses: cup and saucer
clock                 object      bright pixels (Otsu), largest component: the clock face
coins                 object      bright pixels (Otsu), all coin-sized components
rocket                vehicle     hand-drawn polygon: rocket and launch mount
motorcycle            vehicle     hand-drawn polygon: the motorcycle (left stereo view)
page                  text        dark pixels (Otsu), all components: the printed text
text                  text        dark pixels (Otsu), all components: the written symbols
logo                  symbol      non-white pixels, holes filled: the logo disk
colorwheel            symbol      pixels with any channel > 0.03: the colour disk
retina                biology     non-black pixels: the fundus disk
immunohistochemistry  biology     DAB stain (rgb2hed, Otsu): the stained tissue
cell                  biology     bright pixels (Otsu), largest component: the cell
====================  ==========  =====================================================

Each photograph is cropped to its central square (chelsea, whose cat fills the frame, is
instead letterboxed: the whole photo padded with mid grey, so the cat has a background); the
mask recipe runs on the shown part, with polygon/ellipse coordinates as (x, y) fractions of it.
Images are resized with antialiasing, masks by area fraction >= 0.5.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from cortexmap.errors import CortexmapError
from cortexmap.stimuli.base import (
    StimulusSet,
    center_crop_square,
    resize_images,
    resize_masks,
    to_rgb_float,
)
from cortexmap.stimuli.masks import clean_mask, ellipse_mask, polygon_mask, threshold_mask


@dataclass(frozen=True)
class _Photo:
    loader: str  # skimage.data function name
    category: str
    mask: Callable[[np.ndarray], np.ndarray]  # raw image -> bool (H, W)
    square: str = "crop"  # "crop": central square; "letterbox": whole photo padded with grey


def _gray(img: np.ndarray) -> np.ndarray:
    rgb = to_rgb_float(img)
    return rgb @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


def _poly(*verts: tuple[float, float]) -> Callable[[np.ndarray], np.ndarray]:
    return lambda img: polygon_mask(img.shape[:2], verts)


def _ellipses(*specs) -> Callable[[np.ndarray], np.ndarray]:
    def make(img: np.ndarray) -> np.ndarray:
        m = np.zeros(img.shape[:2], bool)
        for center, radii in specs:
            m |= ellipse_mask(img.shape[:2], center, radii)
        return m

    return make


def _thresh(polarity: str, **kw) -> Callable[[np.ndarray], np.ndarray]:
    return lambda img: threshold_mask(_gray(img), polarity, **kw)


def _dab(img: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2hed
    from skimage.filters import threshold_otsu

    dab = rgb2hed(img)[..., 2]
    return clean_mask(dab > threshold_otsu(dab), largest=False, min_frac=0.002, fill_holes=True)


PHOTOS: dict[str, _Photo] = {
    "astronaut": _Photo(
        "astronaut",
        "person",
        _poly(
            (0.0, 1.0),
            (0.0, 0.62),
            (0.1, 0.52),
            (0.22, 0.46),
            (0.29, 0.40),
            (0.26, 0.30),
            (0.22, 0.2),
            (0.23, 0.1),
            (0.3, 0.04),
            (0.42, 0.03),
            (0.5, 0.1),
            (0.52, 0.2),
            (0.5, 0.32),
            (0.47, 0.4),
            (0.56, 0.45),
            (0.64, 0.52),
            (0.72, 0.52),
            (0.85, 0.55),
            (0.93, 0.65),
            (0.97, 0.8),
            (0.95, 1.0),
        ),
    ),
    "camera": _Photo("camera", "person", _thresh("dark", closing=2)),
    "chelsea": _Photo(
        "chelsea",
        "animal",
        _poly(
            (0.0, 1.0),
            (0.0, 0.55),
            (0.15, 0.3),
            (0.22, 0.0),
            (0.78, 0.0),
            (0.85, 0.3),
            (1.0, 0.5),
            (1.0, 1.0),
        ),
        square="letterbox",
    ),
    "horse": _Photo("horse", "animal", lambda img: ~np.asarray(img, bool)),
    "coffee": _Photo(
        "coffee", "object", _ellipses(((0.47, 0.3), (0.3, 0.27)), ((0.48, 0.62), (0.48, 0.36)))
    ),
    "clock": _Photo("clock", "object", _thresh("bright", closing=2)),
    "coins": _Photo("coins", "object", _thresh("bright", largest=False, min_frac=0.002)),
    "rocket": _Photo(
        "rocket",
        "vehicle",
        _poly(
            (0.485, 0.3),
            (0.5, 0.29),
            (0.515, 0.3),
            (0.53, 0.36),
            (0.535, 0.9),
            (0.6, 0.93),
            (0.6, 0.99),
            (0.38, 0.99),
            (0.38, 0.93),
            (0.465, 0.9),
            (0.47, 0.36),
        ),
    ),
    "motorcycle": _Photo(
        "stereo_motorcycle",
        "vehicle",
        _poly(
            (0.0, 0.38),
            (0.08, 0.33),
            (0.3, 0.33),
            (0.42, 0.36),
            (0.5, 0.32),
            (0.62, 0.32),
            (0.75, 0.3),
            (0.8, 0.22),
            (0.88, 0.24),
            (0.95, 0.2),
            (0.97, 0.3),
            (0.92, 0.45),
            (1.0, 0.55),
            (1.0, 0.88),
            (0.93, 0.93),
            (0.82, 0.93),
            (0.74, 0.85),
            (0.7, 0.75),
            (0.6, 0.73),
            (0.45, 0.76),
            (0.35, 0.78),
            (0.3, 0.88),
            (0.2, 0.94),
            (0.08, 0.93),
            (0.0, 0.88),
        ),
    ),
    "page": _Photo(
        "page", "text", _thresh("dark", largest=False, fill_holes=False, opening=0, closing=0)
    ),
    "text": _Photo(
        "text", "text", _thresh("dark", largest=False, fill_holes=False, opening=0, closing=0)
    ),
    "logo": _Photo(
        "logo",
        "symbol",
        lambda img: clean_mask(_gray(img) < 0.9, largest=False, min_frac=0.01, closing=3),
    ),
    "colorwheel": _Photo(
        "colorwheel", "symbol", lambda img: clean_mask(to_rgb_float(img).max(-1) > 0.03)
    ),
    "retina": _Photo("retina", "biology", _thresh("bright", threshold=0.08)),
    "immunohistochemistry": _Photo("immunohistochemistry", "biology", _dab),
    "cell": _Photo("cell", "biology", _thresh("bright")),
}


def bundled_names() -> list[str]:
    """Ids of the bundled photographs, in the order :func:`load_bundled` returns them."""
    return list(PHOTOS)


_MAX_SIDE = 300


@functools.lru_cache(maxsize=32)
def _load_raw(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Square full-resolution image (S, S, 3) float32 in [0, 1] and its mask (S, S) bool."""
    import skimage.data

    spec = PHOTOS[name]
    raw = getattr(skimage.data, spec.loader)()
    if isinstance(raw, tuple):  # stereo pair: keep the left view
        raw = raw[0]
    if spec.square == "crop":
        raw = center_crop_square(raw)
    # Masks of large photos are computed at <= ~2x the largest size we serve, then resized.
    step = max(1, min(raw.shape[:2]) // _MAX_SIDE)
    mask = np.asarray(spec.mask(raw[::step, ::step]), bool)
    if step > 1:
        mask = resize_masks(mask[None], raw.shape[:2])[0]
    img = to_rgb_float(raw)
    if spec.square == "letterbox":  # keep the whole photo, pad with mid grey
        img, mask = _letterbox(img, 0.5), _letterbox(mask, False)
    return img, mask


def _letterbox(arr: np.ndarray, fill) -> np.ndarray:
    h, w = arr.shape[:2]
    s = max(h, w)
    out = np.full((s, s, *arr.shape[2:]), fill, dtype=arr.dtype)
    top, left = (s - h) // 2, (s - w) // 2
    out[top : top + h, left : left + w] = arr
    return out


def load_bundled(size: int = 128, names: Sequence[str] | None = None) -> StimulusSet:
    """The bundled photographs as a StimulusSet (offline; the default natural-image set).

    Parameters
    ----------
    size : side of the square images in pixels.
    names : subset of :func:`bundled_names` (default: all 16).

    Returns
    -------
    StimulusSet: images (n, size, size, 3) float32 in [0, 1], ids = names, categories
    (person, animal, object, vehicle, text, symbol, biology), masks (n, size, size) bool
    foreground, metadata with columns id, category, source (the skimage.data function) and
    fg_fraction.
    """
    import pandas as pd

    chosen = list(PHOTOS) if names is None else list(names)
    unknown = [n for n in chosen if n not in PHOTOS]
    if unknown:
        raise CortexmapError(f"Unknown bundled image(s) {unknown}; valid names: {list(PHOTOS)}.")
    if int(size) != size or size < 8:
        raise CortexmapError(f"size must be an integer >= 8 pixels; got {size}.")
    images, masks = [], []
    for name in chosen:
        img, mask = _load_raw(name)
        images.append(resize_images(img[None], (size, size))[0])
        masks.append(resize_masks(mask[None], (size, size))[0])
    masks_arr = np.stack(masks)
    meta = pd.DataFrame(
        {
            "id": chosen,
            "category": [PHOTOS[n].category for n in chosen],
            "source": [f"skimage.data.{PHOTOS[n].loader}" for n in chosen],
            "fg_fraction": masks_arr.mean(axis=(1, 2)),
        }
    )
    return StimulusSet(
        images=np.stack(images),
        ids=chosen,
        categories=list(meta["category"]),
        masks=masks_arr,
        metadata=meta,
        name="bundled",
    )

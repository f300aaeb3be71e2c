"""Procedural object dataset: textured shapes with parts and outlines on photographic backgrounds.

Every image is a deterministic function of ``(seed, split, index)``: the stream of a split is cut
into chunks of :data:`CHUNK` images and chunk ``k`` draws its parameters from
``numpy.random.default_rng([seed, split_id, k])``. So the first 100 images of a 10 000-image set
are the 100 images of a 100-image set, any slice of the stream can be rendered on its own
(``start=``), and a training loop can draw fresh images every epoch without storing them.

Rendering is one compiled pass over the pixels of each image (``procedural_kernel``: signed-distance
functions for the shapes, closed-form textures, hashed pixel noise), which keeps generation several
times faster than training a small network on the same images (``benchmarks/bench_train.py``).

Each image: a background crop cut from an offline photograph tile (never one of the bundled
evaluation photographs, see :data:`_TILES`), 0-3 clutter shapes (some in front of the object,
occluding it), one object of one of :data:`CLASSES` with a random texture (stripes,
checkerboard, dots or gradient), two fill colours, an outline in a third colour, shading, and
random position / scale / rotation; a little pixel noise. The foreground mask
is True where the object is visible (occluders excluded).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cortexmap.errors import CortexmapError
from cortexmap.stimuli import StimulusSet

CLASSES: tuple[str, ...] = (
    "disk", "square", "triangle", "star", "cross", "ring", "crescent", "dumbbell", "arrow", "tee",
)
SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
CHUNK = 256
TEXTURES: tuple[str, ...] = ("stripes", "checker", "dots", "gradient")
# Background photographs: offline images shipped inside installed wheels, none of them one of the
# bundled evaluation photographs (``cortexmap.stimuli.bundled``), so evaluation images are held
# out from training. Each entry is (tile name, source, (top, left, side)): a square crop whose side
# is a fraction of the photo's shorter side, placed at fractions of the free rows / columns; large
# photos give several tiles.
_TILES: tuple[tuple[str, str, tuple[float, float, float]], ...] = (
    ("china-left", "sklearn:china.jpg", (0.0, 0.0, 1.0)),
    ("china-right", "sklearn:china.jpg", (0.0, 1.0, 1.0)),
    ("flower-left", "sklearn:flower.jpg", (0.0, 0.0, 1.0)),
    ("flower-right", "sklearn:flower.jpg", (0.0, 1.0, 1.0)),
    ("grace_hopper", "matplotlib:grace_hopper.jpg", (0.5, 0.0, 1.0)),
    ("hubble-1", "skimage:hubble_deep_field", (0.0, 0.0, 0.5)),
    ("hubble-2", "skimage:hubble_deep_field", (0.0, 1.0, 0.5)),
    ("hubble-3", "skimage:hubble_deep_field", (1.0, 0.0, 0.5)),
    ("hubble-4", "skimage:hubble_deep_field", (1.0, 1.0, 0.5)),
    ("brick", "skimage:brick", (0.0, 0.0, 1.0)),
    ("grass", "skimage:grass", (0.0, 0.0, 1.0)),
    ("gravel", "skimage:gravel", (0.0, 0.0, 1.0)),
    ("moon", "skimage:moon", (0.0, 0.0, 1.0)),
    ("terrain", "matplotlib:jacksboro_fault_dem.npz", (0.0, 0.0, 1.0)),
)
_PHOTOS: tuple[str, ...] = tuple(name for name, _, _ in _TILES)
_BANK_SIZE = 160  # side of each background tile after resizing; crops are taken from it


# --------------------------------------------------------------------------------------------
# backgrounds
# --------------------------------------------------------------------------------------------
def background_source(source: str) -> np.ndarray:
    """The raw photograph behind a tile: (H, W) or (H, W, C) array as its package ships it."""
    kind, _, name = source.partition(":")
    if kind == "skimage":
        import skimage.data

        return np.asarray(getattr(skimage.data, name)())
    if kind == "sklearn":
        from sklearn.datasets import load_sample_image

        return np.asarray(load_sample_image(name))
    if kind == "matplotlib":
        import matplotlib.cbook

        path = matplotlib.cbook.get_sample_data(name, asfileobj=False)
        if name.endswith(".npz"):  # elevation map: shaded relief -> grey image
            with np.load(path, allow_pickle=False) as data:
                elev = np.asarray(data["elevation"], np.float64)
            return ((elev - elev.min()) / (np.ptp(elev) or 1.0) * 255).astype(np.uint8)
        from PIL import Image

        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    raise CortexmapError(f"Unknown background source {source!r}.")


def background_sources() -> list[str]:
    """The distinct photographs the backgrounds are cut from (``package:name``)."""
    return list(dict.fromkeys(source for _, source, _ in _TILES))


@functools.lru_cache(maxsize=1)
def background_bank() -> np.ndarray:
    """(n_tiles, 160, 160, 3) float32 in [0, 1]: square tiles of the background photographs."""
    from skimage.transform import resize

    bank = []
    for _, source, (top, left, side) in _TILES:
        img = background_source(source)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        img = img[..., :3].astype(np.float32) / (255.0 if img.dtype == np.uint8 else 1.0)
        h, w = img.shape[:2]
        px = int(round(side * min(h, w)))
        r0, c0 = int(round(top * (h - px))), int(round(left * (w - px)))
        square = img[r0 : r0 + px, c0 : c0 + px]
        bank.append(resize(square, (_BANK_SIZE, _BANK_SIZE), anti_aliasing=True).astype(np.float32))
    return np.stack(bank)


# --------------------------------------------------------------------------------------------
# parameters and rendering
# --------------------------------------------------------------------------------------------
def _draw_params(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """All random choices for ``n`` images (drawn in a fixed order so chunks are reproducible)."""
    return _draw_object(rng, n) | _draw_scene(rng, n)


def _draw_object(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """The object of each image: class, pose, colours, outline, texture, shading."""
    p: dict[str, np.ndarray] = {}
    p["label"] = rng.integers(0, len(CLASSES), n)
    p["scale"] = rng.uniform(0.22, 0.38, n)  # object radius as a fraction of the image side
    p["rotation"] = rng.uniform(-np.pi / 4, np.pi / 4, n)  # +-45 deg about upright
    p["aspect"] = rng.uniform(0.85, 1.15, n)
    p["cx"] = rng.uniform(0.3, 0.7, n)
    p["cy"] = rng.uniform(0.3, 0.7, n)
    p["color1"] = rng.uniform(0, 1, (n, 3))
    p["color2"] = rng.uniform(0, 1, (n, 3))
    p["outline_color"] = rng.uniform(0, 1, (n, 3)) * rng.uniform(0, 0.35, (n, 1))
    light = rng.random(n) < 0.3  # some outlines bright instead of dark
    p["outline_color"][light] = 1 - p["outline_color"][light]
    p["outline_px"] = rng.uniform(1.0, 2.2, n)
    p["texture"] = rng.integers(0, len(TEXTURES), n)
    p["tex_freq"] = rng.uniform(2.5, 6.0, n)
    p["tex_angle"] = rng.uniform(0, np.pi, n)
    p["tex_phase"] = rng.uniform(0, 2 * np.pi, n)
    p["shade"] = rng.uniform(-0.25, 0.25, (n, 2))
    return p


def _draw_scene(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """What surrounds each object: background crop, clutter, pixel noise."""
    p: dict[str, np.ndarray] = {}
    p["bg_photo"] = rng.integers(0, len(_PHOTOS), n)
    p["bg_y"] = rng.uniform(0, 1, n)
    p["bg_x"] = rng.uniform(0, 1, n)
    p["bg_flip"] = rng.random(n) < 0.5
    p["bg_gain"] = rng.uniform(0.3, 0.8, n)  # background contrast (< object contrast)
    p["bg_offset"] = rng.uniform(-0.15, 0.15, n)
    k = 3  # clutter slots
    p["clutter_on"] = rng.random((n, k)) < 0.35
    p["clutter_front"] = rng.random((n, k)) < 0.3
    p["clutter_kind"] = rng.integers(0, 2, (n, k))  # 0 ellipse, 1 bar
    p["clutter_cx"] = rng.uniform(0, 1, (n, k))
    p["clutter_cy"] = rng.uniform(0, 1, (n, k))
    p["clutter_size"] = rng.uniform(0.03, 0.09, (n, k))
    p["clutter_rot"] = rng.uniform(0, np.pi, (n, k))
    p["clutter_color"] = rng.uniform(0, 1, (n, k, 3))
    p["noise_seed"] = rng.integers(0, 2**31, n)
    return p


def _render(p: dict[str, np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Render images (n, size, size, 3) float32 in [0, 1] and masks (n, size, size) bool."""
    from cortexmap.stimuli.procedural_kernel import render_into  # lazy: compiles on first use

    n = len(p["label"])
    images = np.empty((n, size, size, 3), np.float32)
    masks = np.empty((n, size, size), bool)
    crop = _BANK_SIZE // 2  # backgrounds are crops of half the photo side
    row0 = (p["bg_y"] * (_BANK_SIZE - crop)).astype(np.int64)
    col0 = (p["bg_x"] * (_BANK_SIZE - crop)).astype(np.int64)
    render_into(
        images, masks, background_bank(), p["bg_photo"], row0, col0, p["bg_flip"], crop,
        p["bg_gain"], p["bg_offset"], p["clutter_on"], p["clutter_front"], p["clutter_kind"],
        p["clutter_cx"], p["clutter_cy"], p["clutter_size"], p["clutter_rot"],
        p["clutter_color"], p["label"], p["scale"], p["rotation"], p["aspect"], p["cx"],
        p["cy"], p["color1"], p["color2"], p["outline_color"], p["outline_px"], p["texture"],
        p["tex_freq"], p["tex_angle"], p["tex_phase"], p["shade"], p["noise_seed"],
    )
    return images, masks


def apply_contrast(images: np.ndarray, contrast: float) -> np.ndarray:
    """Scale each image's deviations from its own mean luminance by ``contrast`` (0 < c <= 1].

    ``I_c = m + c * (I - m)`` with ``m`` the image's mean over pixels and channels: mean
    luminance stays fixed while RMS and Michelson contrast scale by ``c`` (the manipulation of
    Akbarinia & Gegenfurtner, 2020). images: (n, H, W, 3) float in [0, 1].
    """
    if not np.isfinite(contrast) or not 0 < contrast <= 1:
        raise CortexmapError(
            f"contrast must be in (0, 1] (1 = full contrast, 0.01 = 1 %), got {contrast!r}."
        )
    if contrast == 1:
        return images
    m = images.mean(axis=(1, 2, 3), keepdims=True)
    return (m + contrast * (images - m)).astype(np.float32)


def generate(
    split: str = "train", n: int = 1000, seed: int = 0, size: int = 64, start: int = 0,
    contrast: float = 1.0, view: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    """Render images ``start .. start+n-1`` of a split's stream.

    ``view`` 0 is the dataset itself; view ``v > 0`` shows the same objects (class, pose,
    colours, texture) in another scene (background crop, clutter, pixel noise): two views of an
    image are a positive pair for self-supervised training that shares the object only.

    Returns images (n, size, size, 3) float32 in [0, 1], labels (n,) int64, masks (n, size, size)
    bool and a metadata DataFrame (one row per image: class, scale, rotation, position, texture).
    """
    if split not in SPLITS:
        raise CortexmapError(f"Unknown split {split!r}; use one of {', '.join(SPLITS)}.")
    if n < 0 or start < 0:
        raise CortexmapError(f"n and start must be >= 0 (got n={n}, start={start}).")
    if size < 32:
        raise CortexmapError(f"size must be >= 32 pixels for recognisable shapes, got {size}.")
    if view < 0:
        raise CortexmapError(f"view must be >= 0 (0 = the dataset's own scenes), got {view}.")
    imgs, labels, masks, metas = [], [], [], []
    first, last = start // CHUNK, (start + n - 1) // CHUNK if n else start // CHUNK - 1
    for k in range(first, last + 1):
        rng = np.random.default_rng([seed, SPLITS[split], k])
        params = _draw_params(rng, CHUNK)
        if view:
            params |= _draw_scene(np.random.default_rng([seed, SPLITS[split], k, view]), CHUNK)
        lo = max(start - k * CHUNK, 0)
        hi = min(start + n - k * CHUNK, CHUNK)
        params = {key: val[lo:hi] for key, val in params.items()}
        im, mk = _render(params, size)
        imgs.append(im)
        masks.append(mk)
        labels.append(params["label"].astype(np.int64))
        metas.append(pd.DataFrame({
            "index": np.arange(k * CHUNK + lo, k * CHUNK + hi),
            "category": [CLASSES[i] for i in params["label"]],
            "label": params["label"],
            "scale": params["scale"], "rotation_deg": np.degrees(params["rotation"]),
            "x": params["cx"], "y": params["cy"],
            "texture": [TEXTURES[i] for i in params["texture"]],
            "background": [_PHOTOS[i] for i in params["bg_photo"]],
            "n_clutter": params["clutter_on"].sum(1),
        }))
    if not imgs:
        empty = np.zeros((0, size, size, 3), np.float32)
        return empty, np.zeros(0, np.int64), np.zeros((0, size, size), bool), pd.DataFrame()
    images = apply_contrast(np.concatenate(imgs), contrast)
    meta = pd.concat(metas, ignore_index=True)
    meta["contrast"] = contrast
    return images, np.concatenate(labels), np.concatenate(masks), meta


@dataclass
class ProceduralObjects:
    """A split of the procedural object dataset, rendered eagerly.

    Parameters: ``split`` ("train" | "val" | "test"; independent streams), ``n`` images,
    ``seed``, ``size`` (pixels, >= 32), ``contrast`` in (0, 1], ``start`` (first stream index).

    Attributes: ``images`` (n, size, size, 3) float32 in [0, 1], ``labels`` (n,) int64 indices
    into :data:`CLASSES`, ``masks`` (n, size, size) bool (True = visible object),
    ``metadata`` DataFrame, ``categories`` list of class names per image, ``ids``.
    """

    split: str = "test"
    n: int = 1000
    seed: int = 0
    size: int = 64
    contrast: float = 1.0
    start: int = 0
    images: np.ndarray = field(init=False, repr=False)
    labels: np.ndarray = field(init=False, repr=False)
    masks: np.ndarray = field(init=False, repr=False)
    metadata: pd.DataFrame = field(init=False, repr=False)

    CLASSES = CLASSES

    def __post_init__(self) -> None:
        self.images, self.labels, self.masks, self.metadata = generate(
            self.split, self.n, self.seed, self.size, self.start, self.contrast
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.images[i], int(self.labels[i])

    @property
    def categories(self) -> list[str]:
        return [CLASSES[i] for i in self.labels]

    @property
    def ids(self) -> list[str]:
        stop = self.start + self.n
        return [f"{self.split}-s{self.seed}-{i:06d}" for i in range(self.start, stop)]

    def with_contrast(self, contrast: float) -> ProceduralObjects:
        """The same images rendered at another contrast level."""
        return ProceduralObjects(self.split, self.n, self.seed, self.size, contrast, self.start)

    def to_stimulus_set(self):  # -> cortexmap.stimuli.StimulusSet
        """As a :class:`cortexmap.stimuli.StimulusSet` with ids, categories, masks, metadata."""

        return StimulusSet(
            images=self.images, ids=self.ids, categories=self.categories, masks=self.masks,
            metadata=self.metadata.reset_index(drop=True), name=f"procedural-{self.split}",
        )

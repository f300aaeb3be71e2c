"""Image folders: PNG/JPEG files with stable sorted ids, optional categories CSV and masks.

``load_folder`` reads everything into a :class:`StimulusSet`; :class:`FolderImages` reads
lazily, one batch at a time, so extraction over a large folder keeps memory bounded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cortexmap.errors import CortexmapError
from cortexmap.stimuli.base import (
    StimulusSet,
    center_crop_square,
    resize_images,
    resize_masks,
    to_rgb_float,
)
from cortexmap.stimuli.masks import IMAGE_SUFFIXES, load_masks
from cortexmap.utils.io import atomic_path, prepare_output_dir, write_table
from cortexmap.utils.provenance import write_provenance


def list_images(path: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Image files under ``path`` sorted by their relative path (the ids' order)."""
    root = Path(path)
    if not root.is_dir():
        raise CortexmapError(f"Image folder {root} does not exist or is not a folder.")
    pattern = "**/*" if recursive else "*"
    files = sorted(
        (
            p
            for p in root.glob(pattern)
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        ),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    if not files:
        raise CortexmapError(
            f"No images (PNG/JPEG/BMP/TIFF) in {root}; put the stimuli there or pass the "
            "right folder."
        )
    return files


def image_id(path: Path, root: Path) -> str:
    """Stable id: the path relative to the folder, without extension, '/'-separated."""
    return path.relative_to(root).with_suffix("").as_posix()


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read one image as float32 (H, W, 3) in [0, 1]; an unreadable file names its path."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    try:
        with Image.open(p) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I"):
                arr = np.asarray(im, dtype=np.float32)
                arr = arr / (65535.0 if arr.max() > 255 else 255.0)
            else:
                arr = np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise CortexmapError(
            f"Cannot read image {p}: {exc}. Replace or remove the file (PNG/JPEG expected)."
        ) from exc
    return to_rgb_float(arr)


#: Wider than this (long side / short side), the centre crop drops over half of an image.
MAX_ASPECT = 2.0


def warn_geometry(root: Path, names: Sequence[str], shapes: Sequence[tuple[int, int]],
                  size: int | None) -> None:
    """Warn once about images the square crop and resize will distort: smaller than ``size``
    (upsampled, blurry) or with an extreme aspect ratio (the centre crop drops most of them)."""
    import warnings

    if size is None:
        return
    small = [n for n, (h, w) in zip(names, shapes, strict=True) if min(h, w) < size]
    wide = [n for n, (h, w) in zip(names, shapes, strict=True)
            if max(h, w) > MAX_ASPECT * max(min(h, w), 1)]
    if small:
        warnings.warn(
            f"{len(small)} image(s) in {root} are smaller than the {size} px they are resized "
            f"to (e.g. {small[:3]}), so they are upsampled and blurred; a network sees less "
            "detail in them than in the others.",
            UserWarning, stacklevel=3)
    if wide:
        warnings.warn(
            f"{len(wide)} image(s) in {root} have an aspect ratio beyond {MAX_ASPECT:g}:1 (e.g. "
            f"{wide[:3]}); the centre crop to a square keeps less than half of each.",
            UserWarning, stacklevel=3)


def _header_shape(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as im:  # reads the header only
            return im.size[1], im.size[0]
    except OSError:  # unreadable: read_image names it when the batch is read
        return (10**6, 10**6)


def _fit(img: np.ndarray, size: int | None) -> np.ndarray:
    if size is None:
        return img
    return resize_images(center_crop_square(img)[None], (size, size))[0]


def read_categories(csv: str | os.PathLike, ids: Sequence[str]) -> list[str]:
    """Categories for ``ids`` from a CSV with an id column (id/image/filename/file/stimulus)
    and a category column (category/label/class)."""
    p = Path(csv)
    try:
        df = pd.read_csv(p, dtype=str)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise CortexmapError(f"Cannot read categories CSV {p}: {exc}") from exc
    cols = {c.lower().strip(): c for c in df.columns}
    id_col = next(
        (cols[c] for c in ("id", "image", "filename", "file", "stimulus") if c in cols), None
    )
    cat_col = next((cols[c] for c in ("category", "label", "class") if c in cols), None)
    if id_col is None or cat_col is None:
        raise CortexmapError(
            f"Categories CSV {p} needs an 'id' column (image name, with or without extension) "
            f"and a 'category' column; found columns {list(df.columns)}."
        )
    mapping = {}
    for key, cat in zip(df[id_col].astype(str), df[cat_col].astype(str), strict=True):
        key = key.strip()
        mapping[key] = cat
        mapping[str(Path(key).with_suffix(""))] = cat  # "cat01.png" and "cat01" both work
    missing = [i for i in ids if i not in mapping]
    if missing:
        raise CortexmapError(
            f"Categories CSV {p} has no row for {len(missing)} image(s), e.g. {missing[:5]}; add "
            "them (id,category)."
        )
    return [mapping[i] for i in ids]


def load_folder(
    path: str | os.PathLike,
    categories_csv: str | os.PathLike | None = None,
    masks_dir: str | os.PathLike | None = None,
    size: int | None = None,
    recursive: bool = False,
) -> StimulusSet:
    """Load every image of a folder as a StimulusSet.

    Parameters
    ----------
    path : folder of PNG/JPEG (also BMP/TIFF) files; ids are file names without extension
        (relative paths with ``recursive``), sorted, so the order is stable across machines.
    categories_csv : optional CSV with columns id, category.
    masks_dir : optional folder of foreground masks named like the images (``<id>.png``,
        non-zero = foreground), each the size of its image.
    size : centre-crop to square and resize to ``size`` x ``size``; None keeps the images'
        size, which must then be equal for all.
    """
    root = Path(path)
    files = list_images(root, recursive)
    ids = [image_id(f, root) for f in files]
    raw = [read_image(f) for f in files]
    shapes = [im.shape[:2] for im in raw]
    masks = None
    if masks_dir is not None:
        masks = load_masks(masks_dir, ids, shapes)
    warn_geometry(root, ids, shapes, size)
    if size is None and len(set(shapes)) > 1:
        raise CortexmapError(
            f"Images in {root} have different sizes ({sorted(set(shapes))[:4]}...); pass size= "
            "(--size) to crop and resize them to one square size."
        )
    images = np.stack([_fit(im, size) for im in raw])
    if masks is not None:
        masks = np.stack(
            [
                m if size is None else resize_masks(center_crop_square(m)[None], (size, size))[0]
                for m in masks
            ]
        )
    cats = read_categories(categories_csv, ids) if categories_csv is not None else None
    meta = pd.DataFrame({"id": ids, "file": [f.name for f in files]})
    return StimulusSet(
        images=images, ids=ids, categories=cats, masks=masks, metadata=meta, name=root.name
    )


class FolderImages:
    """Lazy image source: ``len()``, ``ids`` and ``[start:stop]`` -> (b, S, S, 3) float32.

    Used by the Extractor / CLI so that only one batch of images is in memory at a time.
    """

    def __init__(self, path: str | os.PathLike, size: int, recursive: bool = False) -> None:
        self.root = Path(path)
        self.files = list_images(self.root, recursive)
        self.ids = [image_id(f, self.root) for f in self.files]
        self.size = int(size)
        self.name = self.root.name
        warn_geometry(self.root, self.ids, [_header_shape(f) for f in self.files], self.size)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, idx: slice | int) -> np.ndarray:
        files = self.files[idx] if isinstance(idx, slice) else [self.files[idx]]
        return np.stack([_fit(read_image(f), self.size) for f in files])


def save_folder(stimuli: StimulusSet, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a StimulusSet as a folder that :func:`load_folder` reads back.

    Layout: ``<id>.png`` per image (8-bit RGB), ``categories.csv`` (id, category) when the set
    has categories, ``masks/<id>.png`` when it has masks, ``metadata.csv`` when it has
    metadata, and ``provenance.json``. Every file is written atomically. Ids containing '/'
    become sub-folders (read them back with ``recursive=True``).
    """
    from PIL import Image


    out = prepare_output_dir(path, overwrite)

    def save_png(arr: np.ndarray, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            Image.fromarray(arr).save(tmp, format="PNG")

    for i, sid in enumerate(stimuli.ids):
        save_png(np.round(stimuli.images[i] * 255).astype(np.uint8), out / f"{sid}.png")
        if stimuli.masks is not None:
            save_png(stimuli.masks[i].astype(np.uint8) * 255, out / "masks" / f"{sid}.png")
    if stimuli.categories is not None:
        cats = pd.DataFrame({"id": stimuli.ids, "category": stimuli.categories})
        with atomic_path(out / "categories.csv") as tmp:
            cats.to_csv(tmp, index=False)
    if stimuli.metadata is not None:
        write_table(stimuli.metadata, out / "metadata")
        (out / "metadata.parquet").unlink()  # CSV is enough next to the images
    write_provenance(out, config={"stimuli": stimuli.name, "n": len(stimuli)})
    return out

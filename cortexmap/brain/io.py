"""Brain data in: NIfTI response estimates, masks, ROI label images (atlases), datasets.

Conventions
-----------
* Response estimates are one volume per *observation* (a condition, optionally repeated over
  runs): either a 4-D NIfTI file with a table of condition labels (one row per volume, columns
  ``condition`` and optionally ``run``), or one 3-D file per condition.
* A mask defines the voxels analysed; images must share the mask's grid (shape and affine).
* Voxels with NaN/inf or with no variance across observations inside the mask carry no
  information (and would give NaN correlations). They are **dropped and counted**: the subject's
  mask shrinks and :attr:`BrainData.dropped` reports how many of each kind were removed.
* A dataset folder (what :func:`cortexmap.brain.phantom.make_phantom` writes and what
  :func:`load_dataset` reads)::

      root/mask.nii.gz
      root/atlas.nii.gz + root/atlas.tsv          (ROI label image + columns index, name)
      root/sub-01/sub-01_run-01_responses.nii.gz  (4-D, one volume per condition)
      root/sub-01/sub-01_run-01_conditions.tsv    (column ``condition``)
"""

from __future__ import annotations

import gzip
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from cortexmap.errors import CortexmapError
from cortexmap.utils.io import write_bytes

ImgLike = str | os.PathLike | nib.Nifti1Image

_AFFINE_ATOL = 1e-3


def load_img(img: ImgLike, name: str = "image") -> nib.Nifti1Image:
    """Return a NIfTI image from a path or an image object."""
    if isinstance(img, nib.spatialimages.SpatialImage):
        return img  # type: ignore[return-value]
    path = Path(img)
    if not path.exists():
        raise CortexmapError(f"{name} file {path} does not exist; check the path.")
    try:
        return nib.load(str(path))  # type: ignore[return-value]
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise CortexmapError(f"{name} file {path} is not a readable NIfTI image: {exc}") from exc


def write_nifti(path: str | os.PathLike, img: nib.Nifti1Image) -> Path:
    """Write ``img`` to ``path`` (``.nii.gz``) atomically; returns the path.

    Uses the fastest gzip level: maps and phantom volumes are large and written once.
    """
    return write_bytes(Path(path), gzip.compress(img.to_bytes(), compresslevel=1))


def check_same_grid(img: nib.Nifti1Image, ref: nib.Nifti1Image, name: str, ref_name: str) -> None:
    """Raise when ``img`` and ``ref`` do not share the voxel grid (first 3 dims and affine)."""
    if tuple(img.shape[:3]) != tuple(ref.shape[:3]):
        raise CortexmapError(
            f"{name} has grid shape {tuple(img.shape[:3])} but {ref_name} has "
            f"{tuple(ref.shape[:3])}; resample one onto the other first, e.g. "
            "nilearn.image.resample_to_img(img, mask, interpolation='nearest')."
        )
    if not np.allclose(img.affine, ref.affine, atol=_AFFINE_ATOL):
        raise CortexmapError(
            f"{name} and {ref_name} have different affines (voxel-to-MNI transforms):\n"
            f"{np.round(img.affine, 3)}\nvs\n{np.round(ref.affine, 3)}\n"
            "They are on different grids; resample with nilearn.image.resample_to_img."
        )


def load_mask(mask: Any) -> nib.Nifti1Image:
    """A binary 3-D mask image (uint8) from a path, an image, or a fitted nilearn masker."""
    if hasattr(mask, "mask_img_"):  # fitted nilearn NiftiMasker
        mask = mask.mask_img_
    img = load_img(mask, "mask")
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise CortexmapError(f"mask must be a 3-D image; got shape {data.shape}.")
    data = np.nan_to_num(data) != 0
    if not data.any():
        raise CortexmapError("mask has no non-zero voxel; pass a brain mask with voxels set to 1.")
    return nib.Nifti1Image(data.astype(np.uint8), img.affine)


class BrainMasker:
    """Volumes <-> (n_volumes, n_voxels) arrays over a mask, with grid checks.

    A lightweight numpy counterpart of ``nilearn.maskers.NiftiMasker`` (no smoothing or
    detrending: response estimates are already first-level outputs); ``to_nilearn`` and
    ``from_nilearn`` convert between the two.
    """

    def __init__(self, mask_img: Any):
        self.mask_img = load_mask(mask_img)
        self.mask = np.asarray(self.mask_img.dataobj, dtype=bool)
        self.indices = np.flatnonzero(self.mask)  # C-order flat indices of mask voxels

    @property
    def affine(self) -> np.ndarray:
        return self.mask_img.affine

    @property
    def n_voxels(self) -> int:
        return int(self.indices.size)

    def voxel_ijk(self) -> np.ndarray:
        """(n_voxels, 3) integer voxel coordinates of the mask voxels."""
        return np.column_stack(np.unravel_index(self.indices, self.mask.shape))

    def voxel_mm(self) -> np.ndarray:
        """(n_voxels, 3) world (MNI) coordinates in mm of the mask voxels."""
        return nib.affines.apply_affine(self.affine, self.voxel_ijk())

    def transform(self, img: ImgLike, name: str = "image") -> np.ndarray:
        """(n_volumes, n_voxels) float64 values of a 3-D or 4-D image inside the mask."""
        img = load_img(img, name)
        check_same_grid(img, self.mask_img, name, "mask")
        data = np.asarray(img.dataobj, dtype=np.float64)
        if data.ndim == 3:
            data = data[..., None]
        if data.ndim != 4:
            raise CortexmapError(f"{name} must be 3-D or 4-D; got shape {data.shape}.")
        return data.reshape(-1, data.shape[3])[self.indices].T

    def inverse_transform(self, values: np.ndarray, fill: float = 0.0) -> nib.Nifti1Image:
        """Image from (n_voxels,) or (n_volumes, n_voxels) values; ``fill`` outside the mask."""
        values = np.asarray(values)
        if values.shape[-1] != self.n_voxels:
            raise CortexmapError(
                f"values have {values.shape[-1]} voxels but the mask has {self.n_voxels}."
            )
        dtype = np.float32 if values.dtype.kind == "f" else values.dtype
        vols = values.reshape(-1, self.n_voxels)
        out = np.full((self.mask.size, vols.shape[0]), fill, dtype=dtype)
        out[self.indices] = vols.T
        out = out.reshape(*self.mask.shape, vols.shape[0])
        if values.ndim == 1:
            out = out[..., 0]
        return nib.Nifti1Image(out, self.affine)

    def to_nilearn(self):
        """A fitted ``nilearn.maskers.NiftiMasker`` on the same mask."""
        from nilearn.maskers import NiftiMasker

        return NiftiMasker(mask_img=self.mask_img, standardize=None).fit()

    @classmethod
    def from_nilearn(cls, masker) -> BrainMasker:
        """From a fitted nilearn ``NiftiMasker`` (uses its ``mask_img_``)."""
        if not hasattr(masker, "mask_img_"):
            raise CortexmapError("The nilearn masker is not fitted; call masker.fit() first.")
        return cls(masker.mask_img_)


@dataclass
class BrainData:
    """One subject's response estimates inside a mask.

    data: (n_obs, n_voxels) float64; conditions: (n_obs,) labels; runs: (n_obs,) labels or None;
    masker: the subject's mask after dropping bad voxels; dropped: counts of removed voxels by
    reason (``nan``: any NaN/inf value, ``constant``: no variance across observations).
    """

    data: np.ndarray
    conditions: np.ndarray
    masker: BrainMasker
    runs: np.ndarray | None = None
    subject: str = "sub-01"
    dropped: dict[str, int] = field(default_factory=lambda: {"nan": 0, "constant": 0})

    @property
    def n_voxels(self) -> int:
        return self.data.shape[1]

    @property
    def mask_img(self) -> nib.Nifti1Image:
        return self.masker.mask_img

    @property
    def condition_names(self) -> list[str]:
        """Condition labels in order of first appearance."""
        _, first = np.unique(self.conditions, return_index=True)
        return [str(self.conditions[i]) for i in sorted(first)]

    def condition_patterns(self, conditions: list[str] | None = None) -> np.ndarray:
        """(n_conditions, n_voxels) mean pattern per condition (averaged over runs).

        ``conditions`` fixes the order; a condition absent from this subject is an error.
        """
        names = self.condition_names if conditions is None else list(conditions)
        missing = [c for c in names if c not in set(self.conditions.tolist())]
        if missing:
            raise CortexmapError(
                f"Subject {self.subject} has no data for condition(s) {missing[:5]}"
                f"{' ...' if len(missing) > 5 else ''}; every subject needs every condition "
                "(drop the subject or the condition)."
            )
        return np.stack([self.data[self.conditions == c].mean(axis=0) for c in names])

    def unmask(self, values: np.ndarray, fill: float = 0.0) -> nib.Nifti1Image:
        return self.masker.inverse_transform(values, fill=fill)


def drop_bad_voxels(
    data: np.ndarray, masker: BrainMasker, subject: str = "sub-01"
) -> tuple[np.ndarray, BrainMasker, dict[str, int]]:
    """Remove voxels with NaN/inf or zero variance across observations; return counts."""
    nan = ~np.isfinite(data).all(axis=0)
    with np.errstate(invalid="ignore"):
        const = ~nan & (np.nanmax(data, axis=0) == np.nanmin(data, axis=0))
    keep = ~(nan | const)
    dropped = {"nan": int(nan.sum()), "constant": int(const.sum())}
    if not keep.any():
        raise CortexmapError(
            f"Subject {subject}: every mask voxel is NaN or constant across observations; "
            "check that the images hold response estimates inside the mask."
        )
    if nan.any() or const.any():
        warnings.warn(
            f"Subject {subject}: dropped {dropped['nan']} NaN and {dropped['constant']} constant "
            f"voxel(s) of {data.shape[1]} in the mask.",
            stacklevel=3,
        )
        mask = np.zeros(masker.mask.shape, dtype=np.uint8)
        mask.flat[masker.indices[keep]] = 1
        masker = BrainMasker(nib.Nifti1Image(mask, masker.affine))
    return data[:, keep], masker, dropped


def _read_labels(table: Any, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Condition (and run) labels per volume from a path to CSV/TSV, a DataFrame or a list."""
    runs = None
    if isinstance(table, (str, os.PathLike)):
        path = Path(table)
        if not path.exists():
            raise CortexmapError(f"Condition table {path} does not exist.")
        sep = "\t" if path.suffix in {".tsv", ".txt"} else ","
        table = pd.read_csv(path, sep=sep, dtype={"condition": str})
    if isinstance(table, pd.DataFrame):
        if "condition" not in table.columns:
            raise CortexmapError(
                f"Condition table needs a 'condition' column; it has {list(table.columns)}."
            )
        if "run" in table.columns:
            runs = table["run"].to_numpy()
        table = table["condition"].astype(str).tolist()
    labels = np.asarray([str(c) for c in table])
    if labels.shape[0] != n:
        raise CortexmapError(
            f"The condition table has {labels.shape[0]} rows but the images have {n} volumes; "
            "give one label per volume."
        )
    return labels, runs


def load_subject(
    images: ImgLike | list[ImgLike],
    mask: Any,
    conditions: Any = None,
    runs: Any = None,
    subject: str = "sub-01",
) -> BrainData:
    """Load one subject's response estimates inside ``mask``.

    images: a 4-D image (one volume per observation), or a list of 3-D images (one per
    condition) or 4-D images (concatenated). conditions: one label per volume as a list, a
    DataFrame or a CSV/TSV path with column ``condition`` (optional ``run``); for a list of 3-D
    files it defaults to the file names without extension. runs: one label per volume or None.
    NaN/constant voxels are dropped and counted (see module docstring).
    """
    masker = BrainMasker(mask)
    items = images if isinstance(images, (list, tuple)) else [images]
    if not items:
        raise CortexmapError(f"Subject {subject}: no images given.")
    blocks, stems = [], []
    for k, item in enumerate(items):
        name = str(item) if not isinstance(item, nib.spatialimages.SpatialImage) else f"image {k}"
        block = masker.transform(item, name=f"{subject} {name}")
        blocks.append(block)
        stems += [_stem(item, k)] * block.shape[0]
    data = np.concatenate(blocks, axis=0)
    if conditions is None:
        if len(items) == 1 and data.shape[0] > 1:
            raise CortexmapError(
                f"Subject {subject}: a 4-D image needs a condition table (one label per volume)."
            )
        conditions = stems
    labels, table_runs = _read_labels(conditions, data.shape[0])
    if runs is None:
        runs = table_runs
    if runs is not None:
        runs = np.asarray(runs)
        if runs.shape[0] != data.shape[0]:
            raise CortexmapError(
                f"Subject {subject}: {runs.shape[0]} run labels for {data.shape[0]} volumes."
            )
    data, masker, dropped = drop_bad_voxels(data, masker, subject)
    return BrainData(data, labels, masker, runs=runs, subject=subject, dropped=dropped)


def _stem(item: Any, k: int) -> str:
    if isinstance(item, (str, os.PathLike)):
        name = Path(item).name
        return re.sub(r"\.nii(\.gz)?$", "", name)
    return f"cond{k:03d}"


def _check_run_table(img: Path, table: Path, df: pd.DataFrame) -> None:
    """Name the file when a run's table or image cannot be what the layout needs."""
    if "condition" not in df.columns:
        raise CortexmapError(
            f"{table} has no 'condition' column (its header reads {list(df.columns)[:5]}); the "
            "first line must name the columns, e.g. 'condition' (tab-separated)."
        )
    empty = df.index[df["condition"].isna()].tolist()
    if empty:
        raise CortexmapError(
            f"{table} has no condition label in row(s) {[i + 2 for i in empty[:5]]} (line "
            "numbers); give every volume a label."
        )
    shape = nib.load(img).shape  # the header only
    if len(shape) == 3 and len(df) > 1:
        raise CortexmapError(
            f"{img} is a 3-D image (one volume) but {table.name} lists {len(df)} conditions; a "
            "run's responses must be a 4-D image with one volume per row of its table."
        )


def load_dataset(
    root: str | os.PathLike, mask: Any = None, subjects: list[str] | None = None
) -> list[BrainData]:
    """Load every subject of a dataset folder (layout in the module docstring).

    Runs are read from ``*_run-XX_responses.nii[.gz]`` files with their ``*_conditions.tsv``.
    All subjects must have the same set of conditions (a missing one is an error naming it).
    """
    root = Path(root)
    if not root.is_dir():
        raise CortexmapError(f"Dataset folder {root} does not exist.")
    if mask is None:
        candidates = sorted(root.glob("mask.nii*"))
        if not candidates:
            raise CortexmapError(f"No mask.nii[.gz] in {root}; pass mask= explicitly.")
        mask = candidates[0]
    sub_dirs = sorted(p for p in root.glob("sub-*") if p.is_dir())
    if subjects is not None:
        sub_dirs = [p for p in sub_dirs if p.name in set(subjects)]
    if not sub_dirs:
        raise CortexmapError(f"No sub-* folders in {root}.")
    out = []
    for sdir in sub_dirs:
        files = sorted(sdir.glob("*_responses.nii*"))
        if not files:
            raise CortexmapError(f"{sdir} has no *_responses.nii[.gz] file.")
        imgs, labels, runs = [], [], []
        for f in files:
            table = Path(re.sub(r"_responses\.nii(\.gz)?$", "_conditions.tsv", str(f)))
            if not table.exists():
                raise CortexmapError(f"{f} has no condition table {table.name} beside it.")
            m = re.search(r"run-([A-Za-z0-9]+)", f.name)
            df = pd.read_csv(table, sep="\t", dtype={"condition": str})
            _check_run_table(f, table, df)
            imgs.append(f)
            labels.append(df)
            runs += [m.group(1) if m else "1"] * len(df)
        df_all = pd.concat(labels, ignore_index=True)
        if "run" not in df_all.columns:
            df_all["run"] = runs
        out.append(load_subject(imgs, mask, conditions=df_all, subject=sdir.name))
    check_conditions_match(out)
    return out


def check_conditions_match(subjects: list[BrainData]) -> list[str]:
    """Return the shared condition order; raise naming a subject that misses a condition."""
    ref = subjects[0].condition_names
    for s in subjects[1:]:
        names = set(s.condition_names)
        missing = [c for c in ref if c not in names]
        extra = [c for c in s.condition_names if c not in set(ref)]
        if missing or extra:
            raise CortexmapError(
                f"Subject {s.subject} is missing condition(s) {missing[:5]} and has extra "
                f"{extra[:5]} compared with {subjects[0].subject}; every subject needs the same "
                "conditions (drop the subject or the condition)."
            )
    return ref


@dataclass
class Atlas:
    """An ROI label image (integer per voxel, 0 = background) with names per label."""

    img: nib.Nifti1Image
    names: dict[int, str]

    @property
    def data(self) -> np.ndarray:
        return np.asarray(self.img.dataobj).astype(np.int32)

    @property
    def region_names(self) -> list[str]:
        return [self.names[k] for k in sorted(self.names)]

    def label_of(self, name: str) -> int:
        for k, v in self.names.items():
            if v == name:
                return k
        raise CortexmapError(f"Region {name!r} is not in the atlas; known: {self.region_names}.")

    def region_mask(self, name: str, masker: BrainMasker | None = None) -> np.ndarray:
        """Bool mask of a region: a 3-D volume, or over ``masker``'s voxels when given."""
        vol = self.data == self.label_of(name)
        if masker is None:
            return vol
        check_same_grid(self.img, masker.mask_img, "atlas", "mask")
        return vol.ravel()[masker.indices]

    def labels_at_mm(self, coords_mm: np.ndarray) -> list[str]:
        """Region name at each (n, 3) MNI coordinate ('' outside every region/the grid)."""
        ijk = np.rint(
            nib.affines.apply_affine(np.linalg.inv(self.img.affine), np.atleast_2d(coords_mm))
        ).astype(int)
        data = self.data
        out = []
        for i, j, k in ijk:
            inside = all(0 <= a < s for a, s in zip((i, j, k), data.shape, strict=True))
            out.append(self.names.get(int(data[i, j, k]), "") if inside else "")
        return out

    def table(self) -> pd.DataFrame:
        return pd.DataFrame({"index": sorted(self.names), "name": self.region_names})

    @classmethod
    def from_nilearn(cls, bunch) -> Atlas:
        """From a nilearn atlas bunch (``maps`` + ``labels``, label i = value i)."""
        img = load_img(bunch.maps, "atlas")
        labels = [str(x) for x in bunch.labels]
        values = np.unique(np.asarray(img.dataobj).astype(int))
        names = {int(v): labels[v] for v in values if v != 0 and v < len(labels)}
        return cls(img, names)


def load_atlas(img: ImgLike, names: Any) -> Atlas:
    """ROI label image + names: a table path/DataFrame with columns ``index`` (or ``label``)
    and ``name``, a dict {label: name}, or a list where position i names label i (0 =
    background)."""
    img = load_img(img, "atlas")
    data = np.asarray(img.dataobj)
    if data.ndim != 3 or not np.allclose(data, np.rint(data)):
        raise CortexmapError("An atlas must be a 3-D image of integer labels (0 = background).")
    if isinstance(names, (str, os.PathLike)):
        path = Path(names)
        names = pd.read_csv(path, sep="\t" if path.suffix in {".tsv", ".txt"} else ",")
    if isinstance(names, pd.DataFrame):
        col = "index" if "index" in names.columns else "label"
        if col not in names.columns or "name" not in names.columns:
            raise CortexmapError(
                f"Atlas table needs columns 'index' and 'name'; it has {list(names.columns)}."
            )
        names = dict(zip(names[col].astype(int), names["name"].astype(str), strict=True))
    elif isinstance(names, (list, tuple)):
        names = {i: str(n) for i, n in enumerate(names) if i != 0}
    names = {int(k): str(v) for k, v in dict(names).items() if int(k) != 0}
    present = set(np.unique(data.astype(int)).tolist()) - {0}
    unnamed = sorted(present - set(names))
    if unnamed:
        raise CortexmapError(f"Atlas labels {unnamed[:10]} have no name in the table; add them.")
    return Atlas(nib.Nifti1Image(data.astype(np.int16), img.affine), names)

"""The phantom brain: simulated subjects with a planted layer -> region truth.

Real fMRI cannot be fetched here, so brain-side methods are validated on simulated subjects
written as NIfTI files exactly like a real dataset (see :mod:`cortexmap.brain.io` for the
layout), on nilearn's bundled MNI152 brain mask.

How a geometry is planted
-------------------------
Each region (bilateral spheres at anatomically plausible MNI coordinates, e.g. ``V1``,
``LOC``, ``fusiform``, ``parahippocampal``) receives a target geometry: an RDM or a
(n_conditions, n_units) pattern array (e.g. a model layer's activations).

* correlation geometry (pattern arrays, correlation-distance RDMs): the target correlation
  matrix ``C = 1 - D`` is factored ``C = Y Y^T`` (eigendecomposition, negative eigenvalues
  clipped); voxel patterns are ``P = Y W`` with ``W`` random rows that are orthonormal and
  zero-mean across the region's voxels. Then the correlation-distance RDM of ``P`` over the
  whole region equals the target exactly, and any random subset of voxels approximates it.
* other metrics (euclidean, ...): classical MDS embedding of the target distances, same mixing,
  so (squared) Euclidean distances are preserved.

Every subject gets its own random mixing ``W`` (individual fine-grained patterns, shared
geometry). Each run adds independent Gaussian noise, smoothed with a Gaussian kernel of
``smoothness_mm`` FWHM and rescaled to unit standard deviation in the mask. ``snr`` is the
ratio of standard deviations: signal (across conditions, per region voxel) / noise (per voxel).
``snr=0`` gives a null phantom (same files, no signal).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter
from scipy.spatial.distance import squareform

from cortexmap.brain.io import (
    Atlas,
    BrainData,
    BrainMasker,
    load_atlas,
    load_dataset,
    load_mask,
    write_nifti,
)
from cortexmap.errors import CortexmapError
from cortexmap.rsa import RDMs
from cortexmap.utils.io import prepare_output_dir, write_bytes, write_json, write_text
from cortexmap.utils.progress import track
from cortexmap.utils.provenance import write_provenance

#: Region centres in MNI mm (left hemisphere; mirrored to the right), from typical fMRI peaks.
REGION_COORDS: dict[str, tuple[float, float, float]] = {
    "V1": (-10.0, -92.0, 2.0),
    "V4": (-24.0, -80.0, -14.0),
    "LOC": (-42.0, -78.0, -6.0),
    "fusiform": (-40.0, -52.0, -20.0),
    "parahippocampal": (-26.0, -42.0, -10.0),
    "IT": (-52.0, -28.0, -20.0),
}
#: Common synonyms accepted as region names.
REGION_ALIASES = {"EVC": "V1", "FFA": "fusiform", "PPA": "parahippocampal", "LO": "LOC"}


@dataclass
class PhantomDataset:
    """A phantom written to ``root``; loadable with :func:`cortexmap.brain.io.load_dataset`.

    planted: region name -> name of the geometry planted there (e.g. a layer name).
    """

    root: Path
    subjects: list[str]
    conditions: list[str]
    region_names: list[str]
    planted: dict[str, str]
    truth: dict[str, Any] = field(default_factory=dict)

    @property
    def mask_path(self) -> Path:
        return self.root / "mask.nii.gz"

    @property
    def atlas_path(self) -> Path:
        return self.root / "atlas.nii.gz"

    @property
    def atlas_table_path(self) -> Path:
        return self.root / "atlas.tsv"

    def atlas(self) -> Atlas:
        return load_atlas(self.atlas_path, self.atlas_table_path)

    def masker(self) -> BrainMasker:
        return BrainMasker(self.mask_path)

    def load(self, subjects: list[str] | None = None) -> list[BrainData]:
        """Load the subjects through the same loader as real data."""
        return load_dataset(self.root, subjects=subjects)

    def model_rdms(self):
        """The planted geometries as correlation-distance :class:`cortexmap.rsa.RDMs`."""

        return RDMs.load(self.root / "model_rdms.npz")

    def truth_mask(self, region: str, masker: BrainMasker | None = None) -> np.ndarray:
        """Where ``region`` was planted (3-D bool, or over ``masker``'s voxels)."""
        return self.atlas().region_mask(region, masker)

    @classmethod
    def open(cls, root: str | os.PathLike) -> PhantomDataset:
        root = Path(root)
        path = root / "truth.json"
        if not path.exists():
            raise CortexmapError(f"{root} has no truth.json; it is not a phantom dataset.")
        import json

        truth = json.loads(path.read_text())
        return cls(
            root=root,
            subjects=truth["subjects"],
            conditions=truth["conditions"],
            region_names=[r["name"] for r in truth["regions"]],
            planted={r["name"]: r["planted"] for r in truth["regions"]},
            truth=truth,
        )


def mni_mask(resolution_mm: int = 3) -> nib.Nifti1Image:
    """nilearn's bundled MNI152 brain mask (offline) at 1, 2 or 3 mm."""
    from nilearn.datasets import load_mni152_brain_mask

    if resolution_mm not in (1, 2, 3):
        raise CortexmapError(f"resolution_mm must be 1, 2 or 3; got {resolution_mm}.")
    img = load_mni152_brain_mask(resolution=resolution_mm)
    return nib.Nifti1Image(np.asarray(img.dataobj).astype(np.uint8), img.affine)


def slab_mask(
    resolution_mm: int = 3, y_max: float = -20.0, z_max: float = 20.0
) -> nib.Nifti1Image:
    """The MNI152 mask cut to its occipito-temporal part (y <= y_max, z <= z_max mm): all
    default regions, a fraction of the voxels; for quick phantoms and tests."""
    img = mni_mask(resolution_mm)
    data = np.asarray(img.dataobj).astype(bool)
    xyz = nib.affines.apply_affine(img.affine, np.indices(data.shape).reshape(3, -1).T)
    keep = ((xyz[:, 1] <= y_max) & (xyz[:, 2] <= z_max)).reshape(data.shape)
    return nib.Nifti1Image((data & keep).astype(np.uint8), img.affine)


def _as_geometry(value: Any, rdm_metric: str) -> tuple[np.ndarray, str, str | None]:
    """Return (matrix, kind, name): kind 'patterns' (n_cond, n_units) or 'rdm' (n, n)."""
    name = None
    if hasattr(value, "vectors") and hasattr(value, "names"):  # cortexmap.rsa.RDMs
        if len(value.vectors) != 1:
            raise CortexmapError("Plant one RDM per region (got an RDMs object with several).")
        name = str(value.names[0])
        rdm_metric = getattr(value, "metric", rdm_metric) or rdm_metric
        mat = squareform(np.asarray(value.vectors[0], float), checks=False)
        return mat, "rdm:" + rdm_metric, name
    arr = np.asarray(value, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise CortexmapError("A planted geometry contains NaN/inf values.")
    if arr.ndim == 1:
        return squareform(arr, checks=False), "rdm:" + rdm_metric, name
    if arr.ndim == 2 and arr.shape[0] == arr.shape[1] and np.allclose(arr, arr.T) and np.allclose(
        np.diag(arr), 0
    ):
        return arr, "rdm:" + rdm_metric, name
    if arr.ndim >= 2:
        return arr.reshape(arr.shape[0], -1), "patterns", name
    raise CortexmapError(f"Cannot read a geometry of shape {arr.shape}.")


def embed_geometry(value: Any, rdm_metric: str = "correlation") -> tuple[np.ndarray, np.ndarray]:
    """Embedding ``Y`` (n_conditions, k) of a geometry and its correlation-distance RDM vector.

    Patterns ``P = Y W`` with zero-mean orthonormal rows ``W`` reproduce the geometry (module
    docstring). The returned RDM vector is what the planted region carries under the
    correlation distance (for correlation targets: the target itself).
    """
    mat, kind, _ = _as_geometry(value, rdm_metric)
    if kind == "patterns":
        c = np.corrcoef(mat)
        if not np.isfinite(c).all():
            raise CortexmapError("A planted pattern array has a constant row (condition).")
    elif kind == "rdm:correlation":
        c = 1.0 - mat
    else:  # classical MDS of squared distances
        # squared metrics (sqeuclidean = rsatoolbox "euclidean", crossnobis) are used as they are
        d2 = mat if kind in {"rdm:sqeuclidean", "rdm:crossnobis"} else mat**2
        n = d2.shape[0]
        j = np.eye(n) - 1.0 / n
        c = -0.5 * j @ d2 @ j
    evals, evecs = np.linalg.eigh((c + c.T) / 2)
    evals, evecs = evals[::-1], evecs[:, ::-1]  # strongest dimension first (see truncation)
    keep = evals > 1e-10 * max(evals.max(), 1e-300)
    y = evecs[:, keep] * np.sqrt(evals[keep])
    if y.shape[1] == 0:
        raise CortexmapError("A planted geometry is degenerate (all conditions identical).")
    return y, realized_rdm(y)


def realized_rdm(y: np.ndarray) -> np.ndarray:
    """Correlation-distance RDM vector that patterns ``P = Y W`` carry (W zero-mean orthonormal).

    corr(P_i, P_j) = cosine(Y_i, Y_j), so the realized RDM depends on the embedding only.
    """
    unit = y / np.linalg.norm(y, axis=1, keepdims=True)
    realized = np.clip(1.0 - unit @ unit.T, 0.0, None)
    np.fill_diagonal(realized, 0.0)
    return squareform(realized, checks=False)


def _mixing(k: int, n_vox: int, seed: int | np.random.Generator) -> np.ndarray:
    """(k, n_vox) rows orthonormal and zero-mean across voxels, scaled by sqrt(n_vox)."""
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((n_vox, k))
    g -= g.mean(axis=0)
    q, _ = np.linalg.qr(g)
    return q.T * np.sqrt(n_vox)


def _sphere_mask(mask: np.ndarray, affine: np.ndarray, centres_mm, radius_mm: float) -> np.ndarray:
    """Mask voxels within ``radius_mm`` of any centre (3-D bool)."""
    ijk = np.argwhere(mask)
    xyz = nib.affines.apply_affine(affine, ijk)
    inside = np.zeros(len(ijk), dtype=bool)
    for c in centres_mm:
        inside |= ((xyz - np.asarray(c)) ** 2).sum(axis=1) <= radius_mm**2
    out = np.zeros(mask.shape, dtype=bool)
    out[tuple(ijk[inside].T)] = True
    return out


def smooth_noise(
    rng: np.random.Generator, mask: np.ndarray, fwhm_vox: float, n: int
) -> np.ndarray:
    """(n, n_mask_voxels) Gaussian noise smoothed at ``fwhm_vox`` and scaled to unit SD.

    Generated only in the mask's bounding box plus a margin of 3 kernel SDs (what the kernel
    reaches), which makes small masks cheap.
    """
    sigma = fwhm_vox / np.sqrt(8 * np.log(2))
    margin = int(np.ceil(3 * sigma)) + 1
    nz = np.nonzero(mask)
    lo = [max(int(a.min()) - margin, 0) for a in nz]
    hi = [min(int(a.max()) + margin + 1, dim) for a, dim in zip(nz, mask.shape, strict=True)]
    crop = mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    out = np.empty((n, int(crop.sum())), dtype=np.float64)
    for i in range(n):
        vol = rng.standard_normal(crop.shape)
        if sigma > 0:
            vol = gaussian_filter(vol, sigma, mode="constant")
        v = vol[crop]
        out[i] = (v - v.mean()) / v.std()
    return out


def make_phantom(
    model_rdms: dict[str, Any],
    outdir: str | os.PathLike,
    n_subjects: int = 6,
    n_runs: int = 2,
    snr: float = 0.5,
    resolution_mm: int = 3,
    smoothness_mm: float = 6.0,
    radius_mm: float = 8.0,
    regions: dict[str, Any] | None = None,
    conditions: list[str] | None = None,
    rdm_metric: str = "correlation",
    mask: Any = None,
    compress: bool = True,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> PhantomDataset:
    """Simulate subjects whose regions carry given geometries; write them as a NIfTI dataset.

    model_rdms: region name -> geometry planted there: a ``cortexmap.rsa.RDMs`` with one RDM
      (its name is recorded as what was planted), an RDM vector (n_pairs,) or matrix (n, n) in
      ``rdm_metric``, or a (n_conditions, n_units) pattern array. Plain arrays are recorded
      under the region name; pass ``{"V1": rdms.subset(["conv1"])}`` to record layer names.
    regions: region name -> list of sphere centres in MNI mm, or a parcel (bool volume or
      image on the mask's grid, e.g. ``atlas.region_mask(name)``); default: bilateral spheres
      at :data:`REGION_COORDS` (names or :data:`REGION_ALIASES`).
    snr: signal SD / noise SD per voxel and run (0 = null phantom). smoothness_mm: FWHM of the
      noise. radius_mm: sphere radius of each region.
    mask: brain mask (path or image in MNI space); default nilearn's MNI152 mask at
      ``resolution_mm``. A smaller mask (e.g. :func:`slab_mask`) makes small, fast phantoms.
    compress: write responses as .nii.gz (True) or .nii (False, faster to write and read).
    Returns a :class:`PhantomDataset`; writes mask, atlas (+ names table), truth.json,
    model_rdms.npz (the planted correlation-distance RDMs), per-subject 4-D responses with
    condition tables, and provenance.json.
    """
    if not model_rdms:
        raise CortexmapError("model_rdms is empty; give at least one region -> geometry.")
    if n_subjects < 1 or n_runs < 1:
        raise CortexmapError("n_subjects and n_runs must be at least 1.")
    if snr < 0:
        raise CortexmapError(f"snr must be >= 0; got {snr}.")
    out = prepare_output_dir(outdir, overwrite)
    mask_img = mni_mask(resolution_mm) if mask is None else load_mask(mask)
    if mask is not None:
        resolution_mm = float(np.sqrt((mask_img.affine[:3, :3] ** 2).sum(axis=0)).mean())
    mask = np.asarray(mask_img.dataobj, dtype=bool)
    affine = mask_img.affine

    # Geometry per region, all with the same number of conditions.
    geoms, planted, planted_rdms = {}, {}, {}
    n_cond = None
    for region, value in model_rdms.items():
        _, _, name = _as_geometry(value, rdm_metric)
        y, rdm_vec = embed_geometry(value, rdm_metric)
        if n_cond is None:
            n_cond = y.shape[0]
        elif y.shape[0] != n_cond:
            raise CortexmapError(
                f"Region {region!r} has a geometry over {y.shape[0]} conditions but the first "
                f"region has {n_cond}; all geometries must describe the same stimuli."
            )
        geoms[region] = y
        planted[region] = name or region
        planted_rdms[planted[region]] = rdm_vec
    assert n_cond is not None
    if n_cond < 3:
        raise CortexmapError(f"Geometries have {n_cond} conditions; RSA needs at least 3.")
    if conditions is None:
        first = next(iter(model_rdms.values()))
        conds = getattr(first, "conditions", None)
        conditions = list(conds) if conds else [f"stim{i:03d}" for i in range(n_cond)]
    if len(conditions) != n_cond:
        raise CortexmapError(f"{len(conditions)} condition names for {n_cond} conditions.")

    # Regions -> label image.
    centres, parcels = {}, {}
    for region in model_rdms:
        if regions and region in regions:
            spec = regions[region]
            if hasattr(spec, "shape") or hasattr(spec, "dataobj"):  # a parcel: bool volume
                vol = np.asarray(getattr(spec, "dataobj", spec)).astype(bool)
                if vol.shape != mask.shape:
                    raise CortexmapError(
                        f"Parcel {region!r} has shape {vol.shape} but the mask grid is "
                        f"{mask.shape}; give it on the mask's grid."
                    )
                parcels[region] = vol & mask
                ijk = np.argwhere(parcels[region])
                centres[region] = ([tuple(nib.affines.apply_affine(affine, ijk.mean(0)))]
                                   if len(ijk) else [])
            else:
                centres[region] = [tuple(map(float, c)) for c in spec]
            continue
        key = REGION_ALIASES.get(region, region)
        if key not in REGION_COORDS:
            raise CortexmapError(
                f"No default location for region {region!r}; known: "
                f"{sorted(REGION_COORDS) + sorted(REGION_ALIASES)}. Pass regions={{name: "
                "[(x, y, z), ...]}} in MNI mm."
            )
        x, y_, z = REGION_COORDS[key]
        centres[region] = [(x, y_, z), (-x, y_, z)]
    labels = np.zeros(mask.shape, dtype=np.int16)
    region_info = []
    for idx, region in enumerate(model_rdms, start=1):
        sph = parcels.get(region)
        if sph is None:
            sph = _sphere_mask(mask, affine, centres[region], radius_mm)
        if (labels[sph] != 0).any():
            other = sorted({int(v) for v in labels[sph] if v})
            raise CortexmapError(
                f"Region {region!r} overlaps region(s) {other}; move it or reduce radius_mm."
            )
        labels[sph] = idx
        n_vox = int(sph.sum())
        if n_vox <= geoms[region].shape[1]:
            # too few voxels for an exact embedding: keep the strongest dimensions, and record
            # the geometry the region really carries
            geoms[region] = geoms[region][:, : max(n_vox - 1, 1)]
            planted_rdms[planted[region]] = realized_rdm(geoms[region])
        region_info.append({
            "name": region, "label": idx, "planted": planted[region],
            "centres_mm": centres[region], "n_voxels": n_vox,
            "shape": "parcel" if region in parcels else "spheres",
            "radius_mm": None if region in parcels else radius_mm,
            "embedding_dims": int(geoms[region].shape[1]),
        })
        if n_vox < 4:
            raise CortexmapError(
                f"Region {region!r} has {n_vox} voxel(s) inside the mask; increase radius_mm."
            )

    masker = BrainMasker(mask_img)
    lab_masked = labels.ravel()[masker.indices]
    rng = np.random.default_rng(seed)
    fwhm_vox = smoothness_mm / resolution_mm
    subjects = [f"sub-{s + 1:02d}" for s in range(n_subjects)]
    cond_table = pd.DataFrame({"condition": conditions})

    write_nifti(out / "mask.nii.gz", mask_img)
    write_nifti(out / "atlas.nii.gz", nib.Nifti1Image(labels, affine))
    atlas_table = pd.DataFrame({"index": [r["label"] for r in region_info],
                                "name": [r["name"] for r in region_info]})
    write_text(out / "atlas.tsv", atlas_table.to_csv(sep="\t", index=False))

    RDMs(np.stack(list(planted_rdms.values())), n_cond, list(planted_rdms), "correlation",
         conditions).save(out / "model_rdms.npz", overwrite=True)

    jobs = [(s, r) for s in range(n_subjects) for r in range(n_runs)]
    signal = None
    for s_idx, r_idx in track(jobs, "phantom subjects x runs", enabled=progress):
        if r_idx == 0:
            signal = np.zeros((n_cond, masker.n_voxels))
            for info in region_info:
                sel = lab_masked == info["label"]
                y = geoms[info["name"]]
                p = y @ _mixing(y.shape[1], int(sel.sum()), rng)
                signal[:, sel] = snr * p / p.std(axis=0).mean()
        noise = smooth_noise(rng, mask, fwhm_vox, n_cond)
        vols = masker.inverse_transform((signal + noise).astype(np.float32))
        sub = subjects[s_idx]
        stem = out / sub / f"{sub}_run-{r_idx + 1:02d}"
        if compress:
            write_nifti(f"{stem}_responses.nii.gz", vols)
        else:
            write_bytes(Path(f"{stem}_responses.nii"), vols.to_bytes())
        write_text(Path(f"{stem}_conditions.tsv"), cond_table.to_csv(sep="\t", index=False))

    truth = {
        "subjects": subjects, "conditions": conditions, "n_runs": n_runs, "snr": snr,
        "resolution_mm": resolution_mm, "smoothness_mm": smoothness_mm, "seed": seed,
        "rdm_metric": rdm_metric, "regions": region_info,
        "snr_definition": "signal SD across conditions per region voxel / noise SD per voxel",
    }
    write_json(out / "truth.json", truth)
    write_provenance(out, config={k: v for k, v in truth.items() if k != "regions"}, seed=seed)
    return PhantomDataset(out, subjects, conditions, [r["name"] for r in region_info],
                          planted, truth)

"""A fast, memory-bounded, parallel volumetric RSA searchlight.

For every centre voxel of a mask, the voxels within ``radius_mm`` form a sphere; the sphere's
condition patterns give an RDM, which is compared with many model RDMs at once. The result is
one map per model RDM (the correlation at each centre) and a winner-take-all map.

Sphere convention (the same as rsatoolbox's ``get_volume_searchlight``): a voxel belongs to the
sphere when its distance to the centre is strictly below the radius; a centre is used when at
least ``threshold`` of its sphere's in-grid voxels lie in the mask. Spheres are truncated at
the mask boundary (only mask voxels carry data), which is rsatoolbox's
``truncate_at_boundary=True`` and equals its default whenever ``threshold=1``.

Why it is fast
--------------
* Sphere index lists are computed once, vectorized: one table of voxel offsets, added to every
  centre and looked up in an index volume (no per-centre distance computation).
* For a chunk of centres the gathered patterns (chunk, n_offsets, n_conditions) are centred
  and one batched matrix product gives every Gram matrix; correlation distances follow from
  the normalized Gram matrices (no per-centre Python loop).
* Model RDMs are rank-transformed and z-scored once; data RDMs are ranked once per centre and
  compared with all models by one matrix product.
* Chunks are independent tasks for dask.distributed (LocalCluster by default, any scheduler by
  address); the chunk size bounds the memory of each task.

Dropped centres are counted, never silently wrong: centres whose sphere has fewer than
``min_voxels`` mask voxels, and centres whose RDM is undefined (a condition with a constant
pattern in the sphere), get NaN in the maps.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from cortexmap.brain.io import BrainData, BrainMasker, write_nifti
from cortexmap.brain.roi import align_conditions, as_model_rdms
from cortexmap.errors import CortexmapError
from cortexmap.rsa import RDMs, rank_rows
from cortexmap.rsa.compare import canonical_method
from cortexmap.utils.dask import close_client, get_client
from cortexmap.utils.io import prepare_output_dir, safe_filenames, write_table, write_text
from cortexmap.utils.progress import track
from cortexmap.utils.provenance import write_provenance

SEARCHLIGHT_METRICS = ("correlation", "sqeuclidean", "euclidean", "cosine")
SEARCHLIGHT_METHODS = ("spearman", "pearson")


# ----------------------------------------------------------------------------------------------
# Spheres
# ----------------------------------------------------------------------------------------------
@dataclass
class Spheres:
    """Searchlight spheres over a masker's voxels.

    centres: (n_centres,) column indices (into the masker's voxel list) of the used centres.
    neighbors: (n_centres, n_offsets) int32 column indices of each sphere's voxels, -1 where an
      offset falls outside the mask (padding). n_voxels: (n_centres,) voxels per sphere.
    dropped: counts of mask voxels not used as centres, by reason.
    """

    centres: np.ndarray
    neighbors: np.ndarray
    n_voxels: np.ndarray
    radius_mm: float
    dropped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.centres.size)


def sphere_offsets(affine: np.ndarray, radius_mm: float) -> np.ndarray:
    """(n_offsets, 3) integer voxel offsets whose distance (mm) to the centre is < radius."""
    if radius_mm <= 0:
        raise CortexmapError(f"radius_mm must be positive; got {radius_mm}.")
    lin = np.asarray(affine)[:3, :3]
    vox = np.sqrt((lin**2).sum(axis=0))
    reach = np.ceil(radius_mm / vox.min()).astype(int)
    grid = np.stack(np.meshgrid(*[np.arange(-reach, reach + 1)] * 3, indexing="ij"), -1)
    grid = grid.reshape(-1, 3)
    dist = np.sqrt(((grid @ lin.T) ** 2).sum(axis=1))
    keep = dist < radius_mm - 1e-9
    # nearest offsets first: the order of voxels inside a sphere does not change any RDM
    order = np.argsort(dist[keep], kind="stable")
    return grid[keep][order]


def make_spheres(
    masker: BrainMasker,
    radius_mm: float = 6.0,
    threshold: float = 0.5,
    min_voxels: int = 10,
    chunk: int = 20000,
) -> Spheres:
    """Sphere index lists for every centre of ``masker``'s mask (see module docstring).

    threshold: minimal fraction of a sphere's in-grid voxels that must lie in the mask.
    min_voxels: minimal mask voxels per sphere; centres below it are dropped and counted.
    """
    if not 0 <= threshold <= 1:
        raise CortexmapError(f"threshold must lie in [0, 1]; got {threshold}.")
    offsets = sphere_offsets(masker.affine, radius_mm)
    if offsets.shape[0] < min_voxels:
        vox = np.sqrt((masker.affine[:3, :3] ** 2).sum(axis=0))
        raise CortexmapError(
            f"A {radius_mm} mm sphere on this {np.round(vox, 2).tolist()} mm grid holds only "
            f"{offsets.shape[0]} voxel(s), fewer than min_voxels={min_voxels}; increase "
            "radius_mm (or lower min_voxels)."
        )
    shape = np.array(masker.mask.shape)
    lookup = np.full(masker.mask.size, -1, dtype=np.int32)
    lookup[masker.indices] = np.arange(masker.n_voxels, dtype=np.int32)
    ijk = masker.voxel_ijk()
    neigh = np.empty((masker.n_voxels, offsets.shape[0]), dtype=np.int32)
    frac = np.empty(masker.n_voxels)
    for start in range(0, masker.n_voxels, chunk):
        pts = ijk[start:start + chunk, None, :] + offsets[None]
        in_grid = ((pts >= 0) & (pts < shape)).all(axis=2)
        flat = np.ravel_multi_index(tuple(np.clip(pts, 0, shape - 1).transpose(2, 0, 1)), shape)
        idx = np.where(in_grid, lookup[flat], -1)
        neigh[start:start + chunk] = idx
        frac[start:start + chunk] = (idx >= 0).sum(1) / in_grid.sum(1)
    n_vox = (neigh >= 0).sum(axis=1)
    below = frac < threshold - 1e-12
    few = ~below & (n_vox < min_voxels)
    use = ~(below | few)
    return Spheres(
        centres=np.flatnonzero(use), neighbors=neigh[use], n_voxels=n_vox[use],
        radius_mm=float(radius_mm),
        dropped={"below_threshold": int(below.sum()), "too_few_voxels": int(few.sum())},
    )


# ----------------------------------------------------------------------------------------------
# RDMs and model comparison for a chunk of centres (runs inside dask workers)
# ----------------------------------------------------------------------------------------------
def chunk_rdms(
    patterns_t: np.ndarray, neighbors: np.ndarray, metric: str = "correlation",
    device: str = "cpu", as_tensor: bool = False,
):
    """RDM vectors (chunk, n_pairs) of a chunk of spheres (float64 numpy unless ``as_tensor``).

    patterns_t: (n_voxels + 1, n_conditions) voxel-major patterns with a final all-zero row
    (the padding target of ``neighbors == -1``); computed in its dtype (float32 or float64).
    For correlation, each condition's whole-mask mean should already be removed (it does not
    change any sphere's RDM but keeps the Gram-matrix centring below free of cancellation).
    neighbors: (chunk, n_offsets).
    """
    import torch

    x_all = torch.as_tensor(patterns_t, device=device)
    idx = torch.as_tensor(np.where(neighbors < 0, patterns_t.shape[0] - 1, neighbors),
                          dtype=torch.long, device=device)
    x = x_all[idx]                                          # (c, V, K); padding rows are 0
    n = torch.as_tensor((neighbors >= 0).sum(1), dtype=x.dtype, device=device)
    k = x.shape[2]
    xt = x.transpose(1, 2)
    if metric == "correlation":
        # centred Gram matrix in one fused op: X^T X - n m m^T (m = per-condition sphere mean)
        m = x.sum(1) / n[:, None]
        g = torch.baddbmm(-(n[:, None, None] * m[:, :, None] * m[:, None, :]), xt, x)
    else:
        g = torch.bmm(xt, x)
    d = torch.diagonal(g, dim1=1, dim2=2)
    iu = torch.triu_indices(k, k, 1, device=device)
    flat = iu[0] * k + iu[1]
    gt = g.reshape(g.shape[0], -1)[:, flat]                 # (c, n_pairs) upper triangles
    if metric in ("correlation", "cosine"):
        inv = torch.rsqrt(d)
        vec = 1.0 - gt * inv[:, iu[0]] * inv[:, iu[1]]
    else:
        vec = (d[:, iu[0]] + d[:, iu[1]] - 2.0 * gt).clamp_min(0.0)
        vec = vec / n[:, None] if metric == "sqeuclidean" else torch.sqrt(vec)
    if as_tensor:
        return vec
    return vec.cpu().numpy().astype(np.float64, copy=False)


def _zscore_rows(v: np.ndarray) -> np.ndarray:
    v = v - v.mean(axis=1, keepdims=True)
    norm = np.sqrt((v**2).sum(axis=1, keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        return v / norm


def fast_ranks(v):
    """Average ranks per row (= scipy ``rankdata``) of a numpy array or torch tensor.

    One (unstable, fast) argsort gives ordinal ranks; runs of tied values then get their
    average rank from the same sort (ties are rare in float64, common in float32). Returns
    float64 numpy for numpy input, a tensor of the input's dtype and device for a tensor.
    """
    if isinstance(v, np.ndarray):
        n, m = v.shape
        flat = np.argsort(v, axis=1)
        flat += (np.arange(n) * m)[:, None]  # flat indices: cheaper than *_along_axis
        s = np.take(np.ascontiguousarray(v).ravel(), flat, mode="clip")
        ranks = np.empty((n, m))
        ranks.ravel()[flat] = np.arange(1.0, m + 1)
        _fix_ties(ranks, s, flat)
        return ranks
    import torch

    s, order = torch.sort(v, dim=1)
    ar = torch.arange(1, v.shape[1] + 1, dtype=v.dtype, device=v.device).expand_as(v)
    ranks = torch.empty_like(v).scatter_(1, order, ar)
    tied = (s[:, 1:] == s[:, :-1]).any(dim=1)
    if bool(tied.any()):
        rows = torch.nonzero(tied).ravel()
        fixed = ranks[rows].cpu().numpy()
        flat = order[rows].cpu().numpy() + (np.arange(len(rows)) * v.shape[1])[:, None]
        _fix_ties(fixed, s[rows].cpu().numpy(), flat)
        ranks[rows] = torch.as_tensor(fixed, dtype=v.dtype, device=v.device)
    return ranks


def _fix_ties(ranks, s, flat) -> None:
    """Give every run of equal values in the sorted rows ``s`` the mean of its ordinal ranks,
    in place in ``ranks`` (C-contiguous numpy (k, n)); ``flat``: the sort order as indices into
    ``ranks.ravel()``. Cost grows with the number of ties only."""
    r, j = np.nonzero(s[:, 1:] == s[:, :-1])  # s[r, j] == s[r, j + 1], sorted by (r, j)
    if r.size == 0:
        return
    brk = np.ones(r.size, dtype=bool)
    brk[1:] = (r[1:] != r[:-1]) | (j[1:] != j[:-1] + 1)
    run = np.cumsum(brk) - 1
    first = j[brk]                                   # first sorted position of each run
    last = np.zeros(first.size, dtype=np.intp)
    np.maximum.at(last, run, j + 1)                  # last sorted position of each run
    length = last - first + 1
    rows = np.repeat(r[brk], length)
    cols = np.repeat(first, length) + (np.arange(length.sum())
                                       - np.repeat(np.cumsum(length) - length, length))
    ranks.ravel()[flat[rows, cols]] = np.repeat((first + last) / 2.0 + 1.0, length)


def prepare_models(model_vectors: np.ndarray, method: str) -> np.ndarray:
    """Model RDM vectors transformed once: ranks for spearman, then z-scored (n_models, n_pairs)."""
    v = rank_rows(model_vectors) if method == "spearman" else np.asarray(model_vectors, float)
    z = _zscore_rows(v)
    if not np.isfinite(z).all():
        raise CortexmapError("A model RDM is constant; a correlation with it is undefined.")
    return z


def chunk_scores(
    patterns_t: np.ndarray, neighbors: np.ndarray, models_z: np.ndarray, metric: str,
    method: str, device: str = "cpu",
) -> np.ndarray:
    """(chunk, n_models) correlations of each sphere's RDM with every (prepared) model RDM.

    On "cpu" the ranking uses numpy (its argsort is faster than torch's there); on any other
    torch device everything stays on that device (:func:`_chunk_scores_torch`).
    """
    import torch

    torch.set_num_threads(1)  # one thread per dask worker process: no oversubscription
    if device != "cpu":
        return _chunk_scores_torch(patterns_t, neighbors, models_z, metric, method, device)
    return score_vectors(chunk_rdms(patterns_t, neighbors, metric), models_z, method)


def score_vectors(vec: np.ndarray, models_z: np.ndarray, method: str) -> np.ndarray:
    """(chunk, n_models) correlations of RDM vectors (chunk, n_pairs) with prepared models;
    NaN for a sphere whose RDM is not finite."""
    bad = ~np.isfinite(vec).all(axis=1)
    vec[bad] = 0.0
    if method == "spearman":
        vec = fast_ranks(vec)
    vec -= vec.mean(axis=1, keepdims=True)  # z-scored in place: vec is a temporary
    with np.errstate(invalid="ignore", divide="ignore"):
        vec /= np.sqrt(np.einsum("ij,ij->i", vec, vec))[:, None]
    out = vec @ models_z.T
    out[bad] = np.nan
    return out


def _chunk_scores_torch(
    patterns_t: np.ndarray, neighbors: np.ndarray, models_z: np.ndarray, metric: str,
    method: str, device: str,
) -> np.ndarray:
    """:func:`chunk_scores` with RDMs, ranks and comparisons on a torch device (e.g. cuda)."""
    import torch

    vec = chunk_rdms(patterns_t, neighbors, metric, device=device, as_tensor=True)
    bad = ~torch.isfinite(vec).all(dim=1)
    vec[bad] = 0.0
    if method == "spearman":
        vec = fast_ranks(vec)
    vec = vec - vec.mean(dim=1, keepdim=True)
    vec = vec / vec.norm(dim=1, keepdim=True)
    out = (vec @ torch.as_tensor(models_z, dtype=vec.dtype, device=device).T).double()
    out[bad] = float("nan")
    return out.cpu().numpy()


# ----------------------------------------------------------------------------------------------
# Result
# ----------------------------------------------------------------------------------------------
@dataclass
class SearchlightResult:
    """maps: (n_models, n_voxels) correlation per model at each mask voxel (NaN where no
    centre); masker: the subject's mask; dropped: counts of mask voxels without a value."""

    maps: np.ndarray
    model_names: list[str]
    masker: BrainMasker
    radius_mm: float
    method: str
    metric: str
    n_centres: int
    dropped: dict[str, int]
    subject: str = "sub-01"
    seconds: float = 0.0

    def img(self, model: str | int) -> nib.Nifti1Image:
        """The map of one model as a NIfTI image (NaN outside centres)."""
        i = self.model_names.index(model) if isinstance(model, str) else int(model)
        return self.masker.inverse_transform(self.maps[i].astype(np.float32), fill=np.nan)

    def winner(self) -> np.ndarray:
        """(n_voxels,) index of the best model at each voxel; -1 where no centre."""
        ok = np.isfinite(self.maps).all(axis=0)
        win = np.full(self.maps.shape[1], -1, dtype=np.int32)
        win[ok] = np.argmax(self.maps[:, ok], axis=0)
        return win

    def winner_img(self) -> nib.Nifti1Image:
        """Winner-take-all label image: 1 + model index, 0 where no centre."""
        return self.masker.inverse_transform((self.winner() + 1).astype(np.int16), fill=0)

    def summary(self) -> pd.DataFrame:
        """One row per model: peak r, its MNI coordinate, voxels won."""
        xyz = self.masker.voxel_mm()
        win = self.winner()
        rows = []
        for i, name in enumerate(self.model_names):
            m = self.maps[i]
            j = int(np.nanargmax(m)) if np.isfinite(m).any() else 0
            rows.append({"model": name, "peak_r": float(m[j]), "peak_x": xyz[j, 0],
                         "peak_y": xyz[j, 1], "peak_z": xyz[j, 2], "mean_r": float(np.nanmean(m)),
                         "voxels_won": int((win == i).sum())})
        return pd.DataFrame(rows)

    def save(self, outdir: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write r_<model>.nii.gz per model, winner.nii.gz + winner.tsv, summary table."""
        out = prepare_output_dir(outdir, overwrite)
        files = safe_filenames(list(self.model_names), "model")
        for i, name in enumerate(self.model_names):
            write_nifti(out / f"r_{files[name]}.nii.gz", self.img(i))
        write_nifti(out / "winner.nii.gz", self.winner_img())
        write_text(out / "winner.tsv", pd.DataFrame(
            {"index": np.arange(1, len(self.model_names) + 1), "name": self.model_names}
        ).to_csv(sep="\t", index=False))
        write_table(self.summary(), out / "summary")
        write_provenance(out, config={"radius_mm": self.radius_mm, "method": self.method,
                                      "metric": self.metric, "subject": self.subject,
                                      "dropped": self.dropped, "n_centres": self.n_centres})
        return out




# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------
def _as_patterns(data: Any, mask: Any, conditions: list[str] | None) -> tuple[np.ndarray,
                                                                                BrainMasker, str]:
    if isinstance(data, BrainData):
        return data.condition_patterns(conditions), data.masker, data.subject
    if mask is None:
        raise CortexmapError("Pass mask= with a (n_conditions, n_voxels) pattern array.")
    masker = mask if isinstance(mask, BrainMasker) else BrainMasker(mask)
    pats = np.asarray(data, dtype=np.float64)
    if pats.ndim != 2 or pats.shape[1] != masker.n_voxels:
        raise CortexmapError(
            f"patterns must be (n_conditions, {masker.n_voxels}) for this mask; got {pats.shape}."
        )
    if not np.isfinite(pats).all():
        raise CortexmapError("patterns contain NaN/inf; load them with load_subject, which "
                             "drops and counts such voxels.")
    return pats, masker, "sub-01"


def _voxel_major(pats: np.ndarray, metric: str, dtype: str = "float64") -> np.ndarray:
    """(n_voxels + 1, n_conditions) patterns plus the zero padding row; for correlation each
    condition's mask-wide mean is removed first (sphere RDMs are unchanged by it)."""
    if metric == "correlation":
        pats = pats - pats.mean(axis=1, keepdims=True)
    return np.ascontiguousarray(np.vstack([pats.T, np.zeros((1, pats.shape[0]))]), dtype=dtype)


def _chunk_size(n_offsets: int, n_cond: int, n_models: int, memory_mb: float) -> int:
    n_pairs = n_cond * (n_cond - 1) // 2
    per_centre = 8 * (3 * n_offsets * n_cond + 3 * n_cond * n_cond + 6 * n_pairs + n_models)
    return int(max(16, min(20000, memory_mb * 2**20 // per_centre)))


def searchlight(
    data: BrainData | np.ndarray,
    models: Any,
    radius_mm: float = 6.0,
    method: str = "spearman",
    metric: str = "correlation",
    mask: Any = None,
    threshold: float = 0.5,
    min_voxels: int = 10,
    conditions: list[str] | None = None,
    scheduler: str | None = None,
    client: Any = None,
    n_workers: int | None = None,
    memory_mb: float = 256.0,
    dtype: str = "float64",
    device: str = "cpu",
    progress: bool = True,
) -> SearchlightResult:
    """Whole-mask RSA searchlight: one correlation map per model RDM.

    data: a :class:`BrainData` (conditions averaged over runs) or a (n_conditions, n_voxels)
      pattern array with ``mask``. models: :class:`RDMs`, dict name -> RDM or an .npz path
      (see :func:`cortexmap.brain.roi.as_model_rdms`); its condition count must match, and
      when the RDMs carry condition labels the subject's conditions are put in their order.
    radius_mm: sphere radius; method: "spearman" or "pearson"; metric: "correlation",
      "sqeuclidean" (= rsatoolbox "euclidean"), "euclidean", "cosine".
    scheduler: None -> a dask LocalCluster; "serial" -> in this process; an address
      ("tcp://host:8786"), "slurm"/"pbs"/"sge" -> see :func:`cortexmap.utils.dask.get_client`.
      ``client`` (a dask Client) takes precedence. memory_mb bounds each chunk's working set.
    dtype: "float64" (default; equals rsatoolbox to 1e-6) or "float32" (faster Gram matrices).
    device: torch device of each chunk ("cpu" or "cuda"; on a GPU chunks run in this process
    unless a scheduler or client is given).
    """

    t0 = time.perf_counter()
    method = canonical_method(method)
    if method not in SEARCHLIGHT_METHODS:
        raise CortexmapError(f"Searchlight method must be one of {SEARCHLIGHT_METHODS}; got "
                             f"{method!r}.")
    if metric not in SEARCHLIGHT_METRICS:
        raise CortexmapError(f"Searchlight metric must be one of {SEARCHLIGHT_METRICS}; got "
                             f"{metric!r}.")
    if dtype not in ("float32", "float64"):
        raise CortexmapError(f"dtype must be 'float32' or 'float64'; got {dtype!r}.")
    if isinstance(data, BrainData) and conditions is None:
        models = as_model_rdms(models, len(data.condition_names))
        conditions = align_conditions(data.condition_names, models)
    pats, masker, subject = _as_patterns(data, mask, conditions)
    if pats.shape[0] < 3:
        raise CortexmapError(f"{pats.shape[0]} conditions; an RSA searchlight needs >= 3.")
    models = as_model_rdms(models, pats.shape[0])
    spheres = make_spheres(masker, radius_mm, threshold, min_voxels)
    if len(spheres) == 0:
        raise CortexmapError(
            f"No searchlight centre survives (threshold={threshold}, min_voxels={min_voxels}; "
            f"dropped {spheres.dropped}); lower them or use a larger mask."
        )
    models_z = prepare_models(models.vectors, method)
    patterns_t = _voxel_major(pats, metric, dtype)
    size = _chunk_size(spheres.neighbors.shape[1], pats.shape[0], len(models), memory_mb)
    if device != "cpu" and scheduler is None:
        scheduler = "serial"  # one GPU: no point in several worker processes
    if device != "cpu" and client is None and scheduler == "serial":
        import torch

        patterns_t = torch.as_tensor(patterns_t, device=device)  # copied to the device once
    scores = run_chunks(chunk_scores, patterns_t, spheres.neighbors, models_z,
                        (metric, method, device), size, scheduler, client, n_workers,
                        "searchlight chunks", progress)
    return searchlight_result(scores, spheres, models, masker, radius_mm, method, metric,
                              subject, t0)


def run_chunks(fn: Any, shared: Any, neighbors: np.ndarray, models_z: np.ndarray,
               args: tuple, size: int, scheduler: str | None, client: Any,
               n_workers: int | None, label: str, progress: bool) -> np.ndarray:
    """(n_centres, n_models) scores of ``fn(shared, neighbors[chunk], models_z, *args)`` over
    chunks of ``size`` centres: in this process (``client`` None and ``scheduler`` "serial",
    or one chunk) or as dask tasks, with ``shared`` and ``models_z`` scattered once."""
    starts = list(range(0, len(neighbors), size))
    scores = np.empty((len(neighbors), len(models_z)))
    own = None
    if client is None and scheduler != "serial" and len(starts) > 1:
        client = own = get_client(scheduler, n_workers=n_workers)
    try:
        if client is None:
            for s in track(starts, label, enabled=progress):
                scores[s:s + size] = fn(shared, neighbors[s:s + size], models_z, *args)
        else:
            from dask.distributed import as_completed

            sh, mz = (client.scatter(a, broadcast=True) for a in (shared, models_z))
            futures = {client.submit(fn, sh, neighbors[s:s + size], mz, *args, pure=False): s
                       for s in starts}
            for fut in track(as_completed(futures), label, total=len(starts),
                             enabled=progress):
                s = futures[fut]
                scores[s:s + size] = fut.result()
                fut.release()
    finally:
        close_client(own)
    return scores


def searchlight_result(scores: np.ndarray, spheres: Spheres, models: RDMs,
                       masker: BrainMasker, radius_mm: float, method: str, metric: str,
                       subject: str, t0: float) -> SearchlightResult:
    """Scores of the centres -> maps over the mask (NaN elsewhere) and the dropped counts."""
    maps = np.full((len(models), masker.n_voxels), np.nan)
    maps[:, spheres.centres] = scores.T
    dropped = dict(spheres.dropped)
    dropped["undefined_rdm"] = int(np.isnan(scores).any(axis=1).sum())
    return SearchlightResult(maps, list(models.names), masker, float(radius_mm), method, metric,
                             len(spheres), dropped, subject, time.perf_counter() - t0)


def searchlight_rdms(
    data: BrainData | np.ndarray, radius_mm: float = 6.0, metric: str = "correlation",
    mask: Any = None, threshold: float = 0.5, min_voxels: int = 10,
) -> tuple[RDMs, Spheres]:
    """The searchlight RDMs themselves (one per centre; names = centre voxel index), for
    small masks or other analyses. Memory grows as n_centres x n_pairs."""
    pats, masker, _ = _as_patterns(data, mask, None)
    spheres = make_spheres(masker, radius_mm, threshold, min_voxels)
    vec = chunk_rdms(_voxel_major(pats, metric), spheres.neighbors, metric)
    names = [str(i) for i in masker.indices[spheres.centres]]
    return RDMs(vec, pats.shape[0], names, metric), spheres

"""Crossnobis searchlight: cross-validated Mahalanobis RDMs in every sphere.

For each sphere of :func:`cortexmap.brain.searchlight.make_spheres` (the same spheres as the
correlation searchlight), the crossnobis RDM of the sphere's single-run patterns is computed as
``rsatoolbox.rdm.calc_rdm(..., method="crossnobis", cv_descriptor="runs", noise=precision)``
does: leave one run out, ``d_ij = mean over runs r of (k_ii + k_jj - k_ij - k_ji) / n_voxels``
with ``k = A_r P B_r^T`` (A_r: condition means of the other runs, B_r: of run r, P: the noise
precision). It is then compared with the model RDMs like the correlation searchlight.

Noise precision (``noise``): "none" (identity: cross-validated Euclidean), "diag" (univariate
noise normalisation: each voxel's residual variance), "shrinkage_eye" or "shrinkage_diag"
(rsatoolbox's shrinkage estimates of the sphere's residual covariance, Ledoit & Wolf 2004 /
Schäfer & Strimmer 2005), estimated per sphere from residuals: by default the deviations of
each single-run pattern from its condition's mean over runs (degrees of freedom n_obs -
n_conditions), or residuals the caller passes (e.g. GLM residual time series, with their dof).

Why it is fast and memory bounded
---------------------------------
* Everything that depends on one voxel only is computed once per subject, not per sphere:
  the residuals' centring and variances, the noise normalisation of "diag" (then no
  per-sphere noise work at all) and of "shrinkage_diag" (whose per-sphere covariance becomes
  a shrunk correlation matrix with unit diagonal), and, when every
  condition has as many measurements in every run, the run means recombined into their grand
  mean and orthonormal contrasts over runs: the sum over runs of the cross-run kernels is then
  ``M P M' - sum_k C_k P C_k'``, i.e. n_runs symmetric Gram products per sphere.
* Per sphere (batches of ``BATCH`` spheres, so gathered rows stay in cache): one Gram product
  of the gathered residuals gives the covariance and, with per-residual sums over the sphere,
  the shrinkage intensity; then Cholesky factor, triangular inverse and one triangular product
  whiten the patterns; then the Gram products above. About 10 Mflop per sphere of 93 voxels,
  all in single-threaded LAPACK/BLAS calls; chunks of centres are dask tasks like the
  correlation searchlight's, and nothing of size spheres x voxels x voxels outlives a batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from cortexmap.brain.io import BrainData
from cortexmap.brain.roi import align_conditions, as_model_rdms
from cortexmap.brain.searchlight import (
    SearchlightResult,
    Spheres,
    make_spheres,
    prepare_models,
    run_chunks,
    score_vectors,
    searchlight_result,
)
from cortexmap.errors import CortexmapError
from cortexmap.rsa import RDMs
from cortexmap.rsa.compare import canonical_method

NOISE = ("none", "diag", "shrinkage_eye", "shrinkage_diag")


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------
def _design(conditions: np.ndarray, runs: np.ndarray, order: list[str]
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cond index per obs, run index per obs, counts (n_runs, n_cond)); errors name gaps."""
    lut = {c: i for i, c in enumerate(order)}
    extra = sorted({str(c) for c in conditions} - set(lut))
    if extra:
        raise CortexmapError(f"Conditions {extra[:3]} are not in the model RDMs' conditions.")
    cond_idx = np.array([lut[str(c)] for c in conditions])
    run_values, run_idx = np.unique(runs, return_inverse=True)
    if run_values.size < 2:
        raise CortexmapError(
            f"A crossnobis searchlight needs at least 2 runs; got {run_values.size}. Load the "
            "single-run patterns with their run labels."
        )
    counts = np.zeros((run_values.size, len(order)))
    np.add.at(counts, (run_idx, cond_idx), 1.0)
    if (counts == 0).any():
        r, c = np.argwhere(counts == 0)[0]
        raise CortexmapError(f"Condition {order[c]!r} has no measurement in run "
                             f"{str(run_values[r])!r}; every condition must appear in every run.")
    return cond_idx, run_idx, counts


def default_residuals(data: np.ndarray, cond_idx: np.ndarray) -> tuple[np.ndarray, int]:
    """Deviations of each measurement from its condition's mean, and their dof
    (n_obs - n_conditions)."""
    n_cond = int(cond_idx.max()) + 1
    sums = np.zeros((n_cond, data.shape[1]))
    np.add.at(sums, cond_idx, data)
    counts = np.bincount(cond_idx, minlength=n_cond)[:, None]
    return data - (sums / counts)[cond_idx], len(data) - n_cond


# ----------------------------------------------------------------------------------------------
# Inputs shared by every chunk (voxel-major, computed once per subject)
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CrossnobisInputs:
    """Per-voxel quantities every sphere gathers; each array has a zero last row (padding).

    patterns: (n_voxels + 1, n_runs, n_cond). With the same number of measurements of each
      condition in every run ("balanced"): block 0 is the mean over runs of the run means, the
      other blocks orthonormal contrasts of the run means over runs (scaled by
      1 / sqrt(n_runs (n_runs - 1))), so the summed cross-run kernel is
      ``M P M' - sum_k C_k P C_k'``. Otherwise the per-run condition sums (weighted per run).
      For "diag" and "shrinkage_diag" the patterns are divided by each voxel's residual SD.
    residuals: (n_voxels + 1, n_res) residuals centred per voxel ("shrinkage_eye") or also
      divided by their SD ("shrinkage_diag"); None for "none"/"diag".
    fourth: (n_voxels + 1,) sum over residuals of the standardised residual**4
      ("shrinkage_diag").
    """

    patterns: np.ndarray
    counts: np.ndarray
    noise: str
    dof: float
    balanced: bool
    residuals: np.ndarray | None = None
    fourth: np.ndarray | None = None

    def __reduce__(self):
        # arrays that arrive through dask's pickle frames may be unaligned, which makes every
        # gather from them several times slower: realign once, where they are unpickled
        return _aligned_inputs, tuple(getattr(self, f.name) for f in fields(self))


def _aligned_inputs(*values: Any) -> CrossnobisInputs:
    return CrossnobisInputs(*(np.require(v, requirements=("A", "C"))
                              if isinstance(v, np.ndarray) else v for v in values))


def _voxel_rows(a: np.ndarray) -> np.ndarray:
    """(n_voxels, ...) -> C-contiguous (n_voxels + 1, ...) with a zero padding row."""
    return np.ascontiguousarray(np.concatenate([a, np.zeros((1,) + a.shape[1:])]))


def prepare_inputs(sums: np.ndarray, counts: np.ndarray, noise: str,
                   residuals: np.ndarray | None = None, dof: float = 1.0) -> CrossnobisInputs:
    """sums: (n_runs, n_cond, n_voxels) per-run condition sums; counts: (n_runs, n_cond);
    residuals: (n_res, n_voxels) for a noise precision."""
    n_runs = counts.shape[0]
    balanced = bool((counts == counts[0]).all())
    if balanced:
        from scipy.linalg import helmert

        means = sums / counts[:, :, None]
        basis = np.vstack([np.full(n_runs, 1.0 / n_runs),
                           helmert(n_runs) / np.sqrt(n_runs * (n_runs - 1.0))])
        pats = np.einsum("qr,rkv->vqk", basis, means)
    else:
        pats = sums.transpose(2, 0, 1)
    res = fourth = None
    if noise != "none":
        res = residuals - residuals.mean(axis=0)          # centred per voxel (rsatoolbox)
        ss = np.einsum("nv,nv->v", res, res)
        if noise in ("diag", "shrinkage_diag"):
            # P = D^-1/2 C_s^-1 D^-1/2 with D the residual variances: whiten by the SDs once
            # a voxel without residual variance gets inf/NaN: its spheres come out NaN
            with np.errstate(divide="ignore", invalid="ignore"):
                scale = np.sqrt(dof / ss)
                pats = pats * scale[:, None, None]
                res = res * scale
    if noise == "shrinkage_diag":
        fourth = _voxel_rows(np.einsum("nv,nv->v", res * res, res * res))
    if noise in ("shrinkage_eye", "shrinkage_diag"):
        res = _voxel_rows(res.T)
    else:
        res = None
    return CrossnobisInputs(_voxel_rows(pats), counts, noise, float(dof), balanced, res, fourth)


# ----------------------------------------------------------------------------------------------
# Per-chunk numerics (runs inside dask workers)
# ----------------------------------------------------------------------------------------------
#: spheres handled together: gathered residuals and patterns of a batch stay in cache
BATCH = 32


class _Buffers:
    """Arrays reused from batch to batch. Fresh large temporaries would each be mapped and
    page-faulted anew (dask workers return freed memory to the system eagerly), which costs
    as much as the arithmetic."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def __call__(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        size = int(np.prod(shape))
        a = self._arrays.get(name)
        if a is None or a.size < size:
            a = self._arrays[name] = np.empty(size)
        return a[:size].reshape(shape)


def _gather(values_t: np.ndarray, neighbors: np.ndarray, out: np.ndarray | None = None
            ) -> np.ndarray:
    """(chunk, V, ...) rows of voxel-major ``values_t``; padding (-1) -> the zero last row."""
    idx = np.where(neighbors < 0, values_t.shape[0] - 1, neighbors)
    return np.take(values_t, idx, axis=0, out=out, mode="clip")  # "clip": no buffering


def sphere_covariances(inp: CrossnobisInputs, neighbors: np.ndarray,
                       buf: _Buffers | None = None) -> np.ndarray:
    """(batch, V, V) noise covariances of a batch of spheres, as rsatoolbox's
    ``cov_from_residuals`` estimates them; for "shrinkage_diag" in units of each voxel's SD
    (unit diagonal; the patterns are divided by the SDs). Padding voxels get an identity
    row/column (their patterns are zero, so they never enter a distance).

    One batched Gram product of the gathered residuals is the only (V, V)-sized work; the
    shrinkage intensities come from its entries and from per-residual sums over the sphere.
    """
    buf = buf or _Buffers()
    valid = neighbors >= 0
    n_valid = valid.sum(1)
    (b, v), n, dof = neighbors.shape, inp.residuals.shape[1], inp.dof
    res = _gather(inp.residuals, neighbors, buf("res", (b, v, n)))
    xtx = np.matmul(res, res.transpose(0, 2, 1), out=buf("xtx", (b, v, v)))
    diag = np.einsum("bvv->bv", xtx)                              # a writable view
    s2 = np.einsum("bvn,bvn->bn", res, res)                       # sum over voxels of x**2
    sq_xtx = np.einsum("bvw,bvw->b", xtx, xtx)
    if inp.noise == "shrinkage_eye":
        # s = xtx / n; b2 = sum(x2 / n - s^2) / n; d2 = |s - m I|^2 over valid voxels
        ss = sq_xtx / n**2
        b2 = ((s2 * s2).sum(1) / n - ss) / n
        tr = diag.sum(1)
        m = tr / n / n_valid
        d2 = ss - 2 * m * tr / n + m**2 * n_valid
        b2 = np.minimum(d2, b2)
        xtx *= ((d2 - b2) / d2 / dof)[:, None, None]
        diag += (b2 / d2 * m * n / dof)[:, None] * valid + ~valid
        return xtx
    # shrinkage_diag (Schaefer & Strimmer) on standardised residuals: sums over the valid
    # off-diagonal pairs of s_mean^2 and of the variance of the products, as quadratic forms
    sum_smean2 = (sq_xtx - (diag * diag).sum(1)) / (n - 1) ** 2
    sum_s2mean = ((s2 * s2).sum(1) - _gather(inp.fourth, neighbors).sum(1)) / (n - 1)
    lamb = np.clip(n / dof**2 * (sum_s2mean - sum_smean2) / sum_smean2, 0.0, 1.0)
    xtx *= ((1 - lamb) / dof)[:, None, None]
    diag[:] = 1.0
    return xtx


def _whiten(cov: np.ndarray, pats: np.ndarray) -> np.ndarray:
    """pats (b, V, m) -> U^-T pats with cov = U' U (in place); NaN for spheres whose
    covariance is not finite and positive definite.

    Per sphere: Cholesky, triangular inverse (V^3 / 6) and a triangular product, which runs
    at matrix-product speed where a triangular solve of the m columns does not.
    """
    from scipy.linalg.blas import dtrmm
    from scipy.linalg.lapack import dpotrf, dtrtri

    bad = ~np.isfinite(cov).all(axis=(1, 2))
    for i in range(len(cov)):
        if bad[i]:
            continue
        # cov[i].T is Fortran-ordered (and equal to cov[i]): factor, invert in place
        u, info = dpotrf(cov[i].T, lower=0, clean=0, overwrite_a=1)
        if info == 0:
            u, info = dtrtri(u, lower=0, overwrite_c=1)
        if info != 0:
            bad[i] = True
            continue
        # pats[i].T (m, V) is Fortran-ordered: pats' U^-1 in place
        dtrmm(1.0, u, pats[i].T, side=1, lower=0, overwrite_b=1)
    pats[bad] = np.nan
    return pats


def _batch_rdms(inp: CrossnobisInputs, neighbors: np.ndarray, buf: _Buffers) -> np.ndarray:
    """(b, n_pairs) crossnobis RDM vectors of a batch of spheres (a view into ``buf``)."""
    (b, v), (_, n_runs, k) = neighbors.shape, inp.patterns.shape
    pats = _gather(inp.patterns, neighbors, buf("pats", (b, v, n_runs, k)))
    if inp.noise in ("shrinkage_eye", "shrinkage_diag"):
        cov = sphere_covariances(inp, neighbors, buf)
        pats = _whiten(cov, pats.reshape(b, v, n_runs * k)).reshape(b, v, n_runs, k)
    z = pats.transpose(0, 2, 3, 1)                                # (b, R, K, V) whitened
    if inp.balanced:
        grams = np.matmul(z, z.transpose(0, 1, 3, 2),            # symmetric: syrk per block
                          out=buf("grams", (b, n_runs, k, k)))
        acc = np.sum(grams[:, 1:], axis=1, out=buf("acc", (b, k, k)))
        np.subtract(grams[:, 0], acc, out=acc)                    # G = M P M' - sum C P C'
        d = np.einsum("bii->bi", acc).copy()
        acc *= -2.0
        acc += d[:, :, None]
        acc += d[:, None, :]
    else:
        counts = inp.counts
        total = counts.sum(0)
        acc = np.zeros((b, k, k))
        z_total = z.sum(1)
        for r in range(n_runs):
            others = z_total - z[:, r]                            # sums of the other runs
            kern = np.matmul(others, z[:, r].transpose(0, 2, 1))
            kern *= (1.0 / (total - counts[r]))[:, None] * (1.0 / counts[r])
            d = np.einsum("bii->bi", kern)
            acc += d[:, :, None] + d[:, None, :] - kern - kern.transpose(0, 2, 1)
        acc /= n_runs
    iu = np.triu_indices(k, 1)
    vec = np.take(acc.reshape(b, k * k), iu[0] * k + iu[1], axis=1, mode="clip",
                  out=buf("vec", (b, len(iu[0]))))
    vec /= (neighbors >= 0).sum(1)[:, None]
    return vec


def _per_batch(fn: Any, neighbors: np.ndarray, width: int) -> np.ndarray:
    """(chunk, width) rows of ``fn(neighbors[batch], buffers)`` over batches of ``BATCH``
    spheres.

    BLAS runs single-threaded here: its threads only add overhead (and spin on busy machines)
    for (V, V) matrices; parallelism comes from chunks on several dask workers.
    """
    from threadpoolctl import threadpool_limits

    out, buf = np.empty((len(neighbors), width)), _Buffers()
    with threadpool_limits(1, user_api="blas"):
        for s in range(0, len(neighbors), BATCH):
            out[s:s + BATCH] = fn(neighbors[s:s + BATCH], buf)
    return out


def chunk_crossnobis(inp: CrossnobisInputs, neighbors: np.ndarray) -> np.ndarray:
    """Crossnobis RDM vectors (chunk, n_pairs) of a chunk of spheres."""
    k = inp.patterns.shape[2]
    return _per_batch(lambda nb, buf: _batch_rdms(inp, nb, buf), neighbors, k * (k - 1) // 2)


def chunk_crossnobis_scores(inp: CrossnobisInputs, neighbors: np.ndarray,
                            models_z: np.ndarray, method: str) -> np.ndarray:
    """(chunk, n_models) correlations of each sphere's crossnobis RDM with the models (each
    batch's RDMs are ranked and compared while they are in cache)."""
    return _per_batch(lambda nb, buf: score_vectors(_batch_rdms(inp, nb, buf), models_z,
                                                    method), neighbors, len(models_z))


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------
def _prepare(data: BrainData, order: list[str], residuals: np.ndarray | None,
             dof: float | None, noise: str) -> CrossnobisInputs:
    if data.runs is None:
        raise CortexmapError(f"{data.subject} has no run labels; a crossnobis searchlight "
                             "needs single-run patterns with their runs.")
    cond_idx, run_idx, counts = _design(data.conditions, data.runs, order)
    n_runs, k = counts.shape
    sums = np.zeros((n_runs, k, data.n_voxels))
    np.add.at(sums, (run_idx, cond_idx), data.data)
    if noise != "none":
        if residuals is None:
            residuals, dof_default = default_residuals(data.data, cond_idx)
            dof = dof if dof is not None else dof_default
        else:
            residuals = np.asarray(residuals, dtype=np.float64)
            if residuals.ndim != 2 or residuals.shape[1] != data.n_voxels:
                raise CortexmapError(f"residuals must be (n_residuals, {data.n_voxels}); got "
                                     f"{residuals.shape}.")
            dof = dof if dof is not None else residuals.shape[0] - 1
        if dof <= 0:
            raise CortexmapError(f"The residuals have {dof} degrees of freedom; a noise "
                                 "precision needs more measurements than conditions.")
    return prepare_inputs(sums, counts, noise, residuals, float(dof or 1.0))


def _chunk_size(n_offsets: int, n_cond: int, memory_mb: float) -> int:
    """Centres per task: the batch temporaries are fixed (``BATCH``); per centre a task holds
    its RDM vector, its ranks and its neighbour list."""
    per = 8 * (3 * n_cond * (n_cond - 1) // 2 + n_offsets)
    return int(max(BATCH, min(5000, memory_mb * 2**20 // per)))


def crossnobis_searchlight(
    data: BrainData,
    models: Any,
    radius_mm: float = 6.0,
    method: str = "spearman",
    noise: str = "shrinkage_diag",
    residuals: np.ndarray | None = None,
    dof: float | None = None,
    threshold: float = 0.5,
    min_voxels: int = 10,
    scheduler: str | None = "serial",
    client: Any = None,
    n_workers: int | None = None,
    memory_mb: float = 256.0,
    progress: bool = True,
) -> SearchlightResult:
    """Crossnobis RSA searchlight of one subject: one correlation map per model RDM.

    data: :class:`BrainData` with single-run patterns (``runs`` labels; every condition in
      every run). models: :class:`RDMs`, dict or .npz path; their condition labels (or the
      subject's order of first appearance) fix the RDM order.
    noise: "none", "diag", "shrinkage_eye" or "shrinkage_diag" (see module docstring);
      residuals/dof: optional (n_res, n_voxels) residuals and their degrees of freedom
      (default: deviations from the condition means over runs, dof = n_obs - n_conditions).
    Spheres, threshold, min_voxels, method ("spearman"/"pearson") and scheduler as in
    :func:`cortexmap.brain.searchlight.searchlight`; memory_mb bounds each chunk.
    """

    t0 = time.perf_counter()
    method = canonical_method(method)
    if method not in ("spearman", "pearson"):
        raise CortexmapError(f"Searchlight method must be spearman or pearson; got {method!r}.")
    if noise not in NOISE:
        raise CortexmapError(f"noise must be one of {', '.join(NOISE)}; got {noise!r}.")
    models = as_model_rdms(models, len(data.condition_names))
    order = align_conditions(data.condition_names, models)
    inputs = _prepare(data, order, residuals, dof, noise)
    spheres = make_spheres(data.masker, radius_mm, threshold, min_voxels)
    if len(spheres) == 0:
        raise CortexmapError(f"No searchlight centre survives (dropped {spheres.dropped}); lower "
                             "threshold/min_voxels or use a larger mask.")
    models_z = prepare_models(models.vectors, method)
    size = _chunk_size(spheres.neighbors.shape[1], len(order), memory_mb)
    scores = run_chunks(chunk_crossnobis_scores, inputs, spheres.neighbors, models_z, (method,),
                        size, scheduler, client, n_workers, "crossnobis searchlight", progress)
    return searchlight_result(scores, spheres, models, data.masker, radius_mm, method,
                              f"crossnobis ({noise})", data.subject, t0)


def crossnobis_searchlight_rdms(
    data: BrainData, radius_mm: float = 6.0, noise: str = "shrinkage_diag",
    conditions: list[str] | None = None, residuals: np.ndarray | None = None,
    dof: float | None = None, threshold: float = 0.5, min_voxels: int = 10,
) -> tuple[RDMs, Spheres]:
    """The crossnobis RDM of every sphere (names = centre voxel index), for small masks;
    memory grows as n_centres x n_pairs. conditions: RDM order (default: first appearance)."""
    if noise not in NOISE:
        raise CortexmapError(f"noise must be one of {', '.join(NOISE)}; got {noise!r}.")
    order = list(conditions) if conditions is not None else data.condition_names
    inputs = _prepare(data, order, residuals, dof, noise)
    spheres = make_spheres(data.masker, radius_mm, threshold, min_voxels)
    vec = chunk_crossnobis(inputs, spheres.neighbors)
    names = [str(i) for i in data.masker.indices[spheres.centres]]
    return RDMs(vec, len(order), names, "crossnobis", order), spheres


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
A chunk of spheres is handled at once: the residual covariances of all its spheres come from
one batched product, their Cholesky factors whiten the per-run condition sums, and the
cross-run kernels are batched products of the whitened sums (one per pair of runs). Nothing of
size spheres x voxels x voxels outlives a chunk, whose size follows ``memory_mb``; chunks are
dask tasks like the correlation searchlight's.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from cortexmap.brain.io import BrainData
from cortexmap.brain.roi import align_conditions, as_model_rdms
from cortexmap.brain.searchlight import (
    SearchlightResult,
    Spheres,
    _zscore_rows,
    fast_ranks,
    make_spheres,
    prepare_models,
)
from cortexmap.errors import CortexmapError
from cortexmap.rsa import RDMs
from cortexmap.rsa.compare import canonical_method
from cortexmap.utils.dask import close_client, get_client
from cortexmap.utils.progress import track

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
# Per-chunk numerics (runs inside dask workers)
# ----------------------------------------------------------------------------------------------
def _gather(values_t: np.ndarray, neighbors: np.ndarray) -> np.ndarray:
    """(chunk, V, m) rows of voxel-major ``values_t`` (n_voxels + 1, m); padding -> last row."""
    idx = np.where(neighbors < 0, values_t.shape[0] - 1, neighbors)
    return values_t[idx]


def sphere_covariances(res: np.ndarray, valid: np.ndarray, dof: float, method: str
                       ) -> np.ndarray:
    """Batched rsatoolbox ``cov_from_residuals`` of (chunk, n_res, V) residuals.

    valid: (chunk, V) bool, False for padding voxels (zero residuals), which get an identity
    row/column (their patterns are zero, so they never enter a distance). Returns (chunk, V, V).
    Only the two products of the residuals are (chunk, V, V)-sized work; the shrinkage
    intensities come from sums over them (quadratic forms), not from per-entry temporaries.
    """
    c, n, v = res.shape
    res = res - res.mean(axis=1, keepdims=True)
    xtx = np.matmul(res.transpose(0, 2, 1), res)
    diag_idx = np.arange(v)
    n_valid = valid.sum(1)
    if method == "diag":
        cov = np.zeros_like(xtx)
        cov[:, diag_idx, diag_idx] = xtx[:, diag_idx, diag_idx] / dof
    else:
        # the shrinkage intensities need sums of x2 = sum over rows of (x_v x_w)^2 only as
        # quadratic forms: w' x2 w = sum over rows of (sq_row . w)^2, O(n V) instead of O(n V^2)
        sq = res * res
        d_xtx = xtx[:, diag_idx, diag_idx]
        d_x2 = (sq * sq).sum(1)
        if method == "shrinkage_eye":
            # s = xtx / n; b2 = sum(x2 / n - s^2) / n; d2 = |s - m I|^2 over valid voxels
            ss = np.einsum("cvw,cvw->c", xtx, xtx) / n**2
            b2 = ((sq.sum(2) ** 2).sum(1) / n - ss) / n
            m = d_xtx.sum(1) / n / n_valid
            d2 = ss - 2 * m * d_xtx.sum(1) / n + m**2 * n_valid
            b2 = np.minimum(d2, b2)
            cov = xtx * ((d2 - b2) / d2 / dof)[:, None, None]
            cov[:, diag_idx, diag_idx] += (b2 / d2 * m * n / dof)[:, None] * valid
        else:  # shrinkage_diag (Schäfer & Strimmer), sums over valid off-diagonal pairs
            var = d_xtx / dof
            w = np.where(valid, 1.0 / np.where(valid, var, 1.0), 0.0)   # 1 / var_j
            # sum_off s_mean^2 = sum_off xtx^2 w_j w_k / (n - 1)^2
            q_xtx = np.einsum("cvw,cv,cw->c", xtx * xtx, w, w, optimize=True)
            sum_smean2 = (q_xtx - (d_xtx**2 * w * w).sum(1)) / (n - 1) ** 2
            q_x2 = (np.einsum("cnv,cv->cn", sq, w) ** 2).sum(1)
            sum_s2mean = (q_x2 - (d_x2 * w * w).sum(1)) / (n - 1)
            lamb = np.clip(n / dof**2 * (sum_s2mean - sum_smean2) / sum_smean2, 0.0, 1.0)
            cov = xtx * ((1 - lamb) / dof)[:, None, None]
            cov[:, diag_idx, diag_idx] = var
    cov[:, diag_idx, diag_idx] += ~valid  # identity for padding keeps every matrix invertible
    return cov


def chunk_crossnobis(
    sums_t: np.ndarray, counts: np.ndarray, neighbors: np.ndarray,
    residuals_t: np.ndarray | None = None, dof: float = 1.0, noise: str = "none",
) -> np.ndarray:
    """Crossnobis RDM vectors (chunk, n_pairs) of a chunk of spheres.

    sums_t: (n_voxels + 1, n_runs, n_cond) voxel-major per-run condition sums, last row zero
    (padding); counts: (n_runs, n_cond) measurements per run and condition; residuals_t:
    (n_voxels + 1, n_res) voxel-major residuals for a noise precision ("diag", "shrinkage_*").
    """
    x = _gather(sums_t, neighbors)                       # (c, V, R, K)
    c, v, n_runs, k = x.shape
    valid = neighbors >= 0
    n_vox = valid.sum(1)
    if noise != "none":
        res = _gather(residuals_t, neighbors).transpose(0, 2, 1)     # (c, n_res, V)
        cov = sphere_covariances(res, valid, dof, noise)
        # P = C^-T C^-1 with cov = C C^T: whitened sums C^-1 x (one triangular solve per
        # sphere; torch's batched one spins its thread pool on busy machines)
        from scipy.linalg import solve_triangular

        chol = np.linalg.cholesky(cov)                   # (c, V, V)
        flat = x.reshape(c, v, n_runs * k)
        x = np.stack([solve_triangular(chol[i], flat[i], lower=True, check_finite=False)
                      for i in range(c)]).reshape(c, v, n_runs, k)
    z = x.transpose(0, 2, 3, 1)                          # (c, R, K, V) whitened sums
    total = counts.sum(0)
    acc = np.zeros((c, k, k))
    z_total = z.sum(1)
    for r in range(n_runs):
        w_row = 1.0 / (total - counts[r])                # train means: other runs
        w_col = 1.0 / counts[r]                          # test means: run r
        others = z_total - z[:, r]                       # (c, K, V) sums of the other runs
        kern = np.matmul(others, z[:, r].transpose(0, 2, 1)) * w_row[:, None] * w_col
        d = np.einsum("cii->ci", kern)
        acc += d[:, :, None] + d[:, None, :] - kern - kern.transpose(0, 2, 1)
    iu = np.triu_indices(k, 1)
    return acc[:, iu[0], iu[1]] / n_runs / n_vox[:, None]


def chunk_crossnobis_scores(
    sums_t, counts, neighbors, residuals_t, dof, noise, models_z, method,
) -> np.ndarray:
    """(chunk, n_models) correlations of each sphere's crossnobis RDM with the models."""
    vec = chunk_crossnobis(sums_t, counts, neighbors, residuals_t, dof, noise)
    bad = ~np.isfinite(vec).all(axis=1)
    vec[bad] = 0.0
    if method == "spearman":
        vec = fast_ranks(vec)
    out = _zscore_rows(vec) @ models_z.T
    out[bad] = np.nan
    return out


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------
def _prepare(data: BrainData, order: list[str], residuals: np.ndarray | None,
             dof: float | None, noise: str):
    if data.runs is None:
        raise CortexmapError(f"{data.subject} has no run labels; a crossnobis searchlight "
                             "needs single-run patterns with their runs.")
    cond_idx, run_idx, counts = _design(data.conditions, data.runs, order)
    n_runs, k = counts.shape
    sums = np.zeros((n_runs, k, data.n_voxels))
    np.add.at(sums, (run_idx, cond_idx), data.data)
    sums_t = np.concatenate([sums.transpose(2, 0, 1), np.zeros((1, n_runs, k))])
    res_t = None
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
        res_t = np.concatenate([residuals.T, np.zeros((1, residuals.shape[0]))])
    return np.ascontiguousarray(sums_t), counts, res_t, float(dof or 1.0)


def _chunk_size(n_offsets: int, n_cond: int, n_runs: int, n_res: int, memory_mb: float) -> int:
    per = 8 * (3 * n_offsets * n_runs * n_cond + 4 * n_cond * n_cond
               + 3 * n_res * n_offsets + 5 * n_offsets * n_offsets)
    return int(max(8, min(5000, memory_mb * 2**20 // per)))


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
    sums_t, counts, res_t, dof = _prepare(data, order, residuals, dof, noise)
    spheres = make_spheres(data.masker, radius_mm, threshold, min_voxels)
    if len(spheres) == 0:
        raise CortexmapError(f"No searchlight centre survives (dropped {spheres.dropped}); lower "
                             "threshold/min_voxels or use a larger mask.")
    models_z = prepare_models(models.vectors, method)
    n_res = 0 if res_t is None else res_t.shape[1]
    size = _chunk_size(spheres.neighbors.shape[1], counts.shape[1], counts.shape[0], n_res,
                       memory_mb)
    starts = list(range(0, len(spheres), size))
    scores = np.empty((len(spheres), len(models)))
    own = None
    if client is None and scheduler != "serial" and len(starts) > 1:
        client = own = get_client(scheduler, n_workers=n_workers)
    try:
        if client is None:
            for s in track(starts, "crossnobis searchlight", enabled=progress):
                scores[s:s + size] = chunk_crossnobis_scores(
                    sums_t, counts, spheres.neighbors[s:s + size], res_t, dof, noise,
                    models_z, method)
        else:
            from dask.distributed import as_completed

            st, rt, mz = (client.scatter(a, broadcast=True) for a in (sums_t, res_t, models_z))
            futures = {client.submit(chunk_crossnobis_scores, st, counts,
                                     spheres.neighbors[s:s + size], rt, dof, noise, mz, method,
                                     pure=False): s for s in starts}
            for fut in track(as_completed(futures), "crossnobis searchlight",
                             total=len(starts), enabled=progress):
                s = futures[fut]
                scores[s:s + size] = fut.result()
                fut.release()
    finally:
        close_client(own)
    maps = np.full((len(models), data.n_voxels), np.nan)
    maps[:, spheres.centres] = scores.T
    dropped = dict(spheres.dropped)
    dropped["undefined_rdm"] = int(np.isnan(scores).any(axis=1).sum())
    return SearchlightResult(maps, list(models.names), data.masker, float(radius_mm), method,
                             f"crossnobis ({noise})", len(spheres), dropped, data.subject,
                             time.perf_counter() - t0)


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
    sums_t, counts, res_t, dof_ = _prepare(data, order, residuals, dof, noise)
    spheres = make_spheres(data.masker, radius_mm, threshold, min_voxels)
    vec = chunk_crossnobis(sums_t, counts, spheres.neighbors, res_t, dof_, noise)
    names = [str(i) for i in data.masker.indices[spheres.centres]]
    return RDMs(vec, len(order), names, "crossnobis", order), spheres


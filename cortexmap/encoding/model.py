"""Voxel-wise encoding models: cross-validated ridge from a feature table to brain responses.

For every fold of a K-fold split of the stimuli, the training features are decomposed once
(:func:`cortexmap.utils.ridge.fold_basis`); that SVD serves every voxel and every
regularization strength. Each voxel gets its own alpha, chosen by leave-one-out error inside
the training fold (closed form, = scikit-learn ``RidgeCV(alpha_per_target=True)``), and is
scored on the held-out fold only. Voxels are processed in chunks (memory bounded by one chunk
of responses), in this process or as dask tasks (a LocalCluster, any scheduler address, or a
batch queue via :func:`cortexmap.utils.dask.get_client`).

Scores per voxel, from the out-of-fold predictions of all stimuli: R² (1 - SS_res / SS_tot,
can be negative) and Pearson r. With repeated runs the noise ceiling of each voxel is the share
of its run-averaged response variance that is stimulus-driven (:func:`noise_ceiling`); R² is
normalised by it and r by its square root.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from cortexmap.brain.io import BrainMasker, write_nifti
from cortexmap.brain.stats import group_test
from cortexmap.errors import CortexmapError
from cortexmap.utils.dask import close_client, get_client
from cortexmap.utils.io import prepare_output_dir, write_table
from cortexmap.utils.progress import track
from cortexmap.utils.provenance import write_provenance
from cortexmap.utils.ridge import DEFAULT_ALPHAS, FoldBasis, fold_basis, fold_fit, make_folds

MAP_KINDS = ("r2", "r", "r2_norm", "r_norm", "noise_ceiling", "alpha")


# ----------------------------------------------------------------------------------------------
# Scores
# ----------------------------------------------------------------------------------------------
def r2_score_columns(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """R² of each column (= scikit-learn ``r2_score(..., multioutput="raw_values")``).

    A constant column has an undefined R²: NaN.
    """
    ss_res = ((y - pred) ** 2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), np.nan)


def pearson_columns(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Pearson r between matching columns; NaN where either is constant."""
    yc, pc = y - y.mean(0), pred - pred.mean(0)
    den = np.sqrt((yc**2).sum(0) * (pc**2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (yc * pc).sum(0) / np.where(den > 0, den, 1.0), np.nan)


def noise_ceiling(runs: np.ndarray) -> np.ndarray:
    """Explainable share of the variance of run-averaged responses, per voxel.

    runs: (n_runs >= 2, n_stimuli, n_voxels) single-run responses. The noise variance is the
    mean over stimuli of the across-run variance (ddof=1); the variance across stimuli of the
    run average is ``signal + noise / n_runs``; the ceiling is ``signal / (signal + noise /
    n_runs)`` in [0, 1] (the maximal expected R² of any model of the average; the ceiling of r
    is its square root). This is the NSD "noise-ceiling SNR" ceiling (Allen et al. 2022).
    """
    runs = np.asarray(runs, dtype=np.float64)
    if runs.ndim != 3 or runs.shape[0] < 2:
        raise CortexmapError(
            f"A noise ceiling needs responses of shape (n_runs >= 2, n_stimuli, n_voxels); got "
            f"{runs.shape}. Pass the single-run responses, not their average."
        )
    n_runs = runs.shape[0]
    noise = runs.var(axis=0, ddof=1).mean(0)
    total = runs.mean(0).var(axis=0, ddof=1)
    signal = np.maximum(total - noise / n_runs, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, signal / np.where(total > 0, total, 1.0), np.nan)


def _normalise(score: np.ndarray, ceiling: np.ndarray | None, power: float) -> np.ndarray | None:
    if ceiling is None:
        return None
    c = ceiling**power
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c > 0, score / np.where(c > 0, c, 1.0), np.nan)


# ----------------------------------------------------------------------------------------------
# Fitting one chunk of voxels (runs in dask workers)
# ----------------------------------------------------------------------------------------------
def chunk_scores(
    bases: list[FoldBasis], y: np.ndarray, alphas: np.ndarray, selection: str = "float64"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(r2, r, alpha) per voxel of a chunk y (n_stimuli, chunk) from the folds' bases.

    alpha is the geometric mean over folds of each voxel's chosen alpha.
    """
    y = np.asarray(y, dtype=np.float64)
    pred = np.empty_like(y)
    log_alpha = np.zeros(y.shape[1])
    for b in bases:
        pred[b.test], alpha = fold_fit(b, y[b.train], alphas, selection)
        log_alpha += np.log10(alpha)
    return r2_score_columns(y, pred), pearson_columns(y, pred), 10 ** (log_alpha / len(bases))


def _chunk_from_source(source: Callable[[slice], np.ndarray], sl: slice, bases, alphas,
                       selection: str):
    return chunk_scores(bases, source(sl), alphas, selection)


# ----------------------------------------------------------------------------------------------
# Result
# ----------------------------------------------------------------------------------------------
@dataclass
class EncodingResult:
    """Per-voxel scores of one encoding model, each (n_voxels,).

    r2, r: cross-validated R² and Pearson r; alpha: geometric mean over folds of the chosen
    ridge penalty; noise_ceiling (with runs): explainable variance share; r2_norm = r2 /
    ceiling, r_norm = r / sqrt(ceiling) (NaN where the ceiling is 0). masker: maps to NIfTI.
    """

    r2: np.ndarray
    r: np.ndarray
    alpha: np.ndarray
    noise_ceiling: np.ndarray | None = None
    masker: BrainMasker | None = None
    name: str = "features"
    subject: str = "sub-01"
    n_folds: int = 5
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def r2_norm(self) -> np.ndarray | None:
        return _normalise(self.r2, self.noise_ceiling, 1.0)

    @property
    def r_norm(self) -> np.ndarray | None:
        return _normalise(self.r, self.noise_ceiling, 0.5)

    def map(self, kind: str = "r2") -> np.ndarray:
        """(n_voxels,) values of one of :data:`MAP_KINDS`."""
        if kind not in MAP_KINDS:
            raise CortexmapError(f"Unknown map {kind!r}; choose one of {', '.join(MAP_KINDS)}.")
        values = getattr(self, kind)
        if values is None:
            raise CortexmapError(f"Map {kind!r} needs a noise ceiling: fit on responses with "
                                 "repeated runs (n_runs, n_stimuli, n_voxels).")
        return values

    def img(self, kind: str = "r2") -> nib.Nifti1Image:
        """A map as a NIfTI image (needs the result's masker)."""
        if self.masker is None:
            raise CortexmapError("This result has no masker; fit with mask= to get NIfTI maps.")
        return self.masker.inverse_transform(self.map(kind).astype(np.float32), fill=np.nan)

    def summary(self) -> pd.DataFrame:
        """One row: voxels, median / 95th percentile R² and r, normalised medians."""
        row = {"model": self.name, "subject": self.subject, "voxels": int(self.r2.size),
               "median_r2": float(np.nanmedian(self.r2)),
               "p95_r2": float(np.nanpercentile(self.r2, 95)),
               "median_r": float(np.nanmedian(self.r)),
               "p95_r": float(np.nanpercentile(self.r, 95))}
        if self.noise_ceiling is not None:
            row["median_ceiling"] = float(np.nanmedian(self.noise_ceiling))
            good = self.noise_ceiling > 0.1  # normalised scores are unstable at tiny ceilings
            row["median_r2_norm_ceiling>0.1"] = (float(np.nanmedian(self.r2_norm[good]))
                                                 if good.any() else float("nan"))
        return pd.DataFrame([row])

    def save(self, outdir: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write <kind>.nii.gz per available map (with a masker), scores table, provenance."""

        out = prepare_output_dir(outdir, overwrite)
        cols = {}
        for kind in MAP_KINDS:
            if getattr(self, kind) is None:
                continue
            cols[kind] = self.map(kind)
            if self.masker is not None:
                write_nifti(out / f"{kind}.nii.gz", self.img(kind))
        write_table(pd.DataFrame(cols), out / "voxels")
        write_table(self.summary(), out / "summary")
        write_provenance(out, config={"name": self.name, "subject": self.subject,
                                      "n_folds": self.n_folds, "alphas": list(self.alphas)})
        return out


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------
def _check_features(features: Any, n_stimuli: int | None = None) -> np.ndarray:
    x = np.asarray(features)
    if x.ndim > 2:
        x = x.reshape(len(x), -1)
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
        raise CortexmapError(
            f"features must be a numeric (n_stimuli, n_features) array; got shape {x.shape}, "
            f"dtype {x.dtype}."
        )
    if not np.isfinite(x).all():
        raise CortexmapError("features contain NaN/inf; remove or impute them first.")
    if n_stimuli is not None and len(x) != n_stimuli:
        raise CortexmapError(
            f"features describe {len(x)} stimuli but the responses {n_stimuli}; both must be "
            "in the same stimulus order."
        )
    return x


def _check_responses(responses: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(run-averaged (n_stimuli, n_voxels), runs or None) from 2-D or 3-D responses."""
    y = np.asarray(responses)
    if y.ndim not in (2, 3) or not np.issubdtype(y.dtype, np.number):
        raise CortexmapError(
            "responses must be numeric (n_stimuli, n_voxels) or (n_runs, n_stimuli, n_voxels); "
            f"got shape {y.shape}."
        )
    if not np.isfinite(y).all():
        raise CortexmapError("responses contain NaN/inf; drop those voxels first "
                             "(cortexmap.brain.io.drop_bad_voxels).")
    if y.ndim == 3:
        return y.mean(0), y
    return y, None


def fit_encoding(
    features: Any,
    responses: Any,
    n_folds: int = 5,
    alphas: tuple[float, ...] = DEFAULT_ALPHAS,
    seed: int = 0,
    mask: Any = None,
    name: str = "features",
    subject: str = "sub-01",
    chunk_voxels: int = 20000,
    scheduler: str | None = "serial",
    client: Any = None,
    n_workers: int | None = None,
    selection: str = "float64",
    progress: bool = True,
) -> EncodingResult:
    """Cross-validated ridge encoding model of every voxel (or ROI, or any target).

    Args:
        features: (n_stimuli, n_features) feature table, e.g. a layer's activations (higher
            dimensions are flattened).
        responses: (n_stimuli, n_voxels) responses, or (n_runs, n_stimuli, n_voxels)
            single-run responses: the model is fit to their average and scores are also given
            normalised by the noise ceiling (:func:`noise_ceiling`).
        n_folds: K of the shuffled K-fold split of the stimuli (seeded by ``seed``).
        alphas: ridge penalties tried per voxel (chosen by leave-one-out error inside each
            training fold).
        mask: optional brain mask (path, image or BrainMasker) with n_voxels voxels: NIfTI maps.
        chunk_voxels: voxels per chunk (memory: about 3 x n_stimuli x chunk float64).
        scheduler: "serial" (default: in this process), None (a dask LocalCluster), a
            scheduler address or "slurm"/"pbs"/"sge"; ``client`` (a dask Client) wins.
        selection: dtype of the leave-one-out errors that choose each voxel's alpha:
            "float64" (default, = scikit-learn) or "float32" (about twice as fast on CPUs;
            see :func:`cortexmap.utils.ridge.fold_fit`).

    Returns:
        :class:`EncodingResult`.
    """
    t0 = time.perf_counter()
    y, runs = _check_responses(responses)
    x = _check_features(features, len(y))
    masker = _masker(mask, y.shape[1])
    alphas_arr = _check_alphas(alphas)
    if chunk_voxels < 1:
        raise CortexmapError(f"chunk_voxels must be >= 1; got {chunk_voxels}.")
    folds = make_folds(len(y), n_folds, seed)
    bases = [fold_basis(x, tr, te) for tr, te in folds]
    r2, r, alpha = _run_chunks(lambda sl: y[:, sl], y.shape[1], bases, alphas_arr,
                               chunk_voxels, scheduler, client, n_workers, progress,
                               _check_selection(selection))
    ceiling = noise_ceiling(runs) if runs is not None else None
    return EncodingResult(r2, r, alpha, ceiling, masker, name, subject, n_folds,
                          tuple(float(a) for a in alphas_arr), time.perf_counter() - t0)


def _check_selection(selection: str) -> str:
    if selection not in ("float64", "float32"):
        raise CortexmapError(f"selection must be 'float64' or 'float32'; got {selection!r}.")
    return selection


def _check_alphas(alphas: Any) -> np.ndarray:
    a = np.asarray(alphas, dtype=float).ravel()
    if a.size == 0 or not (np.isfinite(a).all() and (a > 0).all()):
        raise CortexmapError(f"alphas must be a non-empty list of positive numbers; got {alphas}.")
    return a


def _masker(mask: Any, n_voxels: int) -> BrainMasker | None:
    if mask is None:
        return None
    masker = mask if isinstance(mask, BrainMasker) else BrainMasker(mask)
    if masker.n_voxels != n_voxels:
        raise CortexmapError(f"The mask has {masker.n_voxels} voxels but the responses "
                             f"{n_voxels}; pass the mask the responses were extracted with.")
    return masker


def _run_chunks(
    source: Callable[[slice], np.ndarray], n_voxels: int, bases: list[FoldBasis],
    alphas: np.ndarray, chunk: int, scheduler: str | None, client: Any,
    n_workers: int | None, progress: bool, selection: str = "float64",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores of all voxels, chunk by chunk; ``source(slice)`` returns a chunk of responses."""
    slices = [slice(s, min(s + chunk, n_voxels)) for s in range(0, n_voxels, chunk)]
    out = np.full((3, n_voxels), np.nan)
    own = None
    if client is None and scheduler != "serial" and len(slices) > 1:
        client = own = get_client(scheduler, n_workers=n_workers)
    try:
        if client is None:
            for sl in track(slices, "encoding chunks", enabled=progress):
                out[:, sl] = chunk_scores(bases, source(sl), alphas, selection)
        else:
            from dask.distributed import as_completed

            bases_f = client.scatter(bases, broadcast=True)
            futures = {client.submit(_chunk_from_source, source, sl, bases_f, alphas,
                                     selection, pure=False): sl for sl in slices}
            for fut in track(as_completed(futures), "encoding chunks", total=len(slices),
                             enabled=progress):
                out[:, futures[fut]] = fut.result()
                fut.release()
    finally:
        close_client(own)
    return out[0], out[1], out[2]


def fit_encoding_chunked(
    features: Any,
    source: Callable[[slice], np.ndarray],
    n_voxels: int,
    n_folds: int = 5,
    alphas: tuple[float, ...] = DEFAULT_ALPHAS,
    seed: int = 0,
    chunk_voxels: int = 5000,
    scheduler: str | None = None,
    client: Any = None,
    n_workers: int | None = None,
    progress: bool = True,
    name: str = "features",
    selection: str = "float64",
) -> EncodingResult:
    """:func:`fit_encoding` for responses too large to hold: ``source(slice)`` returns the
    (n_stimuli, chunk) responses of a slice of voxels (read from a zarr/NIfTI store, or
    simulated), called inside the dask workers; nothing but scores comes back."""
    t0 = time.perf_counter()
    first = np.asarray(source(slice(0, 1)))
    x = _check_features(features, first.shape[0])
    alphas_arr = _check_alphas(alphas)
    folds = make_folds(len(x), n_folds, seed)
    bases = [fold_basis(x, tr, te) for tr, te in folds]
    r2, r, alpha = _run_chunks(source, n_voxels, bases, alphas_arr, chunk_voxels, scheduler,
                               client, n_workers, progress, _check_selection(selection))
    return EncodingResult(r2, r, alpha, None, None, name, n_folds=n_folds,
                          alphas=tuple(float(a) for a in alphas_arr),
                          seconds=time.perf_counter() - t0)


def group_encoding(
    results: list[EncodingResult], kind: str = "r2", n_perm: int = 5000, seed: int = 0,
    statistic: str = "t",
):
    """Sign-flip group test (max-statistic FWE) of one map kind over subjects' results.

    The maps must share one mask (e.g. subjects in a common space). A cross-validated R² has
    a negative expected value under the null (noise fit to the training folds), so the
    one-sided test of "mean > 0" is conservative for R². Returns
    :class:`cortexmap.brain.stats.GroupTestResult`.
    """

    if len(results) < 2:
        raise CortexmapError(f"A group test needs >= 2 subjects; got {len(results)}.")
    maskers = [r.masker for r in results]
    if any(m is None for m in maskers):
        raise CortexmapError("Group tests need results fitted with mask=.")
    ref = maskers[0]
    for m in maskers[1:]:
        if m.n_voxels != ref.n_voxels or not np.array_equal(m.indices, ref.indices):
            raise CortexmapError("Subjects' encoding maps use different masks; fit every "
                                 "subject on one common mask.")
    values = np.stack([r.map(kind) for r in results])
    finite = np.isfinite(values).all(axis=0)
    if not finite.all():  # undefined voxels (constant responses, zero ceilings) are left out
        import nibabel as nib

        keep = np.zeros(ref.mask.shape, dtype=np.uint8)
        keep.ravel()[ref.indices[finite]] = 1
        ref = BrainMasker(nib.Nifti1Image(keep, ref.affine))
        values = values[:, finite]
    return group_test(values, ref, n_perm=n_perm, seed=seed, statistic=statistic,
                      name=f"{results[0].name} {kind}")

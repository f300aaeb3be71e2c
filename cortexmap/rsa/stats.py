"""Inference for RSA: condition-label permutation, condition bootstrap, sign-flip tests, FDR.

All resampling is vectorized: the permuted / resampled data RDMs of every iteration are built
with one fancy-indexing step and compared with all model RDMs in one call to
:func:`cortexmap.rsa.compare`, processed in chunks so memory stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cortexmap.errors import CortexmapError
from cortexmap.rsa.compare import _as_rdms, canonical_method, compare
from cortexmap.rsa.rdm import RDMs, triu_indices
from cortexmap.utils.progress import track

_CHUNK = 256  # resamples compared per call


def _check_pair(a: RDMs, b: RDMs) -> None:
    if a.n_conditions != b.n_conditions:
        raise CortexmapError(
            f"model RDMs have {a.n_conditions} conditions but data RDMs have {b.n_conditions}; "
            "both must describe the same stimuli in the same order."
        )


def _p_value(null: np.ndarray, observed: np.ndarray, alternative: str) -> np.ndarray:
    """(1 + #{null as or more extreme}) / (1 + n): never 0, valid for Monte Carlo tests."""
    if alternative == "greater":
        count = (null >= observed - 1e-12).sum(0)
    elif alternative == "less":
        count = (null <= observed + 1e-12).sum(0)
    elif alternative == "two-sided":
        count = (np.abs(null) >= np.abs(observed) - 1e-12).sum(0)
    else:
        raise CortexmapError(
            f"alternative must be 'greater', 'less' or 'two-sided'; got {alternative!r}."
        )
    return (1 + count) / (1 + null.shape[0])


@dataclass
class PermutationResult:
    """observed (n_models, n_data), null (n_perm, n_models, n_data), pvalues (n_models, n_data)."""

    observed: np.ndarray
    null: np.ndarray
    pvalues: np.ndarray
    model_names: list[str]
    data_names: list[str]
    method: str

    def to_frame(self) -> pd.DataFrame:
        """One row per (model, data) pair: observed, null mean/sd, p, FDR q."""
        m, d = np.meshgrid(range(len(self.model_names)), range(len(self.data_names)),
                           indexing="ij")
        return pd.DataFrame({
            "model": np.asarray(self.model_names, dtype=object)[m.ravel()],
            "data": np.asarray(self.data_names, dtype=object)[d.ravel()],
            "method": self.method,
            "observed": self.observed.ravel(),
            "null_mean": self.null.mean(0).ravel(),
            "null_sd": self.null.std(0).ravel(),
            "p": self.pvalues.ravel(),
            "q_fdr": fdr(self.pvalues).ravel(),
        })


def permutation_test(
    model_rdms: RDMs | np.ndarray,
    data_rdm: RDMs | np.ndarray,
    method: str = "spearman",
    n_perm: int = 1000,
    seed: int | None = 0,
    alternative: str = "greater",
    progress: bool = False,
) -> PermutationResult:
    """Condition-label randomization test of RDM relatedness (Nili et al. 2014).

    The conditions of the data RDM(s) are shuffled (rows and columns together), which keeps the
    RDM's structure but breaks its correspondence with the models; the p-value is the fraction
    of shuffles whose similarity is at least the observed one.

    Args:
        model_rdms: (n_models) RDMs.
        data_rdm: one or more data RDMs (all permuted with the same permutation per iteration).
        method: comparison method (see :func:`cortexmap.rsa.compare`).
        n_perm: number of random permutations (n! is usually far larger; use >= 1000 for p<.01).
        seed: random seed (None: fresh randomness).
        alternative: "greater" (default, RDMs are related), "less" or "two-sided".

    Returns:
        :class:`PermutationResult`.
    """
    method = canonical_method(method)
    a, b = _as_rdms(model_rdms, "model_rdms"), _as_rdms(data_rdm, "data_rdm")
    _check_pair(a, b)
    if n_perm < 1:
        raise CortexmapError(f"n_perm must be >= 1; got {n_perm}.")
    n = a.n_conditions
    rng = np.random.default_rng(seed)
    observed = compare(a, b, method)
    mats = b.matrices()  # (n_data, n, n)
    i, j = triu_indices(n)
    null = np.empty((n_perm, len(a), len(b)))
    # permuted vectors of a chunk stay below ~200 MB whatever the condition count
    chunk = int(max(1, min(_CHUNK, 2.5e7 // (len(i) * len(b)))))
    chunks = range(0, n_perm, chunk)
    for start in track(chunks, "permutations", total=len(chunks), enabled=progress):
        stop = min(start + chunk, n_perm)
        perms = rng.permuted(np.broadcast_to(np.arange(n), (stop - start, n)), axis=1)
        # permuted vectors of every data RDM: (n_data, chunk, n_pairs)
        vec = mats[:, perms[:, i], perms[:, j]]
        for d in range(len(b)):
            null[start:stop, :, d] = compare(a, vec[d], method).T
    return PermutationResult(observed, null, _p_value(null, observed, alternative),
                             list(a.names), list(b.names), method)


@dataclass
class BootstrapResult:
    """samples (n_boot, n_a, n_b) of compare(a, b) over bootstrap resamples of conditions."""

    observed: np.ndarray
    samples: np.ndarray
    names_a: list[str]
    names_b: list[str]
    method: str

    @property
    def se(self) -> np.ndarray:
        """Bootstrap standard error (n_a, n_b)."""
        return np.nanstd(self.samples, axis=0, ddof=1)

    def ci(self, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Percentile confidence interval (low, high), each (n_a, n_b)."""
        lo = 100 * (1 - level) / 2
        return (np.nanpercentile(self.samples, lo, axis=0),
                np.nanpercentile(self.samples, 100 - lo, axis=0))

    def contrast_ci(self, weights: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
        """Estimate and percentile CI of sum(weights * compare(a, b)), weights (n_a, n_b).

        E.g. the crossover interaction of a 2x2 unit-group x region table is
        ``weights=[[1, -1], [-1, 1]]``.
        """
        w = np.asarray(weights, dtype=float)
        if w.shape != self.observed.shape:
            raise CortexmapError(
                f"weights must have shape {self.observed.shape} (n_a, n_b); got {w.shape}."
            )
        est = float((w * self.observed).sum())
        boot = (self.samples * w).sum(axis=(1, 2))
        lo = 100 * (1 - level) / 2
        return est, float(np.nanpercentile(boot, lo)), float(np.nanpercentile(boot, 100 - lo))

    def to_frame(self, level: float = 0.95) -> pd.DataFrame:
        lo, hi = self.ci(level)
        m, d = np.meshgrid(range(len(self.names_a)), range(len(self.names_b)), indexing="ij")
        return pd.DataFrame({
            "a": np.asarray(self.names_a, dtype=object)[m.ravel()],
            "b": np.asarray(self.names_b, dtype=object)[d.ravel()],
            "method": self.method, "observed": self.observed.ravel(), "se": self.se.ravel(),
            "ci_low": lo.ravel(), "ci_high": hi.ravel(),
        })


def bootstrap_conditions(
    rdms_a: RDMs | np.ndarray,
    rdms_b: RDMs | np.ndarray,
    method: str = "spearman",
    n_boot: int = 1000,
    seed: int | None = 0,
    progress: bool = False,
) -> BootstrapResult:
    """Bootstrap over conditions (stimuli): resample conditions with replacement, recompare.

    Pairs of a condition with its own copy are undefined and left out of each comparison (as in
    rsatoolbox's pattern bootstrap), so the resampled RDMs of a and b always share their missing
    pairs. Use the spread to get CIs of a similarity, or of contrasts between similarities
    (:meth:`BootstrapResult.contrast_ci`), generalizing to new stimuli from the same population.

    Returns:
        :class:`BootstrapResult` with samples (n_boot, len(a), len(b)).
    """
    method = canonical_method(method)
    a, b = _as_rdms(rdms_a, "rdms_a"), _as_rdms(rdms_b, "rdms_b")
    _check_pair(a, b)
    n = a.n_conditions
    rng = np.random.default_rng(seed)
    observed = compare(a, b, method)
    ma, mb = a.matrices(), b.matrices()
    i, j = triu_indices(n)
    samples = np.full((n_boot, len(a), len(b)), np.nan)
    for k in track(range(n_boot), "bootstrap", enabled=progress):
        idx = rng.integers(0, n, size=n)
        keep = idx[i] != idx[j]
        if keep.sum() < 3 or np.unique(idx).size < 3:
            continue  # degenerate resample (practically only for tiny n)
        ii, jj = idx[i][keep], idx[j][keep]
        samples[k] = compare(ma[:, ii, jj], mb[:, ii, jj], method)
    return BootstrapResult(observed, samples, list(a.names), list(b.names), method)


@dataclass
class SignFlipResult:
    """Group-level one-sample test per column: mean (k,), t (k,), p (k,), p_fwe (k,)."""

    mean: np.ndarray
    t: np.ndarray
    pvalues: np.ndarray
    pvalues_fwe: np.ndarray
    null_max: np.ndarray


def sign_flip_test(
    values: np.ndarray, n_perm: int = 5000, seed: int | None = 0, alternative: str = "greater"
) -> SignFlipResult:
    """Sign-flip permutation test of mean > 0 across subjects, per column (e.g. per model/voxel).

    values: (n_subjects, k) e.g. per-subject RSA correlations. Under H0 each subject's value is
    symmetric around 0, so random sign flips give the null of the one-sample t statistic.
    ``pvalues_fwe`` use the max-statistic over columns (family-wise error control).
    """
    v = np.asarray(values, dtype=float)
    if v.ndim == 1:
        v = v[:, None]
    if v.ndim != 2 or v.shape[0] < 2:
        raise CortexmapError(
            f"values must be (n_subjects >= 2, k); got shape {v.shape}."
        )
    if not np.isfinite(v).all():
        raise CortexmapError("values contain NaN/inf; remove those subjects or columns first.")
    n = v.shape[0]
    rng = np.random.default_rng(seed)

    def tstat(x: np.ndarray) -> np.ndarray:  # x (..., n, k)
        sd = x.std(-2, ddof=1)
        return x.mean(-2) / np.where(sd > 0, sd, np.inf) * np.sqrt(n)

    t_obs = tstat(v)
    null = np.empty((n_perm, v.shape[1]))
    for start in range(0, n_perm, _CHUNK):
        stop = min(start + _CHUNK, n_perm)
        signs = rng.choice([-1.0, 1.0], size=(stop - start, n, 1))
        null[start:stop] = tstat(signs * v[None])
    p = _p_value(null, t_obs, alternative)
    if alternative == "two-sided":
        null_max = np.abs(null).max(1)
        p_fwe = (1 + (null_max[:, None] >= np.abs(t_obs) - 1e-12).sum(0)) / (1 + n_perm)
    elif alternative == "less":
        null_max = null.min(1)
        p_fwe = (1 + (null_max[:, None] <= t_obs + 1e-12).sum(0)) / (1 + n_perm)
    else:
        null_max = null.max(1)
        p_fwe = (1 + (null_max[:, None] >= t_obs - 1e-12).sum(0)) / (1 + n_perm)
    return SignFlipResult(v.mean(0), t_obs, p, p_fwe, null_max)


def fdr(pvals: np.ndarray, method: str = "bh") -> np.ndarray:
    """FDR-adjusted p-values (q-values), same shape as ``pvals``; NaNs are ignored and kept.

    method: "bh" (Benjamini-Hochberg, independent or positively dependent tests) or "by"
    (Benjamini-Yekutieli, any dependence). Equals ``scipy.stats.false_discovery_control``.
    Reject at level alpha where ``q <= alpha``.
    """
    p = np.asarray(pvals, dtype=float)
    flat = p.ravel()
    ok = ~np.isnan(flat)
    if ((flat[ok] < 0) | (flat[ok] > 1)).any():
        raise CortexmapError("p-values must lie in [0, 1]; check the input to fdr().")
    if method not in ("bh", "by"):
        raise CortexmapError(f"fdr method must be 'bh' or 'by'; got {method!r}.")
    q = np.full(flat.shape, np.nan)
    m = int(ok.sum())
    if m == 0:
        return q.reshape(p.shape)
    x = flat[ok]
    order = np.argsort(x)
    scale = m / np.arange(1, m + 1)
    if method == "by":
        scale = scale * np.sum(1.0 / np.arange(1, m + 1))
    adj = np.minimum.accumulate((x[order] * scale)[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    q[ok] = out
    return q.reshape(p.shape)


def fdr_reject(pvals: np.ndarray, alpha: float = 0.05, method: str = "bh") -> np.ndarray:
    """Boolean mask of hypotheses rejected at FDR level ``alpha``."""
    q = fdr(pvals, method)
    return np.nan_to_num(q, nan=np.inf) <= alpha

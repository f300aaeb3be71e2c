"""Noise ceiling: how well could the true model do, given the between-subject variability?

Leave-one-subject-out bounds (Nili et al. 2014), identical to rsatoolbox's
``rsatoolbox.inference.boot_noise_ceiling(rdms, method)``:

- upper bound: mean over subjects of compare(pooled RDM of *all* subjects, subject RDM);
- lower bound: mean over subjects of compare(pooled RDM of the *other* subjects, subject RDM).

"Pooling" makes the average RDM that is best under the comparison method: ranks are averaged
for rank methods, z-scored vectors for Pearson, RMS-normalized vectors for cosine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cortexmap.errors import CortexmapError
from cortexmap.rsa.compare import as_vectors, canonical_method, compare, rank_rows
from cortexmap.rsa.rdm import RDMs


@dataclass
class NoiseCeiling:
    """Lower/upper bound (floats) plus the per-subject values (n_subjects,) behind them."""

    lower: float
    upper: float
    lower_per_subject: np.ndarray
    upper_per_subject: np.ndarray
    method: str

    def __iter__(self):  # allows ``lower, upper = noise_ceiling(...)``
        return iter((self.lower, self.upper))


def _transform_for_pooling(vectors: np.ndarray, method: str) -> np.ndarray:
    """Per-subject transform whose mean is the pooled RDM (rsatoolbox ``pool_rdm``)."""
    if method in ("spearman", "rho_a", "kendall_tau_a"):
        return rank_rows(vectors)
    if method == "pearson":
        centred = vectors - vectors.mean(1, keepdims=True)
        std = centred.std(1, keepdims=True)
        return centred / np.where(std > 0, std, 1.0)
    if method == "cosine":
        rms = np.sqrt((vectors**2).mean(1, keepdims=True))
        return vectors / np.where(rms > 0, rms, 1.0)
    raise CortexmapError(
        f"noise_ceiling supports pearson, spearman, kendall_tau_a, cosine and rho_a; got "
        f"{method!r}. Use one of those (e.g. pearson for whitened_pearson)."
    )


def pool_rdms(rdms: RDMs | np.ndarray, method: str = "spearman") -> np.ndarray:
    """The pooled (group-average) RDM vector (n_pairs,) that is optimal under ``method``."""
    method = canonical_method(method)
    v = as_vectors(rdms, "rdms")
    keep = ~np.isnan(v).any(0)
    out = np.full(v.shape[1], np.nan)
    out[keep] = _transform_for_pooling(v[:, keep], method).mean(0)
    return out


def noise_ceiling(
    subject_rdms: RDMs | np.ndarray, method: str = "spearman", groups=None
) -> NoiseCeiling:
    """Leave-one-subject-out noise ceiling of a set of subject RDMs.

    Args:
        subject_rdms: RDMs with one RDM per subject (>= 2), all over the same conditions.
            Pairs missing (NaN) in any subject are left out for everyone.
        method: comparison method the models will be evaluated with ("spearman", "pearson",
            "kendall_tau_a", "cosine", "rho_a").
        groups: optional label per RDM; RDMs sharing a label are left out together (as
            rsatoolbox's ``rdm_descriptor``), e.g. the copies of a subject drawn twice in a
            bootstrap sample. Both bounds are then means over groups.

    Returns:
        :class:`NoiseCeiling`; unpacks as ``lower, upper``.
    """
    method = canonical_method(method)
    v = as_vectors(subject_rdms, "subject_rdms")
    _transform_for_pooling(v[:1, :2], method)  # fail early for methods without a pooling rule
    n = len(v)
    labels = np.arange(n) if groups is None else np.asarray(groups)
    if labels.shape != (n,):
        raise CortexmapError(f"groups must hold one label per RDM ({n}); got {labels.shape}.")
    uniq = np.unique(labels)
    if uniq.size < 2:
        raise CortexmapError(
            f"noise_ceiling needs RDMs of at least 2 subjects; got {uniq.size}. Pass one RDM per "
            "subject."
        )
    v = v[:, ~np.isnan(v).any(0)]
    t = _transform_for_pooling(v, method)
    total = t.sum(0)
    every = compare(v, (total / n)[None], method)[:, 0]
    lower, upper = np.empty(uniq.size), np.empty(uniq.size)
    for k, g in enumerate(uniq):  # pooled RDM of the other subjects against each left-out one
        out = labels == g
        loo = (total - t[out].sum(0)) / (n - out.sum())
        lower[k] = compare(loo, v[out], method).mean()
        upper[k] = every[out].mean()
    return NoiseCeiling(float(lower.mean()), float(upper.mean()), lower, upper, method)

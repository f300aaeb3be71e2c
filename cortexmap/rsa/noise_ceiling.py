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


def noise_ceiling(subject_rdms: RDMs | np.ndarray, method: str = "spearman") -> NoiseCeiling:
    """Leave-one-subject-out noise ceiling of a set of subject RDMs.

    Args:
        subject_rdms: RDMs with one RDM per subject (>= 2), all over the same conditions.
            Pairs missing (NaN) in any subject are left out for everyone.
        method: comparison method the models will be evaluated with ("spearman", "pearson",
            "kendall_tau_a", "cosine", "rho_a").

    Returns:
        :class:`NoiseCeiling`; unpacks as ``lower, upper``.
    """
    method = canonical_method(method)
    v = as_vectors(subject_rdms, "subject_rdms")
    _transform_for_pooling(v[:1, :2], method)  # fail early for methods without a pooling rule
    n = len(v)
    if n < 2:
        raise CortexmapError(
            f"noise_ceiling needs RDMs of at least 2 subjects; got {n}. Pass one RDM per subject."
        )
    v = v[:, ~np.isnan(v).any(0)]
    t = _transform_for_pooling(v, method)
    total = t.sum(0)
    upper = compare(v, (total / n)[None], method)[:, 0]
    loo = (total[None, :] - t) / (n - 1)  # pooled RDM of the other subjects, one per subject
    lower = np.array([compare(loo[i], v[i], method)[0, 0] for i in range(n)])
    return NoiseCeiling(float(lower.mean()), float(upper.mean()), lower, upper, method)

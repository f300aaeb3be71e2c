"""Residual RDMs: each layer's RDM with what the other layers' RDMs explain removed.

Natural images give layer RDMs that correlate strongly across a network's hierarchy, so a brain
region matches many layers. Two classic remedies for data recorded with natural images:

* :func:`residual_rdms` regresses each layer's RDM vector on the other layers' vectors (plus an
  intercept) by least squares and keeps the residual. The result is an ordinary
  :class:`cortexmap.rsa.RDMs`, usable wherever a model RDM is (ROI RSA, searchlight,
  ``compare``); comparing it with a brain RDM by Pearson gives the *semi-partial* correlation.
* :func:`partial_correlation` removes the other layers from both the layer and the brain RDM
  before correlating them (the *partial* correlation), for ROI-level tables.

``rank=True`` (or ``method="spearman"``) works on ranks of the dissimilarities, the robust
choice when the RDMs are later compared by Spearman correlation.

Example::

    layers = compute_rdms([acts[l] for l in names], names=names)
    resid = residual_rdms(layers)                  # same names, same pair order
    table = compare(resid, roi_rdms, method="pearson")
"""

from __future__ import annotations

import numpy as np

from cortexmap.errors import CortexmapError
from cortexmap.rsa.compare import rank_rows
from cortexmap.rsa.rdm import RDMs, n_conditions_from_pairs
from cortexmap.utils.validation import as_finite_array

# A residual smaller than this fraction of the layer's own variation means the other layers
# reproduce the layer exactly (e.g. the same layer twice): its residual is numerical noise.
_DEGENERATE = 1e-8


def _vectors_and_names(rdms, names: list[str] | None) -> tuple[np.ndarray, list[str], dict]:
    """Accept an RDMs object or an array (n_sets, n_pairs); return vectors, names, extra."""
    if hasattr(rdms, "vectors"):
        vecs = as_finite_array(rdms.vectors, "RDM vectors", ndim=2)
        extra = {
            "n_conditions": int(rdms.n_conditions),
            "metric": getattr(rdms, "metric", "unknown"),
            "conditions": getattr(rdms, "conditions", None),
        }
        return vecs, list(names or rdms.names), extra
    vecs = as_finite_array(rdms, "RDM vectors", ndim=(1, 2))
    vecs = np.atleast_2d(vecs)
    names = list(names) if names is not None else [f"rdm{k}" for k in range(len(vecs))]
    if len(names) != len(vecs):
        raise CortexmapError(f"Got {len(names)} names for {len(vecs)} RDM vectors; give one each.")
    # condition count only needed to build RDMs: bootstrap pair subsets need not be triangular
    return vecs, names, {"n_conditions": None, "metric": "unknown", "conditions": None}


def check_design(vecs: np.ndarray, names: list[str]) -> None:
    """Raise unless ``vecs`` (n_layers, n_pairs) has >= 2 layers and more pairs than layers."""
    k, p = vecs.shape
    if k < 2:
        raise CortexmapError(
            f"Residual RDMs need at least 2 layers (got {k}: {names}); with one layer there is "
            "nothing to remove. Pass two or more layer RDMs."
        )
    if p <= k:
        raise CortexmapError(
            f"{k} layer RDMs with only {p} dissimilarities each: the regression on the other "
            "layers would fit every pair exactly. Use more conditions (stimuli) or fewer layers."
        )


def _regress_out(y: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Residual of y (n_pairs, m) after least squares on [1, others] (n_pairs, k)."""
    design = np.column_stack([np.ones(len(others)), others])
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    return y - design @ beta


def residual_vectors(vecs: np.ndarray, rank: bool = False, names: list[str] | None = None
                     ) -> np.ndarray:
    """Residuals of each row of ``vecs`` (n_sets, n_pairs) regressed on the other rows.

    Each residual is returned with the row's own mean added back, so it stays on the scale of
    the original dissimilarities (its correlation with anything is unaffected by that shift).
    """
    names = names or [f"rdm{k}" for k in range(len(vecs))]
    check_design(vecs, names)
    x = rank_rows(vecs) if rank else vecs
    out = np.empty_like(x, dtype=np.float64)
    for k in range(len(x)):
        others = np.delete(x, k, axis=0).T
        res = _regress_out(x[k], others)
        spread = np.linalg.norm(x[k] - x[k].mean())
        if np.linalg.norm(res) <= _DEGENERATE * max(spread, 1e-300):
            raise CortexmapError(
                f"The RDM of {names[k]!r} is fully explained by the other layers' RDMs (its "
                "residual is zero, e.g. a duplicated or linearly dependent layer); drop that "
                "layer or one of its duplicates before computing residual RDMs."
            )
        out[k] = res + x[k].mean()
    return out


def residual_rdms(
    rdms: RDMs | np.ndarray,
    names: list[str] | None = None,
    rank: bool = False,
    suffix: str = "",
) -> RDMs:
    """Residual RDM of each layer after regressing out the other layers' RDMs.

    rdms: an :class:`~cortexmap.rsa.RDMs` with >= 2 sets (layers) or an array
    (n_layers, n_pairs). rank: regress ranks instead of raw dissimilarities (pair with
    Spearman comparisons). suffix: appended to each name (e.g. ``"|residual"``); by default the
    layer names are kept so residual maps line up with plain ones.

    Returns an ``RDMs`` of the same shape (n_layers, n_pairs), squareform order, metric
    ``"residual-<metric>"``.
    """
    vecs, names, extra = _vectors_and_names(rdms, names)
    n_conditions = extra["n_conditions"] or n_conditions_from_pairs(vecs.shape[1])
    res = residual_vectors(vecs, rank=rank, names=names)
    return RDMs(
        vectors=res,
        n_conditions=n_conditions,
        names=[f"{n}{suffix}" for n in names],
        metric=f"residual-{extra['metric']}",
        conditions=extra["conditions"],
    )


def partial_correlation(
    model_rdms: RDMs | np.ndarray,
    data_rdms: RDMs | np.ndarray,
    method: str = "pearson",
) -> np.ndarray:
    """Partial correlation of each model RDM with each data RDM, controlling for the other models.

    For model ``k`` both its vector and the data vector are residualized on the other models'
    vectors (plus an intercept), then correlated. method: "pearson" or "spearman" (ranks first).

    Returns (n_models, n_data).
    """
    if method not in ("pearson", "spearman"):
        raise CortexmapError(
            f"Partial correlation method {method!r} is not supported; use 'pearson' or 'spearman'."
        )
    m, mnames, _ = _vectors_and_names(model_rdms, None)
    d, _, _ = _vectors_and_names(data_rdms, None)
    if m.shape[1] != d.shape[1]:
        raise CortexmapError(
            f"Model RDMs have {m.shape[1]} pairs but data RDMs have {d.shape[1]}; both must "
            "describe the same stimuli in the same order."
        )
    check_design(m, mnames)
    if method == "spearman":
        m, d = rank_rows(m), rank_rows(d)
    out = np.empty((len(m), len(d)))
    for k in range(len(m)):
        others = np.delete(m, k, axis=0).T
        rm = _regress_out(m[k], others)
        rd = _regress_out(d.T, others)  # (n_pairs, n_data)
        num = rm @ rd
        den = np.linalg.norm(rm) * np.linalg.norm(rd, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[k] = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return out

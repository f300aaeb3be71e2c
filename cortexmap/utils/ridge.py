"""Cross-validated ridge regression in closed form, for many targets at once.

Universal dimensions need every network's dimensions predicted from every other network
(networks² × dimensions regressions), encoding models every voxel of a brain from one feature
space. All targets predicted from one source share the source's SVD, so one
decomposition per (source, fold) serves every target and every regularization strength; the
strength is chosen per target by leave-one-out error on the training fold (closed form from the
same SVD), never by looking at the test fold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import KFold

from cortexmap.errors import CortexmapError

DEFAULT_ALPHAS = tuple(10.0 ** np.arange(-2, 7))


def make_folds(n_samples: int, n_folds: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffled K-fold splits of ``n_samples`` images, deterministic from ``seed``."""
    if n_folds < 2:
        raise CortexmapError(f"n_folds must be at least 2 for cross-validation; got {n_folds}.")
    if n_samples < n_folds:
        raise CortexmapError(
            f"There are {n_samples} images but {n_folds} cross-validation folds; use at least as "
            "many images as folds (ideally 10x more) or fewer folds."
        )
    return list(KFold(n_folds, shuffle=True, random_state=seed).split(np.arange(n_samples)))


def _thin_svd(xc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Economy SVD ``xc = u @ diag(s) @ vt`` from the eigendecomposition of the smaller Gram matrix.

    Images are usually far fewer than units, so the (n x n) Gram matrix is much cheaper to
    decompose than ``xc`` itself; directions with (numerically) zero variance are dropped.
    """
    n, p = xc.shape
    if n <= p:
        evals, u = np.linalg.eigh(xc @ xc.T)
    else:
        evals, v = np.linalg.eigh(xc.T @ xc)
    keep = evals > evals.max() * 1e-12
    s = np.sqrt(evals[keep])
    if n <= p:
        u = u[:, keep]
        vt = (u.T @ xc) / s[:, None]
    else:
        vt = v[:, keep].T
        u = (xc @ vt.T) / s
    return u, s, vt


@dataclass
class FoldBasis:
    """One cross-validation fold's training SVD, shared by every target and alpha.

    u (n_train, k), s (k,): left singular vectors and values of the centred training features;
    test_proj (n_test, k): the centred test features in the right singular basis, so predicting
    needs neither the features nor ``vt`` again; train, test: the fold's sample indices.
    """

    u: np.ndarray
    s: np.ndarray
    test_proj: np.ndarray
    train: np.ndarray
    test: np.ndarray


def fold_basis(x: np.ndarray, train: np.ndarray, test: np.ndarray) -> FoldBasis:
    """The :class:`FoldBasis` of features ``x`` (n_samples, n_features) for one fold."""
    x_train = np.asarray(x[train], dtype=np.float64)
    x_mean = x_train.mean(0)
    u, s, vt = _thin_svd(x_train - x_mean)
    return FoldBasis(u, s, (np.asarray(x[test], dtype=np.float64) - x_mean) @ vt.T,
                     np.asarray(train), np.asarray(test))


def fold_fit(
    basis: FoldBasis, y_train: np.ndarray, alphas: np.ndarray, selection: str = "float64"
) -> tuple[np.ndarray, np.ndarray]:
    """Test-set predictions (n_test, n_targets) and the alpha chosen for each target.

    The alpha of each target minimises its leave-one-out error on the training fold (closed
    form from the fold's SVD, with the intercept's leverage), as scikit-learn's ``RidgeCV``
    with ``alpha_per_target=True`` does; the test fold is never looked at.
    selection: dtype of the leave-one-out errors ("float64", or "float32": about twice as fast
    on CPUs; the chosen alphas can differ where two alphas' errors tie to float32 precision).
    The coefficients and predictions are always float64.
    """
    u, s = basis.u, basis.s
    y_mean = y_train.mean(0)
    yc = y_train - y_mean
    uty = u.T @ yc  # (k, t): the only contact with the targets, shared by all alphas
    s2 = s**2
    dt = np.dtype(selection)
    u_sel, uty_sel, yc_sel = (a.astype(dt, copy=False) for a in (u, uty, yc))
    best_err = np.full(y_train.shape[1], np.inf, dtype=dt)
    best_alpha = np.zeros(y_train.shape[1])
    for alpha in alphas:
        shrink = s2 / (s2 + alpha)
        fitted = u_sel @ (shrink.astype(dt)[:, None] * uty_sel)
        hat_diag = (u**2) @ shrink + 1.0 / len(yc)  # + intercept leverage
        resid = np.subtract(yc_sel, fitted, out=fitted)
        resid /= (1.0 - hat_diag).astype(dt)[:, None]
        err = np.einsum("ij,ij->j", resid, resid) / len(yc)
        better = err < best_err
        best_err[better] = err[better]
        best_alpha[better] = alpha
    coef = (s[:, None] / (s2[:, None] + best_alpha[None, :])) * uty
    return basis.test_proj @ coef + y_mean, best_alpha


def ridge_cv_predict(
    x: np.ndarray,
    y: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    alphas: tuple[float, ...] = DEFAULT_ALPHAS,
) -> np.ndarray:
    """Out-of-fold ridge predictions of every column of ``y`` from ``x``.

    x: (n_samples, n_features) source responses; y: (n_samples, n_targets).
    Returns (n_samples, n_targets): each row predicted by the model fit without its fold.
    """
    if len(x) != len(y):
        raise CortexmapError(
            f"Source has {len(x)} images but targets have {len(y)}; both must be responses to the "
            "same images in the same order."
        )
    alphas_arr = np.asarray(alphas, dtype=float)
    pred = np.empty_like(y, dtype=float)
    for train, test in folds:
        pred[test] = fold_fit(fold_basis(x, train, test), y[train], alphas_arr)[0]
    return pred


def column_correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r between matching columns of ``a`` and ``b`` (both (n, t)) -> (t,)."""
    ac, bc = a - a.mean(0), b - b.mean(0)
    denom = np.sqrt((ac**2).sum(0) * (bc**2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (ac * bc).sum(0) / denom
    return np.nan_to_num(r)

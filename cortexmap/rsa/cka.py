"""Centered kernel alignment (CKA): linear, RBF and debiased (Kornblith et al. 2019).

CKA compares two representations of the same n stimuli through their n x n kernel matrices K
and L: ``CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))``. With K and L centred (``HKH``) the
biased HSIC is the Frobenius product ``<HKH, HLH>``; the debiased variant replaces it with the
unbiased HSIC estimator (Song et al. 2012), which is the same Frobenius product after the
"unbiased centring" of Kornblith's reference code (zero diagonal, row means over n - 2). Either
way CKA is the cosine between centred kernel matrices, so all pairs of a stack of layers are one
matrix product of their flattened centred kernels.

Kernels come from activations (a Gram matrix accumulated over blocks of units, so a layer of any
width costs one n x n matrix) or from an RDM read as squared Euclidean distances D
(``K = -1/2 H D H`` for the linear kernel, ``exp(-D / (2 sigma^2 median(D)))`` for RBF). Linear
CKA of activations equals linear CKA of their "sqeuclidean" or "euclidean" RDMs; a correlation
RDM is the squared distance of z-scored patterns, so its CKA is that of the z-scored patterns.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cortexmap.errors import CortexmapError
from cortexmap.rsa.rdm import RDMs, _gram, triu_indices

KERNELS = ("linear", "rbf")
#: compare() method names served by this module: (kernel, debiased)
CKA_METHODS = {
    "cka": ("linear", False), "cka_debiased": ("linear", True),
    "cka_rbf": ("rbf", False), "cka_rbf_debiased": ("rbf", True),
}


def _center(k: np.ndarray, debiased: bool) -> np.ndarray:
    """Centred kernel (new array): ``HKH``, or the unbiased centring when ``debiased``."""
    k = np.array(k, dtype=np.float64)
    n = k.shape[0]
    if debiased:
        if n < 4:
            raise CortexmapError(f"Debiased CKA needs at least 4 stimuli; got {n}.")
        np.fill_diagonal(k, 0.0)
        means = k.sum(0) / (n - 2)
        means -= means.sum() / (2 * (n - 1))
    else:
        means = k.mean(0)
        means -= means.mean() / 2
    k -= means[:, None]
    k -= means[None, :]
    if debiased:
        np.fill_diagonal(k, 0.0)
    return k


def _flat(kc: np.ndarray) -> np.ndarray:
    """Vector whose dot products are Frobenius products of symmetric matrices: the upper
    triangle weighted by sqrt(2), then the diagonal (half the memory of the full matrix)."""
    i, j = triu_indices(kc.shape[0])
    return np.concatenate([np.sqrt(2.0) * kc[i, j], np.diag(kc)])


def _rbf(sq_dist: np.ndarray, sigma: float) -> np.ndarray:
    # bandwidth relative to the median squared distance (diagonal included, as the reference)
    med = float(np.median(sq_dist))
    if med <= 0:
        raise CortexmapError("RBF CKA: the median distance between stimuli is 0; the kernel "
                             "bandwidth is undefined. Use kernel='linear'.")
    return np.exp(-sq_dist / (2.0 * sigma**2 * med))


def kernel_matrix(
    x: np.ndarray | RDMs, kernel: str = "linear", sigma: float = 1.0, name: str = "patterns"
) -> np.ndarray:
    """(n, n) kernel of one representation, uncentred.

    x: activations (n_stimuli, n_units) (any width: the Gram matrix is accumulated over blocks
    of units) or a single-RDM :class:`RDMs` read as squared Euclidean distances.
    kernel: "linear" or "rbf" (bandwidth ``sigma`` times the median distance).
    """
    if isinstance(x, RDMs):
        if len(x) != 1:
            raise CortexmapError(f"{name}: pass one RDM at a time; got {len(x)}.")
        sq = x.matrices()[0]
        if not np.isfinite(sq).all():
            raise CortexmapError(f"{name}: CKA needs complete RDMs; this one has NaN pairs.")
        if x.metric == "euclidean":  # plain distances: square them
            sq = sq**2
        if kernel == "rbf":
            return _rbf(sq, sigma)
        # -1/2 H D H without the two n^3 products: subtract row, column and grand means
        row = sq.mean(0)
        return -0.5 * (sq - row[:, None] - row[None, :] + row.mean())
    gram, _ = _gram(x, "columns", name)
    if kernel == "rbf":
        d = np.diag(gram)
        return _rbf(np.maximum(d[:, None] + d[None, :] - 2 * gram, 0.0), sigma)
    return gram


def _as_items(x: Any, side: str) -> tuple[list[np.ndarray | RDMs], list[str]]:
    """Split one side into single representations: RDMs (one per RDM) or activation arrays."""
    if isinstance(x, RDMs):
        return [x[i] for i in range(len(x))], list(x.names)
    if hasattr(x, "get_vectors") and hasattr(x, "dissimilarity_measure"):  # rsatoolbox RDMs
        r = RDMs.from_rsatoolbox(x)
        return [r[i] for i in range(len(r))], list(r.names)
    if isinstance(x, dict):
        return [np.asarray(v).reshape(len(v), -1) for v in x.values()], [str(k) for k in x]
    if isinstance(x, (list, tuple)):
        items = [np.asarray(v) for v in x]
    else:
        arr = np.asarray(x)
        items = [arr] if arr.ndim == 2 else list(arr) if arr.ndim == 3 else []
        if not items:
            raise CortexmapError(
                f"{side} must be RDMs, a (n_stimuli, n_units) array, a stack (n_sets, n_stimuli, "
                f"n_units), a list or a dict of arrays; got shape {arr.shape}."
            )
    for k, v in enumerate(items):
        if v.ndim != 2 or not np.issubdtype(v.dtype, np.number):
            raise CortexmapError(
                f"{side}[{k}] must be a numeric (n_stimuli, n_units) array; got shape "
                f"{v.shape}, dtype {v.dtype}. Flatten unit dimensions first."
            )
    return items, [f"{side}{k}" for k in range(len(items))]


def _n_stimuli(item: np.ndarray | RDMs) -> int:
    return item.n_conditions if isinstance(item, RDMs) else item.shape[0]


def centred_kernels(
    x: Any, kernel: str = "linear", debiased: bool = False, sigma: float = 1.0, side: str = "x"
) -> tuple[np.ndarray, list[str]]:
    """Unit-norm flattened centred kernels (n_sets, n (n + 1) / 2) and names of one side."""
    items, names = _as_items(x, side)
    n = {_n_stimuli(it) for it in items}
    if len(n) > 1:
        raise CortexmapError(f"{side}: representations have different stimulus counts {n}; "
                             "CKA compares responses to the same stimuli.")
    rows = []
    for k, it in enumerate(items):
        v = _flat(_center(kernel_matrix(it, kernel, sigma, f"{side}[{k}]"), debiased))
        norm = np.sqrt(v @ v)
        rows.append(v / norm if norm > 0 else v)  # zero kernel: CKA 0 with everything
    return np.stack(rows), names


def cka(
    a: Any,
    b: Any = None,
    kernel: str = "linear",
    debiased: bool = False,
    sigma: float = 1.0,
) -> np.ndarray:
    """CKA of every representation in ``a`` with every representation in ``b``.

    Args:
        a, b: activations (n_stimuli, n_units), stacks (n_sets, n_stimuli, n_units), lists or
            dicts {name: (n_stimuli, ...)} of arrays with any unit counts (e.g. the layers of
            ``Extractor.extract()``), or :class:`RDMs` (read as squared Euclidean distances).
            Sides may mix: network layers against brain-ROI RDMs. ``b=None`` compares ``a``
            with itself.
        kernel: "linear" or "rbf".
        debiased: use the unbiased HSIC estimator (Song et al. 2012), which removes the
            upward bias of CKA when units outnumber stimuli.
        sigma: RBF bandwidth as a fraction of the median distance between stimuli.

    Returns:
        (len(a), len(b)) float64 matrix, 1 on the diagonal for ``b=None``.
    """
    if kernel not in KERNELS:
        raise CortexmapError(f"Unknown CKA kernel {kernel!r}; choose one of {', '.join(KERNELS)}.")
    if not sigma > 0:
        raise CortexmapError(f"sigma must be positive; got {sigma}.")
    ka, _ = centred_kernels(a, kernel, debiased, sigma, "a")
    kb = ka if b is None else centred_kernels(b, kernel, debiased, sigma, "b")[0]
    if ka.shape[1] != kb.shape[1]:
        raise CortexmapError("a and b describe different numbers of stimuli; CKA compares "
                             "responses to the same stimuli in the same order.")
    return ka @ kb.T


def cka_frame(a: Any, b: Any = None, **kwargs: Any):
    """:func:`cka` as a long table (a, b, cka) with the representations' names."""
    import pandas as pd

    names_a = _as_items(a, "a")[1]
    names_b = names_a if b is None else _as_items(b, "b")[1]
    sim = cka(a, b, **kwargs)
    return pd.DataFrame({"a": np.repeat(names_a, len(names_b)),
                         "b": np.tile(names_b, len(names_a)), "cka": sim.ravel()})

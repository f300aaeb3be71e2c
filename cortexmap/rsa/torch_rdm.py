"""Differentiable RDMs in torch, for optimizing stimuli through a network.

The vectors come out in the same order as :mod:`cortexmap.rsa` (and rsatoolbox / scipy
``squareform``): the upper triangle of the (n, n) matrix read row by row, so pair ``k`` is
``(i[k], j[k])`` with ``i, j = torch.triu_indices(n, n, 1)``. Everything is vectorized (one Gram
matrix per set instead of a loop over pairs) and works on CPU or GPU, in float32 or float64.

Example::

    feats = {"conv1": a1, "conv3": a3}                  # each (n_images, ...)
    vecs = torch.stack([rdm_vector(a) for a in feats.values()])   # (n_layers, n_pairs)
    r = rdm_correlations(vecs)                           # (n_layers, n_layers) Pearson
    loss = orthogonality_loss(vecs)                      # mean r_ij^2 over pairs i < j
    loss.backward()
"""

from __future__ import annotations

import torch

from cortexmap.errors import CortexmapError

METRICS = ("correlation", "euclidean", "sqeuclidean", "cosine")

# Small constant keeping square roots and divisions differentiable where a pattern is constant
# or two patterns coincide (the exact value there is undefined; the gradient must not be NaN).
_EPS = 1e-12


def pair_indices(n: int, device: torch.device | str | None = None) -> tuple[torch.Tensor, ...]:
    """Row and column indices of the upper triangle, each (n*(n-1)/2,), squareform order."""
    i, j = torch.triu_indices(n, n, offset=1, device=device)
    return i, j


def _as_set(patterns: torch.Tensor) -> torch.Tensor:
    """(n_conditions, ...) -> (1, n_conditions, n_units)."""
    if not isinstance(patterns, torch.Tensor):
        raise CortexmapError(
            f"patterns must be a torch.Tensor; got {type(patterns).__name__}. Use "
            "cortexmap.rsa.compute_rdms for numpy arrays."
        )
    if patterns.ndim < 2:
        raise CortexmapError(
            f"patterns must have shape (n_conditions, ...) with at least 2 dimensions; got "
            f"{tuple(patterns.shape)}."
        )
    return patterns.reshape(1, patterns.shape[0], -1)


def rdm_vector(patterns: torch.Tensor, metric: str = "correlation") -> torch.Tensor:
    """Differentiable RDM of one pattern set.

    patterns: (n_conditions, ...) — any trailing shape (e.g. a conv map (n, C, H, W)) is
    flattened to units. Returns (n_pairs,) in squareform order. Metrics as in
    :func:`cortexmap.rsa.compute_rdms`: "correlation" (1 - Pearson r between condition
    patterns), "euclidean" (plain distance), "sqeuclidean" (squared distance / n_units, the
    rsatoolbox "euclidean"), "cosine" (1 - cosine similarity).
    """
    return rdm_vectors_batched(_as_set(patterns), metric)[0]


def rdm_vectors_batched(patterns: torch.Tensor, metric: str = "correlation") -> torch.Tensor:
    """RDM vectors of a stack of pattern sets with equal unit counts.

    patterns: (n_sets, n_conditions, n_units). Returns (n_sets, n_pairs).
    """
    if metric not in METRICS:
        raise CortexmapError(
            f"Unknown differentiable RDM metric {metric!r}; choose one of {', '.join(METRICS)}."
        )
    if patterns.ndim != 3:
        raise CortexmapError(
            f"patterns must be (n_sets, n_conditions, n_units); got {tuple(patterns.shape)}."
        )
    n, units = patterns.shape[1], patterns.shape[2]
    if n < 3:
        raise CortexmapError(
            f"An RDM needs at least 3 conditions (stimuli); got {n}. Use more images."
        )
    i, j = pair_indices(n, patterns.device)
    x = patterns
    if metric in ("correlation", "cosine"):
        if metric == "correlation":
            x = x - x.mean(dim=2, keepdim=True)
        # Normalize rows, then one batched Gram matrix gives every pairwise similarity.
        x = x / torch.sqrt((x * x).sum(dim=2, keepdim=True) + _EPS)
        gram = torch.bmm(x, x.transpose(1, 2))
        return 1.0 - gram[:, i, j]
    sq = (x * x).sum(dim=2)
    gram = torch.bmm(x, x.transpose(1, 2))
    d2 = (sq[:, i] + sq[:, j] - 2.0 * gram[:, i, j]).clamp_min(0.0)
    if metric == "sqeuclidean":
        return d2 / units
    return torch.sqrt(d2 + _EPS)


def rdm_vectors(
    patterns: list[torch.Tensor] | dict[str, torch.Tensor], metric: str = "correlation"
) -> torch.Tensor:
    """RDM vectors of several pattern sets with different unit counts (e.g. layers).

    patterns: list (or dict, in its order) of tensors (n_conditions, ...). Returns
    (n_sets, n_pairs).
    """
    items = list(patterns.values()) if isinstance(patterns, dict) else list(patterns)
    if not items:
        raise CortexmapError("rdm_vectors needs at least one pattern set.")
    n = {int(p.shape[0]) for p in items}
    if len(n) != 1:
        raise CortexmapError(
            f"All pattern sets must describe the same conditions; got condition counts {sorted(n)}."
        )
    return torch.stack([rdm_vector(p, metric) for p in items])


def rdm_correlations(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """Differentiable Pearson correlation between RDM vectors.

    a: (n_a, n_pairs), b: (n_b, n_pairs) or None (= a). Returns (n_a, n_b), the same numbers as
    ``cortexmap.rsa.compare(a, b, method="pearson")``.
    """
    if a.ndim == 1:
        a = a[None]
    b = a if b is None else (b[None] if b.ndim == 1 else b)
    if a.shape[-1] != b.shape[-1]:
        raise CortexmapError(
            f"RDM vectors differ in length ({a.shape[-1]} vs {b.shape[-1]} pairs); they must "
            "describe the same conditions."
        )
    za = a - a.mean(dim=-1, keepdim=True)
    za = za / torch.sqrt((za * za).sum(dim=-1, keepdim=True) + _EPS)
    zb = b - b.mean(dim=-1, keepdim=True)
    zb = zb / torch.sqrt((zb * zb).sum(dim=-1, keepdim=True) + _EPS)
    return za @ zb.T


def offdiagonal(corr: torch.Tensor) -> torch.Tensor:
    """Upper-triangle (i < j) entries of a square (k, k) matrix, (k*(k-1)/2,)."""
    k = corr.shape[-1]
    i, j = pair_indices(k, corr.device)
    return corr[..., i, j]


def orthogonality_loss(vectors: torch.Tensor) -> torch.Tensor:
    """Mean squared Pearson correlation over every pair of RDM vectors (the synthesis loss).

    vectors: (n_sets, n_pairs) with n_sets >= 2. Returns a scalar in [0, 1]; 0 means every
    pair of RDMs is uncorrelated (orthogonal after centring).
    """
    if vectors.ndim != 2 or vectors.shape[0] < 2:
        raise CortexmapError(
            f"The orthogonality loss needs at least 2 RDMs (layers); got shape "
            f"{tuple(vectors.shape)}. Choose two or more layers."
        )
    return (offdiagonal(rdm_correlations(vectors)) ** 2).mean()


def mean_abs_offdiagonal(corr: torch.Tensor) -> torch.Tensor:
    """Mean |r| over the off-diagonal (i < j) of a layer-by-layer correlation matrix."""
    return offdiagonal(corr).abs().mean()

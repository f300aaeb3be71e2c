"""Reduce a network to its k most (or least) universal dimensions and compare with the brain.

If a few universal dimensions carry what networks share with the brain, an RDM built from only
the k most universal dimensions should match the brain about as well as the whole layer for
small k, while the k least universal dimensions should not.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cortexmap.errors import CortexmapError
from cortexmap.rsa import RDMs, compare, compute_rdms


def reduction_curve(
    network: str,
    scores: np.ndarray,
    order: np.ndarray,
    full_layer: np.ndarray,
    brain_rdm: RDMs,
    ks: Sequence[int],
    metric: str = "euclidean",
    method: str = "spearman",
) -> pd.DataFrame:
    """ROI RSA of RDMs from the k most / least universal dimensions, beside the full layer.

    scores: (n_images, n_dims) PCA scores; order: dimension indices, most universal first;
    full_layer: (n_images, n_units) activations; brain_rdm: one RDM over the same images.
    Returns rows (network, selection in {"most universal", "least universal", "full layer"},
    k, rsa).
    """
    n_dims = scores.shape[1]
    too_big = [k for k in ks if k < 1 or k > n_dims]
    if too_big:
        raise CortexmapError(
            f"k values {too_big} are outside 1..{n_dims} (the number of dimensions computed for "
            f"{network}); lower them or raise n_dims."
        )
    sets = {"most universal": order, "least universal": order[::-1]}
    patterns, labels = [], []
    for selection, idx in sets.items():
        for k in ks:
            patterns.append(scores[:, idx[:k]])
            labels.append((selection, k))
    reduced = compute_rdms(patterns, metric=metric, names=[f"{s} k={k}" for s, k in labels])
    full = compute_rdms(full_layer, metric=metric, names=["full layer"])
    rsa = compare(RDMs.concat([reduced, full]), brain_rdm, method=method)[:, 0]
    rows = [(network, s, k, r) for (s, k), r in zip(labels, rsa[:-1], strict=True)]
    rows.append((network, "full layer", full_layer.shape[1], rsa[-1]))
    return pd.DataFrame(rows, columns=["network", "selection", "k", "rsa"])

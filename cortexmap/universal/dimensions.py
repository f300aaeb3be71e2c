"""Principal dimensions of layer responses and their universality and brain similarity.

Method (Chen & Bonner): each network's layer responses to a shared image set are reduced to
their principal dimensions (PCA scores). A dimension's *universality* is how well it is
predicted, with cross-validated ridge regression, from each other network's responses, averaged
over the other networks; its *brain similarity* is how well it is predicted from brain responses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from cortexmap.errors import CortexmapError
from cortexmap.utils.progress import track
from cortexmap.utils.ridge import (
    DEFAULT_ALPHAS,
    column_correlations,
    make_folds,
    ridge_cv_predict,
)
from cortexmap.utils.validation import as_finite_array


@dataclass
class Dimensions:
    """PCA of one network's layer: ``scores`` (n_images, n_dims), ``explained`` (n_dims,)."""

    network: str
    scores: np.ndarray
    explained: np.ndarray


def principal_dimensions(
    activations: np.ndarray, n_dims: int, network: str = "network", seed: int = 0
) -> Dimensions:
    """Top ``n_dims`` principal dimensions of ``activations`` (n_images, n_units)."""
    x = as_finite_array(activations, f"activations of {network}", ndim=2)
    available = min(x.shape) - 1
    if n_dims > available:
        raise CortexmapError(
            f"{network} has only {available} principal dimensions for {x.shape[0]} images x "
            f"{x.shape[1]} units, but {n_dims} were asked; lower n_dims or add images/units."
        )
    pca = PCA(n_components=n_dims, svd_solver="full", random_state=seed).fit(x)
    scores = pca.transform(x)
    # PCA signs are arbitrary; fix them so results do not depend on the LAPACK build.
    signs = np.sign(scores[np.abs(scores).argmax(0), np.arange(n_dims)])
    return Dimensions(network, scores * signs, pca.explained_variance_ratio_)


def _check_image_counts(activations: Mapping[str, np.ndarray]) -> int:
    counts = {name: len(a) for name, a in activations.items()}
    if len(set(counts.values())) != 1:
        raise CortexmapError(
            f"Networks were shown different numbers of images: {counts}; every network must "
            "respond to the same image set in the same order."
        )
    if len(counts) < 2:
        raise CortexmapError("Universality needs at least 2 networks; add more networks.")
    return next(iter(counts.values()))


def _predict_all_from(
    source: np.ndarray, targets: np.ndarray, folds, alphas
) -> np.ndarray:
    """r of every target column predicted from ``source``: one SVD per fold serves all targets."""
    return column_correlations(ridge_cv_predict(source, targets, folds, alphas), targets)


def universality(
    activations: Mapping[str, np.ndarray],
    dims: Mapping[str, Dimensions],
    n_folds: int = 5,
    alphas: tuple[float, ...] = DEFAULT_ALPHAS,
    seed: int = 0,
    client=None,
    progress: bool = True,
) -> pd.DataFrame:
    """Universality of every dimension of every network.

    activations: network -> (n_images, n_units) source responses.
    dims: network -> Dimensions (targets). Returns one row per (network, dim) with
    ``universality`` (mean r over the other networks) and one column ``r_from_<source>`` each.
    With a dask ``client``, each source network's regressions run as one task.
    """
    n_images = _check_image_counts(activations)
    folds = make_folds(n_images, n_folds, seed)
    names = list(dims)
    targets = np.concatenate([dims[n].scores for n in names], axis=1)
    owner = np.concatenate([[n] * dims[n].scores.shape[1] for n in names])
    sources = list(activations)
    if client is not None:
        futures = [
            client.submit(_predict_all_from, activations[s], targets, folds, alphas, pure=False)
            for s in sources
        ]
        results = dict(zip(sources, client.gather(futures), strict=True))
    else:
        results = {
            s: _predict_all_from(activations[s], targets, folds, alphas)
            for s in track(sources, "universality: source networks", enabled=progress)
        }
    table = pd.DataFrame({
        "network": owner,
        "dim": np.concatenate([np.arange(dims[n].scores.shape[1]) for n in names]),
        "explained_variance": np.concatenate([dims[n].explained for n in names]),
    })
    r = np.stack([results[s] for s in sources], axis=1)  # (n_targets, n_sources)
    for j, s in enumerate(sources):
        table[f"r_from_{s}"] = np.where(owner == s, np.nan, r[:, j])
    cross = np.where(owner[:, None] == np.asarray(sources)[None, :], np.nan, r)
    table["universality"] = np.nanmean(cross, axis=1)
    return table


def brain_similarity(
    brain: np.ndarray,
    dims: Mapping[str, Dimensions],
    n_folds: int = 5,
    alphas: tuple[float, ...] = DEFAULT_ALPHAS,
    seed: int = 0,
) -> np.ndarray:
    """r of each dimension (in ``dims`` order, concatenated) predicted from brain responses.

    brain: (n_images, n_voxels) responses of a region (or several, concatenated).
    """
    b = as_finite_array(brain, "brain responses", ndim=2)
    targets = np.concatenate([d.scores for d in dims.values()], axis=1)
    if len(b) != len(targets):
        raise CortexmapError(
            f"Brain responses cover {len(b)} images but the networks saw {len(targets)}; use the "
            "same images in the same order."
        )
    return _predict_all_from(b, targets, make_folds(len(b), n_folds, seed), alphas)


def ranked_dimensions(table: pd.DataFrame, network: str) -> np.ndarray:
    """Dimension indices of ``network`` from most to least universal."""
    sub = table[table["network"] == network]
    return sub.sort_values("universality", ascending=False)["dim"].to_numpy()

"""Banded ridge over several feature spaces (himalaya) and variance partitioning.

Banded ridge (Nunez-Elizalde et al. 2019; Dupré la Tour et al. 2022) gives each feature space
its own penalty, chosen per voxel; cortexmap runs himalaya's ``BandedRidgeCV`` (random search
over the simplex of band scalings, inner K-fold) inside its own outer K-fold, so every score is
on held-out stimuli, and reports himalaya's split R² (the share of each band, summing to the
joint R²).

Variance partitioning (de Heer et al. 2017) fits one ridge model per union of 2 or 3 feature
spaces (:func:`cortexmap.encoding.fit_encoding`) and turns the cross-validated R² of the unions
into the unique and shared parts of each space by inclusion-exclusion.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cortexmap.encoding.model import (
    _check_features,
    _check_responses,
    fit_encoding,
    pearson_columns,
    r2_score_columns,
)
from cortexmap.errors import CortexmapError
from cortexmap.utils.ridge import make_folds

DEFAULT_BANDED_ALPHAS = tuple(10.0 ** np.arange(-2, 7))


def _spaces(feature_spaces: dict[str, Any], n_stimuli: int) -> dict[str, np.ndarray]:
    if not isinstance(feature_spaces, dict) or len(feature_spaces) < 2:
        raise CortexmapError(
            "feature_spaces must be a dict {name: (n_stimuli, n_features)} with at least two "
            "feature spaces."
        )
    return {str(k): _check_features(v, n_stimuli).astype(np.float64)
            for k, v in feature_spaces.items()}


@dataclass
class BandedResult:
    """Cross-validated banded ridge per voxel: r2, r (n_voxels,), r2_split (n_bands, n_voxels)
    (himalaya's split R², summing to r2 up to the intercept), deltas: mean over outer folds of
    the log band scalings (n_bands, n_voxels)."""

    r2: np.ndarray
    r: np.ndarray
    r2_split: np.ndarray
    deltas: np.ndarray
    bands: list[str]

    def to_frame(self) -> pd.DataFrame:
        df = pd.DataFrame({"r2": self.r2, "r": self.r})
        for name, row in zip(self.bands, self.r2_split, strict=True):
            df[f"r2_{name}"] = row
        return df


def banded_model(n_iter: int = 20, alphas: tuple[float, ...] = DEFAULT_BANDED_ALPHAS,
                 inner_folds: int = 5, seed: int = 0):
    """The himalaya ``BandedRidgeCV`` cortexmap fits in each outer fold (numpy backend).

    No intercept: himalaya splits predictions by band only without one, so features and
    responses are centred on each training fold instead (the same model)."""
    from himalaya.backend import set_backend
    from himalaya.ridge import BandedRidgeCV

    set_backend("numpy", on_error="raise")
    return BandedRidgeCV(
        groups="input", fit_intercept=False, cv=inner_folds, random_state=seed,
        solver_params={"n_iter": n_iter, "alphas": np.asarray(alphas, dtype=float),
                       "progress_bar": False})


def fit_banded(
    feature_spaces: dict[str, Any],
    responses: Any,
    n_folds: int = 5,
    n_iter: int = 20,
    alphas: tuple[float, ...] = DEFAULT_BANDED_ALPHAS,
    inner_folds: int = 5,
    seed: int = 0,
) -> BandedResult:
    """Banded ridge of every voxel from several feature spaces, scored on held-out folds.

    feature_spaces: {name: (n_stimuli, n_features)}; responses: (n_stimuli, n_voxels) or
    (n_runs, n_stimuli, n_voxels) (fit to the run average). n_iter: random-search iterations
    over band scalings (himalaya), alphas: overall penalties tried at each, inner_folds: the
    inner cross-validation of himalaya. The outer split is :func:`make_folds` (seeded).
    """
    y, _ = _check_responses(responses)
    spaces = _spaces(feature_spaces, len(y))
    y = y.astype(np.float64)
    xs = list(spaces.values())
    pred = np.empty_like(y)
    split = np.zeros((len(xs),) + y.shape)
    deltas = np.zeros((len(xs), y.shape[1]))
    folds = make_folds(len(y), n_folds, seed)
    for train, test in folds:
        means = [x[train].mean(0) for x in xs]
        y_mean = y[train].mean(0)
        model = banded_model(n_iter, alphas, inner_folds, seed)
        model.fit([x[train] - m for x, m in zip(xs, means, strict=True)], y[train] - y_mean)
        x_test = [x[test] - m for x, m in zip(xs, means, strict=True)]
        split[:, test] = np.asarray(model.predict(x_test, split=True))
        pred[test] = split[:, test].sum(0) + y_mean
        deltas += np.asarray(model.deltas_) / len(folds)
    from himalaya.scoring import r2_score_split

    # himalaya's product-measure split of R² over bands, on centred out-of-fold predictions
    yc = y - y.mean(0)
    r2_split = np.asarray(r2_score_split(yc, split - split.mean(1, keepdims=True)))
    r2 = r2_score_columns(y, pred)
    return BandedResult(r2, pearson_columns(y, pred), r2_split, deltas, list(spaces))


def _scaled(x: np.ndarray) -> np.ndarray:
    """Centred and scaled to unit total variance: each space weighs the same in a union."""
    xc = x - x.mean(0)
    norm = np.sqrt((xc**2).sum() / len(xc))
    if norm == 0:
        raise CortexmapError("A feature space is constant across stimuli; drop it.")
    return xc / norm


def variance_partition(
    feature_spaces: dict[str, Any],
    responses: Any,
    **fit_kwargs: Any,
) -> pd.DataFrame:
    """Unique and shared cross-validated R² of 2 or 3 feature spaces, per voxel.

    One ridge model (:func:`fit_encoding`, ``fit_kwargs`` passed on) per non-empty union of
    spaces; each space is centred and scaled to unit total variance before concatenation.
    Columns: ``r2_<union>`` for every union (names joined by "+"), ``unique_<A>`` for each
    space, ``shared_<A>&<B>`` (shared by exactly those spaces) and, for three spaces,
    ``shared_<A>&<B>&<C>``; the parts of a voxel sum to the R² of the union of all spaces.
    Parts can be negative (estimation noise), as in every variance-partitioning study.
    """
    y, runs = _check_responses(responses)
    spaces = _spaces(feature_spaces, len(y))
    names = list(spaces)
    if len(names) not in (2, 3):
        raise CortexmapError(f"Variance partitioning takes 2 or 3 feature spaces; got {names}.")
    scaled = {k: _scaled(v) for k, v in spaces.items()}
    data = runs if runs is not None else y
    r2: dict[frozenset, np.ndarray] = {}
    for k in range(1, len(names) + 1):
        for combo in itertools.combinations(names, k):
            x = np.concatenate([scaled[c] for c in combo], axis=1)
            r2[frozenset(combo)] = fit_encoding(x, data, **({"progress": False} | fit_kwargs)).r2
    df = pd.DataFrame({"r2_" + "+".join(c for c in names if c in key): v
                       for key, v in r2.items()})
    full = frozenset(names)
    for a in names:  # unique: what the union loses without a
        df[f"unique_{a}"] = r2[full] - r2[full - {a}]
    if len(names) == 2:
        a, b = names
        df[f"shared_{a}&{b}"] = r2[frozenset([a])] + r2[frozenset([b])] - r2[full]
    else:
        for a, b in itertools.combinations(names, 2):
            (c,) = full - {a, b}
            df[f"shared_{a}&{b}"] = (r2[frozenset([a, c])] + r2[frozenset([b, c])]
                                     - r2[frozenset([c])] - r2[full])
        a, b, c = names
        df[f"shared_{a}&{b}&{c}"] = (
            r2[frozenset([a])] + r2[frozenset([b])] + r2[frozenset([c])]
            - r2[frozenset([a, b])] - r2[frozenset([a, c])] - r2[frozenset([b, c])] + r2[full])
    return df

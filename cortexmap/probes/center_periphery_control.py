"""Controls of the center-periphery findings: the same statistics on an untrained copy of the
network, and the background-selectivity relation with the object's position partialled out.

The bundled objects sit near the image centre, so central receptive fields see more object and
peripheral ones more background in *any* network, trained or not. Two controls separate a learnt
layout from that stimulus layout:

- the untrained copy (same architecture, re-initialised): a finding needs trained > untrained
  with a bootstrap CI of the difference above 0;
- object coverage: the fraction of each receptive field the object covers, per position; the
  BSI-eccentricity relation is also reported as a partial correlation controlling for it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def partial_corr(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    """Pearson correlation of x and y after regressing both on z (and an intercept).

    x, y, z: (n,) finite arrays. NaN when a residual is constant.
    """
    design = np.column_stack([np.ones_like(z), z])
    coef_x = np.linalg.lstsq(design, x, rcond=None)[0]
    coef_y = np.linalg.lstsq(design, y, rcond=None)[0]
    rx, ry = x - design @ coef_x, y - design @ coef_y
    den = np.sqrt((rx @ rx) * (ry @ ry))
    return float(rx @ ry / den) if den > 1e-12 else np.nan


def _relation(obj: np.ndarray, bg: np.ndarray, ecc: np.ndarray, cov: np.ndarray
              ) -> tuple[float, float]:
    """(corr(BSI, ecc), partial corr controlling coverage) from image-mean responses (C, h, w),
    eccentricity (h, w) and object coverage (h, w)."""
    den = np.abs(bg) + np.abs(obj)
    ok = den > 1e-12 * max(float(den.max(initial=0.0)), 1e-300)
    if ok.sum() < 4:
        return np.nan, np.nan
    bsi = (bg[ok] - obj[ok]) / den[ok]
    e = np.broadcast_to(ecc, obj.shape)[ok]
    c = np.broadcast_to(cov, obj.shape)[ok]
    if np.ptp(bsi) == 0 or np.ptp(e) == 0:
        return np.nan, np.nan
    return float(np.corrcoef(bsi, e)[0, 1]), partial_corr(bsi, e, c)


def bsi_relation(
    resp_object: dict[str, np.ndarray], resp_background: dict[str, np.ndarray],
    eccentricity: dict[str, np.ndarray], coverage: dict[str, np.ndarray],
    n_boot: int = 500, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """BSI-eccentricity relation per layer, observed and bootstrapped over images.

    resp_object / resp_background: layer -> (n_images, C, h, w) responses to object-only and
    background-only renderings; eccentricity: layer -> (h, w); coverage: layer -> (n_images, h, w)
    object coverage of each position's receptive field per image.
    Returns observed (n_layers, 2) and bootstrap (n_boot, n_layers, 2) arrays of
    [corr(BSI, eccentricity), partial corr controlling object coverage]. The image resamples
    depend only on ``seed`` and the number of images, so two networks bootstrapped with the same
    seed are paired.
    """
    layers = list(resp_object)
    n = len(next(iter(resp_object.values())))
    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(n_boot)])
    observed = np.empty((len(layers), 2))
    boot = np.empty((n_boot, len(layers), 2))
    for j, layer in enumerate(layers):
        obj = np.asarray(resp_object[layer], np.float64)
        bg = np.asarray(resp_background[layer], np.float64)
        cov = np.asarray(coverage[layer], np.float64)
        observed[j] = _relation(obj.mean(0), bg.mean(0), eccentricity[layer], cov.mean(0))
        w = counts / n
        mo = np.tensordot(w, obj, axes=1)
        mb = np.tensordot(w, bg, axes=1)
        mc = np.tensordot(w, cov, axes=1)
        for b in range(n_boot):
            boot[b, j] = _relation(mo[b], mb[b], eccentricity[layer], mc[b])
    return observed, boot


def ci(samples: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile CI of finite bootstrap samples (NaN, NaN when none)."""
    s = np.asarray(samples, np.float64)
    s = s[np.isfinite(s)]
    if not len(s):
        return np.nan, np.nan
    lo, hi = np.percentile(s, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def relation_table(layers: list[str], trained: tuple[np.ndarray, np.ndarray],
                   untrained: tuple[np.ndarray, np.ndarray], alpha: float = 0.05
                   ) -> pd.DataFrame:
    """Per layer and pooled over layers ("mean"): trained and untrained corr(BSI, eccentricity)
    and partial correlation (object coverage controlled), and the trained - untrained difference
    with its paired bootstrap CI."""
    (obs_t, boot_t), (obs_u, boot_u) = trained, untrained
    rows = []
    names = [*layers, "mean"]
    for j, layer in enumerate(names):
        pick = (slice(None), j) if layer != "mean" else None
        for k, stat in enumerate(("raw", "partial")):
            if pick is None:
                t, u = np.nanmean(obs_t[:, k]), np.nanmean(obs_u[:, k])
                diff = np.nanmean(boot_t[:, :, k], 1) - np.nanmean(boot_u[:, :, k], 1)
            else:
                t, u = obs_t[j, k], obs_u[j, k]
                diff = boot_t[:, j, k] - boot_u[:, j, k]
            lo, hi = ci(diff, alpha)
            rows.append({"layer": layer, "statistic": stat, "trained": float(t),
                         "untrained": float(u), "difference": float(t - u),
                         "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)

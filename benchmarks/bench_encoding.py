"""Encoding models: cortexmap's shared-SVD ridge against per-voxel scikit-learn RidgeCV.

1000 stimuli x 4096 features, 5 outer folds, 10 alphas (1e-2 .. 1e7), alpha chosen per voxel by
leave-one-out error inside each training fold. Peers, measured in the same run on the same
data: (a) the loop a user writes, one ``RidgeCV`` per voxel and fold, on a 24-voxel subset;
(b) one ``RidgeCV(alpha_per_target=True)`` per fold for all voxels of the subset (scikit-learn's
own vectorised path). cortexmap runs the same subset, then 20,000 simulated voxels (chunked,
responses generated inside each chunk), whose time is scaled to the 2 mm MNI152 mask
(the count is measured from the mask) to estimate a whole-brain run on this machine.

Run alone: ``.venv/bin/python -m benchmarks.run_all bench_encoding``.
"""

from __future__ import annotations

import os

import numpy as np

from benchmarks.bench_rsa import _best_cpu

N, P, FOLDS = 1000, 4096, 5
ALPHAS = tuple(10.0 ** np.arange(-2, 8))
N_LOOP, N_WIDE = 24, 20000


def _features() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((N, 64))
    x = np.maximum(latent @ rng.standard_normal((64, P)) + rng.standard_normal((N, P)), 0)
    return x, latent


def _voxels(latent: np.ndarray, sl: slice) -> np.ndarray:
    """Simulated responses of voxels ``sl``: a random mix of the latent factors plus noise of
    a voxel-specific level (so the best alpha differs between voxels)."""
    rng = np.random.default_rng(sl.start)
    k = sl.stop - sl.start
    w = rng.standard_normal((latent.shape[1], k))
    noise = rng.standard_normal((latent.shape[0], k)) * np.geomspace(0.5, 50, k)
    return latent @ w + noise


def whole_brain() -> str:
    """One measured whole-brain run (every voxel of the 2 mm MNI152 mask), no peers: the
    absolute target. ``CORTEXMAP_BENCH_ENCODING_WHOLE=1 .venv/bin/python -m benchmarks.run_all
    bench_encoding`` on an otherwise idle machine."""
    from cortexmap.brain.phantom import mni_mask
    from cortexmap.encoding import fit_encoding_chunked

    x, latent = _features()
    n_brain = int(np.asarray(mni_mask(2).dataobj).astype(bool).sum())
    lines = ["## Encoding models: whole brain, measured", "",
             "| run | wall s (CPU s) | voxels | median chosen alpha |", "|---|---|---|---|"]
    for selection in ("float32", "float64"):
        t, c = _best_cpu(lambda s=selection: fit_encoding_chunked(
            x, lambda sl: _voxels(latent, sl), n_brain, alphas=ALPHAS, chunk_voxels=5000,
            scheduler="serial", selection=s, progress=False))
        res = _best_cpu.last
        lines.append(f"| cortexmap `fit_encoding_chunked`, LOO selection in {selection}, one "
                     f"process (BLAS threads) | {t:.1f} ({c:.1f}) | {n_brain:,} | "
                     f"{np.median(res.alpha):.0e} |")
    return "\n".join(lines)


def run() -> str:
    if os.environ.get("CORTEXMAP_BENCH_ENCODING_WHOLE"):
        return whole_brain()
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score

    from cortexmap.brain.phantom import mni_mask
    from cortexmap.encoding import fit_encoding, fit_encoding_chunked
    from cortexmap.utils.ridge import make_folds

    x, latent = _features()
    y = _voxels(latent, slice(0, N_LOOP))
    folds = make_folds(N, FOLDS, seed=0)

    def loop():
        pred = np.empty_like(y)
        for j in range(y.shape[1]):
            for train, test in folds:
                m = RidgeCV(alphas=ALPHAS).fit(x[train], y[train, j])
                pred[test, j] = m.predict(x[test])
        return r2_score(y, pred, multioutput="raw_values")

    def vectorised():
        pred = np.empty_like(y)
        for train, test in folds:
            m = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(x[train], y[train])
            pred[test] = m.predict(x[test])
        return r2_score(y, pred, multioutput="raw_values")

    t_ours, c_ours = _best_cpu(lambda: fit_encoding(x, y, alphas=ALPHAS, progress=False).r2)
    ours = _best_cpu.last
    t_loop, c_loop = _best_cpu(loop)
    ref = _best_cpu.last
    t_vec, c_vec = _best_cpu(vectorised)
    ref_vec = _best_cpu.last
    n_brain = int(np.asarray(mni_mask(2).dataobj).astype(bool).sum())
    lines = [
        "## Encoding models: ridge per voxel, 1000 stimuli x 4096 features, 5 folds, 10 alphas",
        "",
        "Command: `.venv/bin/python -m benchmarks.run_all bench_encoding`. Peers measured in "
        "the same run on the same data: scikit-learn `RidgeCV` per voxel and fold (the loop a "
        "user writes), and `RidgeCV(alpha_per_target=True)` per fold.",
        "",
        "| task | wall s (CPU s) | speed-up of cortexmap wall (CPU) | max abs diff of R² |",
        "|---|---|---|---|",
        f"| cortexmap `fit_encoding`, {N_LOOP} voxels | {t_ours:.1f} ({c_ours:.1f}) | | |",
        f"| sklearn RidgeCV loop per voxel, {N_LOOP} voxels | {t_loop:.1f} ({c_loop:.1f}) | "
        f"**{t_loop / t_ours:.0f}x** ({c_loop / c_ours:.0f}x) | {np.abs(ours - ref).max():.1e} |",
        f"| sklearn RidgeCV(alpha_per_target=True) per fold, {N_LOOP} voxels | {t_vec:.1f} "
        f"({c_vec:.1f}) | {t_vec / t_ours:.1f}x ({c_vec / c_ours:.1f}x) | "
        f"{np.abs(ours - ref_vec).max():.1e} |",
    ]
    n_wide = int(os.environ.get("CORTEXMAP_BENCH_ENCODING_VOXELS", N_WIDE))
    for selection in ("float64", "float32"):
        t, c = _best_cpu(lambda s=selection: fit_encoding_chunked(
            x, lambda sl: _voxels(latent, sl), n_wide, alphas=ALPHAS, chunk_voxels=5000,
            scheduler="serial", selection=s, progress=False))
        # per-voxel cost without the shared SVDs (5 eigendecompositions of 800 x 800, fixed)
        t0, c0 = _best_cpu(lambda: fit_encoding_chunked(
            x, lambda sl: _voxels(latent, sl), 1, alphas=ALPHAS, chunk_voxels=1,
            scheduler="serial", progress=False))
        scale = n_brain / n_wide
        lines.append(
            f"| cortexmap, {n_wide:,} simulated voxels, LOO selection in {selection} | "
            f"{t:.1f} ({c:.1f}) | whole brain ({n_brain:,} voxels, 2 mm) estimated "
            f"{(t0 + (t - t0) * scale) / 60:.1f} min wall ({(c0 + (c - c0) * scale) / 60:.1f} "
            "min CPU) | |")
    lines += [
        "",
        "The loop refits the SVD of the same features for every voxel; cortexmap decomposes "
        "each training fold once and reuses it for every voxel and alpha. Whole-brain "
        "estimates scale the measured chunked run linearly in voxels (the cost per voxel is "
        "10 products of the 800 x 800 fold basis with the voxels' responses per fold); "
        "simulated responses are generated inside each chunk, as a reader of a zarr/NIfTI "
        "store would load them. Target: whole brain under 5 min on 2 cores.",
    ]
    return "\n".join(lines)

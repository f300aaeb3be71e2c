"""Universal dimensions: batched closed-form ridge vs a naive per-pair sklearn loop, and scaling.

Peer: for every (source, target network) pair, scikit-learn ``RidgeCV`` (same alphas, alpha per
target, same folds) refit from scratch, which is how the analysis is usually scripted. Ours: one
SVD per (source, fold) reused for all targets and alphas. Scaling: 4, 8 and 16 networks on a
Dask LocalCluster, reported relative to 4 networks.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.linear_model import RidgeCV

from cortexmap.universal.dimensions import principal_dimensions, universality
from cortexmap.utils.ridge import DEFAULT_ALPHAS, column_correlations, make_folds

N_IMAGES, N_UNITS, N_DIMS = 300, 2000, 50


def _networks(n_nets: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(N_IMAGES, 10))
    return {
        f"net{i}": np.concatenate([shared, rng.normal(size=(N_IMAGES, 20))], 1)
        @ rng.normal(size=(30, N_UNITS)) + rng.normal(size=(N_IMAGES, N_UNITS))
        for i in range(n_nets)
    }


def _naive(acts, dims, folds) -> np.ndarray:
    out = []
    for t, d in dims.items():
        for s, x in acts.items():
            if s == t:
                continue
            pred = np.empty_like(d.scores)
            for train, test in folds:
                model = RidgeCV(alphas=DEFAULT_ALPHAS, alpha_per_target=True)
                pred[test] = model.fit(x[train], d.scores[train]).predict(x[test])
            out.append(column_correlations(pred, d.scores))
    return np.concatenate(out)


def _timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def run() -> str:
    acts = _networks(6)
    dims = {n: principal_dimensions(a, N_DIMS, n) for n, a in acts.items()}
    folds = make_folds(N_IMAGES, 5)
    t_ours, table = _timed(lambda: universality(acts, dims, progress=False))
    t_naive, naive_r = _timed(lambda: _naive(acts, dims, folds))
    ours_r = np.concatenate([
        table.loc[table.network == t, f"r_from_{s}"].to_numpy()
        for t in dims for s in acts if s != t
    ])
    max_diff = float(np.abs(ours_r - naive_r).max())

    from dask.distributed import Client, LocalCluster

    scaling = []
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        universality(acts, dims, client=client, progress=False)  # warm up the workers
        for n_nets in (4, 8, 16):
            a = _networks(n_nets)
            d = {n: principal_dimensions(x, N_DIMS, n) for n, x in a.items()}
            t, _ = _timed(lambda a=a, d=d: universality(a, d, client=client, progress=False))
            scaling.append((n_nets, t))
    base = scaling[0][1]
    rows = "\n".join(
        f"| {n} | {n * (n - 1)} | {t / base:.2f}x |" for n, t in scaling
    )
    return (
        "## Universal dimensions: cross-network ridge regression\n\n"
        f"Data: {N_IMAGES} images x {N_UNITS} units per network, {N_DIMS} principal dimensions "
        "per network, 5 folds, 9 alphas chosen per target by leave-one-out.\n\n"
        f"- 6 networks, batched closed-form ridge vs per-pair scikit-learn RidgeCV: "
        f"**{t_naive / t_ours:.1f}x faster** (max |r difference| {max_diff:.1e}).\n\n"
        "Scaling on a Dask LocalCluster (2 workers), time relative to 4 networks:\n\n"
        "| networks | source->target pairs | time vs 4 networks |\n|---|---|---|\n" + rows
    )


if __name__ == "__main__":
    print(run())

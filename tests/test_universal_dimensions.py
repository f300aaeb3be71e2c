import numpy as np
import pytest
from scipy import stats

from cortexmap.errors import CortexmapError
from cortexmap.universal.dimensions import (
    brain_similarity,
    principal_dimensions,
    ranked_dimensions,
    universality,
)
from cortexmap.utils.ridge import make_folds


def planted_networks(n_images=150, n_nets=4, n_units=120, seed=0):
    """Networks sharing 3 latent dimensions, each with 3 dimensions of its own.

    Variances interleave (shared 10, 5, 2.2; specific 7.5, 3.3, 1.2) so principal dimensions of a
    network are a mix of ranks: universality, not variance, must find the shared ones.
    """
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(n_images, 3)) * np.sqrt([10.0, 5.0, 2.2])
    nets = {}
    for i in range(n_nets):
        own = rng.normal(size=(n_images, 3)) * np.sqrt([7.5, 3.3, 1.2])
        latent = np.concatenate([shared, own], axis=1)
        mixing = np.linalg.qr(rng.normal(size=(n_units, 6)))[0].T  # orthonormal rows
        nets[f"net{i}"] = latent @ mixing + 0.05 * rng.normal(size=(n_images, n_units))
    return nets, shared


def _shared_r2(scores, shared):
    coef, *_ = np.linalg.lstsq(shared, scores, rcond=None)
    resid = scores - shared @ coef
    return 1 - resid.var(0) / scores.var(0)


def test_universality_ranks_planted_shared_dimensions_first():
    nets, shared = planted_networks()
    dims = {n: principal_dimensions(a, 6, n) for n, a in nets.items()}
    table = universality(nets, dims, n_folds=5, progress=False)
    for name in nets:
        top3 = ranked_dimensions(table, name)[:3]
        r2 = _shared_r2(dims[name].scores, shared)
        assert set(top3) == set(np.argsort(-r2)[:3])
        sub = table[table.network == name].set_index("dim")
        # finite samples mix shared and own dimensions of similar variance a little
        assert sub.loc[top3, "universality"].min() > 0.75
        assert sub.drop(index=top3)["universality"].max() < 0.5
        gap = sub.loc[top3, "universality"].min() - sub.drop(index=top3)["universality"].max()
        assert gap > 0.3


def test_brain_similarity_follows_universality_when_brain_carries_shared_dims():
    nets, shared = planted_networks(seed=1)
    rng = np.random.default_rng(5)
    brain = shared @ rng.normal(size=(3, 80)) + 1.0 * rng.normal(size=(150, 80))
    dims = {n: principal_dimensions(a, 6, n) for n, a in nets.items()}
    table = universality(nets, dims, progress=False)
    table["brain_similarity"] = brain_similarity(brain, dims)
    rho = stats.spearmanr(table.universality, table.brain_similarity).statistic
    assert rho > 0.7


def test_universality_parallel_on_dask_equals_serial():
    from dask.distributed import Client, LocalCluster

    nets, _ = planted_networks(n_images=60, n_nets=3, n_units=40)
    dims = {n: principal_dimensions(a, 4, n) for n, a in nets.items()}
    serial = universality(nets, dims, progress=False)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        parallel = universality(nets, dims, client=client, progress=False)
    np.testing.assert_allclose(parallel.universality, serial.universality, atol=1e-12)


def test_bad_input_errors():
    nets, _ = planted_networks(n_images=40, n_nets=2, n_units=30)
    dims = {n: principal_dimensions(a, 4, n) for n, a in nets.items()}
    uneven = {"net0": nets["net0"], "net1": nets["net1"][:30]}
    with pytest.raises(CortexmapError, match="different numbers of images"):
        universality(uneven, dims, progress=False)
    with pytest.raises(CortexmapError, match="4 images but 5 cross-validation folds"):
        make_folds(4, 5)
    with pytest.raises(CortexmapError, match="only 29 principal dimensions"):
        principal_dimensions(nets["net0"], 50, "net0")
    with pytest.raises(CortexmapError, match="Brain responses cover 10 images"):
        brain_similarity(np.ones((10, 5)), dims)


@pytest.mark.parametrize("n_features", [300, 20])
def test_closed_form_ridge_equals_sklearn_ridgecv_per_target(n_features):
    from sklearn.linear_model import RidgeCV

    from cortexmap.utils.ridge import DEFAULT_ALPHAS, ridge_cv_predict

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, n_features))
    noise = rng.normal(size=(60, 4)) * np.array([0.1, 1, 10, 100])  # different best alphas
    y = x[:, :5] @ rng.normal(size=(5, 4)) + noise
    folds = make_folds(60, 5)
    ours = ridge_cv_predict(x, y, folds)
    ref = np.empty_like(y)
    for train, test in folds:
        model = RidgeCV(alphas=DEFAULT_ALPHAS, alpha_per_target=True).fit(x[train], y[train])
        ref[test] = model.predict(x[test])
    np.testing.assert_allclose(ours, ref, atol=1e-8)

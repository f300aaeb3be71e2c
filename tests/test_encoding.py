"""Encoding models against scikit-learn RidgeCV and himalaya, noise ceilings, partitioning."""

import nibabel as nib
import numpy as np
import pytest

from cortexmap.encoding import (
    fit_banded,
    fit_encoding,
    fit_encoding_chunked,
    noise_ceiling,
    variance_partition,
)
from cortexmap.encoding.banded import banded_model
from cortexmap.encoding.model import group_encoding
from cortexmap.errors import CortexmapError
from cortexmap.utils.ridge import DEFAULT_ALPHAS, make_folds


def _data(seed=0, n=80, p=120, v=30):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    w = rng.normal(size=(p, v)) * (rng.random(p) < 0.1)[:, None]
    y = x @ w + rng.normal(size=(n, v)) * np.geomspace(0.3, 30, v)  # different best alphas
    return x, y


def _mask(n_vox, seed=0):
    rng = np.random.default_rng(seed)
    m = np.zeros((8, 8, 8), dtype=np.uint8)
    m.ravel()[np.sort(rng.choice(512, n_vox, replace=False))] = 1
    return nib.Nifti1Image(m, np.diag([3.0, 3.0, 3.0, 1.0]))


def test_equals_sklearn_ridgecv_per_voxel_alpha():
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score

    x, y = _data()
    res = fit_encoding(x, y, n_folds=5, seed=3, chunk_voxels=7, progress=False)
    pred = np.empty_like(y)
    log_alpha = np.zeros(y.shape[1])
    for train, test in make_folds(len(y), 5, seed=3):
        m = RidgeCV(alphas=DEFAULT_ALPHAS, alpha_per_target=True).fit(x[train], y[train])
        pred[test] = m.predict(x[test])
        log_alpha += np.log10(m.alpha_)
    np.testing.assert_allclose(res.r2, r2_score(y, pred, multioutput="raw_values"), atol=1e-6)
    want_r = [np.corrcoef(y[:, j], pred[:, j])[0, 1] for j in range(y.shape[1])]
    np.testing.assert_allclose(res.r, want_r, atol=1e-6)
    np.testing.assert_allclose(np.log10(res.alpha), log_alpha / 5, atol=1e-9)
    assert len(set(np.round(np.log10(res.alpha), 3))) > 2  # alphas really differ per voxel


def test_chunked_source_and_dask_equal_in_memory():
    x, y = _data(1, v=12)
    ref = fit_encoding(x, y, progress=False)
    got = fit_encoding_chunked(x, lambda sl: y[:, sl], y.shape[1], chunk_voxels=5,
                               scheduler="serial", progress=False)
    np.testing.assert_allclose(got.r2, ref.r2, atol=1e-12)
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        dask_res = fit_encoding(x, y, chunk_voxels=5, client=client, progress=False)
    np.testing.assert_allclose(dask_res.r2, ref.r2, atol=1e-12)


def test_noise_ceiling_matches_the_simulated_signal_share():
    rng = np.random.default_rng(2)
    n_runs, n, v = 4, 5000, 6
    signal_sd = np.array([0.0, 0.25, 0.5, 1.0, 2.0, 4.0])
    signal = rng.normal(size=(n, v)) * signal_sd
    runs = signal + rng.normal(size=(n_runs, n, v))
    want = signal_sd**2 / (signal_sd**2 + 1.0 / n_runs)
    np.testing.assert_allclose(noise_ceiling(runs), want, atol=0.05)  # ~2 SE
    with pytest.raises(CortexmapError, match="n_runs >= 2"):
        noise_ceiling(runs[:1])


def test_normalised_scores_near_one_for_the_true_model():
    rng = np.random.default_rng(4)
    n, p, v = 1000, 10, 8
    x = rng.normal(size=(n, p))
    signal = x @ rng.normal(size=(p, v))
    runs = signal + rng.normal(size=(3, n, v)) * np.linspace(1, 6, v)
    res = fit_encoding(x, runs, progress=False)
    assert res.noise_ceiling is not None
    np.testing.assert_allclose(res.r2_norm, 1.0, atol=0.1)
    np.testing.assert_allclose(res.r_norm, 1.0, atol=0.08)
    assert res.r2[0] > res.r2[-1]  # raw R² falls with noise, normalised R² does not


def test_banded_equals_direct_himalaya():
    rng = np.random.default_rng(5)
    n = 90
    a, b = rng.normal(size=(n, 20)), rng.normal(size=(n, 40))
    y = a[:, :3] @ rng.normal(size=(3, 6)) + 0.3 * rng.normal(size=(n, 6))
    res = fit_banded({"a": a, "b": b}, y, n_folds=3, n_iter=8, seed=1)
    pred = np.empty_like(y)
    for train, test in make_folds(n, 3, seed=1):
        ma, mb, my = a[train].mean(0), b[train].mean(0), y[train].mean(0)
        m = banded_model(n_iter=8, seed=1).fit([a[train] - ma, b[train] - mb], y[train] - my)
        pred[test] = m.predict([a[test] - ma, b[test] - mb]) + my
    ss = ((y - y.mean(0)) ** 2).sum(0)
    np.testing.assert_allclose(res.r2, 1 - ((y - pred) ** 2).sum(0) / ss, atol=1e-6)
    assert (res.r2_split[0] > res.r2_split[1]).all()  # y depends on band a only
    assert np.allclose(res.r2_split.sum(0), res.r2, atol=0.05)  # up to per-fold intercepts
    assert list(res.to_frame().columns) == ["r2", "r", "r2_a", "r2_b"]


@pytest.mark.parametrize("k", [2, 3])
def test_variance_partition_recovers_planted_unique_variance(k):
    rng = np.random.default_rng(6)
    n = 200
    spaces = {name: rng.normal(size=(n, 8)) for name in "ABC"[:k]}
    y = np.column_stack([spaces["A"] @ rng.normal(size=8), spaces["B"] @ rng.normal(size=8),
                         spaces["A"] @ rng.normal(size=8) + spaces["B"] @ rng.normal(size=8)])
    y = y + 0.5 * rng.normal(size=y.shape)
    df = variance_partition(spaces, y, progress=False)
    parts = [c for c in df.columns if c.startswith(("unique_", "shared_"))]
    assert len(parts) == (3 if k == 2 else 7)
    full = "r2_" + "+".join(spaces)
    np.testing.assert_allclose(df[parts].sum(1), df[full], atol=1e-12)
    assert df["unique_A"][0] > 0.7 and abs(df["unique_B"][0]) < 0.05
    assert df["unique_B"][1] > 0.7 and abs(df["unique_A"][1]) < 0.05
    assert df["unique_A"][2] > 0.2 and df["unique_B"][2] > 0.2
    with pytest.raises(CortexmapError, match="2 or 3"):
        variance_partition({**spaces, "D": spaces["A"], "E": spaces["A"]}, y)


def test_maps_save_and_group(tmp_path):
    x, y = _data(7, v=40)
    runs = [y + np.random.default_rng(s).normal(size=(2,) + y.shape) for s in range(6)]
    mask = _mask(40)
    results = [fit_encoding(x, r, mask=mask, subject=f"sub-{s}", progress=False)
               for s, r in enumerate(runs)]
    img = results[0].img("r2_norm")
    assert img.shape == (8, 8, 8)
    out = results[0].save(tmp_path / "enc")
    assert {p.name for p in out.iterdir()} >= {"r2.nii.gz", "r2_norm.nii.gz", "voxels.parquet",
                                                "summary.csv", "provenance.json"}
    g = group_encoding(results, "r", n_perm=100)
    assert g.mean.shape[0] <= 40 and g.n_subjects == 6 and g.exact
    sig = g.significant(0.05, "fwe")  # 6 subjects: min exact p = 1/64
    assert 0.2 < sig.mean() < 0.95 and g.mean[sig].min() > np.median(g.mean[~sig])


def test_errors():
    x, y = _data(8)
    with pytest.raises(CortexmapError, match="same stimulus order"):
        fit_encoding(x[:-1], y)
    with pytest.raises(CortexmapError, match="NaN"):
        fit_encoding(x, np.where(y > 3, np.nan, y))
    with pytest.raises(CortexmapError, match="alphas"):
        fit_encoding(x, y, alphas=[-1.0])
    with pytest.raises(CortexmapError, match="mask has"):
        fit_encoding(x, y, mask=_mask(5))
    with pytest.raises(CortexmapError, match="noise ceiling"):
        fit_encoding(x, y, progress=False).map("r2_norm")
    with pytest.raises(CortexmapError, match="at least two"):
        fit_banded({"a": x}, y)

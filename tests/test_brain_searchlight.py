"""Searchlight: equality with rsatoolbox, ranks, bad inputs, dask path."""

import nibabel as nib
import numpy as np
import pytest
from scipy.stats import rankdata

from cortexmap.brain import BrainMasker, load_subject, make_spheres, searchlight
from cortexmap.brain.searchlight import _chunk_scores_torch, _voxel_major, chunk_scores, fast_ranks
from cortexmap.errors import CortexmapError
from cortexmap.rsa import compute_rdms

AFF = np.diag([3.0, 3.0, 3.0, 1.0])
SHAPE = (9, 10, 8)
N_COND = 7


@pytest.fixture(scope="module")
def volume():
    rng = np.random.default_rng(0)
    mask = np.zeros(SHAPE, bool)
    mask[1:-1, 1:-1, 1:-1] = True
    mask[4:6, 2:4, 3] = False
    data = rng.standard_normal((2 * N_COND, *SHAPE)) + 5.0  # 2 runs; offset tests centring
    events = np.tile(np.arange(N_COND), 2)
    n_pairs = N_COND * (N_COND - 1) // 2
    models = {f"m{i}": rng.random(n_pairs) for i in range(3)}
    models["tied"] = np.round(models["m0"] * 3)  # a model with ties (rank averaging)
    return mask, data, events, models


def _rsatoolbox(mask, data, events, models, method, threshold, truncate):
    from rsatoolbox.inference import eval_fixed
    from rsatoolbox.model import ModelFixed
    from rsatoolbox.rdm import RDMs as RtbRDMs
    from rsatoolbox.util.searchlight import (
        evaluate_models_searchlight,
        get_searchlight_RDMs,
        get_volume_searchlight,
    )

    centers, neighbors = get_volume_searchlight(mask, radius=2, threshold=threshold,
                                                truncate_at_boundary=truncate)
    sl = get_searchlight_RDMs(data.reshape(len(data), -1), centers, neighbors, events,
                              method="correlation", verbose=False)
    ms = [ModelFixed(k, RtbRDMs(v[None])) for k, v in models.items()]
    res = evaluate_models_searchlight(sl, ms, eval_fixed, method=method)
    return centers, np.array([np.asarray(r.evaluations).ravel() for r in res])


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("method", ["spearman", "corr"])
@pytest.mark.parametrize("truncate", [False, True])
def test_equals_rsatoolbox(volume, method, truncate):
    mask, data, events, models = volume
    thr = 1.0 if not truncate else 0.5
    centers, expected = _rsatoolbox(mask, data, events, models, method, thr, truncate)
    img = nib.Nifti1Image(data.transpose(1, 2, 3, 0).astype(np.float64), AFF)
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), AFF)
    subject = load_subject(img, mask_img, conditions=[str(e) for e in events])
    # rsatoolbox's radius is in voxels (2 voxels = 6 mm); truncated spheres make its threshold
    # vacuous, i.e. our threshold 0
    out = searchlight(subject, models, radius_mm=6.0, method=method,
                      threshold=thr if not truncate else 0.0, min_voxels=1,
                      scheduler="serial", progress=False)
    pos = {v: i for i, v in enumerate(out.masker.indices)}
    got = out.maps[:, [pos[c] for c in centers]].T
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert out.n_centres == len(centers)
    # float32 Gram matrices stay within 1e-5
    out32 = searchlight(subject, models, radius_mm=6.0, method=method,
                        threshold=thr if not truncate else 0.0, min_voxels=1, dtype="float32",
                        scheduler="serial", progress=False)
    np.testing.assert_allclose(out32.maps[:, [pos[c] for c in centers]].T, expected, atol=1e-5)


def test_fast_ranks_match_scipy():
    rng = np.random.default_rng(1)
    x = np.round(rng.random((40, 200)) * 30) / 7  # many ties
    x[::2] = rng.random((20, 200))
    np.testing.assert_allclose(fast_ranks(x), rankdata(x, axis=1))
    import torch

    np.testing.assert_allclose(fast_ranks(torch.from_numpy(x)).numpy(), rankdata(x, axis=1))


def test_torch_path_equals_numpy_path(volume):
    mask, data, events, models = volume
    masker = BrainMasker(nib.Nifti1Image(mask.astype(np.uint8), AFF))
    pats = data[:N_COND].reshape(N_COND, -1)[:, masker.indices]
    spheres = make_spheres(masker, 6.0, threshold=0.0, min_voxels=1)
    from cortexmap.brain.searchlight import prepare_models

    mz = prepare_models(np.stack(list(models.values())), "spearman")
    pt = _voxel_major(pats, "correlation")
    a = chunk_scores(pt, spheres.neighbors, mz, "correlation", "spearman")
    b = _chunk_scores_torch(pt, spheres.neighbors, mz, "correlation", "spearman", "cpu")
    np.testing.assert_allclose(a, b, atol=1e-10)


def test_other_metrics_match_compute_rdms(volume):
    mask, data, _, _ = volume
    masker = BrainMasker(nib.Nifti1Image(mask.astype(np.uint8), AFF))
    pats = data[:N_COND].reshape(N_COND, -1)[:, masker.indices]
    from cortexmap.brain import searchlight_rdms

    for metric in ["correlation", "sqeuclidean", "euclidean", "cosine"]:
        rdms, spheres = searchlight_rdms(pats, 6.0, metric=metric, mask=masker.mask_img)
        k = 5
        nb = spheres.neighbors[k][spheres.neighbors[k] >= 0]
        ref = compute_rdms(pats[:, nb], metric=metric).vectors[0]
        np.testing.assert_allclose(rdms.vectors[k], ref, atol=1e-9)


def test_winner_and_save(tmp_path, volume):
    mask, data, _, models = volume
    masker = BrainMasker(nib.Nifti1Image(mask.astype(np.uint8), AFF))
    pats = data[:N_COND].reshape(N_COND, -1)[:, masker.indices]
    res = searchlight(pats, models, radius_mm=6.0, mask=masker, min_voxels=5,
                      scheduler="serial", progress=False)
    win = res.winner()
    ok = np.isfinite(res.maps).all(0)
    assert (win[ok] == np.argmax(res.maps[:, ok], 0)).all() and (win[~ok] == -1).all()
    res.save(tmp_path / "sl")
    names = sorted(p.name for p in (tmp_path / "sl").iterdir())
    assert {"r_m0.nii.gz", "winner.nii.gz", "winner.tsv", "summary.parquet",
            "provenance.json"} <= set(names)
    back = nib.load(tmp_path / "sl" / "r_m1.nii.gz").get_fdata()
    np.testing.assert_allclose(back[mask][ok], res.maps[1, ok], rtol=1e-6)


def test_dask_local_cluster_equals_serial(volume):
    mask, data, _, models = volume
    from dask.distributed import Client, LocalCluster

    masker = BrainMasker(nib.Nifti1Image(mask.astype(np.uint8), AFF))
    pats = data[:N_COND].reshape(N_COND, -1)[:, masker.indices]
    serial = searchlight(pats, models, radius_mm=6.0, mask=masker, min_voxels=5,
                         scheduler="serial", progress=False)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        par = searchlight(pats, models, radius_mm=6.0, mask=masker, min_voxels=5,
                          client=client, memory_mb=0.05, progress=False)  # many tiny chunks
    np.testing.assert_allclose(par.maps, serial.maps, equal_nan=True)


def test_bad_inputs(volume):
    mask, data, _, models = volume
    masker = BrainMasker(nib.Nifti1Image(mask.astype(np.uint8), AFF))
    pats = data[:N_COND].reshape(N_COND, -1)[:, masker.indices]
    with pytest.raises(CortexmapError, match="holds only"):  # sphere with too few voxels
        searchlight(pats, models, radius_mm=2.0, mask=masker, scheduler="serial")
    with pytest.raises(CortexmapError, match="model RDMs cover 7 conditions but the brain "
                       "data has 6"):
        searchlight(pats[:6], models, mask=masker, scheduler="serial")
    with pytest.raises(CortexmapError, match="patterns must be"):
        searchlight(pats[:, :-1], models, mask=masker, scheduler="serial")
    bad = pats.copy()
    bad[0, 3] = np.nan
    with pytest.raises(CortexmapError, match="NaN"):
        searchlight(bad, models, mask=masker, scheduler="serial")
    with pytest.raises(CortexmapError, match="method"):
        searchlight(pats, models, mask=masker, method="kendall_tau_a", scheduler="serial")
    # spheres below min_voxels are dropped and counted
    res = searchlight(pats, models, radius_mm=6.0, mask=masker, min_voxels=20,
                      scheduler="serial", progress=False)
    assert res.dropped["too_few_voxels"] > 0
    assert res.n_centres + res.dropped["too_few_voxels"] + res.dropped["below_threshold"] \
        == masker.n_voxels
    assert np.isnan(res.maps).any(axis=0).sum() == masker.n_voxels - res.n_centres

"""Group statistics: sign-flip max-stat FWE, FDR, clusters; null phantoms keep the FWE rate."""

import nibabel as nib
import numpy as np
import pytest
from scipy import stats

from cortexmap.brain import Atlas, BrainMasker, clusters, group_test, stack_maps
from cortexmap.errors import CortexmapError
from cortexmap.rsa import sign_flip_test

AFF = np.diag([3.0, 3.0, 3.0, 1.0])
AFF[:3, 3] = [-30.0, -60.0, -15.0]


def _masker(shape=(12, 12, 10)):
    return BrainMasker(nib.Nifti1Image(np.ones(shape, np.uint8), AFF))


def test_t_and_exact_p(rng):
    masker = _masker((3, 3, 2))
    v = rng.standard_normal((5, masker.n_voxels)) + 0.3
    res = group_test(v, masker, n_perm=1000, statistic="t")
    assert res.exact and len(res.null_max) == 32
    np.testing.assert_allclose(res.t, stats.ttest_1samp(v, 0).statistic)
    # brute force over all 2^5 sign patterns, voxel 0
    import itertools

    ts = []
    for s in itertools.product([1, -1], repeat=5):
        x = v[:, 0] * np.array(s)
        ts.append(x.mean() / x.std(ddof=1) * np.sqrt(5))
    assert res.p[0] == pytest.approx(np.mean(np.array(ts) >= res.t[0] - 1e-12))
    assert (res.p_fwe >= res.p - 1e-12).all()
    assert (res.q_fdr >= res.p - 1e-12).all()


def test_random_flips_agree_with_rsa_sign_flip_test(rng):
    masker = _masker((4, 4, 2))
    v = rng.standard_normal((12, masker.n_voxels)) * 0.5 + np.linspace(0, 1, masker.n_voxels)
    ours = group_test(v, masker, n_perm=4000, statistic="t", seed=1)
    ref = sign_flip_test(v, n_perm=4000, seed=2)
    assert not ours.exact
    np.testing.assert_allclose(ours.t, ref.t, rtol=1e-10)
    np.testing.assert_allclose(ours.p, ref.pvalues, atol=0.02)
    np.testing.assert_allclose(ours.p_fwe, ref.pvalues_fwe, atol=0.03)


def test_memory_blocks_do_not_change_results(rng):
    masker = _masker((6, 6, 4))
    v = rng.standard_normal((9, masker.n_voxels))
    a = group_test(v, masker, n_perm=300, seed=3)
    b = group_test(v, masker, n_perm=300, seed=3, block_mb=0.01)
    np.testing.assert_allclose(a.p_fwe, b.p_fwe)
    np.testing.assert_allclose(a.null_max, b.null_max)


def test_clusters_table_with_peaks_and_regions():
    masker = _masker()
    shape = masker.mask.shape
    stat = np.zeros(shape)
    stat[2:5, 2:5, 2:5] = 1.0
    stat[3, 3, 3] = 2.0            # peak of the big cluster
    stat[9:11, 9:11, 7] = 0.5      # small cluster
    lab = np.zeros(shape, np.int16)
    lab[0:6, 0:6, 0:6] = 1
    atlas = Atlas(nib.Nifti1Image(lab, AFF), {1: "V1"})
    flat = stat.ravel()[masker.indices]
    df = clusters(flat, flat > 0, masker, atlas)
    assert list(df["size"]) == [27, 4]
    top = df.iloc[0]
    assert top["peak_stat"] == 2.0 and top["peak_region"] == "V1"
    assert (top["peak_x"], top["peak_y"], top["peak_z"]) == (-21.0, -51.0, -6.0)
    assert top["volume_mm3"] == 27 * 27.0 and top["main_region_fraction"] == 1.0
    assert df.iloc[1]["peak_region"] == ""
    assert clusters(flat, flat > 5, masker).empty
    assert len(clusters(flat, flat > 0, masker, min_size=5)) == 1


def test_stack_maps_uses_common_voxels(rng):
    masker = _masker((4, 4, 3))
    a = rng.standard_normal(masker.n_voxels)
    b = rng.standard_normal(masker.n_voxels)
    b[:5] = np.nan
    v, common = stack_maps([masker.inverse_transform(a, fill=np.nan),
                            masker.inverse_transform(b, fill=np.nan)])
    assert v.shape == (2, masker.n_voxels - 5) and common.n_voxels == masker.n_voxels - 5


def test_bad_inputs(rng):
    masker = _masker((3, 3, 2))
    with pytest.raises(CortexmapError, match="n_subjects >= 2"):
        group_test(rng.standard_normal((1, masker.n_voxels)), masker)
    v = rng.standard_normal((4, masker.n_voxels))
    v[1, 2] = np.nan
    with pytest.raises(CortexmapError, match="NaN"):
        group_test(v, masker)
    with pytest.raises(CortexmapError, match="statistic"):
        group_test(rng.standard_normal((4, masker.n_voxels)), masker, statistic="median")
    other = BrainMasker(nib.Nifti1Image(np.ones((3, 3, 3), np.uint8), AFF))
    with pytest.raises(CortexmapError, match="grid shape"):
        stack_maps([masker.inverse_transform(np.zeros(masker.n_voxels)),
                    other.inverse_transform(np.zeros(other.n_voxels))])


@pytest.mark.slow
def test_null_phantoms_keep_nominal_fwe(tmp_path):
    """Over repeated null phantoms (snr = 0) the searchlight group test rarely finds anything:
    the family-wise false-positive rate stays at the nominal 5 %."""
    from cortexmap.brain.group import group_searchlight
    from cortexmap.brain.phantom import make_phantom, slab_mask
    from cortexmap.rsa import compute_rdms

    rng = np.random.default_rng(0)
    models = compute_rdms([rng.standard_normal((8, 20)) for _ in range(2)], names=["a", "b"])
    mask = slab_mask(3, y_max=-40.0, z_max=10.0)
    hits = []
    for seed in range(8):
        ds = make_phantom({"V1": models[0], "LOC": models[1]}, tmp_path / f"null{seed}",
                          n_subjects=6, n_runs=1, snr=0.0, seed=seed, mask=mask,
                          compress=False, progress=False)
        res = group_searchlight(ds.load(), models, atlas=ds.atlas(), n_perm=1000,
                                scheduler="serial", seed=seed, progress=False)
        # any voxel of either model significant at FWE 0.05 is a family-wise false positive
        hits.append(any(g.significant(0.05).any() for g in res.group.values()))
        assert all(len(res.tables["clusters"].query("model == @m")) == 0 or h for m, h in
                   [("a", hits[-1]), ("b", hits[-1])])
    # 16 tests at 5 %: P(more than 3 false positives) < 0.01 under a valid test
    assert sum(hits) <= 3, hits


def _skewed_null_maps(rng, masker, n_subjects, weight=0.5):
    """Null subject maps with mean 0 and a right-skewed distribution, like searchlight RDM
    correlations: a smooth chi-square field (sparse positive peaks) plus a smooth Gaussian."""
    from scipy.ndimage import gaussian_filter

    shape = masker.mask.shape

    def field():
        f = gaussian_filter(rng.standard_normal(shape), 1.0)
        return (f / f.std()).ravel()[masker.indices]

    return np.stack([weight * (field() ** 2 - 1) / np.sqrt(2) + np.sqrt(1 - weight**2) * field()
                     for _ in range(n_subjects)])


def test_max_t_keeps_fwe_on_right_skewed_null_maps():
    """The default max-t statistic keeps the family-wise error rate on skewed null maps; the max
    of the mean does not (the unflipped pattern's positive peaks beat the flipped ones)."""
    masker = _masker((12, 12, 12))
    rng = np.random.default_rng(0)
    hits = {"t": 0, "mean": 0}
    n_maps = 80
    for rep in range(n_maps):
        v = _skewed_null_maps(rng, masker, 8)
        for stat in hits:
            hits[stat] += bool(group_test(v, masker, seed=rep, statistic=stat).significant().any())
    # valid test: E = 4 of 80; P(Binomial(80, 0.05) >= 10) < 0.01
    assert hits["t"] <= 9, hits
    assert hits["mean"] >= 16, hits  # the failure this default avoids (about 0.4 here)
    assert group_test(v, masker).statistic == "t"

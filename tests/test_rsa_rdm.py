"""RDM computation and the RDMs container, checked against rsatoolbox 0.3.2 and scipy."""

import numpy as np
import pytest
import rsatoolbox
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import pdist, squareform

from cortexmap.errors import CortexmapError
from cortexmap.rsa import RDMs, compute_rdms

TOL = 1e-6


@pytest.fixture
def patterns(rng):
    # an offset shared by all patterns stresses the numerics of Gram-matrix distances
    return rng.normal(size=(12, 40)) + 5.0


@pytest.mark.parametrize("ours, theirs", [("correlation", "correlation"),
                                          ("sqeuclidean", "euclidean")])
def test_matches_rsatoolbox_calc_rdm(patterns, ours, theirs):
    ref = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(patterns), method=theirs)
    got = compute_rdms(patterns, metric=ours)
    assert got.vectors.shape == (1, 66)
    np.testing.assert_allclose(got.vectors, ref.get_vectors(), atol=TOL, rtol=0)


@pytest.mark.parametrize("ours, theirs", [("euclidean", "euclidean"), ("cosine", "cosine"),
                                          ("correlation", "correlation")])
def test_matches_scipy_pdist(patterns, ours, theirs):
    got = compute_rdms(patterns, metric=ours).vectors[0]
    np.testing.assert_allclose(got, pdist(patterns, theirs), atol=TOL, rtol=0)


def test_crossnobis_matches_rsatoolbox(rng):
    n_cond, n_runs, n_units = 6, 4, 25
    true = rng.normal(size=(n_cond, n_units))
    obs = np.concatenate([true + rng.normal(size=true.shape) for _ in range(n_runs)])
    conds = np.tile(np.arange(n_cond), n_runs)
    runs = np.repeat(np.arange(n_runs), n_cond)
    ds = rsatoolbox.data.Dataset(obs, obs_descriptors={"conds": conds, "runs": runs})
    for noise in (None, np.linalg.inv(np.cov(rng.normal(size=(200, n_units)).T))):
        ref = rsatoolbox.rdm.calc_rdm(ds, "crossnobis", descriptor="conds",
                                      cv_descriptor="runs", noise=noise)
        got = compute_rdms(obs, "crossnobis", conditions=conds, runs=runs, noise=noise)
        np.testing.assert_allclose(got.vectors, ref.get_vectors(), atol=TOL, rtol=0)
        assert got.conditions == [str(c) for c in range(n_cond)]


def test_crossnobis_is_unbiased(rng):
    # identical true patterns: crossvalidated distances scatter around 0, not above it
    obs = rng.normal(size=(5 * 6, 200))
    got = compute_rdms(obs, "crossnobis", conditions=np.tile(np.arange(5), 6),
                       runs=np.repeat(np.arange(6), 5))
    plain = compute_rdms(obs[:5], "sqeuclidean")
    assert abs(got.vectors.mean()) < 0.1 * plain.vectors.mean()


def test_stack_list_and_names(rng):
    stack = rng.normal(size=(3, 8, 20))
    got = compute_rdms(stack, names=["a", "b", "c"])
    assert got.names == ["a", "b", "c"] and got.vectors.shape == (3, 28)
    ragged = compute_rdms([stack[0], rng.normal(size=(8, 7))], metric="euclidean")
    np.testing.assert_allclose(ragged.vectors[0], pdist(stack[0]), atol=TOL)
    assert ragged.names == ["rdm0", "rdm1"]


def test_dict_of_layers_is_flattened(rng):
    acts = {"conv1": rng.normal(size=(6, 2, 3, 3)), "fc": rng.normal(size=(6, 4))}
    got = compute_rdms(acts)
    assert got.names == ["conv1", "fc"]
    np.testing.assert_allclose(got.vectors[0], pdist(acts["conv1"].reshape(6, -1), "correlation"),
                               atol=TOL)


def test_float32_and_blocking_match_float64(rng, monkeypatch):
    import cortexmap.rsa.rdm as rdm_mod

    x = (rng.normal(size=(10, 1000)) + 3).astype(np.float32)
    full = compute_rdms(x.astype(np.float64)).vectors
    monkeypatch.setattr(rdm_mod, "_BLOCK_UNITS", 64)
    np.testing.assert_allclose(compute_rdms(x).vectors, full, atol=1e-12)
    monkeypatch.setattr(rdm_mod, "_SINGLE_BLOCK_UNITS", 128)
    for metric in ("correlation", "sqeuclidean", "cosine"):
        single = compute_rdms(x, metric, precision="single").vectors
        np.testing.assert_allclose(single, compute_rdms(x, metric).vectors, atol=5e-6, rtol=1e-5)
    with pytest.raises(CortexmapError, match="precision"):
        compute_rdms(x, precision="half")


def test_rdms_container_roundtrip(tmp_path, rng):
    rdms = compute_rdms(rng.normal(size=(2, 5, 9)), names=["l1", "l2"],
                        conditions=list("abcde"))
    mats = rdms.matrices()
    assert mats.shape == (2, 5, 5)
    np.testing.assert_allclose(mats[0], squareform(rdms.vectors[0]))
    back = RDMs.from_matrices(mats, names=rdms.names, metric=rdms.metric)
    np.testing.assert_array_equal(back.vectors, rdms.vectors)
    assert rdms.subset(["l2"]).names == ["l2"] and len(rdms) == 2
    assert rdms["l1"].vectors.shape == (1, 10)
    assert rdms[np.array([False, True])].names == ["l2"] and rdms[1:].names == ["l2"]
    both = RDMs.concat([rdms, rdms.subset(["l1"])])
    assert len(both) == 3 and both.names == ["l1", "l2", "l1"]
    path = rdms.save(tmp_path / "x.npz")
    loaded = RDMs.load(path)
    np.testing.assert_array_equal(loaded.vectors, rdms.vectors)
    assert (loaded.names, loaded.metric, loaded.conditions) == (
        rdms.names, rdms.metric, rdms.conditions)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers
    with pytest.raises(CortexmapError, match="already exists"):
        rdms.save(path, overwrite=False)
    df = rdms.to_frame()
    assert len(df) == 20 and set(df.columns) >= {"rdm", "cond_i", "cond_j", "dissimilarity"}


def test_subset_conditions_marks_duplicates_nan(rng):
    rdms = compute_rdms(rng.normal(size=(6, 9)))
    sub = rdms.subset_conditions([0, 2, 2, 5])
    assert sub.n_conditions == 4
    m = sub.matrices()[0]
    assert np.isnan(m[1, 2]) and m[0, 3] == pytest.approx(rdms.matrices()[0][0, 5])


# ---- bad input -------------------------------------------------------------------------------
def test_nan_inf_rejected(rng):
    x = rng.normal(size=(5, 10))
    x[3, 7] = np.nan
    with pytest.raises(CortexmapError, match="NaN/inf.*condition 3, unit 7"):
        compute_rdms(x)
    x[3, 7] = np.inf
    with pytest.raises(CortexmapError, match="NaN/inf"):
        compute_rdms(x, metric="euclidean")


def test_too_few_conditions(rng):
    with pytest.raises(CortexmapError, match="at least 3 conditions"):
        compute_rdms(rng.normal(size=(2, 10)))


def test_constant_pattern_named(rng):
    x = rng.normal(size=(5, 10))
    x[2] = 4.0
    with pytest.raises(CortexmapError, match=r"condition\(s\) \[2\] have a constant pattern"):
        compute_rdms(x, metric="correlation")
    x[:] = 7.3  # all constant, including rounding of the mean
    with pytest.raises(CortexmapError, match=r"condition\(s\) \[0, 1, 2, 3, 4\]"):
        compute_rdms(x + np.arange(5)[:, None], metric="correlation")
    compute_rdms(x, metric="euclidean")  # fine for distances that do not normalize


def test_wrong_ndim(rng):
    with pytest.raises(CortexmapError, match="Flatten"):
        compute_rdms(rng.normal(size=(2, 3, 4, 5)))
    with pytest.raises(CortexmapError, match="2-D"):
        compute_rdms([rng.normal(size=(4, 3, 2))])


def test_mismatched_sets(rng):
    with pytest.raises(CortexmapError, match="same stimuli"):
        compute_rdms([rng.normal(size=(5, 3)), rng.normal(size=(6, 3))])


def test_crossnobis_needs_runs(rng):
    obs = rng.normal(size=(12, 5))
    conds = np.tile(np.arange(4), 3)
    with pytest.raises(CortexmapError, match="needs `runs`"):
        compute_rdms(obs, "crossnobis", conditions=conds)
    with pytest.raises(CortexmapError, match="at least 2 runs"):
        compute_rdms(obs, "crossnobis", conditions=conds, runs=np.zeros(12))
    with pytest.raises(CortexmapError, match="no measurement in run"):
        compute_rdms(obs, "crossnobis", conditions=np.r_[conds[:-1], 0],
                     runs=np.repeat([0, 1, 2], 4))


def test_unknown_metric(rng):
    with pytest.raises(CortexmapError, match="Unknown metric"):
        compute_rdms(rng.normal(size=(4, 3)), metric="manhattan")


# ---- properties ------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(3, 9), st.integers(2, 12)),
              elements=st.floats(-1e3, 1e3, allow_nan=False, width=32)))
def test_euclidean_property_matches_pdist(x):
    np.testing.assert_allclose(compute_rdms(x, "euclidean").vectors[0], pdist(x),
                               atol=1e-6 * max(1.0, np.abs(x).max()), rtol=1e-6)


def test_rdm_descriptors_select_concat_save_and_rsatoolbox(tmp_path):
    rng = np.random.default_rng(0)
    a = RDMs(rng.random((3, 6)), 4, ["a", "b", "c"], "correlation",
             descriptors={"subject": ["s1", "s2", "s1"], "region": ["IT"] * 3})
    b = RDMs(rng.random((1, 6)), 4, ["d"], "correlation")
    assert a.select(subject="s1").names == ["a", "c"]
    assert a.select(subject=["s1", "s2"], region="IT").names == ["a", "b", "c"]
    with pytest.raises(CortexmapError, match="Unknown RDM descriptor"):
        a.select(session="1")
    with pytest.raises(CortexmapError, match="No RDM matches"):
        a.select(subject="s9")
    both = RDMs.concat([a, b])
    assert both.descriptors["subject"] == ["s1", "s2", "s1", ""]
    assert a[[2, 0]].descriptors["subject"] == ["s1", "s1"]
    assert a.subset_conditions([0, 1, 1, 3]).descriptors == a.descriptors
    assert RDMs.load(a.save(tmp_path / "r.npz")).descriptors == a.descriptors
    back = RDMs.from_rsatoolbox(a.to_rsatoolbox())
    assert back.descriptors == a.descriptors and back.names == a.names
    with pytest.raises(CortexmapError, match="one value per RDM"):
        RDMs(rng.random((2, 6)), 4, descriptors={"subject": ["x"]})

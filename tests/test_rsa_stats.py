"""Permutation, bootstrap, sign-flip, FDR and rsatoolbox interop."""

import numpy as np
import pytest
import rsatoolbox
from scipy.stats import false_discovery_control

from cortexmap.errors import CortexmapError
from cortexmap.rsa import (
    RDMs,
    bootstrap_conditions,
    compare,
    compute_rdms,
    fdr,
    fdr_reject,
    from_rsatoolbox,
    permutation_test,
    sign_flip_test,
    to_rsatoolbox,
    to_rsatoolbox_dataset,
)


@pytest.fixture
def related(rng):
    """A data RDM built from model 0's geometry (plus noise) and an unrelated model 1."""
    base = rng.normal(size=(16, 30))
    data = compute_rdms(base + 0.5 * rng.normal(size=base.shape), names=["roi"])
    models = compute_rdms([base, rng.normal(size=(16, 30))], names=["true", "null"])
    return models, data


def test_permutation_detects_planted_relation(related):
    models, data = related
    res = permutation_test(models, data, "spearman", n_perm=300, seed=1)
    assert res.observed.shape == (2, 1) and res.null.shape == (300, 2, 1)
    np.testing.assert_allclose(res.observed, compare(models, data, "spearman"))
    assert res.pvalues[0, 0] == pytest.approx(1 / 301)  # nothing in the null reaches it
    assert res.pvalues[1, 0] > 0.05
    assert abs(res.null.mean()) < 0.05  # null centred on zero
    df = res.to_frame()
    assert list(df["model"]) == ["true", "null"] and {"p", "q_fdr"} <= set(df.columns)
    again = permutation_test(models, data, "spearman", n_perm=300, seed=1)
    np.testing.assert_array_equal(again.null, res.null)  # seeded


def test_permutation_null_is_a_relabelling(related):
    """Each null value equals compare() with the data RDM's conditions relabelled."""
    models, data = related
    res = permutation_test(models, data, "pearson", n_perm=5, seed=3)
    rng = np.random.default_rng(3)
    perms = rng.permuted(np.broadcast_to(np.arange(16), (5, 16)), axis=1)
    for k, p in enumerate(perms):
        shuffled = data.subset_conditions(p)
        np.testing.assert_allclose(res.null[k], compare(models, shuffled, "pearson"))


def test_permutation_is_uniform_under_h0(rng):
    """Under H0 the p-values are ~uniform: about 5 % fall below .05."""
    ps = []
    for _ in range(60):
        a = compute_rdms(rng.normal(size=(10, 8)))
        b = compute_rdms(rng.normal(size=(10, 8)))
        ps.append(permutation_test(a, b, "kendall_tau_a", n_perm=99, seed=None).pvalues[0, 0])
    ps = np.array(ps)
    assert 0.25 < ps.mean() < 0.75 and (ps < 0.05).mean() < 0.2


def test_bootstrap_ci_and_contrast(related):
    models, data = related
    res = bootstrap_conditions(models, data, "spearman", n_boot=200, seed=0)
    lo, hi = res.ci()
    assert res.samples.shape == (200, 2, 1)
    assert lo[0, 0] > 0.3 and lo[0, 0] < res.observed[0, 0] < hi[0, 0]
    assert lo[1, 0] < 0.2 < hi[0, 0]
    est, clo, chi = res.contrast_ci(np.array([[1.0], [-1.0]]))
    assert clo > 0 and clo < est < chi
    assert set(res.to_frame().columns) >= {"ci_low", "ci_high", "se"}
    with pytest.raises(CortexmapError, match="weights must have shape"):
        res.contrast_ci(np.ones(3))


def test_bootstrap_leaves_out_self_pairs(rng):
    a = compute_rdms(rng.normal(size=(8, 5)))
    res = bootstrap_conditions(a, a, "pearson", n_boot=20, seed=0)
    np.testing.assert_allclose(res.samples[~np.isnan(res.samples)], 1.0)  # no 0-diagonal leak


def test_sign_flip(rng):
    effect = np.c_[rng.normal(0.8, 0.5, size=12), rng.normal(0.0, 0.5, size=12)]
    res = sign_flip_test(effect, n_perm=2000, seed=0)
    assert res.pvalues[0] < 0.01 and res.pvalues[1] > 0.05
    assert (res.pvalues_fwe >= res.pvalues - 1e-12).all()
    with pytest.raises(CortexmapError, match="NaN"):
        sign_flip_test(np.array([[np.nan], [1.0]]))


def test_fdr_matches_scipy_and_hand_example(rng):
    p = rng.uniform(size=50) ** 3
    for method in ("bh", "by"):
        np.testing.assert_allclose(fdr(p, method), false_discovery_control(p, method=method))
    # hand-checked BH example: q_i = min_{j>=i} p_(j) m / j
    hand = fdr(np.array([0.01, 0.04, 0.03, 0.5]))
    np.testing.assert_allclose(hand, [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5])
    assert fdr_reject([0.01, 0.04, 0.03, 0.5], alpha=0.05).tolist() == [True, False, False, False]
    q = fdr(np.array([[0.01, np.nan], [0.02, 0.9]]))
    assert q.shape == (2, 2) and np.isnan(q[0, 1])
    with pytest.raises(CortexmapError, match=r"\[0, 1\]"):
        fdr([1.5])


def test_rsatoolbox_roundtrip(rng):
    rdms = compute_rdms(rng.normal(size=(2, 6, 4)), names=["a", "b"], metric="sqeuclidean",
                        conditions=list("uvwxyz"))
    rt = to_rsatoolbox(rdms)
    assert rt.n_rdm == 2 and rt.dissimilarity_measure == "squared euclidean"
    np.testing.assert_array_equal(rt.get_vectors(), rdms.vectors)
    back = from_rsatoolbox(rt)
    assert (back.names, back.metric, back.conditions) == (["a", "b"], "sqeuclidean",
                                                          list("uvwxyz"))
    assert RDMs.from_rsatoolbox(rt).n_conditions == 6 and rdms.to_rsatoolbox().n_cond == 6
    # an rsatoolbox calc_rdm result converts too, metric mapped to our name
    ds = to_rsatoolbox_dataset(rng.normal(size=(5, 3)), conditions=list("abcde"))
    conv = from_rsatoolbox(rsatoolbox.rdm.calc_rdm(ds, "euclidean", descriptor="conds"))
    assert conv.metric == "sqeuclidean" and conv.conditions == list("abcde")
    with pytest.raises(CortexmapError, match="rsatoolbox.rdm.RDMs"):
        from_rsatoolbox(np.zeros(3))

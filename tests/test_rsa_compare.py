"""RDM comparison and noise ceiling, checked against rsatoolbox 0.3.2."""

import numpy as np
import pytest
import rsatoolbox
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import kendalltau, spearmanr

from cortexmap.errors import CortexmapError
from cortexmap.rsa import RDMs, compare, compute_rdms, noise_ceiling, pool_rdms, rank_rows
from cortexmap.rsa.compare import tau_a_one_reference

TOL = 1e-6
PAIRS = [("pearson", "corr"), ("spearman", "spearman"), ("kendall_tau_a", "tau-a"),
         ("cosine", "cosine"), ("rho_a", "rho-a")]


def _with_ties(rng, shape, n_levels=None):
    v = rng.normal(size=shape)
    if n_levels:  # categorical model RDMs predict many tied dissimilarities
        v = np.floor(v * n_levels / 3)
    return v


@pytest.mark.parametrize("ours, theirs", PAIRS + [("whitened_cosine", "cosine_cov"),
                                                  ("whitened_pearson", "corr_cov")])
def test_matches_rsatoolbox(rng, ours, theirs):
    a = np.concatenate([_with_ties(rng, (3, 66)), _with_ties(rng, (2, 66), n_levels=3)])
    b = np.concatenate([_with_ties(rng, (2, 66)), _with_ties(rng, (2, 66), n_levels=2)])
    ref = rsatoolbox.rdm.compare(rsatoolbox.rdm.RDMs(a), rsatoolbox.rdm.RDMs(b), theirs)
    got = compare(RDMs(a, 12), RDMs(b, 12), ours)
    assert got.shape == (5, 4)
    np.testing.assert_allclose(got, ref, atol=TOL, rtol=0)
    # aliases, arrays, 1-D inputs and rsatoolbox objects give the same numbers
    np.testing.assert_allclose(compare(a, b, theirs), ref, atol=TOL)
    np.testing.assert_allclose(compare(a[0], rsatoolbox.rdm.RDMs(b), ours), ref[:1], atol=TOL)


def test_nan_pairs_dropped_like_rsatoolbox(rng):
    a, b = rng.normal(size=(3, 45)), rng.normal(size=(2, 45))
    a[:, [3, 10]] = np.nan
    b[:, [3, 10]] = np.nan
    for ours, theirs in PAIRS:
        ref = rsatoolbox.rdm.compare(rsatoolbox.rdm.RDMs(a), rsatoolbox.rdm.RDMs(b), theirs)
        np.testing.assert_allclose(compare(a, b, ours), ref, atol=TOL)
    with pytest.raises(CortexmapError, match="complete RDMs"):
        compare(a, b, "whitened_cosine")
    b[0, 4] = np.nan
    with pytest.raises(CortexmapError, match="different pairs"):
        compare(a, b)


def test_known_values():
    v = np.arange(1.0, 11.0)
    assert compare(v, v, "kendall_tau_a")[0, 0] == pytest.approx(1.0)
    assert compare(v, -v, "spearman")[0, 0] == pytest.approx(-1.0)
    # tau-a with ties is below 1 even for a monotone relation (unlike tau-b)
    tied = np.array([1.0, 1, 2, 2, 3, 3])
    assert compare(tied, np.arange(6.0), "kendall_tau_a")[0, 0] == pytest.approx(12 / 15)


def test_rank_rows_equals_scipy(rng):
    v = np.round(rng.normal(size=(6, 40)), 1)
    from scipy.stats import rankdata

    np.testing.assert_array_equal(rank_rows(v), rankdata(v, axis=1))


@settings(max_examples=40, deadline=None)
@given(st.integers(4, 60), st.integers(1, 6), st.integers(0, 10_000))
def test_tau_a_backends_agree_with_definition(n, levels, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, levels + 1, size=(3, n)).astype(float)
    y = rng.integers(0, levels + 2, size=n).astype(float)
    i, j = np.triu_indices(n, 1)
    brute = (np.sign(x[:, i] - x[:, j]) * np.sign(y[i] - y[j])).sum(1) / len(i)
    np.testing.assert_allclose(tau_a_one_reference(x, y, backend="scipy"), brute, atol=1e-12)
    np.testing.assert_allclose(tau_a_one_reference(x, y, backend="numpy"), brute, atol=1e-12)


def test_spearman_and_tau_b_consistency(rng):
    a, b = rng.normal(size=30), rng.normal(size=30)  # no ties: tau-a = tau-b
    assert compare(a, b, "spearman")[0, 0] == pytest.approx(spearmanr(a, b)[0])
    assert compare(a, b, "kendall_tau_a")[0, 0] == pytest.approx(kendalltau(a, b)[0])


def test_threaded_tau_a_matches_serial(rng):
    a, b = _with_ties(rng, (150, 45), n_levels=4), rng.normal(size=45)
    np.testing.assert_array_equal(compare(a, b, "tau-a", n_threads=2),
                                  compare(a, b, "tau-a", n_threads=1))


def test_mismatched_condition_counts(rng):
    a = compute_rdms(rng.normal(size=(5, 4)))
    b = compute_rdms(rng.normal(size=(6, 4)))
    with pytest.raises(CortexmapError, match="5 conditions but rdms_b has 6"):
        compare(a, b)
    with pytest.raises(CortexmapError, match="same stimuli"):
        compare(a.vectors, b.vectors)


def test_unknown_method(rng):
    with pytest.raises(CortexmapError, match="Unknown comparison method"):
        compare(rng.normal(size=10), rng.normal(size=10), "bures")
    with pytest.raises(CortexmapError, match="tau-b"):
        compare(rng.normal(size=10), rng.normal(size=10), "kendall")


@pytest.mark.parametrize("ours, theirs", PAIRS[:4])
def test_noise_ceiling_matches_rsatoolbox(rng, ours, theirs):
    truth = rng.normal(size=45)
    subjects = truth + 0.8 * rng.normal(size=(6, 45))
    ref_low, ref_up = rsatoolbox.inference.boot_noise_ceiling(
        rsatoolbox.rdm.RDMs(subjects), method=theirs)
    nc = noise_ceiling(RDMs(subjects, 10), method=ours)
    assert nc.lower == pytest.approx(ref_low, abs=TOL)
    assert nc.upper == pytest.approx(ref_up, abs=TOL)
    low, up = nc
    assert low <= up and nc.lower_per_subject.shape == (6,)


def test_noise_ceiling_behaviour(rng):
    truth = rng.normal(size=45)
    quiet = noise_ceiling(truth + 0.1 * rng.normal(size=(5, 45)))
    noisy = noise_ceiling(truth + 2.0 * rng.normal(size=(5, 45)))
    assert quiet.lower > noisy.lower and quiet.upper > 0.95
    with pytest.raises(CortexmapError, match="at least 2 subjects"):
        noise_ceiling(truth[None])
    with pytest.raises(CortexmapError, match="noise_ceiling supports"):
        noise_ceiling(truth + rng.normal(size=(3, 45)), method="whitened_cosine")
    assert pool_rdms(truth[None] + np.zeros((3, 1)), "spearman").shape == (45,)


def test_radix_sort_rows_exact_on_hard_rows(rng):
    """Rows long enough for the radix path: heavy tails, ties, values closer than the grid."""
    from cortexmap.rsa.compare import _sort_rows, _sort_rows_radix32

    n = 1500
    rows = np.concatenate([
        rng.standard_cauchy(size=(4, n)) ** 3,                    # huge dynamic range
        np.round(rng.normal(size=(4, n)), 1),                     # many ties
        1.0 + 1e-13 * rng.integers(0, 7, size=(4, n)),            # closer than the 32-bit grid
        np.full((1, n), 3.0), np.r_[[-0.0, 0.0] * (n // 2)][None],  # constant, signed zeros
        rng.normal(size=(4, n)),
    ])
    for sorter in (_sort_rows, _sort_rows_radix32):  # 16-bit cells + fixes; 32-bit fallback
        order, s = sorter(rows)
        np.testing.assert_array_equal(s, np.sort(rows, axis=1))
        np.testing.assert_array_equal(np.take_along_axis(rows, order, axis=1), s)


def test_long_vectors_match_rsatoolbox(rng):
    """92-condition RDMs (4186 pairs): radix ranks, threaded chunks and the level counter."""
    a = np.concatenate([rng.normal(size=(150, 4186)), np.round(rng.normal(size=(10, 4186)), 1)])
    cats = np.repeat(np.arange(4), 23)
    model = (cats[:, None] != cats[None, :]).astype(float)
    model += 0.5 * (np.abs(cats[:, None] - cats[None, :]) > 1)
    refs = np.stack([model[np.triu_indices(92, 1)], rng.normal(size=4186)])
    rt_a, rt_b = rsatoolbox.rdm.RDMs(a), rsatoolbox.rdm.RDMs(refs)
    for ours, theirs in (("spearman", "spearman"), ("kendall_tau_a", "tau-a")):
        want = rsatoolbox.rdm.compare(rt_a, rt_b, theirs)
        np.testing.assert_allclose(compare(a, refs, ours, n_threads=2), want, atol=TOL)
        np.testing.assert_allclose(compare(refs, a, ours, n_threads=1), want.T, atol=TOL)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["normal", "few", "clustered", "spiky"]))
def test_sort_rows_property(seed, kind):
    from scipy.stats import rankdata

    from cortexmap.rsa.compare import _sort_rows

    r = np.random.default_rng(seed)
    n = int(r.integers(512, 3000))
    v = {"normal": lambda: r.normal(size=(3, n)),
         "few": lambda: r.integers(0, 5, size=(3, n)).astype(float),
         "clustered": lambda: 1.0 + r.normal(size=(3, n)) * 10.0 ** -r.integers(5, 14),
         "spiky": lambda: np.where(r.random((3, n)) < 0.01, 1e9, r.normal(size=(3, n)))}[kind]()
    order, s = _sort_rows(v)
    np.testing.assert_array_equal(s, np.sort(v, axis=1))
    np.testing.assert_array_equal(np.take_along_axis(v, order, axis=1), s)
    np.testing.assert_array_equal(rank_rows(v), rankdata(v, axis=1))


@pytest.mark.parametrize("ours, theirs", [("spearman", "spearman"), ("rho_a", "rho-a")])
def test_untied_fast_path_matches_rsatoolbox(rng, ours, theirs):
    a = rng.normal(size=(6, 300))  # no ties: ranks are gathered, not scattered
    b = np.stack([rng.normal(size=300), np.round(rng.normal(size=300))])
    ref = rsatoolbox.rdm.compare(rsatoolbox.rdm.RDMs(a), rsatoolbox.rdm.RDMs(b), theirs)
    np.testing.assert_allclose(compare(a, b, ours), ref, atol=TOL)
    # a constant RDM gets similarity 0 and leaves the other columns intact (rsatoolbox 0.3.2
    # scrambles the whole matrix in that case: np.putmask cycles the values)
    with_const = compare(a, np.insert(b, 1, 0.5, axis=0), ours)
    np.testing.assert_allclose(with_const[:, [0, 2]], ref, atol=TOL)
    np.testing.assert_array_equal(with_const[:, 1], 0.0)

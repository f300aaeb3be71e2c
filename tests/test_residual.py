"""Residual RDMs and partial correlation: what the other layers explain is removed."""

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from cortexmap.errors import CortexmapError
from cortexmap.rsa import RDMs, compare, compute_rdms
from cortexmap.rsa.residual import partial_correlation, residual_rdms


@pytest.fixture
def layers(rng):
    """Three correlated 'layers' over 20 conditions (shared base + layer-specific parts)."""
    base = 2.0 * rng.normal(size=(20, 40))
    acts = [base + rng.normal(size=(20, 40)) * s for s in (0.7, 1.0, 1.5)]
    return compute_rdms(acts, names=["l1", "l2", "l3"], conditions=[f"c{i}" for i in range(20)])


def test_residual_is_regression_residual_and_uncorrelated_with_other_layers(layers):
    res = residual_rdms(layers)
    assert isinstance(res, RDMs) and res.names == layers.names
    assert res.n_conditions == 20 and res.conditions == layers.conditions
    assert res.metric == "residual-correlation"
    v = layers.vectors
    for k in range(3):
        others = np.delete(v, k, axis=0).T
        fit = LinearRegression().fit(others, v[k])
        expected = v[k] - fit.predict(others) + v[k].mean()
        np.testing.assert_allclose(res.vectors[k], expected, atol=1e-10)
        r = compare(res[k], np.delete(v, k, axis=0), method="pearson")
        np.testing.assert_allclose(r, 0.0, atol=1e-10)
    # natural layer RDMs correlate; residuals much less
    off = np.triu_indices(3, 1)
    assert compare(layers, layers, "pearson")[off].min() > 0.2
    assert np.abs(compare(res, res, "pearson")[off]).mean() < np.abs(
        compare(layers, layers, "pearson")[off]).mean()


def test_residual_usable_as_model_rdm_recovers_the_planted_layer(rng, layers):
    # a "region" carrying l2's geometry plus noise: plain RSA also credits l1/l3 (they
    # correlate with l2); after residualization only l2 keeps a clear positive correlation
    data = layers.vectors[1] + rng.normal(size=layers.n_pairs) * 0.02
    plain = compare(layers, data[None], method="spearman")[:, 0]
    resid = compare(residual_rdms(layers, rank=True), data[None], method="spearman")[:, 0]
    assert plain.argmax() == 1 and resid.argmax() == 1
    assert resid[1] - max(resid[0], resid[2]) > plain[1] - max(plain[0], plain[2])
    assert np.abs(resid[[0, 2]]).max() < 0.2


def test_partial_correlation_matches_closed_form(rng):
    x, z, y = rng.normal(size=(3, 45))
    y = y + x + z
    x = x + 0.5 * z
    r = np.corrcoef([x, y, z])
    rxy, rxz, ryz = r[0, 1], r[0, 2], r[1, 2]
    expected = (rxy - rxz * ryz) / np.sqrt((1 - rxz**2) * (1 - ryz**2))
    got = partial_correlation(np.stack([x, z]), y[None], method="pearson")
    assert got.shape == (2, 1)
    assert got[0, 0] == pytest.approx(expected, abs=1e-10)
    ranks = [np.argsort(np.argsort(a)) + 1.0 for a in (x, z, y)]
    got_s = partial_correlation(np.stack([x, z]), y[None], method="spearman")
    ref_s = partial_correlation(np.stack(ranks[:2]), ranks[2][None], method="pearson")
    np.testing.assert_allclose(got_s, ref_s, atol=1e-10)


def test_bad_input(layers):
    with pytest.raises(CortexmapError, match="at least 2 layers"):
        residual_rdms(layers[0])
    dup = RDMs.concat([layers, layers[0].__class__(layers.vectors[:1], 20, ["copy"])])
    with pytest.raises(CortexmapError, match="fully explained"):
        residual_rdms(dup)
    with pytest.raises(CortexmapError, match="more conditions"):
        residual_rdms(np.random.default_rng(0).normal(size=(4, 3)))
    with pytest.raises(CortexmapError, match="same stimuli"):
        partial_correlation(layers, np.zeros((1, 10)))
    with pytest.raises(CortexmapError, match="not supported"):
        partial_correlation(layers, layers, method="kendall")
    bad = layers.vectors.copy()
    bad[0, 3] = np.nan
    with pytest.raises(CortexmapError, match="NaN"):
        residual_rdms(bad)
    with pytest.raises(CortexmapError, match="n\\(n-1\\)/2"):
        residual_rdms(np.zeros((3, 7)))


def test_residual_rdms_work_as_searchlight_models(rng, layers):
    import nibabel as nib

    from cortexmap.brain.searchlight import searchlight

    mask = np.zeros((6, 6, 6), np.uint8)
    mask[1:5, 1:5, 1:5] = 1
    img = nib.Nifti1Image(mask, np.diag([3.0, 3.0, 3.0, 1.0]))
    pats = rng.normal(size=(20, int(mask.sum())))
    res = searchlight(pats, residual_rdms(layers, rank=True, suffix="|res"), radius_mm=5.0,
                      mask=img, scheduler="serial", progress=False)
    assert res.model_names == ["l1|res", "l2|res", "l3|res"]
    assert np.isfinite(res.maps[:, ~np.isnan(res.maps[0])]).all()

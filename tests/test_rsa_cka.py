"""CKA against the published formulas, computed independently here."""

import numpy as np
import pytest

from cortexmap.errors import CortexmapError
from cortexmap.rsa import compare, compute_rdms
from cortexmap.rsa.cka import cka, cka_frame


def _data(seed=0, n=40):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 30)) + 2.0
    y = np.tanh(x @ rng.normal(size=(30, 70))) + 0.5 * rng.normal(size=(n, 70))
    z = rng.normal(size=(n, 15))
    return x, y, z


def _linear_feature_space(x, y):
    """Kornblith et al. 2019, eq. for linear CKA: ||Y'X||_F^2 / (||X'X||_F ||Y'Y||_F)."""
    x, y = x - x.mean(0), y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def _rbf_kernel(x, sigma):
    sq = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return np.exp(-sq / (2 * sigma**2 * np.median(sq)))


def _hsic_biased(k, m):
    n = len(k)
    h = np.eye(n) - np.ones((n, n)) / n
    return np.trace(k @ h @ m @ h) / (n - 1) ** 2


def _hsic_unbiased(k, m):
    """Song et al. 2012, eq. (5)."""
    n = len(k)
    kt, lt = k - np.diag(np.diag(k)), m - np.diag(np.diag(m))
    one = np.ones(n)
    return (np.trace(kt @ lt) + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * (one @ kt @ lt @ one)) / (n * (n - 3))


def _cka_ref(k, m, hsic):
    return hsic(k, m) / np.sqrt(hsic(k, k) * hsic(m, m))


def test_linear_cka_equals_feature_space_formula():
    x, y, z = _data()
    got = cka([x, y, z])
    for i, a in enumerate([x, y, z]):
        for j, b in enumerate([x, y, z]):
            assert got[i, j] == pytest.approx(_linear_feature_space(a, b), abs=1e-10)
    assert np.allclose(np.diag(got), 1.0)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("debiased", [False, True])
def test_kernel_cka_equals_hsic_formulas(kernel, debiased):
    x, y, z = _data(1)
    sigma = 0.8
    kern = (lambda a: a @ a.T) if kernel == "linear" else (lambda a: _rbf_kernel(a, sigma))
    hsic = _hsic_unbiased if debiased else _hsic_biased
    got = cka({"x": x, "y": y}, [y, z], kernel=kernel, debiased=debiased, sigma=sigma)
    for i, a in enumerate([x, y]):
        for j, b in enumerate([y, z]):
            assert got[i, j] == pytest.approx(_cka_ref(kern(a), kern(b), hsic), abs=1e-9)


def test_debiased_removes_the_width_bias():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(50, 2000)), rng.normal(size=(50, 2000))  # independent, wide
    assert cka(a, b)[0, 0] > 0.5  # biased CKA of unrelated wide layers is large
    assert abs(cka(a, b, debiased=True)[0, 0]) < 0.05


def test_invariances():
    x, y, _ = _data(2)
    q, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(30, 30)))
    base = cka(x, y)[0, 0]
    assert cka(3.0 * x @ q + 7.0, y)[0, 0] == pytest.approx(base, abs=1e-10)
    assert cka(x @ q, y, kernel="rbf")[0, 0] == pytest.approx(cka(x, y, kernel="rbf")[0, 0],
                                                              abs=1e-10)


def test_streams_over_unit_blocks(monkeypatch):
    import cortexmap.rsa.rdm as rdm

    x, y, _ = _data(4)
    full = cka(x, y, kernel="rbf", debiased=True)
    monkeypatch.setattr(rdm, "_BLOCK_UNITS", 7)  # many blocks per layer
    assert np.allclose(cka(x, y, kernel="rbf", debiased=True), full, atol=1e-12)


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean"])
@pytest.mark.parametrize("method", ["cka", "cka_debiased", "cka_rbf", "cka_rbf_debiased"])
def test_compare_on_rdms_equals_cka_on_activations(metric, method):
    x, y, z = _data(6)
    rdms = compute_rdms([x, y, z], metric=metric, names=["x", "y", "z"])
    kernel = "rbf" if "rbf" in method else "linear"
    want = cka([x, y, z], kernel=kernel, debiased="debiased" in method)
    assert np.allclose(compare(rdms, rdms, method), want, atol=1e-9)
    # mixed sides: activations against RDMs (network layer vs brain ROI RDM)
    assert np.allclose(cka([x, y], rdms[2], kernel=kernel, debiased="debiased" in method),
                       want[:2, 2:], atol=1e-9)


def test_correlation_rdm_is_cka_of_zscored_patterns():
    x, y, _ = _data(7)
    z = lambda a: (a - a.mean(1, keepdims=True)) / a.std(1, keepdims=True)  # noqa: E731
    rdms = compute_rdms([x, y], metric="correlation")
    assert compare(rdms[0], rdms[1], "cka")[0, 0] == pytest.approx(cka(z(x), z(y))[0, 0],
                                                                   abs=1e-9)


def test_frame_and_errors():
    x, y, _ = _data(8)
    df = cka_frame({"x": x, "y": y})
    assert list(df.columns) == ["a", "b", "cka"] and len(df) == 4
    with pytest.raises(CortexmapError, match="kernel"):
        cka(x, y, kernel="poly")
    with pytest.raises(CortexmapError, match="same stimuli"):
        cka(x, y[:-1])
    with pytest.raises(CortexmapError, match="at least 4"):
        cka(x[:3], y[:3], debiased=True)
    with pytest.raises(CortexmapError, match="NaN"):
        cka(np.where(np.eye(40, 30) > 0, np.nan, x), y)

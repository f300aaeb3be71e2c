"""Orientation tuning: OSI / circular variance, shuffled null, exact recovery of Gabor filters."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import nn

from cortexmap.errors import CortexmapError
from cortexmap.probes.orientation import (
    DEFAULT_ORIENTATIONS,
    circular_variance,
    measure_tuning,
    osi,
    preferred_orientation,
    tuning_from_responses,
)
from cortexmap.stimuli.gratings import grating, gratings

ORI = np.asarray(DEFAULT_ORIENTATIONS)


def test_default_grid_is_every_7_5_degrees():
    assert len(ORI) == 24 and ORI[0] == 0 and ORI[-1] == 172.5


def test_osi_and_circular_variance_known_curves():
    flat = np.ones((1, 24))
    delta = np.zeros((1, 24))
    delta[0, 5] = 3.0
    theta = np.deg2rad(ORI)
    cosine = (1 + np.cos(2 * (theta - np.deg2rad(45))))[None]  # von-Mises-like, pref 45
    curves = np.vstack([flat, delta, cosine, np.zeros((1, 24))])
    o = osi(curves, ORI)
    cv = circular_variance(curves, ORI)
    np.testing.assert_allclose(o[:3], [0.0, 1.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(cv[:3], [1.0, 0.0, 0.5], atol=1e-12)
    assert np.isnan(o[3]) and np.isnan(cv[3])  # an unresponsive unit has no OSI
    np.testing.assert_allclose(preferred_orientation(curves[1:3], ORI), [37.5, 45.0])
    # OSI from its definition with an explicit loop over units
    rng = np.random.default_rng(0)
    c = rng.random((20, 24))
    ref = []
    for row in c:
        p = int(np.argmax(row))
        orth = int(np.argmin(np.abs(((ORI - ORI[p] - 90) + 90) % 180 - 90)))
        ref.append((row[p] - row[orth]) / (row[p] + row[orth]))
    np.testing.assert_allclose(osi(c, ORI), ref)


def test_bad_orientations_and_response_shapes():
    with pytest.raises(CortexmapError, match="at least 4 orientations"):
        osi(np.ones((2, 3)), [0, 45, 90])
    with pytest.raises(CortexmapError, match="distinct modulo 180"):
        osi(np.ones((2, 4)), [0, 45, 90, 180])
    with pytest.raises(CortexmapError, match="n_orientations=24"):
        tuning_from_responses(np.ones((10, 1, 1, 3)), ORI)


def test_shuffled_null_separates_tuned_from_noise():
    rng = np.random.default_rng(0)
    theta = np.deg2rad(ORI)
    n_sf, n_ph = 2, 4
    tuned = np.exp(2 * np.cos(2 * (theta - 1.0)))[:, None, None] * np.ones((1, n_sf, n_ph))
    noise = rng.random((24, n_sf, n_ph))
    resp = np.stack([tuned + 0.05 * rng.random((24, n_sf, n_ph)), noise], axis=-1)
    lt = tuning_from_responses(resp, ORI, n_shuffles=200, seed=0)
    assert lt.selective.tolist() == [True, False]
    assert lt.p_value[0] == pytest.approx(1 / 201) and lt.p_value[1] > 0.05
    assert lt.osi[0] > 0.9 and lt.circular_variance[0] < lt.circular_variance[1]
    # deterministic for a seed
    lt2 = tuning_from_responses(resp, ORI, n_shuffles=200, seed=0)
    np.testing.assert_array_equal(lt.p_value, lt2.p_value)
    summ = lt.summary()
    assert summ["fraction_selective"] == 0.5 and summ["n_units"] == 2
    assert list(lt.ranking()) == [0, 1]


# ---------------------------------------------------------------------------------------------
# Validation: a first layer made of Gabor filters of known orientations
# ---------------------------------------------------------------------------------------------

GABOR_SF = 8.0  # cycles per 64-px image


def gabor_bank(orientations, ksize=21, sigma=5.0, sf_cpi=GABOR_SF, size=64, phase=90.0):
    """(K, 3, ksize, ksize) zero-mean Gabor kernels built with the stimulus module's convention."""
    g = []
    r = np.arange(ksize) - ksize // 2
    env = np.exp(-(r[None] ** 2 + r[:, None] ** 2) / (2 * sigma**2))
    for o in orientations:
        carrier = grating(o, sf_cpi * ksize / size, phase, size=ksize) - 0.5
        k = carrier * env
        g.append(k - k.mean())
    k = torch.tensor(np.stack(g), dtype=torch.float32)
    return k[:, None].repeat(1, 3, 1, 1) / 3


class GaborEnergyNet(nn.Module):
    """conv1 = quadrature Gabor pairs -> energy (complex cells), phase invariant by design."""

    def __init__(self, orientations):
        super().__init__()
        even, odd = gabor_bank(orientations, phase=90.0), gabor_bank(orientations, phase=0.0)
        self.even = nn.Conv2d(3, len(orientations), 21, padding=10, bias=False)
        self.odd = nn.Conv2d(3, len(orientations), 21, padding=10, bias=False)
        self.even.weight.data, self.odd.weight.data = even, odd

    def forward(self, x):
        return torch.sqrt(self.even(x) ** 2 + self.odd(x) ** 2 + 1e-12)


def _responses(net, stim, ori, sfs, phases):
    """{"center": ..., "mean": ...} responses (n_ori, n_sf, n_phase, n_units) in one forward."""
    x = torch.tensor(stim.images).permute(0, 3, 1, 2)
    with torch.no_grad():
        a = net(x).numpy()
    shape = (len(ori), len(sfs), len(phases), -1)
    return {"center": a[:, :, 32, 32].reshape(shape), "mean": a.mean(axis=(2, 3)).reshape(shape)}


TRUE = ORI[::-1].copy()  # unit k prefers TRUE[k]; reversed so the order is no give-away
SFS, PHASES = [4.0, 8.0, 12.0], [0.0, 90.0, 180.0, 270.0]


@pytest.fixture(scope="module")
def energy_responses():
    torch.manual_seed(0)
    net = GaborEnergyNet(TRUE).eval()
    return _responses(net, gratings(ORI, SFS, PHASES, size=64), ORI, SFS, PHASES)


@pytest.mark.parametrize("unit", ["center", "mean"])
def test_gabor_energy_bank_is_recovered_exactly(unit, energy_responses):
    lt = tuning_from_responses(energy_responses[unit], ORI, n_shuffles=100)
    np.testing.assert_array_equal(lt.preferred, TRUE)
    assert (lt.best_sf == 1).all()  # 8 cpi, the Gabors' frequency
    assert lt.selective.all() and (lt.osi > 0.8).all()


def test_simple_cell_gabor_relu_recovered_with_spatial_average():
    true = ORI.copy()
    conv = nn.Conv2d(3, 24, 21, padding=10, bias=False)
    conv.weight.data = gabor_bank(true)
    net = nn.Sequential(conv, nn.ReLU()).eval()
    sfs, phases = [8.0], [0.0, 90.0, 180.0, 270.0]
    stim = gratings(ORI, sfs, phases, size=64)
    lt = tuning_from_responses(_responses(net, stim, ORI, sfs, phases)["mean"], ORI,
                               n_shuffles=100)
    np.testing.assert_array_equal(lt.preferred, true)
    assert lt.selective.all()


class GaborCNN(nn.Module):
    """A small CNN whose conv1 is the Gabor energy bank, followed by a fc layer."""

    def __init__(self, orientations):
        super().__init__()
        self.conv1 = GaborEnergyNet(orientations)
        self.pool = nn.AvgPool2d(8)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(len(orientations) * 8 * 8, 10))

    def forward(self, x):
        return self.fc(self.pool(self.conv1(x)))


@pytest.fixture(scope="module")
def gabor_cnn():
    from cortexmap.models import Preprocessing

    torch.manual_seed(0)
    net = GaborCNN(TRUE).eval()
    # grey 0.5 -> 0 input, so the zero-mean filters see only the grating
    net.cortexmap_preprocessing = Preprocessing(64, mean=(0.5,) * 3, std=(1.0,) * 3)
    return net


def test_measure_tuning_end_to_end_recovers_gabors(gabor_cnn):
    import matplotlib.pyplot as plt

    from cortexmap.probes.orientation import plot_osi_distributions, plot_tuning_curves

    oris = ORI[::2]  # 15-deg grid (12 orientations) keeps the test fast
    tuning = measure_tuning(gabor_cnn, ["conv1", "pool"], orientations=oris,
                            spatial_freqs=[8.0], phases=[0, 90, 180, 270], unit="center",
                            n_shuffles=50, progress=False)
    lt = tuning["conv1"]
    np.testing.assert_array_equal(lt.preferred[1::2], TRUE[1::2])  # units on the probed grid
    assert lt.selective.all()
    summ = tuning.summary()
    assert list(summ.layer) == ["conv1", "pool"] and summ.fraction_selective.iloc[0] == 1.0
    units = tuning.units()
    assert len(units) == 48 and {"osi", "circular_variance", "p_value"} <= set(units.columns)
    plt.close(plot_tuning_curves(lt, n_examples=4))
    plt.close(plot_osi_distributions(tuning))


def test_measure_tuning_bad_layers(gabor_cnn):
    with pytest.raises(CortexmapError, match="no spatial positions"):
        measure_tuning(gabor_cnn, ["fc"], unit="center", n_shuffles=0, progress=False)
    with pytest.raises(CortexmapError, match="nope"):
        measure_tuning(gabor_cnn, ["nope"], n_shuffles=0, progress=False)
    tuning = measure_tuning(gabor_cnn, ["fc"], orientations=ORI[::4], spatial_freqs=[8.0],
                            phases=[0, 180], unit="flat", n_shuffles=0, progress=False)
    assert tuning["fc"].n_units == 10


def test_null_false_positive_rate_is_near_alpha():
    """Responses independent of orientation: about alpha of the units pass (the test is exact)."""
    rng = np.random.default_rng(1)
    resp = rng.gamma(2.0, 1.0, size=(12, 2, 4, 400))  # 12 orientations, 2 SFs, 4 phases
    lt = tuning_from_responses(resp, ORI[::2], n_shuffles=199, alpha=0.05, min_osi=0.0, seed=3)
    assert 0.02 <= lt.fraction_selective <= 0.09
    # p-values of null units are roughly uniform
    assert 0.4 < np.median(lt.p_value) < 0.6


@given(
    curve=arrays(np.float64, 24, elements=st.one_of(st.just(0.0), st.floats(1e-3, 10.0))),
    shift=st.integers(0, 23),
    scale=st.floats(0.1, 100.0),
)
@settings(max_examples=60, deadline=None)
def test_tuning_statistics_properties(curve, shift, scale):
    c = curve[None]
    o, cv = osi(c, ORI)[0], circular_variance(c, ORI)[0]
    if curve.sum() == 0:
        assert np.isnan(o) and np.isnan(cv)
        return
    assert 0 <= o <= 1 + 1e-12 and -1e-12 <= cv <= 1 + 1e-12
    # invariant to the response scale (firing-rate units)
    assert osi(c * scale, ORI)[0] == pytest.approx(o, abs=1e-9)
    assert circular_variance(c * scale, ORI)[0] == pytest.approx(cv, abs=1e-9)
    # rotating the stimulus rotates the tuning: CV unchanged, preference moves with it
    rolled = np.roll(curve, shift)[None]
    assert circular_variance(rolled, ORI)[0] == pytest.approx(cv, abs=1e-9)
    if np.sum(curve == curve.max()) == 1:
        moved = (preferred_orientation(c, ORI)[0] + 7.5 * shift) % 180
        assert preferred_orientation(rolled, ORI)[0] == pytest.approx(moved)

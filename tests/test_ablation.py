"""Cached, batched unit ablation equals a hooked full forward; statistics and shift invariance."""

import numpy as np
import pytest
import torch
from torch import nn

from cortexmap.errors import CortexmapError
from cortexmap.probes.ablation import (
    LayerAblator,
    UnitSet,
    ablate_units,
    make_unit_sets,
    pattern_correlation,
    run_ablation,
    shift_images,
    summarize_drops,
)


def _block(i, o, pool=True):
    layers = [nn.Conv2d(i, o, 3, padding=1), nn.ReLU(inplace=True)]  # in place, as in the zoo
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class TinyAlex(nn.Module):
    """AlexNet-shaped toy: conv1..conv3, fc6, classifier (names as in the zoo)."""

    def __init__(self):
        super().__init__()
        self.conv1 = _block(3, 8)
        self.conv2 = _block(8, 12)
        self.conv3 = _block(12, 12, pool=False)
        self.fc6 = nn.Sequential(nn.Flatten(), nn.Linear(12 * 4 * 4, 16), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(16, 5)

    def forward(self, x):
        return self.classifier(self.fc6(self.conv3(self.conv2(self.conv1(x)))))


@pytest.fixture
def net():
    torch.manual_seed(0)
    return TinyAlex().eval()


@pytest.fixture
def images():
    return torch.rand(10, 3, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(
    ("layer", "n_units", "shortcut"),
    [("conv2", 12, True), ("conv2.0", 12, False), ("fc6", 16, True), ("conv1", 8, True)],
)
def test_cached_ablation_equals_hooked_full_forward(net, images, layer, n_units, shortcut):
    sets = make_unit_sets(np.arange(n_units)[::-1], ks=[1, 3], n_random=3, seed=0, layer=layer)
    # small batch forces several ablations per stacked batch and partial last chunks
    ab = LayerAblator(net, layer, batch_size=25)
    assert (ab._stage is not None) == shortcut  # linear first tail layer -> rank-k correction
    feats = ab.cache(images)
    out = ab.outputs(feats, sets)
    assert out.shape == (len(sets), 10, 5)
    with torch.no_grad():
        for i, s in enumerate(sets):
            with ablate_units(net, layer, list(s.units)):
                ref = net(images)
            torch.testing.assert_close(out[i], ref, rtol=1e-5, atol=1e-5)
    # the big-image-set path (one ablation at a time, images chunked) and the plain masked
    # path without the shortcut agree too
    ab_small = LayerAblator(net, layer, batch_size=4)
    torch.testing.assert_close(ab_small.outputs(ab_small.cache(images), sets), out)
    ab_plain = LayerAblator(net, layer, batch_size=25, linear_shortcut=False)
    torch.testing.assert_close(ab_plain.outputs(feats, sets), out, rtol=1e-5, atol=1e-5)


def test_unit_sets_and_bad_k(net, images):
    ranking = np.array([5, 2, 7, 0, 1, 3, 4, 6, 8, 9, 10, 11])
    sets = make_unit_sets(ranking, ks=[2], n_random=4, seed=3)
    assert sets[0].condition == "intact" and sets[0].units == ()
    most = next(s for s in sets if s.condition == "most")
    least = next(s for s in sets if s.condition == "least")
    assert most.units == (2, 5) and least.units == (10, 11)
    rnd = [s for s in sets if s.condition == "random"]
    assert len(rnd) == 4 and all(len(set(s.units)) == 2 for s in rnd)
    with pytest.raises(CortexmapError, match="k=13 units .* has 12 units"):
        make_unit_sets(ranking, ks=[13])
    with pytest.raises(CortexmapError, match="has 12 units"):
        run_ablation(net, "conv2", ranking, images, np.zeros(10), ks=[20], progress=False)
    with pytest.raises(CortexmapError, match="ranking has 3 units"):
        run_ablation(net, "conv2", [0, 1, 2], images, np.zeros(10), ks=[1], progress=False)


def test_shift_images_and_pattern_correlation():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    right = shift_images(x, 0, 2)
    torch.testing.assert_close(right[..., 2:], x[..., :-2])
    torch.testing.assert_close(right[..., 0], x[..., 0])  # edge replicated
    up = shift_images(x, -1, 0)
    torch.testing.assert_close(up[..., :-1, :], x[..., 1:, :])
    with pytest.raises(CortexmapError, match="not smaller than the image"):
        shift_images(x, 0, 6)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 30)), rng.normal(size=(4, 30))
    r = pattern_correlation(torch.tensor(a), torch.tensor(b)).numpy()
    ref = [np.corrcoef(a[i], b[i])[0, 1] for i in range(4)]
    np.testing.assert_allclose(r, ref, rtol=1e-10)
    assert pattern_correlation(torch.zeros(1, 5), torch.ones(1, 5)).item() == 0.0


def test_summarize_drops_cis_and_p():
    sets = [UnitSet("intact", 0, 0, ()), UnitSet("most", 1, 0, (0,)),
            UnitSet("least", 1, 0, (1,))] + [UnitSet("random", 1, d, (2,)) for d in range(9)]
    correct = np.ones((len(sets), 200), bool)
    correct[1, :100] = False  # most: drop 0.5
    for d in range(9):  # random draws: drops 0.0 .. 0.08
        correct[3 + d, : 2 * d] = False
    per, summ = summarize_drops(sets, correct, n_boot=500, seed=0)
    assert per.loc[1, "drop"] == pytest.approx(0.5)
    most = summ[summ.condition == "most"].iloc[0]
    assert most.ci_low < 0.5 < most.ci_high and most.ci_high - most.ci_low < 0.2
    assert most.p_vs_random == pytest.approx(1 / 10)
    rnd = summ[summ.condition == "random"].iloc[0]
    assert rnd.n_draws == 9 and rnd["drop"] == pytest.approx(0.04)
    assert rnd.ci_low == pytest.approx(0.0, abs=0.003)
    assert rnd.ci_high == pytest.approx(0.08, abs=0.003)
    least = summ[summ.condition == "least"].iloc[0]
    assert least["drop"] == 0.0 and least.p_vs_random == pytest.approx(1.0)


def test_run_ablation_with_shift_invariance(net, images):
    labels = net(images).argmax(1).detach().numpy()  # intact accuracy = 1 by construction
    ranking = np.arange(12)
    res = run_ablation(net, "conv2", ranking, images, labels, ks=[2, 12], n_random=3,
                       shift_layers=["conv3", "fc6"], shifts=[1, 2], n_random_shift=2,
                       progress=False)
    acc = res.accuracy
    assert set(acc.condition) == {"most", "least", "random"}
    assert res.per_set.loc[0, "accuracy"] == 1.0
    inv = res.invariance
    intact = inv[inv.condition == "intact"]
    assert len(intact) == 4 and intact.invariance.between(-1, 1).all()
    # ablating every unit makes the higher layers blind to the image: invariance becomes
    # that of a constant response (0 by convention for conv3; fc6 keeps its bias pattern only)
    full = inv[(inv.condition == "most") & (inv.k == 12) & (inv.layer == "conv3")]
    assert np.allclose(full.invariance, 0.0) or np.allclose(full.invariance, 1.0)
    rnd = inv[(inv.condition == "random") & (inv.k == 2)]
    assert (rnd.n_draws == 2).all() and (rnd.ci_low <= rnd.invariance + 1e-12).all()
    # larger shifts cannot make the intact network more invariant on average
    by_shift = intact.groupby("shift_px").invariance.mean()
    assert by_shift.loc[1] >= by_shift.loc[2] - 0.05


class TinyTokens(nn.Module):
    """Patch tokens (n, 16, 8) -> token MLP -> Linear on the last axis -> mean -> classes."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 4, 4)
        self.mlp = nn.Sequential(nn.Linear(8, 8), nn.GELU())
        self.proj = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)
        self.classifier = nn.Linear(8, 5)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)  # (n, 16, 8)
        return self.classifier(self.norm(self.proj(self.mlp(t))).mean(1))


@pytest.mark.parametrize(("layer", "shortcut"), [("embed", False), ("mlp", True),
                                                 ("mlp.0", False), ("norm", False)])
def test_token_units_are_embedding_dims(images, layer, shortcut):
    torch.manual_seed(0)
    net = TinyTokens().eval()
    sets = make_unit_sets(np.arange(8), ks=[2], n_random=2, seed=1, layer=layer)
    ab = LayerAblator(net, layer, batch_size=16)
    feats = ab.cache(images)
    assert ab.n_units(feats) == 8 and (ab._stage is not None) == shortcut
    out = ab.outputs(feats, sets)
    with torch.no_grad():
        for i, s in enumerate(sets):
            with ablate_units(net, layer, list(s.units)):
                torch.testing.assert_close(out[i], net(images), rtol=1e-5, atol=1e-5)

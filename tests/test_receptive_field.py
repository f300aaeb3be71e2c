"""Receptive fields: analytic recursion against hand-computed and known values, gradient method
against the analytic one, the chain check, and bad input."""

import numpy as np
import pytest
import torchvision
from torch import nn

from cortexmap.errors import CortexmapError
from cortexmap.models.layers import default_conv_layers, spatial_layers
from cortexmap.probes.receptive_field import (
    project_mask,
    receptive_fields,
)


class TinyAlex(nn.Sequential):
    """Zoo-like AlexNet: conv blocks named conv1..conv3, then fully connected layers."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, 4, 5, 2, 2), nn.ReLU(), nn.MaxPool2d(2))
        self.conv2 = nn.Sequential(nn.Conv2d(4, 6, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2))
        self.conv3 = nn.Sequential(nn.Conv2d(6, 6, 3, 1, 1), nn.ReLU())
        self.fc6 = nn.Sequential(nn.Flatten(), nn.Linear(6 * 8 * 8, 8), nn.ReLU())
        self.classifier = nn.Linear(8, 3)


def _constant_chain() -> nn.Module:
    """Positive constant weights, no ReLU/max: the gradient is a symmetric 'path count'."""
    net = nn.Sequential(
        nn.Conv2d(3, 2, 5, 2, 2), nn.AvgPool2d(2), nn.Conv2d(2, 2, 3, 1, 1, dilation=1),
        nn.Conv2d(2, 2, 3, 1, 2, dilation=2),
    )
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.constant_(m.weight, 0.1)
            nn.init.zeros_(m.bias)
    return net


def test_analytic_hand_computed():
    rf = receptive_fields(TinyAlex(), "conv2", 64, method="analytic")
    # conv 5/2 p2: start 0, jump 2, size 5; pool 2/2: start 1, jump 4, size 7;
    # conv 3 p1: start 1, size 15; pool 2/2: start 3, jump 8, size 19
    assert rf.grid == (8, 8)
    assert rf.jump == (8.0, 8.0)
    np.testing.assert_allclose(rf.size, 19.0)
    # position 1: theoretical centre 11 -> box [2, 20] fully inside -> centre 11
    np.testing.assert_allclose(rf.centers[1, 2], [11.0, 19.0])
    # position 0: box [-6, 12] clipped to [0, 12] -> in-image centre 6
    np.testing.assert_allclose(rf.centers[0, 0], [6.0, 6.0])
    assert rf.method == "analytic"


def test_analytic_matches_known_alexnet_values():
    rf = receptive_fields(torchvision.models.alexnet(), "features.12", 224, method="analytic")
    assert rf.grid == (6, 6)
    assert rf.jump == (32.0, 32.0)
    np.testing.assert_allclose(rf.size, 195.0)  # the textbook AlexNet pool5 receptive field
    ecc = rf.eccentricity()
    assert ecc.shape == (6, 6)
    np.testing.assert_allclose(ecc, ecc[::-1, ::-1], atol=0.02)  # ~symmetric (224 is not exact)


def test_gradient_agrees_with_analytic_on_symmetric_chain():
    net = _constant_chain()
    ana = receptive_fields(net, "3", 48, method="analytic")
    grad = receptive_fields(net, "3", 48, method="gradient", n_probes=1)
    assert grad.method == "gradient" and grad.grid == ana.grid
    # interior positions (receptive field fully inside the image): identical centre and size
    half = (ana.size[..., 0] - 1) / 2
    inside = (ana.centers[..., 0] - half >= 0) & (ana.centers[..., 0] + half <= 47)
    inside &= (ana.centers[..., 1] - half >= 0) & (ana.centers[..., 1] + half <= 47)
    assert inside.sum() >= 1
    np.testing.assert_allclose(grad.centers[inside], ana.centers[inside], atol=1e-6)
    np.testing.assert_allclose(grad.size[inside], ana.size[inside])
    assert grad.jump == pytest.approx(ana.jump)


def test_auto_uses_gradient_for_skip_connections():
    net = torchvision.models.resnet18()
    rf = receptive_fields(net, "layer2", 64)
    assert rf.method == "gradient"  # layer2's downsample branch breaks the chain
    assert rf.grid == (8, 8)
    assert np.all(np.diff(rf.centers[:, 0, 0]) > 0)
    assert np.all(np.diff(rf.centers[0, :, 1]) > 0)
    assert np.isfinite(rf.effective_sigma).all()
    with pytest.raises(CortexmapError, match="single chain"):
        receptive_fields(net, "layer2", 64, method="analytic")
    # layer1 has no downsample: one chain, analytic (its skip path is a subset of the RF)
    assert receptive_fields(net, "layer1", 64).method == "analytic"


def test_layer_lists():
    net = TinyAlex()
    assert default_conv_layers(net, 64) == ["conv1", "conv2", "conv3"]
    assert "fc6" not in spatial_layers(net, 64)
    assert default_conv_layers(torchvision.models.alexnet(), 224)[0] == "features.0"


def test_project_mask_and_frame():
    rf = receptive_fields(TinyAlex(), "conv3", 64)
    mask = np.zeros((64, 64), bool)
    mask[:, :32] = True
    cov = project_mask(rf, mask)
    assert cov.shape == rf.grid
    assert cov[:, 0].min() > 0.99 and cov[:, -1].max() < 0.01
    df = rf.to_frame()
    assert len(df) == 64 and {"center_y", "eccentricity"} <= set(df.columns)
    norm = rf.centers_normalized()
    assert norm.min() > 0 and norm.max() < 1
    with pytest.raises(CortexmapError, match="resize the mask"):
        project_mask(rf, np.zeros((32, 32), bool))


def test_bad_input():
    net = TinyAlex()
    with pytest.raises(CortexmapError, match="not convolutional"):
        receptive_fields(net, "fc6", 64)
    with pytest.raises(CortexmapError, match="Unknown layer"):
        receptive_fields(net, "conv9", 64)
    with pytest.raises(CortexmapError, match="method"):
        receptive_fields(net, "conv1", 64, method="magic")

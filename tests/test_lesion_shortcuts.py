"""Exact shortcuts of the lesion engine: linear stages (Conv2d, Flatten -> Linear), the intact
pass shared by all layers of a sweep, and where no shortcut may apply (BatchNorm, residuals).

Every shortcut is checked against rerunning the tail on lesioned activations and against
:func:`naive_lesion_correct` (a full forward pass per lesion with a hook zeroing the channel).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from cortexmap.models.split import layer_output, split_at
from cortexmap.probes import lesion as ls
from cortexmap.probes.contrast import contrast_series, model_input
from tests.lesion_check import assert_sweep_matches_naive

# (kernel, stride, padding, dilation) of the convolution after the lesioned layer
GEOMETRIES = [
    (3, 1, 1, 1),
    (5, 2, 2, 1),
    (3, 1, 0, 2),
    (1, 1, 0, 1),
    ((3, 1), (1, 2), (1, 0), 1),
]


def conv_net(k=3, stride=1, padding=1, dilation=1, seed=0) -> nn.Module:
    """conv1 -> conv2 (the given geometry) + ReLU + MaxPool -> Flatten, Dropout, Linear ..."""
    torch.manual_seed(seed)
    conv2 = nn.Conv2d(6, 8, k, stride, padding, dilation)
    with torch.no_grad():
        n = conv2(torch.zeros(1, 6, 16, 16)).shape[-1] // 2
        m = conv2(torch.zeros(1, 6, 16, 16)).shape[-2] // 2
    return nn.Sequential(OrderedDict(
        conv1=nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(inplace=True)),
        conv2=nn.Sequential(conv2, nn.ReLU(inplace=True), nn.MaxPool2d(2)),
        fc6=nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(8 * m * n, 12),
                          nn.ReLU(inplace=True)),
        classifier=nn.Linear(12, 5),
    )).eval()


def bn_net() -> nn.Module:
    """A bare convolution feeding BatchNorm: the lesioned layer's output is not a conv input."""
    torch.manual_seed(2)
    net = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 6, 3, padding=1),
        bn1=nn.BatchNorm2d(6),
        relu=nn.ReLU(inplace=True),
        conv2=nn.Sequential(nn.Conv2d(6, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
        pool=nn.AdaptiveAvgPool2d(2),
        flat=nn.Flatten(),
        classifier=nn.Linear(32, 5),
    ))
    with torch.no_grad():  # non-trivial running statistics
        for mod in net.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
    return net.eval()


def resnet() -> nn.Module:
    from cortexmap.models.architectures import build

    return build("resnet", seed=0).eval()


def images(rng, n=10, size=16):
    return rng.random((n, size, size, 3)).astype(np.float32)


def check_stage_against_tail(tail, stage, acts, contrast):
    """stage.rest(stage.lesioned(...)) == tail(apply_lesions(...)), all lesion kinds, rows."""
    z = stage.preactivation(acts)
    n_ch = acts.shape[1]
    fill = ls.fill_values(acts, contrast, "mean")
    rows = torch.tensor([0, 3, 4, len(acts) - 1])
    nothing = np.zeros((1, n_ch), bool)  # an intact control row (ablation sets of k = 0)
    for masks in (ls.kernel_masks(n_ch), ls.set_masks(n_ch, [[0, 1], [2, n_ch - 1]]), nothing):
        m = torch.from_numpy(masks)
        for f in (None, fill):
            with torch.inference_mode():
                plain = tail(ls.apply_lesions(acts, m, f).clone())
                fast = stage.rest(stage.lesioned(z, acts, m, f))
                torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-4)
                sub = stage.rest(stage.lesioned(z, acts, m, f, rows=rows))
                ref = tail(ls.apply_lesions(acts[rows], m, None if f is None else f[rows]))
                torch.testing.assert_close(sub, ref, atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------- conv stage
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_conv_stage_any_geometry_matches_rerunning_the_tail(rng, geometry):
    net = conv_net(*geometry)
    head, tail = split_at(net, "conv1")
    stage = ls.linear_stage(tail)
    assert stage is not None and stage.conv is net.conv2[0] and not stage.flatten
    x = torch.from_numpy(rng.random((10, 3, 16, 16)).astype(np.float32))
    for layout in (torch.contiguous_format, torch.channels_last):
        acts = layer_output(head, x.contiguous(memory_format=layout))
        check_stage_against_tail(tail, stage, acts, np.repeat([1.0, 0.5], 5))


@pytest.mark.parametrize("geometry", GEOMETRIES[:3], ids=str)
def test_conv_relu_maxpool_sweep_matches_naive(rng, geometry):
    net = conv_net(*geometry)
    assert_sweep_matches_naive(net, ["conv1", "conv2", "fc6"], images(rng),
                               rng.integers(0, 5, 10))


# --------------------------------------------------------------------------- flatten -> linear
def test_flatten_dropout_linear_stage(rng):
    net = conv_net()
    head, tail = split_at(net, "conv2")
    stage = ls.linear_stage(tail)
    assert stage is not None and stage.flatten and stage.conv is net.fc6[2]
    acts = layer_output(head, model_input(net, images(rng)))
    assert acts.ndim == 4 and stage.applies_to(acts)
    check_stage_against_tail(tail, stage, acts, np.repeat([1.0, 0.5], 5))
    # a unit lesion of fc6 feeds the classifier directly (2-D activations, no Flatten)
    head6, tail6 = split_at(net, "fc6")
    stage6 = ls.linear_stage(tail6)
    assert stage6 is not None and not stage6.flatten and stage6.conv is net.classifier
    acts6 = layer_output(head6, model_input(net, images(rng)))
    check_stage_against_tail(tail6, stage6, acts6, np.repeat([1.0, 0.5], 5))


def test_linear_stage_needs_eval_dropout_and_a_full_flatten():
    net = conv_net()
    tail = split_at(net, "conv2")[1]  # (split_at puts the shared modules in eval mode)
    net.fc6[1].train()  # dropout active: not linear in the lesion sense
    assert ls.linear_stage(tail) is None
    net = conv_net().eval()
    net.fc6[0] = nn.Flatten(start_dim=2)  # not the (n, C*h*w) flatten the stage assumes
    assert ls.linear_stage(split_at(net, "conv2")[1]) is None


# --------------------------------------------------------------------------- no shortcut
def test_no_shortcut_into_batchnorm_or_a_residual_block(rng):
    net = bn_net()
    assert ls.linear_stage(split_at(net, "conv1")[1]) is None  # feeds BatchNorm
    stage = ls.linear_stage(split_at(net, "relu")[1])  # feeds a conv: allowed (BN after it)
    assert stage is not None and stage.conv is net.conv2[0]
    assert_sweep_matches_naive(net, ["conv1", "relu", "conv2"], images(rng),
                               rng.integers(0, 5, 10))

    net = resnet()
    for layer in ("stem", "layer1", "layer2"):  # each feeds a block's conv and its shortcut
        assert ls.linear_stage(split_at(net, layer)[1]) is None
    imgs = images(rng, n=6, size=64)
    assert_sweep_matches_naive(net, ["stem", "layer1"], imgs, rng.integers(0, 10, 6))


# --------------------------------------------------------------------------- intact pass
def test_intact_pass_equals_per_layer_caching(rng, monkeypatch):
    net = conv_net()
    ibc = contrast_series(images(rng), [1.0, 0.2, 0.05])
    labels = rng.integers(0, 5, 10)
    kw = dict(lesion_sets={"conv2": [[0, 3]]}, kernels={"conv2": [1, 2]}, progress=False)
    for mode in ("zero", "mean"):
        shared = ls.lesion_sweep(net, ["conv1", "conv2", "fc6"], ibc, labels, mode=mode, **kw)
        monkeypatch.setattr(ls, "INTACT_CACHE_BYTES", 0)  # too big: each layer on its own
        alone = ls.lesion_sweep(net, ["conv1", "conv2", "fc6"], ibc, labels, mode=mode, **kw)
        monkeypatch.undo()
        pd.testing.assert_frame_equal(shared.table, alone.table)
        pd.testing.assert_frame_equal(shared.baseline, alone.baseline)


def test_intact_pass_records_values_before_in_place_ops(rng):
    from cortexmap.models.split import trace_model

    net = conv_net()  # every ReLU is in place
    x = model_input(net, images(rng))
    rec = ls._intact_pass(net, ["conv1", "conv2"], x, trace_model(net), batch_size=4)
    assert rec is not None
    with torch.inference_mode():
        torch.testing.assert_close(rec.logits, net(x))
        for layer in ("conv1", "conv2"):
            head, tail = split_at(net, layer)
            acts = head(x)
            torch.testing.assert_close(rec.acts[layer], acts)
            module, z = rec.preact[layer]
            stage = ls.linear_stage(tail)
            assert module is stage.conv
            torch.testing.assert_close(z, stage.preactivation(acts))
            assert (z < 0).any()  # the pre-activation, not the ReLU output
    assert ls._intact_pass(net, ["nope"], x, trace_model(net)) is None

"""Preprocessing: resize, centre crop and normalisation matched to the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortexmap.errors import CortexmapError
from cortexmap.models import Preprocessing, preprocess
from cortexmap.stimuli import StimulusSet


def test_normalisation_and_shape():
    imgs = np.full((2, 8, 8, 3), 0.5, np.float32)
    p = Preprocessing(size=8, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 0.5))
    x = preprocess(imgs, p)
    assert x.shape == (2, 3, 8, 8) and x.dtype == torch.float32
    torch.testing.assert_close(x[0, :, 0, 0], torch.tensor([0.0, 1.0, 1.0]))


def test_resize_then_center_crop_like_torchvision():
    # a 20x20 image with a 4-px bright frame; resize 10 -> crop 8 removes the frame
    img = np.zeros((20, 20, 3), np.float32)
    img[:4], img[-4:], img[:, :4], img[:, -4:] = 1, 1, 1, 1
    p = Preprocessing(size=8, mean=(0, 0, 0), std=(1, 1, 1), resize=10)
    x = preprocess(img, p)
    assert x.shape == (1, 3, 8, 8)
    assert x[0, :, 2:6, 2:6].max() < 0.05  # centre stays dark
    assert x[0, :, 0, :].mean() > 0.3  # remaining frame at the border
    # non-square input: shorter side to `resize`, then centre crop
    wide = np.zeros((10, 30, 3), np.float32)
    wide[:, 10:20] = 1
    y = preprocess(wide, Preprocessing(size=10, mean=(0, 0, 0), std=(1, 1, 1)))
    assert y.shape == (1, 3, 10, 10) and y.min() > 0.99


def test_stimulus_set_uint8_and_errors():
    s = StimulusSet(np.zeros((3, 16, 16, 3), np.float32), ["a", "b", "c"])
    assert preprocess(s, Preprocessing(16)).shape == (3, 3, 16, 16)
    u8 = preprocess(np.full((1, 4, 4, 3), 255, np.uint8), Preprocessing(4, (0, 0, 0), (1, 1, 1)))
    assert float(u8.max()) == pytest.approx(1.0)
    with pytest.raises(CortexmapError, match=r"\(n, H, W, 3\)"):
        preprocess(np.zeros((2, 3, 16, 16)), Preprocessing(16))
    with pytest.raises(CortexmapError, match="resize"):
        Preprocessing(size=16, resize=8)
    with pytest.raises(CortexmapError, match="std"):
        Preprocessing(size=16, std=(1, 0, 1))
    p = Preprocessing(32, resize=36)
    assert Preprocessing.from_dict(p.to_dict()) == p

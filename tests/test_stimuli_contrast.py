"""set_contrast / measure_contrast: RMS and Michelson contrast around mean luminance."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cortexmap.errors import CortexmapError
from cortexmap.stimuli import StimulusSet, gratings, luminance, measure_contrast, set_contrast


def _images(n=3, size=16, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.3, 0.7, (n, size, size, 1))
    tint = rng.uniform(0.9, 1.1, (n, 1, 1, 3))
    return np.clip(base * tint, 0, 1).astype(np.float32)


@pytest.mark.parametrize("kind", ["rms", "michelson"])
@pytest.mark.parametrize("c", [0.01, 0.1, 0.3])
def test_reaches_target_and_keeps_mean_luminance(kind, c):
    imgs = _images()
    out = set_contrast(imgs, c, kind)
    np.testing.assert_allclose(measure_contrast(out, kind), c, rtol=1e-3)
    np.testing.assert_allclose(luminance(out).mean((1, 2)), luminance(imgs).mean((1, 2)), rtol=1e-4)


def test_stimulus_set_roundtrip_and_grating_contrast():
    g = gratings([0, 90], [4], contrast=1.0, size=32)
    low = set_contrast(g, 0.05, "michelson")
    assert isinstance(low, StimulusSet) and low.ids == g.ids
    np.testing.assert_allclose(measure_contrast(low, "michelson"), 0.05, rtol=1e-3)
    assert list(low.metadata["contrast_michelson"]) == [0.05, 0.05]
    np.testing.assert_array_equal(low.masks, g.masks)
    low_rms = set_contrast(g, 0.05, "rms")
    np.testing.assert_allclose(measure_contrast(low_rms, "rms"), 0.05, rtol=1e-3)
    one = set_contrast(g.images[0], 0.2)  # a single (H, W, 3) image
    assert one.shape == (32, 32, 3)


@settings(max_examples=25, deadline=None)
@given(
    c=st.floats(0.005, 0.35), seed=st.integers(0, 1000), kind=st.sampled_from(["rms", "michelson"])
)
def test_property_any_reachable_target(c, seed, kind):
    imgs = _images(n=2, size=8, seed=seed)
    out = set_contrast(imgs, c, kind)
    assert out.min() >= 0 and out.max() <= 1
    np.testing.assert_allclose(measure_contrast(out, kind), c, rtol=1e-3)


@pytest.mark.parametrize("bad", [0, -0.1, 1.2, float("nan")])
def test_contrast_outside_unit_interval_is_refused(bad):
    with pytest.raises(CortexmapError, match=r"\(0, 1\]"):
        set_contrast(_images(), bad)


def test_unreachable_uniform_black_and_kind_errors():
    imgs = _images()
    with pytest.raises(CortexmapError, match="clip=True"):
        set_contrast(imgs, 1.0, "rms")  # would need values outside [0, 1]
    clipped = set_contrast(imgs, 1.0, "rms", clip=True)
    assert clipped.min() >= 0 and clipped.max() <= 1
    with pytest.raises(CortexmapError, match="uniform"):
        set_contrast(np.full((1, 4, 4, 3), 0.5, np.float32), 0.1)
    with pytest.raises(CortexmapError, match="black"):
        set_contrast(np.zeros((1, 4, 4, 3), np.float32), 0.1)
    with pytest.raises(CortexmapError, match="kind"):
        set_contrast(imgs, 0.1, "weber")

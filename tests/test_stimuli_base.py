"""StimulusSet container and the bundled photographs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cortexmap.errors import CortexmapError
from cortexmap.stimuli import StimulusSet, bundled_names, load_bundled


def _set(n=4, size=8):
    rng = np.random.default_rng(0)
    return StimulusSet(
        images=rng.random((n, size, size, 3), dtype=np.float32),
        ids=[f"im{i}" for i in range(n)],
        categories=["a", "b"] * (n // 2),
        masks=rng.random((n, size, size)) > 0.5,
        metadata=pd.DataFrame({"x": np.arange(n)}),
        name="toy",
    )


def test_subset_keeps_everything_aligned():
    s = _set()
    sub = s.subset([2, 0])
    assert sub.ids == ["im2", "im0"] and sub.categories == ["a", "a"]
    np.testing.assert_array_equal(sub.images[0], s.images[2])
    np.testing.assert_array_equal(sub.masks[1], s.masks[0])
    assert list(sub.metadata["x"]) == [2, 0]
    assert s.subset(["im3"]).ids == ["im3"] and len(s.subset(slice(1, 3))) == 2
    assert s.subset(np.array([True, False, True, False])).ids == ["im0", "im2"]
    with pytest.raises(CortexmapError, match="Unknown stimulus ids"):
        s.subset(["nope"])


def test_resized_and_concat():
    s = _set()
    r = s.resized(4)
    assert r.images.shape == (4, 4, 4, 3) and r.masks.shape == (4, 4, 4)
    assert 0 <= r.images.min() and r.images.max() <= 1
    both = StimulusSet.concat([s.subset([0, 1]), s.subset([2, 3])])
    np.testing.assert_array_equal(both.images, s.images)
    assert both.categories == s.categories and len(both.metadata) == 4


def test_validation_errors():
    img = np.zeros((2, 8, 8, 3), np.float32)
    with pytest.raises(CortexmapError, match=r"\(n, H, W, 3\)"):
        StimulusSet(np.zeros((2, 8, 8, 4)), ["a", "b"])
    with pytest.raises(CortexmapError, match="ids"):
        StimulusSet(img, ["a"])
    with pytest.raises(CortexmapError, match="unique"):
        StimulusSet(img, ["a", "a"])
    with pytest.raises(CortexmapError, match=r"\[0, 1\]"):
        StimulusSet(img + 2, ["a", "b"])
    with pytest.raises(CortexmapError, match="masks have shape"):
        StimulusSet(img, ["a", "b"], masks=np.zeros((2, 4, 4), bool))
    u8 = StimulusSet(np.full((1, 2, 2, 3), 255, np.uint8), ["x"])
    assert u8.images.dtype == np.float32 and u8.images.max() == 1.0
    grey = StimulusSet(np.zeros((1, 3, 3)), ["g"])
    assert grey.images.shape == (1, 3, 3, 3)


def test_bundled_set_offline_categories_and_masks():
    s = load_bundled(size=64)
    assert len(s) >= 12 and s.ids == bundled_names()
    assert s.images.shape == (len(s), 64, 64, 3) and s.images.dtype == np.float32
    assert s.masks.shape == (len(s), 64, 64) and s.masks.dtype == bool
    cats = pd.Series(s.categories)
    assert cats.nunique() >= 5 and (cats.value_counts() >= 2).all()
    frac = s.masks.mean(axis=(1, 2))
    # every mask marks a real object: neither empty nor the whole image
    assert (frac > 0.02).all() and (frac < 0.995).all(), dict(
        zip(s.ids, frac.round(3), strict=True)
    )
    # dataset-level checks that the masks sit on the objects
    fg = dict(zip(s.ids, frac, strict=True))
    assert 0.3 < fg["horse"] < 0.6 and fg["cell"] < 0.15 and fg["rocket"] < 0.2
    i = s.ids.index("cell")  # the cell is a bright disk: its mask is brighter than the rest
    assert s.images[i][s.masks[i]].mean() > s.images[i][~s.masks[i]].mean() + 0.2
    j = s.ids.index("coins")
    assert s.images[j][s.masks[j]].mean() > s.images[j][~s.masks[j]].mean() + 0.2
    k = s.ids.index("horse")  # black silhouette on white
    assert s.images[k][s.masks[k]].mean() < 0.2 and s.images[k][~s.masks[k]].mean() > 0.8
    assert list(s.metadata.columns) == ["id", "category", "source", "fg_fraction"]


def test_bundled_subset_and_errors():
    s = load_bundled(size=32, names=["coffee", "astronaut"])
    assert s.ids == ["coffee", "astronaut"] and s.categories == ["object", "person"]
    with pytest.raises(CortexmapError, match="valid names"):
        load_bundled(names=["lena"])
    with pytest.raises(CortexmapError, match="size"):
        load_bundled(size=3)

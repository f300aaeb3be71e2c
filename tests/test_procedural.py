"""Procedural object dataset: determinism, slicing, splits, masks, contrast, bad input."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cortexmap.errors import CortexmapError
from cortexmap.stimuli.procedural import (
    CHUNK,
    CLASSES,
    ProceduralObjects,
    apply_contrast,
    generate,
)
from cortexmap.stimuli.procedural_kernel import SDF_SLOPE, SHAPE_RADIUS, _mix64, _noise, sdf


@pytest.fixture(scope="module")
def base():
    return generate("train", 300, seed=3, size=64)


def test_shapes_ranges_and_classes(base):
    images, labels, masks, meta = base
    assert images.shape == (300, 64, 64, 3) and images.dtype == np.float32
    assert masks.shape == (300, 64, 64) and masks.dtype == bool
    assert labels.shape == (300,) and labels.dtype == np.int64
    assert 0 <= images.min() and images.max() <= 1
    assert len(CLASSES) >= 10
    assert set(np.unique(labels)) == set(range(len(CLASSES)))  # 300 draws cover all classes
    assert list(meta["category"]) == [CLASSES[i] for i in labels]
    assert len(meta) == 300 and meta["index"].tolist() == list(range(300))
    # varied nuisance parameters
    assert meta["scale"].std() > 0.02 and meta["rotation_deg"].std() > 20
    assert meta["texture"].nunique() == 4 and meta["background"].nunique() >= 8


def test_masks_cover_the_object_and_differ_from_background(base):
    images, labels, masks, _ = base
    frac = masks.mean(axis=(1, 2))
    assert (frac > 0.01).all() and (frac < 0.6).all()
    # object pixels differ from the background around them
    diffs = [np.abs(im[m].mean(0) - im[~m].mean(0)).max()
             for im, m in zip(images, masks, strict=True)]
    assert np.median(diffs) > 0.05
    # a ring has a hole at its centre, a disk has none (occluders can only remove mask pixels)
    _, _, _, meta = base
    cy = (meta["y"].to_numpy() * 64).astype(int)
    cx = (meta["x"].to_numpy() * 64).astype(int)
    centre = masks[np.arange(len(masks)), cy, cx]
    assert not centre[labels == CLASSES.index("ring")].any()
    assert centre[labels == CLASSES.index("disk")].mean() > 0.7


def test_deterministic_and_seed_dependent(base):
    again = generate("train", 300, seed=3, size=64)
    np.testing.assert_array_equal(again[0], base[0])
    np.testing.assert_array_equal(again[2], base[2])
    other = generate("train", 300, seed=4, size=64)
    assert not np.array_equal(other[1], base[1])


def test_splits_are_independent(base):
    val = generate("val", 300, seed=3)
    test = generate("test", 300, seed=3)
    assert not np.allclose(val[0], base[0]) and not np.allclose(test[0], val[0])


@settings(max_examples=4, deadline=None)
@given(start=st.integers(CHUNK - 30, CHUNK + 10), n=st.integers(0, 40))
def test_any_slice_of_the_stream_renders_alone(start, n):
    sub = generate("test", n, seed=1, size=32, start=start)
    full = generate("test", start + n, seed=1, size=32)
    np.testing.assert_array_equal(sub[0], full[0][start:])
    np.testing.assert_array_equal(sub[1], full[1][start:])


def test_prefix_property(base):
    small = generate("train", 40, seed=3)
    np.testing.assert_array_equal(small[0], base[0][:40])


def test_contrast_keeps_mean_and_scales_deviations(base):
    images = base[0][:20]
    for c in (0.5, 0.1, 0.01):
        low = apply_contrast(images, c)
        np.testing.assert_allclose(low.mean(axis=(1, 2, 3)), images.mean(axis=(1, 2, 3)),
                                   atol=1e-5)
        np.testing.assert_allclose(low.std(axis=(1, 2, 3)), c * images.std(axis=(1, 2, 3)),
                                   rtol=1e-3)
        assert 0 <= low.min() and low.max() <= 1


def test_dataset_object_and_contrast_levels():
    ds = ProceduralObjects("test", n=30, seed=0, size=48)
    assert len(ds) == 30 and ds.images.shape == (30, 48, 48, 3)
    img, label = ds[0]
    assert img.shape == (48, 48, 3) and label == ds.labels[0]
    low = ds.with_contrast(0.05)
    np.testing.assert_array_equal(low.labels, ds.labels)
    np.testing.assert_allclose(low.images, apply_contrast(ds.images, 0.05), atol=1e-6)
    assert (low.metadata["contrast"] == 0.05).all()
    assert ds.categories[0] == CLASSES[ds.labels[0]]
    assert len(set(ds.ids)) == 30


def test_to_stimulus_set():
    ds = ProceduralObjects("val", n=12, seed=0)
    s = ds.to_stimulus_set()
    assert len(s) == 12 and s.masks.shape == (12, 64, 64) and s.categories == ds.categories


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"split": "training"}, "Unknown split"),
        ({"contrast": 0.0}, "contrast must be in"),
        ({"contrast": 1.5}, "contrast must be in"),
        ({"contrast": float("nan")}, "contrast must be in"),
        ({"size": 16}, "size must be"),
        ({"n": -1}, "n and start"),
    ],
)
def test_bad_input(kwargs, match):
    args = {"split": "train", "n": 4, "seed": 0, "size": 64, "contrast": 1.0} | kwargs
    with pytest.raises(CortexmapError, match=match):
        generate(**args)


@pytest.mark.parametrize("label", range(len(CLASSES)))
def test_shape_bounds_used_to_skip_pixels_hold(label):
    # the renderer skips a pixel's SDF when r >= radius + 0.5 px / slope: that is only exact if
    # every shape lies inside its radius and its SDF grows at least at that slope outside it
    xs = np.linspace(-1.8, 1.8, 361)
    u, v = (a.ravel() for a in np.meshgrid(xs, xs))
    d = np.array([sdf(label, a, b) for a, b in zip(u, v, strict=True)])
    r = np.hypot(u, v)
    radius, slope = SHAPE_RADIUS[label], SDF_SLOPE[label]
    assert r[d <= 0].max() <= radius
    assert r[d <= 0].max() > radius - 0.03  # and the bound is tight
    outside = r > radius
    assert (d[outside] >= slope * (r[outside] - radius) - 1e-9).all()


def test_pixel_noise_is_standardised_and_uncorrelated():
    key = np.uint64(_mix64(np.uint64(12345)))
    z = np.array([_noise(key, i) for i in range(60000)])
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 0.02  # neighbouring pixels / channels
    key2 = np.uint64(_mix64(np.uint64(12346)))
    other = np.array([_noise(key2, i) for i in range(60000)])
    assert abs(np.corrcoef(z, other)[0, 1]) < 0.02  # neighbouring image seeds


def test_noise_is_small_and_images_differ_only_by_it(base):
    # two renders of one image with another noise seed differ by the noise alone
    from cortexmap.stimuli.procedural import _draw_params, _render

    params = _draw_params(np.random.default_rng(0), 8)
    a, mask_a = _render(params, 64)
    params["noise_seed"] = params["noise_seed"] + 1
    b, mask_b = _render(params, 64)
    np.testing.assert_array_equal(mask_a, mask_b)
    diff = (a - b)[(a > 0.1) & (a < 0.9) & (b > 0.1) & (b < 0.9)]  # away from clipping
    assert 0.015 * np.sqrt(2) * 0.9 < diff.std() < 0.015 * np.sqrt(2) * 1.1


def test_views_keep_the_object_and_change_the_scene(base):
    images, labels, masks, meta = base
    v_images, v_labels, v_masks, v_meta = generate("train", 300, seed=3, view=1)
    np.testing.assert_array_equal(v_labels, labels)
    for col in ("scale", "rotation_deg", "x", "y", "texture"):
        np.testing.assert_array_equal(v_meta[col], meta[col])
    assert (v_meta["background"] != meta["background"]).mean() > 0.8
    # the object covers the same pixels unless an occluder now hides part of it
    assert (v_masks == masks).mean() > 0.99 and not np.array_equal(v_images, images)
    np.testing.assert_array_equal(generate("train", 20, seed=3, view=1)[0], v_images[:20])
    with pytest.raises(CortexmapError, match="view must be"):
        generate("train", 4, view=-1)


def test_backgrounds_are_disjoint_from_the_bundled_evaluation_photographs():
    """Evaluation images are held out: no background photo is (a copy of) a bundled photograph."""
    import hashlib

    import skimage.data

    from cortexmap.stimuli.bundled import PHOTOS
    from cortexmap.stimuli.procedural import background_source, background_sources

    def digest(arr) -> str:
        arr = np.ascontiguousarray(arr[0] if isinstance(arr, tuple) else arr)
        return hashlib.sha256(arr.tobytes()).hexdigest()

    train = {digest(background_source(s)) for s in background_sources()}
    evaluation = {digest(getattr(skimage.data, p.loader)()) for p in PHOTOS.values()}
    assert len(train) == len(background_sources()) and len(evaluation) == len(PHOTOS)
    assert not train & evaluation
    loaders = {p.loader for p in PHOTOS.values()}
    assert not {s.partition(":")[2] for s in background_sources()} & loaders

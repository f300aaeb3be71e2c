"""Contrast probes: psychometric fits, decoding, RSA, divisive normalisation, run_contrast."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from cortexmap.errors import CortexmapError
from cortexmap.probes import contrast as ct


def threshold_net(gain: float = 40.0) -> nn.Module:
    """2 classes (left half brighter = 1). k0 = ReLU(g d - 1) per pixel, d = pixel - 0.5; the
    class-1 score is k0 averaged over the left half, the class-0 score over the right half, ties
    go to class 0. An image of deviation ``a`` is recognised only above contrast 1 / (g a)."""
    conv = nn.Conv2d(3, 2, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0] = gain / 3
        conv.weight[1] = -gain / 3
        conv.bias.copy_(torch.tensor([-0.5 * gain - 1, 0.5 * gain - 1]))
    fc = nn.Linear(4, 2)
    with torch.no_grad():
        fc.weight.zero_()
        fc.weight[1, 0] = 1.0  # k0 left
        fc.weight[0, 1] = 1.0  # k0 right
        fc.bias.zero_()
    return nn.Sequential(OrderedDict(
        conv1=nn.Sequential(conv, nn.ReLU()), pool=nn.AdaptiveAvgPool2d((1, 2)),
        flat=nn.Flatten(), classifier=fc,
    )).eval()


def graded_images(n_per_class: int = 10, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Half-bright / half-dark images with deviations 0.05..0.45 (graded difficulty)."""
    amps = np.linspace(0.05, 0.45, n_per_class)
    imgs, labels = [], []
    for s, label in ((1.0, 1), (-1.0, 0)):
        for a in amps:
            img = np.full((size, size, 3), 0.5, np.float32)
            img[:, : size // 2] += a * s
            img[:, size // 2 :] -= a * s
            imgs.append(img)
            labels.append(label)
    return np.stack(imgs), np.asarray(labels)


def test_check_contrasts_rejects_levels_outside_unit_interval():
    assert ct.check_contrasts([1, 0.5, 0.01]) == [1.0, 0.5, 0.01]
    for bad in ([0.0], [1.5], [-0.2], [5, 1], [float("nan")]):
        with pytest.raises(CortexmapError, match=r"outside \(0, 1\]"):
            ct.check_contrasts(bad)
    with pytest.raises(CortexmapError, match="duplicates"):
        ct.check_contrasts([0.5, 0.5])
    with pytest.raises(CortexmapError, match="No contrast"):
        ct.check_contrasts([])


def test_empty_test_set_raises():
    with pytest.raises(CortexmapError, match="empty"):
        ct.contrast_series(np.zeros((0, 8, 8, 3), np.float32), [1.0])
    with pytest.raises(CortexmapError, match="labels"):
        ct.check_test_set(np.zeros((2, 8, 8, 3)), np.zeros(3))


def test_contrast_series_scales_about_the_mean():
    imgs, _ = graded_images(2)
    s = ct.contrast_series(imgs, [1.0, 0.1])
    np.testing.assert_allclose(s[0.1] - 0.5, 0.1 * (imgs - 0.5), atol=1e-6)
    rms = ct.contrast_series(imgs, [0.2], kind="rms")[0.2]
    assert rms.shape == imgs.shape


def test_fit_recovers_planted_naka_rushton(rng):
    c = np.array([1.0, 0.5, 0.3, 0.1, 0.05, 0.03, 0.01])
    truth = dict(c50=0.06, exponent=2.0, top=0.9, chance=0.1)
    fit = ct.fit_contrast_curve(c, ct.naka_rushton(c, **truth), chance=0.1)
    assert fit.c50 == pytest.approx(0.06, rel=1e-3)
    assert fit.exponent == pytest.approx(2.0, rel=1e-3)
    assert fit.top == pytest.approx(0.9, abs=1e-4) and fit.r2 > 0.9999
    noisy = ct.naka_rushton(c, **truth) + rng.normal(0, 0.01, len(c))
    fit = ct.fit_contrast_curve(c, noisy, chance=0.1)
    assert 0.045 < fit.c50 < 0.08 and fit.r2 > 0.98
    assert not fit.steep
    # a jump between two sampled levels: the exponent runs to its bound, flagged as a step
    step = ct.fit_contrast_curve(c, np.where(c >= 0.1, 0.9, 0.1), chance=0.1)
    assert step.steep and 0.03 < step.c50 <= 0.1
    assert ct.curve_table({"step": step, "smooth": fit})["steep"].tolist() == [True, False]
    with pytest.raises(CortexmapError, match="at least 3"):
        ct.fit_contrast_curve([1.0, 0.1], [0.9, 0.2], chance=0.1)


def test_accuracy_by_contrast_on_a_planted_threshold():
    imgs, labels = graded_images()
    net = threshold_net()
    acc = ct.accuracy_by_contrast(net, ct.contrast_series(imgs, ct.DEFAULT_CONTRASTS), labels,
                                  class_names=["dark-left", "bright-left"], per_class=True)
    amps = np.linspace(0.05, 0.45, 10)
    for c in ct.DEFAULT_CONTRASTS:
        expected_1 = np.mean(40 * amps * c > 1)  # class-1 images above threshold
        row = acc[(acc["contrast"] == c)].set_index("class")["accuracy"]
        assert row["bright-left"] == pytest.approx(expected_1)
        assert row["dark-left"] == 1.0  # ties go to class 0
        assert row["all"] == pytest.approx(0.5 + expected_1 / 2)


def test_contrast_decoding_finds_the_layer_that_encodes_contrast(rng):
    levels = np.array([1.0, 0.3, 0.1, 0.03])
    n_img = 12
    contrast = np.repeat(levels, n_img)
    groups = np.tile(np.arange(n_img), len(levels))
    image_code = rng.normal(size=(n_img, 6))[groups]
    encodes = np.c_[np.log10(contrast)[:, None] * rng.normal(size=(1, 6)) * 3, image_code]
    acts = {"early": encodes + rng.normal(0, 0.1, encodes.shape),
            "late": np.c_[rng.normal(size=(len(contrast), 6)), image_code]}
    dec = ct.contrast_decoding(acts, contrast, groups, n_splits=3).set_index("layer")
    assert dec.loc["early", "decoding_accuracy"] > 0.9
    assert dec.loc["early", "log_contrast_r2"] > 0.9
    assert dec.loc["late", "decoding_accuracy"] < 0.5
    assert dec.loc["late", "chance"] == 0.25


def test_contrast_rsa_separates_contrast_and_category_codes(rng):
    levels = np.array([1.0, 0.3, 0.1, 0.03])
    labels_img = np.array([0, 0, 1, 1, 2, 2])
    contrast = np.repeat(levels, len(labels_img))
    labels = np.tile(labels_img, len(levels))
    acts = {
        "contrast-coding": np.log10(contrast)[:, None] * np.ones((1, 5))
        + rng.normal(0, 0.01, (len(contrast), 5)),
        "category-coding": np.eye(3)[labels] * 5 + rng.normal(0, 0.01, (len(contrast), 3)),
    }
    rsa = ct.contrast_rsa(acts, contrast, labels, metric="euclidean").set_index("layer")
    assert rsa.loc["contrast-coding", "rsa_contrast"] > 0.9
    assert rsa.loc["contrast-coding", "rsa_category"] < 0.2
    # a binary model RDM has many ties, which caps its Spearman correlation below 1
    assert rsa.loc["category-coding", "rsa_category"] > 0.7
    assert abs(rsa.loc["category-coding", "rsa_contrast"]) < 0.2


def test_divisive_normalisation_makes_responses_contrast_invariant(rng):
    x = torch.from_numpy(rng.random((4, 3, 16, 16)).astype(np.float32))
    norm = ct.DivisiveNormalization(pool_size=5, sigma=0.01).calibrate(x)
    mean = x.mean()
    full, low = norm(x), norm(mean + 0.2 * (x - mean))
    # far above the semi-saturation constant the output barely depends on contrast
    dev_full = full - torch.nn.functional.avg_pool2d(x, 5, 1, 2, count_include_pad=False)
    dev_low = low - torch.nn.functional.avg_pool2d(mean + 0.2 * (x - mean), 5, 1, 2,
                                                   count_include_pad=False)
    assert torch.allclose(dev_low, dev_full, atol=0.05 * float(dev_full.abs().max()))
    # calibrated so that full-contrast input keeps its usual scale
    ratio = float(dev_full.std() / (x - x.mean()).std())
    assert 0.5 < ratio < 2.0
    with pytest.raises(CortexmapError, match="odd"):
        ct.DivisiveNormalization(pool_size=4)
    with pytest.raises(CortexmapError, match="sigma"):
        ct.DivisiveNormalization(sigma=0)


def test_input_normalisation_rescues_low_contrast_accuracy():
    imgs, labels = graded_images()
    net = threshold_net()
    series = ct.contrast_series(imgs, ct.DEFAULT_CONTRASTS)
    normed = ct.with_input_normalization(net, imgs, pool_size=31, sigma=0.1)
    a0 = ct.accuracy_by_contrast(net, series, labels).set_index("contrast")["accuracy"]
    a1 = ct.accuracy_by_contrast(normed, series, labels).set_index("contrast")["accuracy"]
    assert a1[1.0] == 1.0 and a1[0.05] > a0[0.05] and (a1 >= a0).all()
    layer_normed = ct.with_layer_normalization(net, "conv1", imgs)
    assert ct.accuracy_by_contrast(layer_normed, series, labels)["accuracy"].iloc[0] == 1.0


def test_run_contrast_end_to_end(tmp_path):
    from cortexmap.analyses.contrast import ContrastConfig, run_contrast
    from cortexmap.report import Report

    imgs, labels = graded_images()
    cfg = ContrastConfig(model="planted-threshold", layers=["conv1", "classifier"], n_splits=2,
                         rsa_images=6, rsa_metric="euclidean", norm_layer="conv1",
                         input_norm_pool=31)
    res = run_contrast(cfg, tmp_path / "out", progress=False, model=threshold_net(),
                       images=imgs, labels=labels, class_names=["dark-left", "bright-left"])
    curves = res.tables["curves"].set_index("condition")
    assert set(curves.index) == {"intact", "input divisive norm", "conv1 divisive norm"}
    assert curves.loc["input divisive norm", "c50"] < curves.loc["intact", "c50"]
    assert 0.05 < curves.loc["intact", "c50"] < 0.3 and curves.loc["intact", "chance"] == 0.5
    assert list(res.tables["decoding"]["layer"]) == ["conv1", "classifier"]
    assert list(res.tables["decoding_baseline"]["layer"]) == ["pixel statistics"]
    dec = res.tables["decoding"].iloc[0]  # low levels are all below threshold: partly decodable
    assert dec["decoding_accuracy"] > 2 * dec["chance"]
    for stem in ("contrast_accuracy", "contrast_curves", "contrast_decoding", "contrast_rsa"):
        assert (tmp_path / "out" / f"{stem}.parquet").exists()
        assert (tmp_path / "out" / f"{stem}.csv").exists()
    assert (tmp_path / "out" / "accuracy_vs_contrast.png").exists()
    assert (tmp_path / "out" / "provenance.json").exists()
    claims = {f.claim: f.reproduced for f in res.findings}
    assert len(claims) == 3
    assert claims[next(c for c in claims if c.startswith("Mechanism check"))] is True
    early = next(f for f in res.findings if f.claim.startswith("Contrast is encoded early"))
    assert "pixel-statistics baseline" in early.control
    assert all(f.evidence == "in-silico" and f.control for f in res.findings)
    report = Report("contrast")
    res.add_to_report(report)
    html = report.write(tmp_path / "report.html").read_text()
    assert "Image contrast" in html and "c50" in html
    with pytest.raises(CortexmapError, match="not empty"):
        run_contrast(cfg, tmp_path / "out", progress=False, model=threshold_net(), images=imgs,
                     labels=labels)
    with pytest.raises(CortexmapError, match=r"outside \(0, 1\]"):
        run_contrast(cfg.model_copy(update={"contrasts": [1.0, 2.0, 0.5]}), tmp_path / "o2",
                     model=threshold_net(), images=imgs, labels=labels)
    with pytest.raises(CortexmapError, match="empty"):
        run_contrast(cfg, tmp_path / "o3", model=threshold_net(), images=imgs[:0],
                     labels=labels[:0])


def test_pixel_statistics_track_contrast_and_informative_levels():
    from cortexmap.analyses.classification import informative_levels

    rng = np.random.default_rng(0)
    imgs = rng.uniform(0, 1, (4, 16, 16, 3)).astype(np.float32)
    series = ct.contrast_series(imgs, [1.0, 0.1], "relative")
    full, low = ct.pixel_statistics(series[1.0]), ct.pixel_statistics(series[0.1])
    assert full.shape == (4, 10)
    np.testing.assert_allclose(low[:, 1], 0.1 * full[:, 1], rtol=1e-4)  # RMS scales with c
    np.testing.assert_allclose(low[:, 0], full[:, 0], atol=1e-5)  # mean luminance kept
    levels = informative_levels([1.0, 0.5, 0.3, 0.1, 0.05], [0.95, 0.94, 0.7, 0.4, 0.1], 0.1)
    assert levels == [0.1, 0.3]  # 0.5 sits at the ceiling, 0.05 at chance

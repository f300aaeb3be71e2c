"""Kernel lesions: planted-truth networks, agreement with a naive full forward, resume, Dask."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from cortexmap.errors import CortexmapError
from cortexmap.probes import lesion as ls
from cortexmap.probes.contrast import model_input
from tests.lesion_check import assert_sweep_matches_naive

CONTRASTS = [1.0, 0.5, 0.05, 0.01]


def planted_net(gain: float = 10.0) -> nn.Module:
    """A 2-class net whose kernels have known roles (input: images (n, S, S, 3) in [0, 1]).

    conv1 (1x1) reads the grey-level deviation d = pixel - 0.5:
      k0 = ReLU(g d)      carries the class at every contrast;
      k1 = ReLU(-g d)     unused by the classifier;
      k2 = ReLU(g d - 1)  carries the class only at high contrast (threshold);
      k3 = ReLU(1)        a constant offset the classifier relies on.
    The class is which half (left = 1, right = 0) is brighter. Scores: class 1 = k0L + k2L + k3L
    - 1, class 0 = k0R + k2R (ties go to class 0). So removing k0 or zeroing k3 hurts only
    low-contrast class-1 images (drop 0.5), removing k1 or k2 hurts nothing, and mean-replacing
    the constant k3 changes nothing.
    """
    conv = nn.Conv2d(3, 4, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:3, :, 0, 0] = torch.tensor([1.0, -1.0, 1.0])[:, None] * gain / 3
        conv.bias.copy_(torch.tensor([-0.5 * gain, 0.5 * gain, -0.5 * gain - 1, 1.0]))
    fc = nn.Linear(8, 2)
    with torch.no_grad():
        fc.weight.zero_()
        # flattened features: index = channel * 2 + (0 left | 1 right)
        fc.weight[1, [0, 4, 6]] = 1.0
        fc.weight[0, [1, 5]] = 1.0
        fc.bias.copy_(torch.tensor([0.0, -1.0]))
    return nn.Sequential(OrderedDict(
        conv1=nn.Sequential(conv, nn.ReLU()),
        pool=nn.AdaptiveAvgPool2d((1, 2)),
        flat=nn.Flatten(),
        classifier=fc,
    )).eval()


def planted_images(n_per_class: int = 4, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Left half bright (class 1) or dark (class 0), deviation 0.4; image mean exactly 0.5."""
    imgs, labels = [], []
    for s, label in ((1.0, 1), (-1.0, 0)):
        img = np.full((size, size, 3), 0.5, np.float32)
        img[:, : size // 2] += 0.4 * s
        img[:, size // 2 :] -= 0.4 * s
        imgs += [img] * n_per_class
        labels += [label] * n_per_class
    return np.stack(imgs), np.asarray(labels)


def series(images: np.ndarray, levels=CONTRASTS) -> dict[float, np.ndarray]:
    from cortexmap.probes.contrast import contrast_series

    return contrast_series(images, levels)


def random_net() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(OrderedDict(
        conv1=nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        conv2=nn.Sequential(nn.Conv2d(6, 8, 3, padding=1), nn.ReLU()),
        pool=nn.AdaptiveAvgPool2d(2),
        flat=nn.Flatten(),
        fc6=nn.Sequential(nn.Linear(32, 12), nn.ReLU()),
        classifier=nn.Linear(12, 5),
    )).eval()


# --------------------------------------------------------------------------- planted truth
def test_planted_single_kernel_drops():
    imgs, labels = planted_images()
    sweep = ls.lesion_sweep(planted_net(), ["conv1"], series(imgs), labels, progress=False)
    m = sweep.matrix("conv1")
    assert list(m.columns) == CONTRASTS and list(m.index) == ["0", "1", "2", "3"]
    expected = np.array([
        [0.0, 0.0, 0.5, 0.5],  # k0: only low contrast suffers
        [0.0, 0.0, 0.0, 0.0],  # k1: unused
        [0.0, 0.0, 0.0, 0.0],  # k2: redundant with k0
        [0.0, 0.0, 0.5, 0.5],  # k3: offset needed at low contrast
    ])
    np.testing.assert_allclose(m.to_numpy(), expected)
    assert (sweep.baseline["accuracy"] == 1.0).all()
    low = ls.low_contrast_levels(sweep.baseline, chance=0.5, low_contrast_max=0.1)
    assert low == [0.01, 0.05]
    top = ls.top_low_contrast_kernels(sweep.drops(), n_top=2, low_levels=low)
    assert sorted(top["kernel"]) == [0, 3]
    np.testing.assert_allclose(top["specificity"], 0.5)
    np.testing.assert_allclose(top["share_of_low_contrast_drop"], 0.5)


def test_planted_multi_kernel_and_mean_lesions():
    imgs, labels = planted_images()
    sets = {"conv1": [[0, 2], [1, 2]]}
    sweep = ls.lesion_sweep(planted_net(), ["conv1"], series(imgs), labels, lesion_sets=sets,
                            progress=False)
    assert set(sweep.table["kind"]) == {"set"}
    d = sweep.drops("set").pivot(index="lesion", columns="contrast", values="drop")
    np.testing.assert_allclose(d.loc["0+2"], 0.5)  # both class-1 pathways gone: always wrong
    np.testing.assert_allclose(d.loc["1+2"], 0.0)
    assert set(sweep.drops("set")["n_removed"]) == {2}

    mean = ls.lesion_sweep(planted_net(), ["conv1"], series(imgs), labels, mode="mean",
                           progress=False).matrix("conv1")
    np.testing.assert_allclose(mean.loc["3"], 0.0)  # a constant channel: its mean is itself
    np.testing.assert_allclose(mean.loc["0"], [0, 0, 0.5, 0.5])


def test_per_class_accuracy():
    imgs, labels = planted_images()
    sweep = ls.lesion_sweep(planted_net(), ["conv1"], series(imgs), labels, per_class=True,
                            class_names=["right", "left"], kernels={"conv1": [0]},
                            progress=False)
    pc = sweep.per_class()
    low = pc[pc["contrast"] == 0.01].set_index("class")["drop"]
    assert low["left"] == 1.0 and low["right"] == 0.0  # all of the loss is in class 1
    assert len(sweep.drops()) == len(CONTRASTS)


def test_auto_low_contrast_levels_follow_the_psychometric_curve():
    base = pd.DataFrame({"contrast": [1.0, 0.5, 0.3, 0.1, 0.01],
                         "accuracy": [0.9, 0.85, 0.5, 0.12, 0.1]})
    # chance 0.1, gain 0.8: 50 % (94 %) is saturated, 10 % and 1 % are at chance
    assert ls.low_contrast_levels(base, chance=0.1) == [0.3]
    base["accuracy"] = [0.9, 0.88, 0.86, 0.1, 0.1]  # a step: lowest level above chance
    assert ls.low_contrast_levels(base, chance=0.1) == [0.3]
    base["accuracy"] = 0.1  # nothing learnt: fall back to <= 10 %
    assert ls.low_contrast_levels(base, chance=0.1) == [0.01, 0.1]
    with pytest.raises(CortexmapError, match="low_contrast_max"):
        ls.low_contrast_levels(base, chance=0.1, low_contrast_max=0.001)


# --------------------------------------------------------------------------- engine pieces
def test_apply_lesions_zero_and_fill():
    acts = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2)
    masks = torch.tensor([[True, False, False], [False, True, True]])
    out = ls.apply_lesions(acts, masks).view(2, 2, 3, 2)
    assert torch.equal(out[0, :, 0], torch.zeros(2, 2)) and torch.equal(out[0, :, 1:],
                                                                         acts[:, 1:])
    assert torch.equal(out[1, :, 1:], torch.zeros(2, 2, 2))
    fill = torch.full_like(acts, 7.0)
    out = ls.apply_lesions(acts, masks, fill).view(2, 2, 3, 2)
    assert (out[0, :, 0] == 7).all() and torch.equal(out[0, :, 1:], acts[:, 1:])


def test_fill_values_are_per_contrast_means():
    acts = torch.tensor([[1.0], [3.0], [10.0], [20.0]])
    fill = ls.fill_values(acts, np.array([1.0, 1.0, 0.1, 0.1]), "mean")
    assert fill.flatten().tolist() == [2.0, 2.0, 15.0, 15.0]
    assert ls.fill_values(acts, np.ones(4), "zero") is None


def test_fast_engine_matches_naive_full_forward(rng):
    imgs = rng.random((12, 16, 16, 3)).astype(np.float32)
    assert_sweep_matches_naive(random_net(), ["conv1", "conv2", "fc6"], imgs,
                               rng.integers(0, 5, 12), contrasts=(1.0, 0.2), batch_lesions=3)


def test_linear_stage_shortcut_matches_rerunning_the_tail(rng):
    from cortexmap.models.split import layer_output, split_at

    net = random_net()
    head, tail = split_at(net, "conv1")
    stage = ls.linear_stage(tail)
    assert stage is not None and stage.conv is net.conv2[0]
    acts = layer_output(head, torch.from_numpy(rng.random((10, 3, 16, 16)).astype(np.float32)))
    z = stage.conv(acts)
    fill = ls.fill_values(acts, np.repeat([1.0, 0.5], 5), "mean")
    for masks in (ls.kernel_masks(6), ls.set_masks(6, [[0, 1], [2, 3, 5]])):
        m = torch.from_numpy(masks)
        for f in (None, fill):
            with torch.inference_mode():
                plain = tail(ls.apply_lesions(acts, m, f))
                fast = stage.rest(stage.lesioned(z, acts, m, f))
            torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-4)
    # a pooling layer after conv1 is not linear in the channel sense used here: no shortcut
    assert ls.linear_stage(split_at(planted_net(), "conv1")[1]) is None


def test_dead_channels_are_noop_lesions(rng):
    net = random_net()
    with torch.no_grad():  # kernel 2 of conv1 can never fire
        net.conv1[0].weight[2] = 0.0
        net.conv1[0].bias[2] = -1.0
    imgs = rng.random((6, 16, 16, 3)).astype(np.float32)
    acts = torch.relu(net.conv1[0](model_input(net, imgs)))
    noop = ls.noop_lesions(acts, ls.kernel_masks(6), None)
    assert noop.tolist() == [False, False, True, False, False, False]
    sweep = ls.lesion_sweep(net, ["conv1"], series(imgs, [1.0, 0.3]), rng.integers(0, 5, 6),
                            progress=False)
    np.testing.assert_allclose(sweep.matrix("conv1").loc["2"], 0.0)


def test_combining_halves_equals_one_sweep(rng):
    net = random_net()
    imgs = rng.random((10, 16, 16, 3)).astype(np.float32)
    labels = rng.integers(0, 5, 10)
    ibc = series(imgs, [1.0, 0.2])
    full = ls.lesion_sweep(net, ["conv1"], ibc, labels, per_class=True, progress=False)
    halves = [ls.lesion_sweep(net, ["conv1"], {c: v[h] for c, v in ibc.items()}, labels[h],
                              per_class=True, progress=False)
              for h in (np.arange(0, 10, 2), np.arange(1, 10, 2))]
    both = ls.combine_sweeps(halves)
    key = ["lesion", "contrast", "class"]
    a = full.table.sort_values(key).reset_index(drop=True)
    b = both.table.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=False, check_dtype=False)


def test_resume_reuses_finished_layers_and_refuses_stale_ones(tmp_path, monkeypatch):
    imgs, labels = planted_images()
    first = ls.lesion_sweep(planted_net(), ["conv1"], series(imgs), labels,
                            resume_dir=tmp_path, progress=False)
    assert (tmp_path / "layer_conv1.parquet").exists()

    def boom(*a, **k):
        raise AssertionError("a finished layer was recomputed")

    monkeypatch.setattr(ls, "_evaluate", boom)
    again = ls.lesion_sweep(planted_net(), ["conv1"], series(imgs), labels,
                            resume_dir=tmp_path, progress=False)
    pd.testing.assert_frame_equal(first.table, again.table)
    with pytest.raises(AssertionError, match="recomputed"):  # other mode = other fingerprint
        ls.lesion_sweep(planted_net(), ["conv1"], series(imgs), labels, mode="mean",
                        resume_dir=tmp_path, progress=False)


def _dask_sweep(rng, make_client):
    net = random_net()
    imgs = rng.random((8, 16, 16, 3)).astype(np.float32)
    labels = rng.integers(0, 5, 8)
    ibc = series(imgs, [1.0, 0.1])
    # conv1 feeds a Conv2d stage, conv2 no stage (pooling), fc6 a Linear stage
    layers = ["conv1", "conv2", "fc6"]
    local = ls.lesion_sweep(net, layers, ibc, labels, progress=False)
    client = make_client()
    try:
        dist = ls.lesion_sweep(net, layers, ibc, labels, client=client, progress=False)
    finally:
        client.close()
        client.cluster.close()
    pd.testing.assert_frame_equal(local.table, dist.table)


def test_dask_client_gives_the_same_table(rng):
    from dask.distributed import Client, LocalCluster

    _dask_sweep(rng, lambda: Client(LocalCluster(n_workers=2, threads_per_worker=1,
                                                 processes=False, dashboard_address=":0")))


@pytest.mark.slow
def test_dask_worker_processes_give_the_same_table(rng):
    """Worker processes: the tail module and cached activations travel by pickling."""
    from cortexmap.utils.dask import get_client

    _dask_sweep(rng, lambda: get_client(n_workers=1))


# --------------------------------------------------------------------------- appearance
def test_first_layer_weights_as_rgb_and_preferred_gratings():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 2, 5, padding=2, bias=False)
    with torch.no_grad():
        d = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0])
        conv.weight.zero_()
        conv.weight[0, :] = d[None, None, :].expand(3, 5, 5)  # varies along x: vertical stripes
        conv.weight[1, :] = d[None, :, None].expand(3, 5, 5)  # varies along y: horizontal stripes
    net = nn.Sequential(OrderedDict(conv1=nn.Sequential(conv, nn.ReLU()),
                                    conv2=nn.Sequential(nn.Conv2d(2, 2, 1), nn.ReLU()),
                                    pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(),
                                    classifier=nn.Linear(2, 2))).eval()
    assert ls.first_layer_conv(net, "conv1") is conv
    assert ls.first_layer_conv(net, "conv2") is None
    rgb = ls.kernel_rgb(conv.weight)
    assert rgb.shape == (2, 5, 5, 3) and rgb.min() >= 0 and rgb.max() <= 1
    assert rgb[0, 2, 4, 0] == 1.0 and rgb[0, 2, 0, 0] == 0.0 and rgb[0, 2, 2, 0] == 0.5
    table, images = ls.preferred_gratings(net, "conv1", [0, 1], size=32)
    assert table.set_index("kernel")["orientation_deg"].to_dict() == {0: 90.0, 1: 0.0}
    assert images.shape == (2, 32, 32, 3)


# --------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_clear_errors():
    imgs, labels = planted_images()
    net = planted_net()
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(CortexmapError, match=r"outside \(0, 1\]"):
            ls.lesion_sweep(net, ["conv1"], {1.0: imgs, bad: imgs}, labels, progress=False)
    one = nn.Sequential(OrderedDict(conv1=nn.Sequential(nn.Conv2d(3, 1, 1), nn.ReLU()),
                                    flat=nn.Flatten(), classifier=nn.Linear(16 * 16, 2))).eval()
    with pytest.raises(CortexmapError, match="single channel"):
        ls.lesion_sweep(one, ["conv1"], series(imgs), labels, progress=False)
    with pytest.raises(CortexmapError, match="empty"):
        ls.lesion_sweep(net, ["conv1"], {1.0: imgs[:0]}, labels[:0], progress=False)
    with pytest.raises(CortexmapError, match="out of range"):
        ls.lesion_sweep(net, ["conv1"], series(imgs), labels, kernels={"conv1": [9]},
                        progress=False)
    with pytest.raises(CortexmapError, match="mode"):
        ls.lesion_sweep(net, ["conv1"], series(imgs), labels, mode="noise", progress=False)
    with pytest.raises(CortexmapError, match="not in the model"):
        ls.lesion_sweep(net, ["conv9"], series(imgs), labels, progress=False)


# --------------------------------------------------------------------------- the analysis
def test_run_lesion_end_to_end_and_resume(tmp_path, monkeypatch):
    from cortexmap.analyses.lesion import LesionConfig, run_lesion
    from cortexmap.report import Report

    imgs, labels = planted_images()
    cfg = LesionConfig(model="planted", layers=["conv1"], contrasts=CONTRASTS, n_top=2,
                       n_random_sets=4, lesion_sets={"conv1": [[1, 2]]}, per_class=True)
    kw = dict(model=planted_net(), images=imgs, labels=labels, class_names=["right", "left"])
    res = run_lesion(cfg, tmp_path / "out", progress=False, **kw)
    assert sorted(res.tables["top_kernels"]["kernel"]) == [0, 3]
    sets = res.tables["sets"]
    assert set(sets["set_type"]) >= {"top", "user"}
    assert sets[sets["set_type"] == "top"]["lesion"].iloc[0] == "0+3"
    user = sets[sets["set_type"] == "user"]
    np.testing.assert_allclose(user["drop"], 0.0)
    assert set(res.tables["per_class"]["class"]) == {"left", "right"}
    out = tmp_path / "out"
    for stem in ("lesion_drops", "lesion_baseline", "top_kernels", "lesion_sets",
                 "kernel_appearance", "lesion_per_class"):
        assert (out / f"{stem}.parquet").exists() and (out / f"{stem}.csv").exists()
    assert (out / "heatmap_conv1.png").exists() and (out / "top_kernels_conv1.png").exists()
    wide = pd.read_csv(out / "lesion_matrix_conv1.csv")
    assert list(wide.columns) == ["kernel", "drop_100%", "drop_50%", "drop_5%", "drop_1%"]
    assert wide["drop_1%"].tolist() == [0.5, 0.0, 0.0, 0.5]
    assert (out / "provenance.json").exists()
    assert res.kernel_images["conv1"][2].startswith("first-layer weights")
    assert len(res.findings) == 3
    # low contrast hurts more (0.25 vs 0), but 4 kernels are too few for Wilcoxon p < 0.05
    assert "0.2500 at low vs 0.0000 at full" in res.findings[0].control
    assert not res.findings[0].reproduced
    # the specificity test: its own set, compared with the random sets on held-out images
    assert "random" in res.findings[2].numbers and "informative level" in res.findings[2].numbers
    assert all(f.evidence == "in-silico" and f.control for f in res.findings)
    report = Report("lesions")
    res.add_to_report(report)
    assert "Lesions of conv1" in report.write(tmp_path / "r.html").read_text()

    def boom(*a, **k):
        raise AssertionError("a finished layer was recomputed")

    monkeypatch.setattr(ls, "_evaluate", boom)
    again = run_lesion(cfg, out, progress=False, **kw)  # resumes without --overwrite
    pd.testing.assert_frame_equal(res.tables["drops"], again.tables["drops"])


def test_run_lesion_bad_inputs(tmp_path):
    from cortexmap.analyses.lesion import LesionConfig, run_lesion

    imgs, labels = planted_images()
    kw = dict(model=planted_net(), images=imgs, labels=labels)
    with pytest.raises(CortexmapError, match=r"outside \(0, 1\]"):
        run_lesion(LesionConfig(layers=["conv1"], contrasts=[1.0, 0.0]), tmp_path / "a", **kw)
    with pytest.raises(CortexmapError, match="empty"):
        run_lesion(LesionConfig(layers=["conv1"]), tmp_path / "b", model=planted_net(),
                   images=imgs[:0], labels=labels[:0])
    with pytest.raises(CortexmapError, match="empty"):
        run_lesion(LesionConfig(n_images=0), tmp_path / "c", model=planted_net())

"""Extractor: hooks, pooling, unit masks, batching, determinism, zarr store and resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cortexmap.errors import CortexmapError
from cortexmap.models import (
    ActivationStore,
    Extractor,
    Preprocessing,
    center_disk,
    coverage,
    image_mask,
    list_layers,
    load,
    periphery_ring,
    preprocess,
    resolve_layers,
)
from cortexmap.stimuli import StimulusSet

PP = Preprocessing(size=16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


class TinyNet(nn.Module):
    """conv (8x16x16) -> inplace ReLU -> pool (8x8x8) -> conv (6x8x8) -> ReLU -> fc (5)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=True)  # modifies conv1's output tensor in place
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 6, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(6 * 8 * 8, 5))
        self.dropout = nn.Dropout(0.5)  # must be inactive: the extractor uses eval mode

    def forward(self, x):
        x = self.pool(self.relu1(self.conv1(x)))
        x = self.relu2(self.conv2(x))
        return self.head(self.dropout(x))


@pytest.fixture
def net():
    torch.manual_seed(0)
    return load(TinyNet(), preprocessing=PP)


@pytest.fixture
def stim():
    rng = np.random.default_rng(1)
    n = 11
    return StimulusSet(
        rng.random((n, 16, 16, 3), dtype=np.float32), [f"s{i:02d}" for i in range(n)]
    )


def manual(net, stim):
    """Reference activations by running the layers by hand."""
    with torch.no_grad():
        x = preprocess(stim, PP)
        c1 = net.conv1(x)
        p = net.pool(torch.relu(c1))
        c2 = net.conv2(p)
        r2 = torch.relu(c2)
        out = net.head(r2)
    return {
        "conv1": c1.numpy(),
        "pool": p.numpy(),
        "conv2": c2.numpy(),
        "relu2": r2.numpy(),
        "head": out.numpy(),
        "head.1": out.numpy(),
    }


def test_list_layers_shapes(net):
    infos = {i.name: i for i in list_layers(net)}
    assert infos["conv1"].shape == (8, 16, 16)
    assert infos["pool"].shape == (8, 8, 8)
    assert infos["head.1"].shape == (5,)
    assert infos["conv1"].kind == "Conv2d" and infos["conv1"].spatial
    assert "dropout" in infos and infos["head.1"].n_units == 5
    assert list_layers(net, input_size=16)[0].shape == (8, 16, 16)
    with pytest.raises(CortexmapError, match="dummy 32x32 input.*--input-size"):
        list_layers(net, input_size=32)  # the fc layer only fits 16x16 inputs
    leaves = [i.name for i in list_layers(net, leaves_only=True)]
    assert "head" not in leaves and "head.0" in leaves


def test_unknown_layer_lists_valid_names(net):
    with pytest.raises(CortexmapError, match=r"conv1.*Valid layer names.*conv2"):
        resolve_layers(net, ["conv_1"])
    with pytest.raises(CortexmapError, match="No layers"):
        Extractor(net, [])
    assert resolve_layers(net, "conv1, pool,conv1") == ["conv1", "pool"]


def test_values_match_manual_forward_and_inplace_safe(net, stim):
    layers = ["conv1", "pool", "conv2", "relu2", "head.1"]
    acts = Extractor(net, layers, batch_size=4).extract(stim)
    ref = manual(net, stim)
    for k in layers:
        np.testing.assert_allclose(acts[k], ref[k], rtol=1e-5, atol=1e-6)
    # conv1 feeds ReLU(inplace=True): the recorded map must keep its negative values
    assert (acts["conv1"] < 0).any()
    assert net.training is False


def test_eval_mode_no_grad_and_deterministic(net, stim):
    net.train()
    ex = Extractor(net, ["head.1", "conv2"], batch_size=3)
    a = ex.extract(stim)
    b = Extractor(net, ["head.1", "conv2"], batch_size=7).extract(stim)
    c = ex.extract(stim)
    np.testing.assert_array_equal(a["head.1"], c["head.1"])  # same batches: bit-identical
    np.testing.assert_allclose(a["head.1"], b["head.1"], rtol=1e-5, atol=1e-6)  # any batch size
    assert net.training  # the caller's train/eval state is restored
    # dropout was off during extraction: equal to a manual eval-mode forward
    net.eval()
    np.testing.assert_allclose(a["head.1"], manual(net, stim)["head.1"], rtol=1e-5, atol=1e-6)
    assert all(p.grad is None for p in net.parameters())


def test_pooling_modes(net, stim):
    ref = manual(net, stim)["conv2"]  # (n, 6, 8, 8)
    out = {
        p: Extractor(net, ["conv2", "head.1"], pooling=p).extract(stim)
        for p in ("mean", "max", "center")
    }
    np.testing.assert_allclose(out["mean"]["conv2"], ref.mean((2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["max"]["conv2"], ref.max((2, 3)), rtol=1e-5, atol=1e-6)
    # even 8x8 grid: centre = mean of the middle 2x2 positions
    np.testing.assert_allclose(
        out["center"]["conv2"], ref[:, :, 3:5, 3:5].mean((2, 3)), rtol=1e-5, atol=1e-6
    )
    for p in out:  # non-spatial layers pass through
        np.testing.assert_allclose(
            out[p]["head.1"], manual(net, stim)["head.1"], rtol=1e-5, atol=1e-6
        )
    with pytest.raises(CortexmapError, match="Unknown pooling"):
        Extractor(net, ["conv2"], pooling="avg")


def test_early_stop_gives_same_values(net, stim):
    a = Extractor(net, ["conv1"], early_stop=True).extract(stim)
    b = Extractor(net, ["conv1"], early_stop=False).extract(stim)
    np.testing.assert_array_equal(a["conv1"], b["conv1"])


def test_reused_module_keeps_last_call(stim):
    class Reuse(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(self.conv(self.act(x) - 0.5))

    m = load(Reuse(), preprocessing=PP)
    info = {i.name: i for i in list_layers(m)}
    assert info["act"].calls == 2
    with torch.no_grad():
        x = preprocess(stim, PP)
        ref = torch.relu(m.conv(torch.relu(x) - 0.5)).numpy()
    np.testing.assert_allclose(Extractor(m, ["act"]).extract(stim)["act"], ref, rtol=1e-6)


def test_unit_masks_select_positions(net, stim):
    ref = manual(net, stim)["conv2"]  # 8x8 grid
    disk, ring = center_disk(0.3), periphery_ring(0.75)
    g_disk, g_ring = disk.grid(8, 8), ring.grid(8, 8)
    assert g_disk.sum() == 4 and g_disk[3:5, 3:5].all()  # 2x2 centre cells within 0.3
    assert not (g_disk & g_ring).any() and g_ring[0, 0] and not g_ring[4, 4]
    ex = Extractor(net, ["conv2"], pooling="none", unit_masks={"c": disk, "p": ring})
    acts = ex.extract(stim)
    assert set(acts) == {"conv2@c", "conv2@p"}
    np.testing.assert_allclose(
        acts["conv2@c"], ref[:, :, g_disk].reshape(len(stim), -1), rtol=1e-5, atol=1e-6
    )
    assert acts["conv2@p"].shape == (len(stim), 6 * int(g_ring.sum()))
    pooled = Extractor(net, ["conv2"], pooling="mean", unit_masks=[disk]).extract(stim)
    np.testing.assert_allclose(
        pooled["conv2@center"], ref[:, :, g_disk].mean(-1), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(ex.unit_positions("conv2@c"), np.argwhere(g_disk))


def test_image_mask_projection_and_errors(net, stim):
    m = np.zeros((16, 16), bool)
    m[:8, :8] = True  # top-left quadrant of the input image
    grid = image_mask(m).grid(8, 8, 16)
    assert grid[:4, :4].all() and grid.sum() == 16
    np.testing.assert_allclose(coverage(m, 4, 4)[:2, :2], 1.0)
    # half-covered cells: threshold decides
    m2 = np.zeros((16, 16), bool)
    m2[:, :3] = True  # covers 3/4 of column 0 cells and 0 of others on a 4x4 grid (4 px cells)
    assert image_mask(m2, threshold=0.5).grid(4, 4, 16)[:, 0].all()
    assert image_mask(m2, threshold=0.5).grid(4, 4, 16)[:, 1:].sum() == 0
    with pytest.raises(CortexmapError, match="covers no position"):
        image_mask(m2, threshold=1.0).grid(4, 4, 16)
    acts = Extractor(net, ["pool"], unit_masks={"tl": m}).extract(stim)
    ref = manual(net, stim)["pool"][:, :, :4, :4].reshape(len(stim), -1)
    np.testing.assert_allclose(acts["pool@tl"], ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(CortexmapError, match=r"mask.*is 20x20 but the model input is 16x16"):
        Extractor(net, ["pool"], unit_masks={"bad": np.ones((20, 20), bool)}).extract(stim)
    with pytest.raises(CortexmapError, match="no spatial grid"):
        Extractor(net, ["head.1"], unit_masks=center_disk(0.5)).extract(stim)
    with pytest.raises(CortexmapError, match="center"):
        Extractor(net, ["conv2"], pooling="center", unit_masks=center_disk(0.5))
    with pytest.raises(CortexmapError, match="empty"):
        image_mask(np.zeros((16, 16), bool))


def test_token_outputs_use_patch_grid():
    class Tokens(nn.Module):
        def forward(self, x):  # (n, 1 + 4*4, 2): class token + 4x4 patches
            n = x.shape[0]
            patches = nn.functional.avg_pool2d(x[:, :2], 4).flatten(2).transpose(1, 2)
            return torch.cat([torch.full((n, 1, 2), 100.0), patches], 1)

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = Tokens()

        def forward(self, x):
            return self.tok(x)

    m = load(Wrap(), preprocessing=PP)
    x = np.random.default_rng(0).random((3, 16, 16, 3), dtype=np.float32)
    with torch.no_grad():
        full = m(preprocess(x, PP)).numpy()
    mean = Extractor(m, ["tok"], pooling="mean").extract(x)["tok"]
    np.testing.assert_allclose(mean, full[:, 1:].mean(1), rtol=1e-5)  # class token excluded
    c = Extractor(m, ["tok"], unit_masks=center_disk(0.3)).extract(x)["tok@center"]
    assert c.shape == (3, 2 * 4)


def test_input_types_array_and_tensor(net, stim):
    a = Extractor(net, ["head.1"]).extract(stim)["head.1"]
    b = Extractor(net, ["head.1"]).extract(stim.images)["head.1"]
    c = Extractor(net, ["head.1"]).extract(preprocess(stim, PP))["head.1"]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    with pytest.raises(CortexmapError, match="Cannot extract"):
        Extractor(net, ["head.1"]).extract(object())


# --- store -----------------------------------------------------------------------------------


def test_store_layout_and_attrs(net, stim, tmp_path):
    ex = Extractor(net, ["conv2", "head.1"], pooling="none", batch_size=4)
    store = ex.to_store(stim, tmp_path / "a.zarr", progress=False)
    assert store.complete and store.layers == ["conv2", "head.1"] and store.ids == stim.ids
    assert store.array("conv2").shape == (11, 6, 8, 8)
    assert store.array("conv2").chunks == (4, 6, 8, 8)  # one chunk per batch
    attrs = store.attrs
    assert attrs["model"] == "TinyNet" and attrs["preprocessing"]["size"] == 16
    assert attrs["pooling"] == "none" and attrs["n_stimuli"] == 11
    prov = json.loads((tmp_path / "a.zarr" / "provenance.json").read_text())
    assert (
        prov["config"]["source_layers"] == ["conv2", "head.1"] and "stimulus_ids" in prov["inputs"]
    )
    ref = ex.extract(stim)
    reopened = ActivationStore(tmp_path / "a.zarr")
    np.testing.assert_array_equal(reopened.load("conv2"), ref["conv2"])
    assert reopened.load("head.1", flat=True).shape == (11, 5)
    np.testing.assert_array_equal(reopened.load("conv2", idx=[0, 5]), ref["conv2"][[0, 5]])
    assert reopened.done("conv2") == 11
    with pytest.raises(CortexmapError, match="not in store"):
        reopened.load("conv9")


def test_store_unit_mask_positions(net, stim, tmp_path):
    ex = Extractor(net, ["conv2"], unit_masks=[center_disk(0.3)], batch_size=5)
    store = ex.to_store(stim, tmp_path / "m.zarr", progress=False)
    a = store.array("conv2@center").attrs
    assert a["layer"] == "conv2" and a["grid"] == [8, 8]
    assert sorted(map(tuple, a["unit_positions"])) == [(3, 3), (3, 4), (4, 3), (4, 4)]


class _Boom(RuntimeError):
    pass


def test_interrupted_run_resumes_to_identical_result(net, stim, tmp_path, monkeypatch):
    path = tmp_path / "r.zarr"
    ex = Extractor(net, ["conv1", "head.1"], pooling="mean", batch_size=3)
    full = Extractor(net, ["conv1", "head.1"], pooling="mean", batch_size=3).to_store(
        stim, tmp_path / "full.zarr", progress=False
    )
    calls = {"n": 0}
    orig = ActivationStore.write_batch

    def flaky(self, start, batch):
        if calls["n"] == 2:  # crash while writing the third batch
            raise _Boom("simulated crash")
        calls["n"] += 1
        return orig(self, start, batch)

    monkeypatch.setattr(ActivationStore, "write_batch", flaky)
    with pytest.raises(_Boom):
        ex.to_store(stim, path, progress=False)
    monkeypatch.setattr(ActivationStore, "write_batch", orig)
    partial = ActivationStore(path, allow_incomplete=True)
    assert not partial.complete and partial.done("conv1") == 6
    with pytest.raises(CortexmapError, match="incomplete.*resume"):
        ActivationStore(path)  # a reader never takes a partial store for a finished one
    with pytest.raises(CortexmapError, match="incomplete run"):
        ex.to_store(stim, path, resume=False, progress=False)
    # resume: only the missing batches run
    seen = []
    monkeypatch.setattr(
        ActivationStore, "write_batch", lambda self, s, b: (seen.append(s), orig(self, s, b))[1]
    )
    done = Extractor(net, ["conv1", "head.1"], pooling="mean", batch_size=3).to_store(
        stim, path, progress=False
    )
    assert seen == [6, 9] and done.complete
    for k in full.layers:
        np.testing.assert_array_equal(done.load(k), full.load(k))


def test_store_refuses_different_extraction(net, stim, tmp_path):
    path = tmp_path / "s.zarr"
    Extractor(net, ["conv2"], pooling="mean").to_store(stim, path, progress=False)
    with pytest.raises(CortexmapError, match="different extraction.*pooling.*--overwrite"):
        Extractor(net, ["conv2"], pooling="max").to_store(stim, path, progress=False)
    with pytest.raises(CortexmapError, match="ids"):
        Extractor(net, ["conv2"], pooling="mean").to_store(
            stim.subset(slice(0, 5)), path, progress=False
        )
    torch.manual_seed(5)
    other = load(TinyNet(), preprocessing=PP)  # same architecture, other weights
    with pytest.raises(CortexmapError, match="weights_sha256"):
        Extractor(other, ["conv2"], pooling="mean").to_store(stim, path, progress=False)
    again = Extractor(net, ["conv2"], pooling="mean").to_store(stim, path, progress=False)
    assert again.complete  # same extraction: nothing recomputed
    new = Extractor(net, ["conv2"], pooling="max").to_store(
        stim, path, overwrite=True, progress=False
    )
    assert new.attrs["pooling"] == "max"
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "x.txt").write_text("x")
    with pytest.raises(CortexmapError, match="zarr store|--overwrite"):
        Extractor(net, ["conv2"]).to_store(stim, tmp_path / "foreign", progress=False)


def test_alexnet_style_torchvision_layers():
    m = load("alexnet:untrained", preprocessing=Preprocessing(64))
    x = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
    acts = Extractor(m, ["features.0", "features.3", "classifier.4"], pooling="mean").extract(x)
    assert acts["features.0"].shape == (2, 64) and acts["classifier.4"].shape == (2, 4096)
    assert (acts["features.0"] < 0).any()  # conv before in-place ReLU


class _CountingSource:
    """Lazy image source that records which slices the extractor asks for."""

    def __init__(self, n: int) -> None:
        self.n, self.requests = n, []
        self.ids = [f"img{i:03d}" for i in range(n)]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, idx: slice) -> np.ndarray:
        self.requests.append((idx.start, idx.stop))
        rng = np.random.default_rng(idx.start)
        return rng.random((idx.stop - idx.start, 16, 16, 3), dtype=np.float32)


def test_streaming_reads_one_batch_at_a_time(net, tmp_path):
    src = _CountingSource(23)
    store = Extractor(net, ["conv2"], batch_size=5).to_store(
        src, tmp_path / "st.zarr", progress=False
    )
    assert src.requests == [(0, 5), (5, 10), (10, 15), (15, 20), (20, 23)]
    assert store.ids == src.ids and store.array("conv2").nchunks == 5
    direct = Extractor(net, ["conv2"], batch_size=5).extract(_CountingSource(23))
    np.testing.assert_array_equal(store.load("conv2"), direct["conv2"])


@pytest.mark.slow
def test_real_architectures_googlenet_and_vit():
    """Named layers of bigger torchvision/timm models, incl. ViT token grids (1 + 14x14)."""
    x = np.random.default_rng(0).random((2, 224, 224, 3), dtype=np.float32)
    g = load("googlenet:untrained")
    acts = Extractor(g, ["inception3a", "inception4e"], pooling="mean").extract(x)
    assert acts["inception3a"].shape == (2, 256) and acts["inception4e"].shape == (2, 832)
    v = load("timm:vit_tiny_patch16_224:untrained")
    out = Extractor(v, ["blocks.5"], pooling="none", unit_masks=center_disk(0.2)).extract(x)
    assert out["blocks.5@center"].shape == (2, 192 * 4)  # 2x2 central patches of 14x14
    pooled = Extractor(v, ["blocks.5"], pooling="mean").extract(x)["blocks.5"]
    full = Extractor(v, ["blocks.5"]).extract(x)["blocks.5"]  # (2, 197, 192)
    np.testing.assert_allclose(pooled, full[:, 1:].mean(1), rtol=1e-4, atol=1e-5)


def test_resume_with_another_batch_size(net, stim, tmp_path, monkeypatch):
    path = tmp_path / "b.zarr"
    orig = ActivationStore.write_batch
    calls = {"n": 0}

    def flaky(self, start, batch):
        if calls["n"] == 2:
            raise _Boom("crash")
        calls["n"] += 1
        return orig(self, start, batch)

    monkeypatch.setattr(ActivationStore, "write_batch", flaky)
    with pytest.raises(_Boom):
        Extractor(net, ["conv2"], batch_size=3).to_store(stim, path, progress=False)
    monkeypatch.setattr(ActivationStore, "write_batch", orig)
    done = Extractor(net, ["conv2"], batch_size=4).to_store(stim, path, progress=False)
    ref = Extractor(net, ["conv2"], batch_size=4).extract(stim)
    np.testing.assert_allclose(done.load("conv2"), ref["conv2"], rtol=1e-5, atol=1e-6)
    assert not np.isnan(done.load("conv2")).any()


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    h=st.sampled_from([1, 2, 4, 8, 16]),
    w=st.sampled_from([1, 2, 4, 8, 16]),
)
def test_coverage_is_the_block_mean(seed, h, w):
    m = np.random.default_rng(seed).random((16, 16)) > 0.5
    blocks = m.reshape(h, 16 // h, w, 16 // w).mean(axis=(1, 3))
    np.testing.assert_allclose(coverage(m, h, w), blocks, atol=1e-6)


def test_unit_mask_grids_edge_cases():
    assert center_disk(0.1).grid(1, 1).tolist() == [[True]]  # 1x1 map: the only position
    assert center_disk(0.1).grid(2, 2).all()  # no centre inside: the 4 nearest positions
    ring = periphery_ring(0.5, 0.8).grid(8, 8)
    assert not ring[0, 0] and not ring[0, 3] and ring[1, 3] and not ring[3, 3]  # 0.5..0.8
    with pytest.raises(CortexmapError, match="selects no position"):
        periphery_ring(1.3).grid(2, 2)
    with pytest.raises(CortexmapError, match="outer_frac"):
        periphery_ring(0.5, 0.4)
    with pytest.raises(CortexmapError, match="radius_frac"):
        center_disk(0)


def test_reader_is_read_only(net, stim, tmp_path):
    Extractor(net, ["conv2"], pooling="mean").to_store(stim, tmp_path / "ro.zarr", progress=False)
    store = ActivationStore(tmp_path / "ro.zarr")
    with pytest.raises(Exception):  # noqa: B017 - zarr's own read-only error type
        store.array("conv2")[0] = 0
    np.testing.assert_array_equal(store.load("conv2").shape, (11, 6))

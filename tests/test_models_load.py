"""load(): torchvision / timm / zoo / TorchScript / state_dict files, and their bad inputs."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

from cortexmap.errors import CortexmapError
from cortexmap.models import Extractor, Preprocessing, list_layers, load, preprocess
from cortexmap.models.load import TorchScriptModel, weights_fingerprint


class Small(nn.Module):
    def __init__(self, n_out: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(5, n_out)

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


def _out(model, x):
    with torch.no_grad():
        return model(x)


def test_torchvision_untrained_by_name():
    m = load("resnet18:untrained")
    assert not m.training and m.cortexmap_name == "resnet18:untrained"
    assert m.cortexmap_weights.source == "untrained"
    p = m.cortexmap_preprocessing
    assert (p.size, p.resize) == (224, 256) and p.mean == pytest.approx((0.485, 0.456, 0.406))
    assert load("torchvision:resnet18:untrained", num_classes=7).fc.out_features == 7
    g = load("googlenet:untrained")
    assert "inception3a" in [i.name for i in list_layers(g, input_size=64)]


def test_random_init_is_seeded_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b = load("resnet18:untrained"), load("resnet18:untrained")
    c = load("resnet18:untrained", seed=1)
    torch.testing.assert_close(a.conv1.weight, b.conv1.weight)
    assert not torch.equal(a.conv1.weight, c.conv1.weight)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert weights_fingerprint(a) == weights_fingerprint(b) != weights_fingerprint(c)


def test_unknown_model_suggests_close_names():
    with pytest.raises(CortexmapError, match=r"Unknown model 'resnet81'.*resnet18"):
        load("resnet81")
    with pytest.raises(CortexmapError, match=r"Unknown timm model.*resnet18"):
        load("timm:resnet_18")
    with pytest.raises(CortexmapError, match="does not exist"):
        load("no/such/model.pt")


def test_timm_model_and_preprocessing():
    m = load("timm:resnet18:untrained", num_classes=3)
    assert m.cortexmap_name == "timm:resnet18:untrained" and m.cortexmap_preprocessing.size == 224
    x = torch.zeros(1, 3, 64, 64)
    assert _out(m, x).shape == (1, 3)


def test_weights_from_local_file_roundtrip(tmp_path):
    torch.manual_seed(3)
    src = load("resnet18:untrained", num_classes=10)
    path = tmp_path / "r18.pt"
    torch.save(src.state_dict(), path)
    x = torch.randn(2, 3, 64, 64)
    # torchvision name + weights=
    a = load("resnet18", weights=path, num_classes=10)
    torch.testing.assert_close(_out(a, x), _out(src, x))
    # checkpoint file + arch (num_classes inferred from the fc weight)
    b = load(path, arch="resnet18")
    assert b.fc.out_features == 10
    torch.testing.assert_close(_out(b, x), _out(src, x))
    # checkpoint that names its own arch and preprocessing; DataParallel 'module.' prefix
    ck = tmp_path / "ck.pth"
    torch.save(
        {
            "arch": "resnet18",
            "num_classes": 10,
            "preprocessing": Preprocessing(64).to_dict(),
            "state_dict": {f"module.{k}": v for k, v in src.state_dict().items()},
        },
        ck,
    )
    c = load(ck)
    assert c.cortexmap_preprocessing.size == 64
    torch.testing.assert_close(_out(c, x), _out(src, x))


def test_state_dict_without_arch_is_refused(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(Small().state_dict(), path)
    with pytest.raises(CortexmapError, match="arch="):
        load(path)


def test_corrupt_weight_file_names_the_file(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CortexmapError, match=r"Cannot read weights file .*broken\.pt"):
        load("resnet18", weights=bad)
    pickled = tmp_path / "whole.pt"
    torch.save(Small(), pickled)  # a pickled module, not a state_dict
    with pytest.raises(CortexmapError, match=r"whole\.pt.*state_dict"):
        load(pickled, arch="resnet18")


def test_mismatched_weights_name_missing_and_unexpected_keys(tmp_path):
    path = tmp_path / "small.pt"
    torch.save(Small().state_dict(), path)
    with pytest.raises(CortexmapError) as err:
        load("resnet18", weights=path)
    msg = str(err.value)
    assert "small.pt" in msg and "missing key" in msg and "conv1.weight" in msg
    assert "unexpected key" in msg and "conv.weight" in msg
    sd = load("resnet18:untrained").state_dict()
    sd["conv1.weight"] = torch.zeros(64, 3, 5, 5)
    torch.save(sd, path)
    with pytest.raises(CortexmapError, match=r"shape mismatch.*conv1\.weight"):
        load("resnet18", weights=path)


def test_torchscript_file(tmp_path):
    torch.manual_seed(0)
    src = Small().eval()
    path = tmp_path / "small_ts.pt"
    torch.jit.save(torch.jit.trace(src, torch.zeros(1, 3, 16, 16)), str(path))
    m = load(path, preprocessing=Preprocessing(16))
    assert isinstance(m, TorchScriptModel) and m.cortexmap_preprocessing.size == 16
    imgs = np.random.default_rng(0).random((3, 16, 16, 3), dtype=np.float32)
    x = preprocess(imgs, Preprocessing(16))
    torch.testing.assert_close(_out(m, x), _out(src, x))
    acts = Extractor(m, ["output"]).extract(imgs)["output"]
    np.testing.assert_allclose(acts, _out(src, x).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(CortexmapError, match="TorchScript"):
        Extractor(m, ["conv"])
    with pytest.raises(CortexmapError, match="TorchScript"):
        load(path, weights=path)


def test_zoo_delegates_to_load_zoo(monkeypatch):
    calls = []
    fake = types.ModuleType("cortexmap.models.zoo")

    def load_zoo(name):
        calls.append(name)
        m = Small()
        m.cortexmap_preprocessing = Preprocessing(64)
        return m

    fake.load_zoo = load_zoo
    fake.list_zoo = lambda: []
    monkeypatch.setitem(sys.modules, "cortexmap.models.zoo", fake)
    m = load("zoo:alexnet_sup_s0@ep3")
    assert calls == ["alexnet_sup_s0@ep3"]
    assert m.cortexmap_name == "zoo:alexnet_sup_s0@ep3" and m.cortexmap_preprocessing.size == 64
    assert not m.training


def test_module_passthrough_and_preprocessing_override():
    m = load(Small(), preprocessing=Preprocessing(32))
    assert m.cortexmap_name == "Small" and m.cortexmap_preprocessing.size == 32

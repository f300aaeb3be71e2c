"""The bundled zoo: names, loading, cards, checkpoints, and errors for bad names and files."""

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from cortexmap.errors import CortexmapError
from cortexmap.models import zoo
from cortexmap.train import TrainConfig, train
from cortexmap.train.recipes import ZOO_RECIPES, package, write_index

REQUIRED = [
    "alexnet_sup_s0", "alexnet_sup_s1", "vgg_sup_s0", "resnet_sup_s0", "vit_sup_s0",
    "alexnet_simclr_s0", "vgg_simclr_s0", "resnet_simclr_s0", "alexnet_untrained_s0",
    "resnet_untrained_s0",
]


# ---------------------------------------------------------------- the shipped zoo
def test_shipped_zoo_lists_every_required_network():
    names = [e.name for e in zoo.list_zoo()]
    assert set(REQUIRED) <= set(names) and sorted(names) == sorted(ZOO_RECIPES)
    arches = {e.arch for e in zoo.list_zoo()}
    objectives = {e.objective for e in zoo.list_zoo()}
    assert {"alexnet", "vgg", "resnet", "vit"} <= arches
    assert {"supervised", "simclr", "untrained"} <= objectives


@pytest.mark.parametrize("name", sorted(ZOO_RECIPES))
def test_shipped_model_loads_and_is_documented(name):
    model = zoo.load_zoo(name)
    assert not model.training and model.cortexmap_name == name
    pp = model.cortexmap_preprocessing
    assert pp.size == 64 and len(pp.mean) == 3 and len(pp.std) == 3
    out = model(torch.zeros(2, 3, 64, 64))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    card = zoo.model_card(name)
    for text in ("Architecture", "Objective", "Command", "100%", "50%", "10%", "5%", "1%"):
        assert text in card
    info = zoo.model_card(name, as_dict=True)
    assert set(info["test_accuracy"]) == {"100%", "50%", "10%", "5%", "1%"}
    assert (zoo.zoo_dir() / f"{name}.pt").stat().st_size <= 5 * 2**20
    if info["objective"] == "supervised":
        assert info["test_accuracy"]["100%"] >= 0.80  # the bar for supervised nets
    else:
        assert info["linear_probe"] and "linear probe" in card


def test_shipped_alexnet_layers_and_checkpoints():
    model = zoo.load_zoo("zoo:alexnet_sup_s0")
    assert [n for n, _ in model.named_children()] == [
        "conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "classifier"]
    epochs = zoo.checkpoints("alexnet_sup_s0")
    assert 0 in epochs and len(epochs) >= 4
    accs = []
    for e in epochs:
        m = zoo.load_zoo(f"alexnet_sup_s0@ep{e}")
        assert m.cortexmap_name == f"alexnet_sup_s0@ep{e}"
        accs.append(m.cortexmap_history[-1]["val_acc"])
    assert accs[-1] > accs[0] + 0.5  # learning happened between the first and last checkpoint


def test_models_load_dispatches_to_the_zoo():
    from cortexmap.models import load

    model = load("zoo:resnet_sup_s0")
    assert model.cortexmap_preprocessing.size == 64 and not model.training


def test_cli_zoo_list_and_card():
    from cortexmap.cli import app

    res = CliRunner().invoke(app, ["zoo", "list"])
    assert res.exit_code == 0, res.output
    assert "alexnet_sup_s0" in res.output and "vit_sup_s0" in res.output and "100%" in res.output
    res = CliRunner().invoke(app, ["zoo", "card", "vgg_sup_s0"])
    assert res.exit_code == 0 and "vgg_sup_s0" in res.output


# ---------------------------------------------------------------- a tiny zoo built here
@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    cfg = TrainConfig(arch="alexnet", epochs=1, images_per_epoch=32, batch_size=16, n_val=16,
                      checkpoint_epochs=[0, 1], num_threads=1)
    train(cfg, root / "run", progress=False)
    package("tiny_alex", root / "run", root / "zoo", n_test=40)
    write_index(root / "zoo")
    return root / "zoo"


@pytest.fixture
def tiny(tiny_zoo, tmp_path, monkeypatch):
    d = tmp_path / "zoo"
    shutil.copytree(tiny_zoo, d)
    monkeypatch.setenv("CORTEXMAP_ZOO_DIR", str(d))
    return d


def test_tiny_zoo_roundtrip(tiny):
    assert [e.name for e in zoo.list_zoo()] == ["tiny_alex"]
    assert zoo.checkpoints("tiny_alex") == [0, 1]
    m = zoo.load_zoo("tiny_alex")
    m0 = zoo.load_zoo("zoo:tiny_alex@ep0")
    assert m(torch.zeros(1, 3, 64, 64)).shape == (1, 10)
    assert not torch.equal(m.conv1[0].weight, m0.conv1[0].weight)
    assert all(p.dtype == torch.float32 for p in m.parameters())
    card = zoo.model_card("tiny_alex", as_dict=True)
    assert card["command"].endswith("train_zoo.py tiny_alex") and card["n_test"] == 40
    assert len(card["history"]) == 2 and "100%" in zoo.model_card("tiny_alex")


def test_unknown_name_lists_valid_ones(tiny):
    with pytest.raises(CortexmapError, match="valid names: tiny_alex"):
        zoo.load_zoo("alexnet_sup_s9")
    with pytest.raises(CortexmapError, match="available epochs: 0, 1"):
        zoo.load_zoo("tiny_alex@ep7")
    with pytest.raises(CortexmapError, match="Unknown zoo model"):
        zoo.checkpoints("nope")


def test_corrupt_weight_file_is_named(tiny):
    (tiny / "tiny_alex.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CortexmapError, match=r"tiny_alex\.pt is corrupt"):
        zoo.load_zoo("tiny_alex")


def test_missing_weight_file_is_named(tiny):
    (tiny / "tiny_alex@ep1.pt").unlink()
    with pytest.raises(CortexmapError, match=r"tiny_alex@ep1\.pt .* is missing"):
        zoo.load_zoo("tiny_alex@ep1")


def test_mismatched_weight_file_is_named(tiny):
    ckpt = torch.load(tiny / "tiny_alex.pt", weights_only=False)
    ckpt["model"]["conv2.0.weight"] = torch.zeros(5, 5, 3, 3)  # wrong shape
    torch.save(ckpt, tiny / "tiny_alex.pt")
    with pytest.raises(CortexmapError, match=r"tiny_alex\.pt does not match architecture"):
        zoo.load_zoo("tiny_alex")
    index = json.loads((tiny / "index.json").read_text())
    index["models"]["tiny_alex"]["arch"] = "vgg"
    (tiny / "index.json").write_text(json.dumps(index))
    with pytest.raises(CortexmapError, match="mismatched"):
        zoo.load_zoo("tiny_alex")


def test_missing_or_corrupt_index(tiny):
    (tiny / "index.json").write_text("{not json")
    with pytest.raises(CortexmapError, match="index.json is corrupt"):
        zoo.list_zoo()
    (tiny / "index.json").unlink()
    with pytest.raises(CortexmapError, match="No zoo index"):
        zoo.list_zoo()

"""Own models and data in the accuracy-based analyses: image folder + labels table, class-count
mismatch, the named agreement proxy, per-network weights, a folder of checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from cortexmap.cli import app
from cortexmap.errors import CortexmapError
from cortexmap.models import Preprocessing, load
from cortexmap.models import weights as W
from cortexmap.probes.testset import AGREEMENT, TestSetFields, check_model_fits, resolve_test_set
from cortexmap.stimuli import load_bundled
from cortexmap.stimuli.folder import save_folder

PHOTOS = {"chelsea": "Egyptian cat", "coffee": "espresso", "motorcycle": "moped",
          "horse": "sorrel", "astronaut": "space shuttle", "clock": "wall clock"}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Six bundled photographs as an image folder with an ImageNet-names labels table."""
    root = tmp_path_factory.mktemp("own")
    stim = load_bundled(224, names=list(PHOTOS))
    folder = save_folder(stim, root / "photos")
    labels = root / "labels.csv"
    pd.DataFrame({"image": [f"{i}.png" for i in stim.ids],
                  "label": [PHOTOS[i] for i in stim.ids]}).to_csv(labels, index=False)
    return folder, labels


def _require_mobilenet():
    if W.OFFLINE_WEIGHTS["mobilenet_v2"].locate() is None:
        pytest.skip("offline MobileNetV2 weights not installed")


def test_folder_labels_and_class_names(photos, tmp_path):
    folder, labels = photos
    ts = resolve_test_set(TestSetFields(test_images=str(folder), test_labels=str(labels),
                                        class_names="imagenet"), 64, 0, 0)
    cats = W.imagenet_categories()
    assert [cats[i] for i in ts.labels] == [PHOTOS[i] for i in sorted(PHOTOS)]
    assert ts.n_classes == 1000 and not ts.proxy and ts.images.shape == (6, 64, 64, 3)
    with pytest.raises(CortexmapError, match="class names.*give class_names"):
        resolve_test_set(TestSetFields(test_images=str(folder), test_labels=str(labels)),
                         64, 0, 0)
    with pytest.raises(CortexmapError, match="need labels.*agreement"):
        resolve_test_set(TestSetFields(test_images=str(folder)), 64, 0, 0)
    bad = tmp_path / "bad.csv"
    bad.write_text("image,label\n" + "".join(f"{i}.png,tabby cat\n" for i in PHOTOS))
    with pytest.raises(CortexmapError, match="not one of the 1000 class names.*tabby"):
        resolve_test_set(TestSetFields(test_images=str(folder), test_labels=str(bad),
                                       class_names="imagenet"), 64, 0, 0)
    proxy = resolve_test_set(TestSetFields(test_images=str(folder), accuracy="agreement"),
                             64, 0, 0)
    assert proxy.proxy and proxy.labels is None and "proxy" in proxy.describe()


def test_output_size_mismatch_is_an_error():
    net = load("squeezenet1_1:untrained", preprocessing=Preprocessing(64))
    ts = resolve_test_set(TestSetFields(), 64, 20, 0)
    with pytest.raises(CortexmapError, match=r"outputs 1000 classes.*has 10.*agreement"):
        check_model_fits(net, ts)
    assert check_model_fits(net, resolve_test_set(TestSetFields(accuracy="agreement"),
                                                  64, 20, 0)) == 1000
    if W.OFFLINE_WEIGHTS["mobilenet_v2_deepsort"].locate() is not None:
        with pytest.raises(CortexmapError, match="feature trunk"):
            check_model_fits(load("mobilenet_v2_deepsort"),
                             resolve_test_set(TestSetFields(accuracy="agreement"), 64, 20, 0))


def test_cli_orientation_real_network_on_own_folder(photos, tmp_path):
    _require_mobilenet()
    folder, labels = photos
    common = ["run", "orientation", "--model", "mobilenet_v2", "--layers",
              "features.0,features.3", "--step", "30", "--sfs", "0.125", "--shuffles", "10",
              "--no-dynamics", "--networks", "none", "--ks", "2", "--n-random", "2",
              "--shifts", "2", "--no-progress"]
    # the 10-class procedural default: refused before any output exists
    res = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "refused")])
    assert isinstance(res.exception, CortexmapError), res.output
    assert "outputs 1000 classes" in str(res.exception) and "has 10" in str(res.exception)
    assert not (tmp_path / "refused").exists()
    out = tmp_path / "o"
    res = CliRunner().invoke(app, [*common, "--images", str(folder), "--labels", str(labels),
                                   "--class-names", "imagenet", "--out", str(out)])
    assert res.exit_code == 0, res.output
    summary = pd.read_csv(out / "tuning_summary.csv")
    assert list(summary["layer"]) == ["features.0", "features.3"]
    acc = pd.read_csv(out / "ablation_accuracy.csv")
    assert {"most", "random", "least"} <= set(acc["condition"]) and np.isfinite(acc["drop"]).all()
    prov = json.loads((out / "provenance.json").read_text())
    rec = prov["models"]["mobilenet_v2"]
    assert rec["source"] == "offline package" and rec["sha256"].startswith("b0353104")


def test_contrast_with_the_agreement_proxy_is_named(photos, tmp_path):
    _require_mobilenet()
    folder, _ = photos
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'model = "mobilenet_v2"\ntest_images = "{folder}"\naccuracy = "agreement"\n'
                   'layers = ["features.0", "features.3"]\ncontrasts = [1.0, 0.3, 0.1, 0.03]\n'
                   'n_splits = 2\nrsa_images = 6\nnorm_layer = "features.0"\n'
                   'control_model = "mobilenet_v2:untrained"\n')
    res = CliRunner().invoke(app, ["run", "contrast", "--config", str(cfg), "--out",
                                   str(tmp_path / "c"), "--no-progress"])
    assert res.exit_code == 0, res.output
    acc = pd.read_csv(tmp_path / "c" / "contrast_accuracy.csv")
    full = acc[(acc["condition"] == "intact") & (acc["contrast"] == 1.0)]["accuracy"]
    assert float(full.iloc[0]) == 1.0  # agreement with itself at full contrast
    assert AGREEMENT in (tmp_path / "c" / "report.html").read_text()
    control = pd.read_csv(tmp_path / "c" / "contrast_decoding_control.csv")
    assert list(control["layer"]) == ["features.0", "features.3"]
    html = (tmp_path / "c" / "report.html").read_text()
    assert "mobilenet_v2:untrained: features.0" in html  # the twin, control of the decoding


def test_dynamics_from_a_checkpoint_folder_and_per_network_weights(tmp_path):
    """The user's checkpoints (torchvision AlexNet, 10 classes, 64 px) drive the dynamics;
    networks given as SPEC=WEIGHTS; a 1000-class network in the sweep gets no accuracy."""
    from cortexmap.analyses.orientation import OrientationConfig, run_orientation

    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    for epoch, seed in ((0, 0), (3, 1), (7, 2)):
        net = load("alexnet:untrained", num_classes=10, seed=seed)
        torch.save({"arch": "alexnet", "num_classes": 10,
                    "preprocessing": Preprocessing(64).to_dict(),
                    "state_dict": net.state_dict()}, ckpts / f"epoch_{epoch}.pt")
    sd = ckpts / "plain.pth"
    torch.save(load("alexnet:untrained", num_classes=10, seed=5).state_dict(), sd)
    cfg = OrientationConfig(
        model=str(ckpts / "epoch_7.pt"), dynamics_model=str(ckpts), layers=["features.0",
                                                                              "features.3"],
        orientation_step=30, spatial_freqs=[0.125], phases=[0, 90], n_shuffles=5,
        networks=[f"alexnet={sd}", "squeezenet1_1:untrained"], ablation=False, n_test=20,
        report=False)
    res = run_orientation(cfg, tmp_path / "out", progress=False)
    dyn = res.tables["dynamics"]
    assert sorted(dyn["epoch"].unique()) == [0, 3, 7]
    assert np.isfinite(dyn["test_accuracy"]).all()
    nets = res.tables["networks"].drop_duplicates("model").set_index("model")
    assert np.isfinite(nets.loc[f"alexnet={sd}", "test_accuracy"])
    assert np.isnan(nets.loc["squeezenet1_1:untrained", "test_accuracy"])
    assert "1000 outputs vs 10" in nets.loc["squeezenet1_1:untrained", "accuracy_note"]
    with pytest.raises(CortexmapError, match="at least 2 checkpoints"):
        run_orientation(cfg.model_copy(update={"dynamics_model": str(tmp_path / "out")}),
                        tmp_path / "x", progress=False)

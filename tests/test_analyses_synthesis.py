"""run_synthesis end to end on a tiny network (outputs, resume, report, bad input) and the CLI."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from cortexmap.analyses.synthesis import SynthesisConfig, default_layers, run_synthesis
from cortexmap.errors import CortexmapError
from cortexmap.rsa import RDMs
from tests.tiny_models import TinyConvNet as Tiny


def _cfg(**kw):
    base = dict(model="tiny", layers=["conv1", "conv2", "conv3"], n_images=6, image_size=16,
                steps=12, lr=0.1, jitter=1, mapping=False, checkpoint_every=5)
    return SynthesisConfig(**(base | kw))


def test_run_writes_everything_and_resumes(tmp_path):
    out = tmp_path / "run"
    res = run_synthesis(_cfg(), out, progress=False, model=Tiny())
    for name in ["report.html", "provenance.json", "checkpoint.pt", "rdms_synthesized.npz",
                 "rdms_natural.npz", "rdms_residual.npz", "orthogonality.parquet",
                 "orthogonality.csv", "layer_correlations.parquet", "history.csv", "rdms.csv"]:
        assert (out / name).exists(), name
    assert sorted(p.name for p in (out / "images").iterdir()) == [
        f"synth_{k:02d}.png" for k in range(6)]
    assert res.images.shape == (6, 16, 16, 3)
    syn = RDMs.load(out / "rdms_synthesized.npz")
    assert syn.names == ["conv1", "conv2", "conv3"] and syn.n_conditions == 6
    nat = RDMs.load(out / "rdms_natural.npz")
    assert nat.n_conditions >= 12  # the bundled natural images
    orth = pd.read_csv(out / "orthogonality.csv").set_index("set")
    assert orth.loc["synthesized", "mean_abs_r"] < orth.loc["natural", "mean_abs_r"]
    corr = res.tables["layer_correlations"]
    assert set(corr["set"]) == {"natural", "synthesized", "residual"} and len(corr) == 27
    np.testing.assert_allclose(res.correlations["natural"],
                               res.correlations["natural"].T, atol=1e-12)
    assert len(res.findings) == 1 and "natural" in res.findings[0].numbers
    assert "start" in orth.index and "starting images" in res.findings[0].control
    html = (out / "report.html").read_text()
    assert "Layer-orthogonalizing image synthesis" in html and html.count("<img") >= 6
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["config"]["n_images"] == 6 and prov["seed"] == 0

    # run again with more steps: continues from the checkpoint
    more = run_synthesis(_cfg(steps=15), out, progress=False, model=Tiny())
    assert more.extras["resumed_from"] == 12 and len(more.history) == 15
    assert more.history["loss"].iloc[:12].tolist() == res.history["loss"].tolist()
    # a different seed cannot reuse the checkpoint
    with pytest.raises(CortexmapError, match="different settings"):
        run_synthesis(_cfg(seed=3), out, progress=False, model=Tiny())
    # nor can the same settings with other weights (e.g. a retrained network of the same name)
    retrained = Tiny()
    with torch.no_grad():
        retrained.conv1[0].weight.mul_(1.5)
    with pytest.raises(CortexmapError, match="different settings"):
        run_synthesis(_cfg(steps=15), out, progress=False, model=retrained)
    # with overwrite such a checkpoint is replaced: a fresh run, as the main job expects
    fresh = run_synthesis(_cfg(steps=15), out, overwrite=True, progress=False, model=retrained)
    assert fresh.extras["resumed_from"] == 0 and len(fresh.history) == 15
    with pytest.raises(CortexmapError, match="not empty"):
        run_synthesis(_cfg(resume=False), out, progress=False, model=Tiny())


@pytest.mark.parametrize(("kw", "match"), [
    ({"n_images": 2}, "at least 3 images"),
    ({"layers": ["conv2"]}, "at least 2 layers"),
    ({"layers": ["conv1", "conv7"]}, r"Unknown layer.*conv7"),
    ({"image_size": 24}, "rejected images of size"),
])
def test_bad_input(tmp_path, kw, match):
    with pytest.raises(CortexmapError, match=match):
        run_synthesis(_cfg(**kw), tmp_path / "bad", progress=False, model=Tiny())


def test_default_layers():
    assert default_layers("googlenet")[0] == "inception3a"
    assert default_layers("googlenet:untrained")[0] == "inception3a"
    assert default_layers("mobilenet_v2") == default_layers("mobilenet_v2:untrained")
    assert default_layers("zoo:alexnet_sup_s0") == ["conv1", "conv2", "conv3", "conv4", "conv5",
                                                   "fc6"]
    assert default_layers("zoo:alexnet_sup_s0@ep5")[-1] == "fc6"
    with pytest.raises(CortexmapError, match="No default layers"):
        default_layers("resnet18")


def test_cli_synthesize_and_errors(tmp_path):
    from cortexmap.cli import app

    runner = CliRunner()
    out = tmp_path / "cli"
    r = runner.invoke(app, [
        "synthesize", "squeezenet1_1:untrained", "--layers", "features.3,features.6,features.9",
        "--size", "32", "--steps", "3", "-n", "4", "--out", str(out), "--no-progress",
    ])
    assert r.exit_code == 0, r.output
    assert "synthesized" in r.output and (out / "report.html").exists()
    assert len(list((out / "images").glob("*.png"))) == 4
    r = runner.invoke(app, ["synthesize", "squeezenet1_1:untrained", "--layers", "features.3",
                            "--size", "32", "--out", str(tmp_path / "x"), "--no-progress"])
    assert isinstance(r.exception, CortexmapError) and "at least 2 layers" in str(r.exception)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"n_images": 2, "model": "squeezenet1_1:untrained"}))
    r = runner.invoke(app, ["run", "synthesis", "--config", str(cfg), "--out",
                            str(tmp_path / "y"), "--no-progress"])
    assert isinstance(r.exception, CortexmapError) and "at least 3 images" in str(r.exception)
    r = runner.invoke(app, ["run", "synthesis", "--config", str(cfg), "--steps", "-1",
                            "--out", str(tmp_path / "y")])
    assert isinstance(r.exception, CortexmapError) and "steps" in str(r.exception)

"""Analysis 5 on the bundled zoo AlexNet (slow: real trained network, small sizes)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cortexmap.errors import CortexmapError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def zoo_alexnet():
    from cortexmap.models import load

    try:
        return load("zoo:alexnet_sup_s0")
    except CortexmapError as exc:  # the zoo is built by scripts/train_zoo.py
        pytest.skip(f"zoo:alexnet_sup_s0 is not installed: {exc}")


def test_zoo_lesion_sweep(tmp_path, zoo_alexnet):
    from cortexmap.analyses.lesion import LesionConfig, run_lesion

    cfg = LesionConfig(layers=["conv1", "conv2"], n_images=60, n_random_sets=5,
                       contrasts=[1.0, 0.1, 0.03, 0.01])
    res = run_lesion(cfg, tmp_path / "lesion", progress=False)
    base = res.tables["baseline"]
    acc = base[base["layer"] == "conv1"].set_index("contrast")["accuracy"]
    assert acc[1.0] > 0.6 and acc[1.0] > acc[0.01]  # a trained net, hurt by low contrast
    assert len(res.tables["drops"]) == (16 + 32) * 4
    assert len(res.tables["top_kernels"]) == 2 * cfg.n_top
    imgs, _, what = res.kernel_images["conv1"]
    assert what.startswith("first-layer") and imgs.shape == (cfg.n_top, 5, 5, 3)
    assert set(res.tables["appearance"]["layer"]) == {"conv2"}
    assert (tmp_path / "lesion" / "report.html").exists()


def test_zoo_contrast(tmp_path, zoo_alexnet):
    from cortexmap.analyses.contrast import ContrastConfig, run_contrast

    res = run_contrast(ContrastConfig(n_images=60, layers=["conv1", "conv3", "fc7"]),
                       tmp_path / "contrast", progress=False)
    intact = res.curves["intact"]
    assert 0.003 < intact.c50 < 0.5 and intact.r2 > 0.8
    dec = res.tables["decoding"].set_index("layer")
    assert dec.loc["conv1", "decoding_accuracy"] > 2 * dec.loc["conv1", "chance"]


def test_zoo_cli(tmp_path, zoo_alexnet):
    from cortexmap.cli import app

    out = tmp_path / "cli"
    res = CliRunner().invoke(app, ["run", "lesion", "--layers", "conv1", "--n-images", "20",
                                   "--contrasts", "100%,5%", "--n-random-sets", "3",
                                   "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert (out / "lesion_drops.parquet").exists() and "reproduced" in res.output

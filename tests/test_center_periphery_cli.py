"""Center-periphery CLI: receptive-field table, bad settings, and a run on an image folder
with masks driven by a YAML config plus flags."""

import json

import numpy as np
import pandas as pd

from cortexmap.errors import CortexmapError


def test_cli_receptive_fields_and_bad_settings(tmp_path):
    from typer.testing import CliRunner

    from cortexmap.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["receptive-fields", "alexnet:untrained", "--layers",
                              "features.2,features.12",
                              "--out", str(tmp_path / "rf.csv")])
    assert res.exit_code == 0, res.output
    assert "features.12" in res.output and "195.0 px" in res.output
    assert (tmp_path / "rf.parquet").exists()
    res = runner.invoke(app, ["run", "center-periphery", "--groups", "central,nowhere",
                              "--out", str(tmp_path / "cp")])
    assert isinstance(res.exception, CortexmapError) and "groups" in str(res.exception)
    res = runner.invoke(app, ["run", "center-periphery", "--help"])
    assert res.exit_code == 0 and "crossover" in res.output


def test_cli_run_on_an_image_folder_with_masks(tmp_path):
    """Image folder + masks folder + YAML config + flags, end to end through the CLI."""
    from skimage.io import imsave
    from typer.testing import CliRunner

    from cortexmap.cli import app

    rng = np.random.default_rng(0)
    img_dir, mask_dir = tmp_path / "images", tmp_path / "masks"
    img_dir.mkdir()
    mask_dir.mkdir()
    yy, xx = np.mgrid[0:48, 0:48]
    for k in range(8):
        img = rng.uniform(0, 1, (48, 48, 3))
        mask = ((yy - 24) / (8 + k)) ** 2 + ((xx - 24) / (14 - k)) ** 2 <= 1
        img[mask] = rng.uniform(0, 1, 3)
        imsave(img_dir / f"img{k}.png", (img * 255).astype(np.uint8), check_contrast=False)
        imsave(mask_dir / f"img{k}.png", (mask * 255).astype(np.uint8), check_contrast=False)
    (tmp_path / "cp.yaml").write_text(
        "image_size: 48\nphantom_subjects: 2\nphantom_runs: 1\nn_perm: 30\nn_boot: 30\n"
    )
    res = CliRunner().invoke(app, [
        "run", "center-periphery", "--config", str(tmp_path / "cp.yaml"),
        "--model", "alexnet:untrained",
        "--layers", "features.2,features.5", "--stimuli", str(img_dir), "--masks-dir",
        str(mask_dir), "--no-progress", "--out", str(tmp_path / "out"),
    ])
    assert res.exit_code == 0, res.output
    inter = pd.read_csv(tmp_path / "out" / "interaction.csv")
    assert list(inter["layer"]) == ["features.2", "features.5"]
    prov = json.loads((tmp_path / "out" / "provenance.json").read_text())
    assert prov["config"]["n_perm"] == 30 and prov["config"]["model"] == "alexnet:untrained"


def test_cli_untrained_zoo_network_reproduces_neither_finding(tmp_path):
    """`cortexmap run center-periphery --model zoo:alexnet_untrained_s0`: the crossover and the
    BSI-eccentricity relation are in-silico findings judged against an untrained copy, so a
    network that was never trained reproduces neither."""
    from typer.testing import CliRunner

    from cortexmap.cli import app

    (tmp_path / "cp.yaml").write_text("phantom_subjects: 2\nphantom_runs: 1\nn_perm: 200\n"
                                      "n_boot: 300\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, [
        "run", "center-periphery", "--model", "zoo:alexnet_untrained_s0", "--config",
        str(tmp_path / "cp.yaml"), "--no-progress", "--out", str(out),
    ])
    assert res.exit_code == 0, res.output
    findings = pd.read_csv(out / "findings.csv")
    assert len(findings) == 2 and set(findings["evidence"]) == {"in-silico"}
    assert not findings["reproduced"].any()
    assert (findings["verdict"] == "not reproduced").all()
    assert findings["control"].str.contains("untrained copy").all()
    assert " ".join(res.output.split()).count("not reproduced") == 2

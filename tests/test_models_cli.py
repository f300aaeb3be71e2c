"""CLI: `cortexmap layers` and `cortexmap extract` (progress, resume, refusal, errors)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cortexmap.cli import app
from cortexmap.models import ActivationStore, Extractor, Preprocessing, load
from cortexmap.stimuli import FolderImages

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, list(args), catch_exceptions=True)


def test_layers_table():
    res = _run("layers", "alexnet:untrained", "--input-size", "64", "--leaves")
    assert res.exit_code == 0, res.output
    assert "features.3" in res.output and "192 x 7 x 7" in res.output and "Conv2d" in res.output
    res = _run("layers", "alexnett")
    assert res.exit_code != 0 and "alexnet" in str(res.exception)


@pytest.fixture
def image_dir(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(d / f"im{i}.png")
    return d


def test_extract_folder_resume_and_refuse(image_dir, tmp_path, monkeypatch):
    out = tmp_path / "acts.zarr"
    args = [
        "extract",
        "alexnet:untrained",
        "--input-size",
        "64",
        "--layers",
        "features.3,classifier.4",
        "--images",
        str(image_dir),
        "--out",
        str(out),
        "--pooling",
        "mean",
        "--batch-size",
        "2",
        "--no-progress",
    ]
    # interrupt after the first batch
    orig = ActivationStore.write_batch
    count = {"n": 0}

    def flaky(self, start, batch):
        if count["n"] == 1:
            raise KeyboardInterrupt
        count["n"] += 1
        return orig(self, start, batch)

    monkeypatch.setattr(ActivationStore, "write_batch", flaky)
    res = _run(*args)
    assert res.exit_code != 0 and "run the same command again to resume" in res.output
    assert ActivationStore(out, allow_incomplete=True).done("features.3") == 2
    monkeypatch.setattr(ActivationStore, "write_batch", orig)
    res = _run(*args)
    assert res.exit_code == 0, res.output
    assert "resuming" in res.output
    store = ActivationStore(out)
    assert store.ids == [f"im{i}" for i in range(5)]
    assert store.array("classifier.4").shape == (5, 4096)
    # equal to a direct, uninterrupted extraction
    m = load("alexnet:untrained", preprocessing=Preprocessing(64, resize=73))
    ref = Extractor(m, ["features.3"], pooling="mean", batch_size=2).extract(
        FolderImages(image_dir, size=73)
    )
    np.testing.assert_allclose(store.load("features.3"), ref["features.3"], rtol=1e-5, atol=1e-6)
    # complete store: refused without --overwrite, replaced with it
    res = _run(*args)
    assert res.exit_code != 0 and "--overwrite" in str(res.exception)
    res = _run(*args, "--overwrite", "--pooling", "max")
    assert res.exit_code == 0 and ActivationStore(out).attrs["pooling"] == "max"


def test_extract_bundled_unit_masks_and_bad_layer(tmp_path):
    out = tmp_path / "m.zarr"
    res = _run(
        "extract",
        "alexnet:untrained",
        "--input-size",
        "64",
        "--layers",
        "features.3",
        "--out",
        str(out),
        "--unit-mask",
        "center:0.3",
        "--unit-mask",
        "periphery:0.7",
        "--pooling",
        "mean",
        "--no-progress",
    )
    assert res.exit_code == 0, res.output
    store = ActivationStore(out)
    assert store.layers == ["features.3@center", "features.3@periphery"]
    assert len(store) >= 12 and store.array("features.3@center").shape[1] == 192
    res = _run("extract", "alexnet:untrained", "--layers", "features.33",
               "--out", str(tmp_path / "x"))
    assert res.exit_code != 0 and "features.3" in str(res.exception)
    res = _run(
        "extract",
        "alexnet:untrained",
        "--layers",
        "features.3",
        "--out",
        str(tmp_path / "y"),
        "--unit-mask",
        "middle:0.2",
    )
    assert res.exit_code != 0 and "center:RADIUS" in str(res.exception)
    torch.set_num_threads(1)

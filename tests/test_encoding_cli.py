"""`cortexmap encode` end to end on a small phantom whose V1 carries the features."""

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cortexmap.brain.phantom import make_phantom
from cortexmap.cli import app
from cortexmap.errors import CortexmapError
from tests.small_phantom import small_mask

runner = CliRunner()


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    root = tmp_path_factory.mktemp("enc")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(48, 12)), rng.normal(size=(48, 12))
    make_phantom({"V1": a, "fusiform": b}, root / "ph", n_subjects=3, n_runs=3, snr=1.0,
                 mask=small_mask(), seed=1, progress=False)
    np.save(root / "a.npy", a)
    np.savez(root / "ab.npz", a=a, b=b)
    return root


def test_encode_one_space(phantom):
    out = phantom / "out1"
    res = runner.invoke(app, ["encode", str(phantom / "ph"), str(phantom / "a.npy"), "--out",
                              str(out), "--n-perm", "200", "--alphas", "1,100,10000"])
    assert res.exit_code == 0, (res.output, res.exception)
    regions = pd.read_csv(out / "regions.csv")
    med = regions.groupby("region")["r2_norm"].median()
    assert med["V1"] > 0.5 and med["fusiform"] < 0.1  # features planted in V1 only
    for name in ("report.html", "provenance.json", "group/mean_r2_norm.nii.gz",
                 "subjects/sub-01/r2_norm.nii.gz", "subjects/sub-01/noise_ceiling.nii.gz"):
        assert (out / name).exists(), name


def test_encode_two_spaces_partitions_by_region(phantom):
    out = phantom / "out2"
    res = runner.invoke(app, ["encode", str(phantom / "ph"), str(phantom / "ab.npz"), "--out",
                              str(out), "--n-perm", "100", "--banded-iter", "5"])
    assert res.exit_code == 0, (res.output, res.exception)
    part = pd.read_csv(out / "partition.csv").groupby("region").median(numeric_only=True)
    assert part.loc["V1", "unique_a"] > 0.2 > part.loc["V1", "unique_b"]
    assert part.loc["fusiform", "unique_b"] > 0.2 > part.loc["fusiform", "unique_a"]
    banded = pd.read_csv(out / "banded.csv").groupby("region").median(numeric_only=True)
    assert banded.loc["V1", "r2_a"] > banded.loc["V1", "r2_b"]


def test_encode_bad_features_fail_before_output(phantom):
    np.save(phantom / "bad.npy", np.ones((10, 3)))
    out = phantom / "never"
    from cortexmap.analyses.encode import EncodeConfig, run_encode

    with pytest.raises(CortexmapError, match="48 conditions"):
        run_encode(EncodeConfig(dataset=str(phantom / "ph"), features=str(phantom / "bad.npy")),
                   out)
    assert not out.exists()

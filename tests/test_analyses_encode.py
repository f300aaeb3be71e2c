"""The encode analysis: its finding passes on a phantom whose V1 carries the features and fails
with features the phantom does not carry."""

import numpy as np
import pytest

from cortexmap.analyses.encode import EncodeConfig, run_encode
from cortexmap.brain.phantom import make_phantom
from tests.small_phantom import small_mask


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    root = tmp_path_factory.mktemp("enc6")
    rng = np.random.default_rng(0)
    a = rng.normal(size=(24, 8))
    make_phantom({"V1": a, "fusiform": rng.normal(size=(24, 8))}, root / "ph", n_subjects=6,
                 n_runs=2, snr=1.5, mask=small_mask(), seed=2, progress=False)
    np.save(root / "a.npy", a)
    np.save(root / "unrelated.npy", rng.normal(size=(24, 8)))
    return root


def _run(phantom, features, out):
    cfg = EncodeConfig(dataset=str(phantom / "ph"), features=str(phantom / features),
                       n_perm=200, n_folds=4, alphas=[1.0, 100.0, 10000.0])
    return run_encode(cfg, phantom / out, progress=False)


def test_planted_features_are_found_in_the_planted_region(phantom):
    res = _run(phantom, "a.npy", "good")
    (f,) = res.findings
    assert f.evidence == "method-check" and f.reproduced, f.numbers
    assert "shuffled features" in f.control and "inside the planted regions" in f.numbers
    assert res.config is not None and (phantom / "good" / "report.html").is_file()


def test_unrelated_features_fail_the_criterion(phantom):
    (f,) = _run(phantom, "unrelated.npy", "bad").findings
    assert not f.reproduced, f.numbers

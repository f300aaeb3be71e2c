import numpy as np
import pandas as pd
import pytest

from cortexmap.analyses.universal import UniversalConfig, run_universal
from cortexmap.errors import CortexmapError
from cortexmap.rsa import compute_rdms
from cortexmap.universal.dimensions import principal_dimensions
from cortexmap.universal.reduction import reduction_curve
from tests.test_universal_dimensions import planted_networks


def test_run_universal_on_planted_networks_reproduces_both_findings(tmp_path):
    nets, shared = planted_networks(n_images=150, n_nets=4, seed=2)
    rng = np.random.default_rng(3)
    brain = [shared @ rng.normal(size=(3, 60)) + 0.5 * rng.normal(size=(150, 60))
             for _ in range(2)]
    cfg = UniversalConfig(n_dims=6, ks=[1, 2, 3, 6])
    result = run_universal(cfg, tmp_path / "out", progress=False, activations=nets, brain=brain)
    dims = result.tables["dimensions"]
    assert len(dims) == 4 * 6
    assert {"universality", "brain_similarity", "r_from_net0"} <= set(dims.columns)
    assert [f.reproduced for f in result.findings] == [True, True]
    # planted truth: method checks, each with its negative-control (noise) phantom reported
    assert {f.evidence for f in result.findings} == {"method-check"}
    assert all("noise phantom" in f.control for f in result.findings)
    noise = result.tables["relation_noise"].iloc[0]
    assert not (noise.spearman_rho > 0 and noise.spearman_p < 0.05)
    assert "brain_similarity_noise" in dims and len(result.tables["reduction_noise"])
    red = result.tables["reduction"].groupby(["selection", "k"]).rsa.mean()
    assert red["most universal"][3] > red["least universal"][3] + 0.3
    for name in ("dimensions", "relation", "reduction"):
        assert pd.read_parquet(tmp_path / "out" / f"{name}.parquet").shape[0] > 0
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Universal dimensions" in html and "data:image/png;base64" in html
    assert (tmp_path / "out" / "provenance.json").exists()


def test_null_brain_gives_no_relation(tmp_path):
    nets, _ = planted_networks(n_images=120, n_nets=3, seed=4)
    rng = np.random.default_rng(9)
    brain = [rng.normal(size=(120, 50))]
    result = run_universal(UniversalConfig(n_dims=6, ks=[1, 3]), tmp_path / "o",
                           progress=False, activations=nets, brain=brain)
    assert not result.findings[0].reproduced


def test_reduction_rejects_k_beyond_computed_dimensions():
    nets, _ = planted_networks(n_images=40, n_nets=2, n_units=30)
    d = principal_dimensions(nets["net0"], 4)
    rdm = compute_rdms(nets["net1"], metric="correlation")
    with pytest.raises(CortexmapError, match=r"k values \[9\] are outside 1..4"):
        reduction_curve("net0", d.scores, np.arange(4), nets["net0"], rdm, [1, 9])


def test_config_validation_and_missing_brain(tmp_path):
    with pytest.raises(ValueError, match="positive"):
        UniversalConfig(ks=[0, 1])
    nets, _ = planted_networks(n_images=40, n_nets=2, n_units=30)
    with pytest.raises(CortexmapError, match="also pass brain="):
        run_universal(UniversalConfig(n_dims=3), tmp_path / "x", progress=False,
                      activations=nets)

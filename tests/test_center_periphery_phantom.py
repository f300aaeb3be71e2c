"""Center-periphery end to end on the phantom brain: a planted crossover is recovered with the
right sign, a null phantom is not significant, and a phantom folder read back as a real dataset
gives the same numbers."""

import json
import pickle

import numpy as np
import pandas as pd
import pytest

from cortexmap.analyses.center_periphery import CenterPeripheryConfig, run_center_periphery
from cortexmap.models import Preprocessing
from cortexmap.models.architectures import build
from cortexmap.report import Report
from cortexmap.stimuli import load_bundled

LAYERS = ["conv1", "conv3", "conv5"]


def tiny_alexnet():
    """The zoo's AlexNet architecture, random init (seeded), 64 px input."""
    model = build("alexnet", seed=0)
    model.cortexmap_preprocessing = Preprocessing(64, mean=(0.5,) * 3, std=(0.25,) * 3)
    return model.eval()


def _cfg(**kw) -> CenterPeripheryConfig:
    base = dict(
        layers=LAYERS, phantom_layer="conv3", n_perm=200, n_boot=200, phantom_subjects=3,
        phantom_runs=1, phantom_snr=0.5, seed=0, phantom_geometry="groups",
        untrained_control=False,
    )
    return CenterPeripheryConfig(**(base | kw))


@pytest.fixture(scope="module")
def stimuli():
    return load_bundled(size=64)


@pytest.fixture(scope="module")
def crossover_run(tmp_path_factory, stimuli):
    out = tmp_path_factory.mktemp("cp") / "crossover"
    res = run_center_periphery(_cfg(), out, model=tiny_alexnet(), stimuli=stimuli,
                               progress=False)
    return out, res


def test_planted_crossover_recovered(crossover_run):
    out, res = crossover_run
    inter = res.tables["interaction"].set_index("layer")
    planted = inter.loc["conv3"]
    assert planted["interaction"] > 0.2
    assert planted["significant"] and planted["ci_low"] > 0 and planted["p_perm"] < 0.05
    assert (inter["interaction"] > 0).sum() >= 2  # the right sign beyond the planted layer
    cells = res.tables["crossover"].set_index(["layer", "region_kind", "group"])
    assert cells.loc[("conv3", "foveal", "central"), "r"] > cells.loc[
        ("conv3", "foveal", "background"), "r"]
    assert cells.loc[("conv3", "peripheral", "background"), "r"] > cells.loc[
        ("conv3", "peripheral", "central"), "r"]
    assert res.findings[0].reproduced and res.findings[0].evidence == "method-check"
    assert res.findings[0].verdict == "recovered the planted truth: yes"
    grp = res.tables["groups"].set_index(["layer", "group"])
    for layer in ("conv1", "conv3"):  # central RFs see more of the object (conv5 RFs: whole image)
        assert grp.loc[(layer, "central"), "mean_object_coverage"] > grp.loc[
            (layer, "background"), "mean_object_coverage"]
    # outputs: tables (parquet + csv), RDMs, figures, report, provenance, the phantom itself
    for name in ("crossover", "interaction", "groups", "receptive_fields"):
        df = pd.read_parquet(out / f"{name}.parquet")
        assert len(df) and (out / f"{name}.csv").exists()
    for f in ("group_rdms.npz", "region_rdms_fusiform.npz", "region_rdms_parahippocampal.npz",
              "figure_layers.png", "figure_layout.png", "report.html", "provenance.json",
              "phantom/truth.json"):
        assert (out / f).exists(), f
    html = (out / "report.html").read_text()
    assert "Center-periphery organization" in html and html.count("data:image/png") >= 2
    truth = json.loads((out / "phantom" / "truth.json").read_text())
    assert {r["planted"] for r in truth["regions"]} == {"conv3:central", "conv3:background"}
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["config"]["phantom_layer"] == "conv3"
    # the main job pickles results and rebuilds the combined report from them
    again = pickle.loads(pickle.dumps(res))
    report = Report("combined")
    again.add_to_report(report)
    assert len(report.finding_list) == 0  # findings are collected by the caller, once
    report.findings(again.findings)
    assert "Center-periphery organization" in report.render()


def test_null_phantom_not_significant(tmp_path, stimuli):
    res = run_center_periphery(_cfg(phantom="null"), tmp_path / "null", model=tiny_alexnet(),
                               stimuli=stimuli, progress=False)
    inter = res.tables["interaction"].set_index("layer")
    assert not inter.loc["conv3", "significant"]
    assert inter.loc["conv3", "ci_low"] < 0 < inter.loc["conv3", "ci_high"]
    assert inter["significant"].sum() == 0
    assert not res.findings[0].reproduced


def test_phantom_folder_as_real_dataset(crossover_run, tmp_path, stimuli):
    """The real-data path (ROI label image + NIfTI responses) gives the phantom run's numbers."""
    out, res = crossover_run
    cfg = _cfg(brain=str(out / "phantom"))
    real = run_center_periphery(cfg, tmp_path / "real", model=tiny_alexnet(), stimuli=stimuli,
                                progress=False)
    np.testing.assert_allclose(real.tables["crossover"]["r"], res.tables["crossover"]["r"])
    np.testing.assert_allclose(real.tables["interaction"]["ci_low"],
                               res.tables["interaction"]["ci_low"])


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_geometry_phantom_not_significant(tmp_path, stimuli, seed):
    """Both regions carry the layer's whole-image geometry (signal, but no crossover)."""
    res = run_center_periphery(_cfg(phantom="same", seed=seed, phantom_snr=1.0),
                               tmp_path / "same", model=tiny_alexnet(), stimuli=stimuli,
                               progress=False)
    assert not res.tables["interaction"].set_index("layer").loc["conv3", "significant"]


@pytest.mark.slow
@pytest.mark.parametrize("geometry,groups", [("masks", ("central", "background")),
                                             ("aperture", ("central", "peripheral"))])
def test_rendering_geometries_give_positive_crossover(tmp_path, stimuli, geometry, groups):
    """Planting renderings (object vs background, centre disk vs surround) instead of the group
    RDMs themselves: the groups still line up with the right regions (I > 0)."""
    res = run_center_periphery(
        _cfg(phantom_geometry=geometry, groups=groups, phantom_snr=1.0), tmp_path / geometry,
        model=tiny_alexnet(), stimuli=stimuli, progress=False)
    assert res.tables["interaction"].set_index("layer").loc["conv3", "interaction"] > 0


def test_untrained_network_does_not_reproduce_either_finding(tmp_path, stimuli):
    """A random network against its own untrained copy: the default (image-geometry) phantom
    and the BSI relation are in-silico findings, and neither beats the control."""
    from cortexmap.probes.center_periphery_control import partial_corr

    cfg = _cfg(phantom_geometry="images", untrained_control=True, n_perm=100, n_boot=200)
    res = run_center_periphery(cfg, tmp_path / "untrained", model=tiny_alexnet(),
                               stimuli=stimuli, progress=False)
    cross, bsi = res.findings
    assert cross.evidence == bsi.evidence == "in-silico"
    assert not cross.reproduced and not bsi.reproduced
    assert "untrained copy" in cross.control and "trained - untrained" in bsi.control
    twin = res.tables["untrained_interaction"]
    assert list(twin["layer"]) == LAYERS and (twin["ci_low"] <= twin["ci_high"]).all()
    rel = res.tables["bsi_relation"].set_index(["layer", "statistic"])
    assert set(rel.index.get_level_values(0)) == {*LAYERS, "mean"}
    # the raw relation is positive in a random network too (objects sit near the centre)
    assert rel.loc[("mean", "raw"), "untrained"] > 0
    assert (rel.loc["mean", "ci_low"] <= 0).any()
    truth = json.loads((tmp_path / "untrained" / "phantom" / "truth.json").read_text())
    assert {r["planted"] for r in truth["regions"]} == {"image:object", "image:background"}
    # partial correlation against a direct residual computation
    rng = np.random.default_rng(0)
    z = rng.normal(size=200)
    x, y = z + rng.normal(size=200), z + rng.normal(size=200)
    rx = x - np.polyval(np.polyfit(z, x, 1), z)
    ry = y - np.polyval(np.polyfit(z, y, 1), z)
    assert partial_corr(x, y, z) == pytest.approx(np.corrcoef(rx, ry)[0, 1], abs=1e-10)

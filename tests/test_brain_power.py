"""Power analysis on a small phantom: recovery grows with SNR and subjects, nulls stay null."""

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cortexmap.brain.power import (
    PowerGrid,
    make_layout,
    power_analysis,
    power_layout,
    simulate,
)
from cortexmap.cli import app
from cortexmap.errors import CortexmapError
from cortexmap.rsa import compute_rdms
from tests.small_phantom import small_mask


def _models(seed=0, n=12):
    rng = np.random.default_rng(seed)
    return compute_rdms([rng.normal(size=(n, 8)) for _ in range(2)], names=["a", "b"],
                        conditions=[f"img{i}" for i in range(n)])


@pytest.fixture(scope="module")
def result():
    grid = PowerGrid(snr=(0.15, 2.0), n_subjects=(3, 6), repetitions=1, null_repetitions=1)
    return power_analysis(_models(), ["V1", "fusiform"], grid, mask=small_mask(), n_perm=200,
                          progress=False)


def test_simulation_is_the_phantom_geometry():
    models = _models(1)
    layout = make_layout(models, ["V1", "fusiform"], small_mask())
    sub = simulate(layout, 1, 2, snr=50.0, seed=0)[0]  # nearly noise-free
    assert list(sub.condition_names) == models.conditions
    pats = sub.condition_patterns()
    for i in range(2):
        rdm = compute_rdms(pats[:, layout.labels == i + 1]).vectors[0]
        assert np.corrcoef(rdm, models.vectors[i])[0, 1] > 0.95


def test_recovery_and_null(result):
    curve = result.curve.set_index(["snr", "n_subjects"])
    assert curve.loc[(2.0, 6), "detected"] == 1.0 and curve.loc[(2.0, 6), "dice"] > 0.4
    assert curve.loc[(2.0, 6), "roi_detected"] == 1.0
    # 3 subjects: the exact sign-flip test cannot reach p < 0.05 (min p = 1/8): nothing detected
    assert curve.loc[(2.0, 3), "detected"] == 0.0
    assert curve.loc[(0.15, 6), "dice"] < curve.loc[(2.0, 6), "dice"]
    # null phantoms: rows for each subject count; a map with an FWE hit has probability ~alpha
    assert list(result.null["n_subjects"]) == [3, 6]
    assert result.null.loc[0, "fwe_any_fraction"] == 0.0  # 3 subjects cannot reach p < 0.05
    assert result.null["fwe_any_fraction"].between(0, 1).all()
    needed = result.needed.set_index("snr")
    assert needed.loc[2.0, "subjects_searchlight"] == 6
    assert {f.evidence for f in result.findings} == {"method-check"}


def _power_cli(tmp_path, *options: str):
    """`cortexmap power` on the two test RDMs planted in V1/fusiform of the small mask."""
    _models().save(tmp_path / "m.npz")
    small_mask().to_filename(tmp_path / "mask.nii.gz")
    out = tmp_path / "pw"
    res = CliRunner().invoke(app, [
        "power", "--out", str(out), "--rdms", str(tmp_path / "m.npz"), "--regions",
        "V1,fusiform", "--mask", str(tmp_path / "mask.nii.gz"), *options])
    return out, res


def test_cli_writes_tables_figure_report(tmp_path):
    out, res = _power_cli(tmp_path, "--snr", "2", "--subjects", "2,5", "--repetitions", "1",
                          "--null-repetitions", "0", "--n-perm", "100")
    assert res.exit_code == 0, (res.output, res.exception)
    for name in ("cells.csv", "curve.csv", "needed.csv", "power.png", "report.html",
                 "provenance.json"):
        assert (out / name).exists(), name
    assert "recovered the planted truth" in res.output
    assert len(pd.read_csv(out / "cells.csv")) == 2


def test_errors():
    with pytest.raises(CortexmapError, match="snr"):
        PowerGrid(snr=(0.0,))
    with pytest.raises(CortexmapError, match="one region per model"):
        make_layout(_models(), ["V1"], small_mask())
    with pytest.raises(CortexmapError, match="No location"):
        make_layout(_models(), ["V1", "nowhere"], small_mask())
    with pytest.raises(CortexmapError, match="target"):
        power_analysis(_models(), ["V1", "fusiform"], target=1.5)
    with pytest.raises(CortexmapError, match="min_voxels"):
        power_layout(_models(), ["V1", "fusiform"], PowerGrid(radius_mm=(1.0,)), small_mask())


def test_cli_bad_radius_fails_before_any_output(tmp_path):
    out, res = _power_cli(tmp_path, "--radius", "1")
    assert isinstance(res.exception, CortexmapError) and "radius_mm" in str(res.exception)
    assert not out.exists()



def _null_fwer(mask, models, n_groups, n_subjects=8, statistics=("t",)):
    """Per statistic: did each (group, model) null searchlight map get an FWE-significant
    voxel? Independent null phantoms (SNR 0), n_subjects per group."""
    from cortexmap.brain.searchlight import searchlight
    from cortexmap.brain.stats import group_test

    layout = make_layout(models, ["V1", "fusiform"][: len(models)], mask)
    hits = {s: [] for s in statistics}
    for g in range(n_groups):
        subs = simulate(layout, n_subjects, 2, 0.0, seed=1000 + g)
        maps = [searchlight(s, models, radius_mm=6.0, scheduler="serial", progress=False)
                for s in subs]
        for stat in statistics:
            hits[stat] += [bool(group_test(maps, model=i, n_perm=1000, seed=g, statistic=stat)
                                .significant(0.05).any()) for i in range(len(models))]
    return {s: np.array(h) for s, h in hits.items()}


@pytest.mark.slow
def test_null_phantom_fwer_slab():
    """The power tool's setting (3 mm slab, 8 subjects, 2 runs, radius 6 mm): 80 independent
    null maps keep the family-wise error rate at 5 % with the default max-t statistic."""
    from cortexmap.brain.phantom import slab_mask

    hits = _null_fwer(slab_mask(3), _models(), n_groups=40, statistics=("t", "mean"))
    assert hits["t"].size == 80
    assert hits["t"].sum() <= 9, hits  # P(Binomial(80, 0.05) >= 10) < 0.01
    assert hits["mean"].sum() >= 10, hits  # the max-mean test fails here (13 of 80)

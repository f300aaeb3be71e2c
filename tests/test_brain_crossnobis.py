"""Crossnobis searchlight against rsatoolbox's calc_rdm(method="crossnobis") on every sphere."""

import nibabel as nib
import numpy as np
import pytest

from cortexmap.brain.crossnobis import (
    crossnobis_searchlight,
    crossnobis_searchlight_rdms,
    default_residuals,
)
from cortexmap.brain.io import BrainData, BrainMasker
from cortexmap.errors import CortexmapError
from cortexmap.rsa import RDMs, compare


def _subject(seed=0, n_cond=6, n_runs=3, shape=(6, 6, 5), reps=1):
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, dtype=np.uint8)
    mask[1:, :, :] = 1
    mask[0, 0, 0] = 1
    masker = BrainMasker(nib.Nifti1Image(mask, np.diag([3.0, 3.0, 3.0, 1.0])))
    # every condition reps times per run, in a random order within each run
    conds = np.concatenate([rng.permutation([f"c{i}" for i in range(n_cond)] * reps)
                            for _ in range(n_runs)])
    runs = np.repeat(np.arange(n_runs), n_cond * reps)
    signal = rng.normal(size=(n_cond, masker.n_voxels))
    idx = np.array([int(c[1:]) for c in conds])
    mixing = rng.normal(size=(masker.n_voxels, masker.n_voxels)) * 0.3 + np.eye(masker.n_voxels)
    data = signal[idx] + rng.normal(size=(len(conds), masker.n_voxels)) @ mixing
    return BrainData(data, conds, masker, runs=runs.astype(str))


def _rsatoolbox_rdm(sub, cols, order, noise, resid, dof):
    import rsatoolbox
    from rsatoolbox.data.noise import prec_from_residuals

    ds = rsatoolbox.data.Dataset(sub.data[:, cols], obs_descriptors={
        "conds": sub.conditions, "runs": sub.runs})
    prec = None if noise == "none" else prec_from_residuals(resid[:, cols], dof=dof,
                                                            method=noise)
    rdm = rsatoolbox.rdm.calc_rdm(ds, method="crossnobis", descriptor="conds",
                                  cv_descriptor="runs", noise=prec)
    ref_order = list(rdm.pattern_descriptors["conds"])  # rsatoolbox sorts conditions
    m = rdm.get_matrices()[0]
    perm = [ref_order.index(c) for c in order]
    m = m[np.ix_(perm, perm)]
    return m[np.triu_indices(len(order), 1)]


@pytest.mark.parametrize("noise", ["none", "diag", "shrinkage_eye", "shrinkage_diag"])
@pytest.mark.parametrize("reps", [1, 2])
def test_every_sphere_equals_rsatoolbox(noise, reps):
    sub = _subject(1, reps=reps)
    spheres = _assert_spheres_equal_rsatoolbox(sub, noise, step=7)
    assert len(spheres) > 50 and (spheres.n_voxels < spheres.neighbors.shape[1]).any()


def _assert_spheres_equal_rsatoolbox(sub, noise, step):
    """Every ``step``-th sphere RDM equals rsatoolbox's to 1e-6 (default residuals)."""
    order = sub.condition_names
    rdms, spheres = crossnobis_searchlight_rdms(sub, radius_mm=6.0, noise=noise, min_voxels=5)
    cond_idx = np.array([order.index(c) for c in sub.conditions])
    resid, dof = default_residuals(sub.data, cond_idx)
    for k in range(0, len(spheres), step):
        cols = spheres.neighbors[k][spheres.neighbors[k] >= 0]
        want = _rsatoolbox_rdm(sub, cols, order, noise, resid, dof)
        np.testing.assert_allclose(rdms.vectors[k], want, atol=1e-6 * np.abs(want).max())
    return spheres


def test_maps_equal_comparison_of_sphere_rdms():
    sub = _subject(2)
    rdms, spheres = crossnobis_searchlight_rdms(sub, radius_mm=6.0, min_voxels=5)
    rng = np.random.default_rng(0)
    models = RDMs(rng.random((2, 15)), 6, ["m0", "m1"], conditions=sub.condition_names)
    res = crossnobis_searchlight(sub, models, radius_mm=6.0, min_voxels=5, memory_mb=0.05,
                                 progress=False)
    want = compare(rdms, models, "spearman")
    np.testing.assert_allclose(res.maps[:, spheres.centres].T, want, atol=1e-10)
    assert res.metric == "crossnobis (shrinkage_diag)" and res.n_centres == len(spheres)


def test_user_residuals_and_model_order():
    sub = _subject(3)
    order = sub.condition_names[::-1]  # RDM order follows the models' condition labels
    resid = np.random.default_rng(1).normal(size=(40, sub.n_voxels))
    rdms, spheres = crossnobis_searchlight_rdms(sub, 6.0, "shrinkage_eye", conditions=order,
                                                residuals=resid, dof=35, min_voxels=5)
    cols = spheres.neighbors[0][spheres.neighbors[0] >= 0]
    np.testing.assert_allclose(rdms.vectors[0], _rsatoolbox_rdm(sub, cols, order,
                                                                "shrinkage_eye", resid, 35),
                               rtol=1e-6, atol=1e-9)


def test_errors():
    sub = _subject(4)
    models = RDMs(np.random.default_rng(0).random(15), 6, conditions=sub.condition_names)
    with pytest.raises(CortexmapError, match="noise must be"):
        crossnobis_searchlight(sub, models, noise="full")
    one_run = BrainData(sub.data, sub.conditions, sub.masker, runs=np.zeros(len(sub.data)))
    with pytest.raises(CortexmapError, match="at least 2 runs"):
        crossnobis_searchlight(one_run, models)
    keep = ~((sub.conditions == "c0") & (sub.runs == "1"))
    gap = BrainData(sub.data[keep], sub.conditions[keep], sub.masker, runs=sub.runs[keep])
    with pytest.raises(CortexmapError, match="every condition must appear in every run"):
        crossnobis_searchlight(gap, models)
    no_runs = BrainData(sub.data, sub.conditions, sub.masker)
    with pytest.raises(CortexmapError, match="no run labels"):
        crossnobis_searchlight(no_runs, models)


def test_cli_searchlight_crossnobis_on_a_phantom(tmp_path):
    from typer.testing import CliRunner

    from cortexmap.brain.phantom import make_phantom
    from cortexmap.cli import app
    from tests.small_phantom import small_mask

    rng = np.random.default_rng(0)
    make_phantom({"V1": rng.normal(size=(8, 6)), "fusiform": rng.normal(size=(8, 6))},
                 tmp_path / "ph", n_subjects=2, n_runs=3, snr=2.0, mask=small_mask(), seed=2,
                 progress=False)
    res = CliRunner().invoke(app, ["searchlight", str(tmp_path / "ph"), "--out",
                                   str(tmp_path / "sl"), "--metric", "crossnobis", "--noise",
                                   "shrinkage_eye", "--n-perm", "50", "--scheduler", "serial"])
    assert res.exit_code == 0, (res.output, res.exception)
    assert (tmp_path / "sl" / "report.html").exists()
    from cortexmap.brain.io import load_atlas

    atlas = load_atlas(tmp_path / "ph" / "atlas.nii.gz", tmp_path / "ph" / "atlas.tsv")
    img = nib.load(tmp_path / "sl" / "subjects" / "sub-01" / "r_V1.nii.gz")
    vals = np.asarray(img.dataobj)
    v1, fus = atlas.region_mask("V1"), atlas.region_mask("fusiform")
    assert np.nanmean(vals[v1]) > np.nanmean(vals[fus]) + 0.2  # the V1 model maps to V1
    bad = CliRunner().invoke(app, ["searchlight", str(tmp_path / "ph"), "--out",
                                   str(tmp_path / "never"), "--metric", "crossnobis",
                                   "--noise", "full"])
    assert bad.exit_code != 0 and not (tmp_path / "never").exists()


@pytest.mark.parametrize("noise", ["none", "shrinkage_diag"])
def test_unbalanced_runs_equal_rsatoolbox(noise):
    """Unequal repetitions across runs take the per-run weighted path."""
    sub = _subject(5, reps=2)
    keep = np.ones(len(sub.data), bool)
    keep[np.flatnonzero((sub.conditions == "c1") & (sub.runs == "0"))[0]] = False
    keep[np.flatnonzero((sub.conditions == "c3") & (sub.runs == "2"))[0]] = False
    sub = BrainData(sub.data[keep], sub.conditions[keep], sub.masker, runs=sub.runs[keep])
    _assert_spheres_equal_rsatoolbox(sub, noise, step=11)


def test_constant_voxel_gives_nan_centres_not_an_error():
    sub = _subject(6)
    data = sub.data.copy()
    data[:, 10] = 1.0  # no residual variance: its spheres have no noise precision
    sub = BrainData(data, sub.conditions, sub.masker, runs=sub.runs)
    rdms, spheres = crossnobis_searchlight_rdms(sub, 6.0, "shrinkage_diag", min_voxels=5)
    hit = (spheres.neighbors == 10).any(1)
    assert hit.any() and (~hit).any()
    assert np.isnan(rdms.vectors[hit]).all() and np.isfinite(rdms.vectors[~hit]).all()
    models = RDMs(np.random.default_rng(0).random(15), 6, conditions=sub.condition_names)
    res = crossnobis_searchlight(sub, models, 6.0, min_voxels=5, progress=False)
    assert res.dropped["undefined_rdm"] == hit.sum()

"""Mapping natural vs synthesized vs residual layer RDMs: overlap/recovery scores, permutation
thresholds, the partial-correlation searchlight, and (slow) the phantom-brain comparison."""

import nibabel as nib
import numpy as np
import pytest

from cortexmap.errors import CortexmapError
from cortexmap.rsa import RDMs, compute_rdms
from cortexmap.rsa.residual import partial_correlation
from cortexmap.synthesis.mapping import (
    compare_mappings,
    dice_jaccard,
    fwe_threshold,
    partial_searchlight,
    permuted_models,
    planted_layers,
)


def test_dice_jaccard_and_planted_layers():
    a = np.array([1, 1, 0, 0], bool)
    b = np.array([1, 0, 1, 0], bool)
    assert dice_jaccard(a, b) == pytest.approx((0.5, 1 / 3))
    assert dice_jaccard(a, a) == (1.0, 1.0) and dice_jaccard(a & False, b & False) == (0.0, 0.0)
    assert planted_layers(list("abc"), 6) == list("abc")
    assert planted_layers([f"l{i}" for i in range(9)], 6) == ["l0", "l2", "l3", "l5", "l6", "l8"]


def test_permuted_models_and_fwe_threshold(rng):
    r = compute_rdms(rng.normal(size=(2, 8, 5)), names=["a", "b"])
    p = permuted_models(r, 3, seed=0)
    assert p.names[:4] == ["a", "a|perm0", "a|perm1", "a|perm2"] and len(p) == 8
    # a permutation relabels conditions: same multiset of dissimilarities
    np.testing.assert_allclose(np.sort(p.vectors[1]), np.sort(r.vectors[0]))
    null = rng.normal(0.0, 0.1, size=(2, 200_000))
    thr = fwe_threshold(null, 0.05, 1000)
    # Bonferroni z for 0.05/1000 is 3.89
    np.testing.assert_allclose(thr, 0.389, atol=0.005)
    assert (null > thr[:, None]).mean() < 0.05 / 1000 * 3


def test_partial_searchlight_matches_partial_correlation(rng):
    from cortexmap.brain.searchlight import searchlight_rdms

    mask = np.zeros((7, 7, 7), np.uint8)
    mask[1:6, 1:6, 1:6] = 1
    img = nib.Nifti1Image(mask, np.diag([3.0, 3.0, 3.0, 1.0]))
    n_cond, n_vox = 9, int(mask.sum())
    pats = rng.normal(size=(n_cond, n_vox))
    layers = compute_rdms(rng.normal(size=(3, n_cond, 20)), names=["a", "b", "c"])
    out = partial_searchlight(pats, layers, radius_mm=5.0, n_perm=2, seed=1, mask=img)
    assert out.shape == (9, n_vox)
    sl, spheres = searchlight_rdms(pats, radius_mm=5.0, mask=img)
    ref = partial_correlation(layers, sl.vectors, method="spearman")  # (3, n_centres)
    for k in range(3):
        np.testing.assert_allclose(out[k * 3, spheres.centres], ref[k], atol=1e-10)
    with pytest.raises(CortexmapError, match="at least 2 layers"):
        partial_searchlight(pats, layers[0], radius_mm=5.0, mask=img)


def test_constant_rdm_and_mismatched_layers_are_refused(rng, tmp_path):
    nat = compute_rdms(rng.normal(size=(2, 6, 5)), names=["a", "b"])
    flat = RDMs(np.vstack([nat.vectors[0], np.full(15, 0.5)]), 6, ["a", "b"], "correlation")
    with pytest.raises(CortexmapError, match="constant"):
        compare_mappings({"natural": nat, "synthesized": flat}, tmp_path / "m", progress=False)
    other = RDMs(nat.vectors, 6, ["a", "c"], "correlation")
    with pytest.raises(CortexmapError, match="same layers"):
        compare_mappings({"natural": nat, "synthesized": other}, tmp_path / "m", progress=False)


def _layer_rdms(rng, n_cond, shared):
    """Three layer RDMs whose patterns share ``shared`` of their variance."""
    base = rng.normal(size=(n_cond, 60))
    acts = [np.sqrt(shared) * base + np.sqrt(1 - shared) * rng.normal(size=(n_cond, 60))
            for _ in range(3)]
    return compute_rdms(acts, names=["early", "mid", "late"])


@pytest.mark.slow
def test_phantom_comparison_synthesized_overlaps_less(rng, tmp_path):
    natural = _layer_rdms(rng, 16, shared=0.9)  # strongly correlated layer RDMs
    synthesized = _layer_rdms(rng, 16, shared=0.0)  # (nearly) orthogonal layer RDMs
    res = compare_mappings({"natural": natural, "synthesized": synthesized}, tmp_path / "map",
                           snr=2.0, n_subjects=1, n_runs=1, n_perm=3, progress=False)
    s = res.tables["mapping_summary"].set_index("set")
    assert list(s.index) == ["natural", "synthesized", "residual", "partial", "noise"]
    assert s.loc["synthesized", "mean_overlap_dice"] < s.loc["natural", "mean_overlap_dice"]
    assert s.loc["synthesized", "mean_recovery_dice"] > 0.3
    assert s.loc["synthesized", "correct_assignments"] == 3
    assert set(res.tables["mapping_recovery"]["region"]) == {"V1", "V4", "LOC"}
    assert (tmp_path / "map" / "natural" / "r_early.nii.gz").exists()
    f = res.findings()
    assert len(f) == 3 and f[0].reproduced
    # negative control: nothing planted, nothing recovered; every row is a method check
    assert s.loc["noise", "mean_recovery_dice"] < 0.1
    assert all(x.evidence == "method-check" and "noise phantom" in x.control for x in f)

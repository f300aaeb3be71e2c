"""Loaders, masker, atlas: grids, NaN/constant voxels, labels, nilearn interop."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from cortexmap.brain import BrainMasker, load_atlas, load_dataset, load_subject
from cortexmap.brain.io import check_conditions_match
from cortexmap.errors import CortexmapError

AFF = np.diag([3.0, 3.0, 3.0, 1.0])


def _mask(shape=(6, 7, 5)):
    m = np.zeros(shape, np.uint8)
    m[1:-1, 1:-1, 1:-1] = 1
    return nib.Nifti1Image(m, AFF)


def _vols(rng, n, shape=(6, 7, 5), affine=AFF):
    return nib.Nifti1Image(rng.standard_normal((*shape, n)).astype(np.float32), affine)


def test_4d_with_table_and_runs(tmp_path, rng):
    mask = _mask()
    img = _vols(rng, 6)
    table = tmp_path / "c.tsv"
    pd.DataFrame({"condition": list("abcabc"), "run": [1, 1, 1, 2, 2, 2]}).to_csv(
        table, sep="\t", index=False)
    s = load_subject(img, mask, conditions=table)
    assert s.data.shape == (6, int(np.asarray(mask.dataobj).sum()))
    assert s.condition_names == ["a", "b", "c"]
    assert list(s.runs) == [1, 1, 1, 2, 2, 2]
    pats = s.condition_patterns()
    np.testing.assert_allclose(pats[0], s.data[[0, 3]].mean(0))
    # values round-trip through the masker
    back = s.unmask(s.data[0])
    np.testing.assert_allclose(np.asarray(back.dataobj)[np.asarray(mask.dataobj) > 0],
                               s.data[0], rtol=1e-6)


def test_3d_files_named_by_stem(tmp_path, rng):
    paths = []
    for name in ["face", "house", "tool"]:
        p = tmp_path / f"{name}.nii.gz"
        nib.save(_vols(rng, 1).slicer[..., 0], p)
        paths.append(p)
    s = load_subject(paths, _mask())
    assert s.condition_names == ["face", "house", "tool"]


def test_grid_shape_and_affine_mismatch(rng):
    with pytest.raises(CortexmapError, match="grid shape"):
        load_subject(_vols(rng, 3, shape=(6, 7, 6)), _mask(), conditions=list("abc"))
    shifted = AFF.copy()
    shifted[0, 3] = 1.5
    with pytest.raises(CortexmapError, match="affines"):
        load_subject(_vols(rng, 3, affine=shifted), _mask(), conditions=list("abc"))


def test_nan_and_constant_voxels_dropped_and_counted(rng):
    mask = _mask()
    data = rng.standard_normal((6, 7, 5, 4)).astype(np.float32)
    data[2, 2, 2, 1] = np.nan
    data[3, 3, 2, :] = 5.0  # constant
    with pytest.warns(UserWarning, match="dropped 1 NaN and 1 constant"):
        s = load_subject(nib.Nifti1Image(data, AFF), mask, conditions=list("abcd"))
    assert s.dropped == {"nan": 1, "constant": 1}
    assert s.n_voxels == int(np.asarray(mask.dataobj).sum()) - 2
    assert np.isfinite(s.data).all()
    assert not np.asarray(s.mask_img.dataobj)[2, 2, 2]


def test_label_errors(rng):
    with pytest.raises(CortexmapError, match="condition table"):
        load_subject(_vols(rng, 3), _mask())
    with pytest.raises(CortexmapError, match="2 rows but the images have 3"):
        load_subject(_vols(rng, 3), _mask(), conditions=["a", "b"])


def test_subject_missing_condition(rng):
    a = load_subject(_vols(rng, 3), _mask(), conditions=list("abc"), subject="sub-01")
    b = load_subject(_vols(rng, 3), _mask(), conditions=list("abd"), subject="sub-02")
    with pytest.raises(CortexmapError, match="sub-02 is missing condition"):
        check_conditions_match([a, b])
    with pytest.raises(CortexmapError, match="no data for condition"):
        b.condition_patterns(["a", "b", "c"])


def test_dataset_folder_missing_condition(tmp_path, rng):
    nib.save(_mask(), tmp_path / "mask.nii.gz")
    for sub, conds in [("sub-01", "abc"), ("sub-02", "ab")]:
        (tmp_path / sub).mkdir()
        nib.save(_vols(rng, len(conds)), tmp_path / sub / f"{sub}_run-01_responses.nii.gz")
        pd.DataFrame({"condition": list(conds)}).to_csv(
            tmp_path / sub / f"{sub}_run-01_conditions.tsv", sep="\t", index=False)
    with pytest.raises(CortexmapError, match="sub-02 is missing condition"):
        load_dataset(tmp_path)
    subs = load_dataset(tmp_path, subjects=["sub-01"])
    assert len(subs) == 1 and list(subs[0].runs) == ["01"] * 3


def test_atlas_and_nilearn_interop(rng):
    lab = np.zeros((6, 7, 5), np.int16)
    lab[1:3, 1:3, 1:3] = 1
    lab[3:5, 3:5, 2:4] = 2
    atlas = load_atlas(nib.Nifti1Image(lab, AFF), pd.DataFrame({"index": [1, 2],
                                                              "name": ["V1", "LOC"]}))
    assert atlas.region_names == ["V1", "LOC"]
    assert atlas.labels_at_mm([[4.5, 4.5, 4.5], [0, 0, 0], [999, 0, 0]]) == ["V1", "", ""]
    with pytest.raises(CortexmapError, match="no name"):
        load_atlas(nib.Nifti1Image(lab, AFF), {1: "V1"})
    masker = BrainMasker(_mask())
    nl = masker.to_nilearn()
    img = _vols(rng, 2)
    np.testing.assert_allclose(nl.transform(img), masker.transform(img), rtol=1e-6)
    assert BrainMasker.from_nilearn(nl).n_voxels == masker.n_voxels
    assert atlas.region_mask("LOC", masker).sum() == 8

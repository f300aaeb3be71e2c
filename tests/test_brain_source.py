"""The brain resolver: one policy from a brain setting to subjects, ROI masks and patterns."""

import shutil

import numpy as np
import pytest

from cortexmap.brain import (
    BrainDataset,
    load_atlas,
    load_dataset,
    make_phantom,
    resolve_brain,
    roi_rdms,
    slab_mask,
)
from cortexmap.config import BrainFields
from cortexmap.errors import CortexmapError

CONDITIONS = [f"c{i}" for i in range(6)]


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    rng = np.random.default_rng(0)
    return make_phantom({"V1": rng.standard_normal((6, 20)), "LOC": rng.standard_normal((6, 20))},
                        tmp_path_factory.mktemp("src") / "ds", n_subjects=2, n_runs=1,
                        snr=1.0, mask=slab_mask(3), conditions=CONDITIONS, seed=0,
                        progress=False)


def test_phantom_is_left_to_the_analysis():
    assert resolve_brain("phantom") is None
    assert resolve_brain(BrainFields()) is None


def test_dataset_folder_uses_its_own_atlas_and_gives_the_same_patterns_and_rdms(phantom):
    ds = resolve_brain(phantom.root, regions=["V1", "LOC"])
    assert ds == BrainDataset.of_phantom(phantom)
    assert resolve_brain(BrainFields(brain=str(phantom.root))) == ds
    brain = ds.load(conditions=CONDITIONS[::-1])
    subjects, atlas = load_dataset(phantom.root), phantom.atlas()
    assert [s.subject for s in brain.subjects] == [s.subject for s in subjects]
    assert brain.atlas.region_names == atlas.region_names
    for mask, s in zip(brain.masks("V1"), subjects, strict=True):
        np.testing.assert_array_equal(mask, atlas.region_mask("V1", s.masker))
        assert mask.shape == (s.n_voxels,)
    pats = brain.patterns("LOC", CONDITIONS[::-1])
    want = subjects[0].condition_patterns(CONDITIONS[::-1])[
        :, atlas.region_mask("LOC", subjects[0].masker)]
    np.testing.assert_array_equal(pats[0], want)
    got = brain.rdms(["V1"], "correlation", CONDITIONS)
    ref = roi_rdms(subjects, atlas, rois=["V1"], conditions=CONDITIONS)
    np.testing.assert_array_equal(got["V1"].vectors, ref["V1"].vectors)


def test_explicit_atlas_wins_over_the_folder_one(phantom, tmp_path):
    img, table = tmp_path / "a.nii.gz", tmp_path / "a.tsv"
    shutil.copy(phantom.atlas_path, img)
    shutil.copy(phantom.atlas_table_path, table)
    ds = resolve_brain(phantom.root, img, table, regions=["V1"])
    assert (ds.atlas, ds.atlas_table) == (img, table)
    assert ds.load_atlas().region_names == load_atlas(img, table).region_names


def _no_atlas_copy(phantom, tmp_path):
    root = tmp_path / "noatlas"
    shutil.copytree(phantom.root, root)
    (root / "atlas.nii.gz").unlink()
    return root


@pytest.mark.parametrize(("brain", "match"), [
    ("Phantom", "did you mean 'phantom'"),
    ("kriegeskorte92", "Unknown brain 'kriegeskorte92'.*dataset folder"),
])
def test_unknown_name_is_refused(brain, match):
    with pytest.raises(CortexmapError, match=match):
        resolve_brain(brain)


def test_atlas_problems_are_refused_before_loading(phantom, tmp_path):
    with pytest.raises(CortexmapError, match="atlas is set but atlas_table is not"):
        resolve_brain(phantom.root, atlas=phantom.atlas_path)
    with pytest.raises(CortexmapError, match="atlas_table file .* does not exist"):
        resolve_brain(phantom.root, phantom.atlas_path, tmp_path / "missing.tsv")
    with pytest.raises(CortexmapError, match=r"Region\(s\) \['IT'\] are not in the atlas"):
        resolve_brain(phantom.root, regions=["V1", "IT"])
    root = _no_atlas_copy(phantom, tmp_path)
    with pytest.raises(CortexmapError, match="No ROI atlas for brain dataset"):
        resolve_brain(root)
    # a searchlight needs no atlas
    ds = resolve_brain(root, require_atlas=False)
    assert ds.atlas is None and ds.load().atlas is None
    with pytest.raises(CortexmapError, match="without an ROI atlas"):
        ds.load().masks("V1")


def test_conditions_missing_from_the_dataset_are_named(phantom):
    with pytest.raises(CortexmapError, match=r"no condition for stimuli \['cat'\]"):
        resolve_brain(phantom.root).load(conditions=["c0", "cat"])

"""Phantom brain: planted geometry, truth file, ROI RSA ranks the planted model first."""

import json

import numpy as np
import pytest

from cortexmap.brain import PhantomDataset, make_phantom, roi_rdms, roi_rsa
from cortexmap.brain.phantom import embed_geometry
from cortexmap.errors import CortexmapError
from cortexmap.rsa import RDMs, compare, compute_rdms

REGIONS = ["V1", "LOC", "fusiform", "parahippocampal"]


def _layers(n_cond=10, seed=0):
    rng = np.random.default_rng(seed)
    return compute_rdms([rng.standard_normal((n_cond, 40)) for _ in REGIONS],
                        names=[f"layer{i}" for i in range(len(REGIONS))])


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    models = _layers()
    ds = make_phantom({r: models[i] for i, r in enumerate(REGIONS)},
                      tmp_path_factory.mktemp("ph"), n_subjects=3, n_runs=2, snr=0.6,
                      seed=1, progress=False)
    return ds, models


def test_truth_and_files(phantom):
    ds, _ = phantom
    truth = json.loads((ds.root / "truth.json").read_text())
    assert [r["planted"] for r in truth["regions"]] == ["layer0", "layer1", "layer2", "layer3"]
    assert all(r["n_voxels"] > 100 for r in truth["regions"])
    assert (ds.root / "provenance.json").exists()
    again = PhantomDataset.open(ds.root)
    assert again.planted == ds.planted and again.subjects == ["sub-01", "sub-02", "sub-03"]
    atlas = again.atlas()
    assert atlas.region_names == REGIONS
    # V1 sits in the occipital pole of MNI space, in both hemispheres
    assert atlas.labels_at_mm([[-10, -92, 2], [10, -92, 2]]) == ["V1", "V1"]
    subs = again.load()
    assert len(subs) == 3 and subs[0].data.shape[0] == 20 and subs[0].dropped["nan"] == 0


def test_planted_geometry_is_exact_without_noise(tmp_path):
    rng = np.random.default_rng(3)
    pats = rng.standard_normal((8, 30))
    ds = make_phantom({"V1": pats}, tmp_path, n_subjects=1, n_runs=1, snr=1e4,
                      progress=False)
    s = ds.load()[0]
    got = compute_rdms(s.condition_patterns()[:, ds.truth_mask("V1", s.masker)]).vectors[0]
    np.testing.assert_allclose(got, compute_rdms(pats).vectors[0], atol=1e-3)


def test_region_with_fewer_voxels_than_dimensions_keeps_the_strongest_ones(tmp_path):
    # 60 conditions with a dominant low-dimensional structure, planted in a region of about
    # 30 voxels: the region can carry only the strongest dimensions, and must carry those.
    rng = np.random.default_rng(5)
    strong = rng.standard_normal((60, 3)) * 5
    pats = np.concatenate([strong, rng.standard_normal((60, 80))], axis=1)
    ds = make_phantom({"V1": pats}, tmp_path, n_subjects=1, n_runs=1, snr=1e4, radius_mm=5,
                      progress=False, seed=2)
    n_vox = json.loads((ds.root / "truth.json").read_text())["regions"][0]["n_voxels"]
    assert n_vox < 59
    s = ds.load()[0]
    got = compute_rdms(s.condition_patterns()[:, ds.truth_mask("V1", s.masker)]).vectors[0]
    assert np.corrcoef(got, compute_rdms(pats).vectors[0])[0, 1] > 0.8
    np.testing.assert_allclose(got, ds.model_rdms()["V1"].vectors[0], atol=1e-3)


def test_embedding_of_euclidean_rdm_keeps_distances():
    rng = np.random.default_rng(4)
    pats = rng.standard_normal((7, 5))
    d = compute_rdms(pats, metric="euclidean").vectors[0]
    y, _ = embed_geometry(RDMs(d, 7, ["e"], "euclidean"))
    np.testing.assert_allclose(compute_rdms(y, metric="euclidean").vectors[0], d, atol=1e-8)


def test_roi_rsa_ranks_planted_layer_first(phantom):
    ds, models = phantom
    subs = ds.load()
    tables = roi_rsa(subs, ds.atlas(), models)
    best = dict(zip(tables["best"]["roi"], tables["best"]["model"], strict=True))
    assert best == ds.planted
    summ = tables["summary"]
    assert set(summ.columns) >= {"roi", "model", "mean_r", "sem", "p", "rank"}
    # crossnobis (leave-one-run-out) also finds the planted layer
    cn = roi_rdms(subs, ds.atlas(), metric="crossnobis")
    hits = [models.names[int(np.argmax(compare(cn[roi], models).mean(0)))] == planted
            for roi, planted in ds.planted.items()]
    assert all(hits)


def test_models_with_condition_labels_are_aligned(phantom):
    ds, models = phantom
    subs = ds.load()
    labelled = RDMs(models.vectors, models.n_conditions, models.names, models.metric,
                    ds.conditions)
    shuffled = labelled.subset_conditions(np.random.default_rng(0).permutation(len(ds.conditions)))
    a = roi_rsa(subs, ds.atlas(), models)["summary"]["mean_r"].to_numpy()
    b = roi_rsa(subs, ds.atlas(), shuffled)["summary"]["mean_r"].to_numpy()
    np.testing.assert_allclose(a, b, atol=1e-12)
    renamed = RDMs(models.vectors, models.n_conditions, models.names, models.metric,
                   [f"x{i}" for i in range(models.n_conditions)])
    with pytest.raises(CortexmapError, match="same stimulus ids"):
        roi_rsa(subs, ds.atlas(), renamed)


def test_bad_inputs(tmp_path, phantom):
    ds, models = phantom
    with pytest.raises(CortexmapError, match="No default location"):
        make_phantom({"nowhere": models[0]}, tmp_path / "a", progress=False)
    with pytest.raises(CortexmapError, match="conditions"):
        make_phantom({"V1": models[0], "LOC": _layers(6)[0]}, tmp_path / "b", progress=False)
    with pytest.raises(CortexmapError, match="overlaps"):
        make_phantom({"V1": models[0], "EVC": models[1]}, tmp_path / "c", progress=False)
    with pytest.raises(CortexmapError, match="model RDMs cover 6 conditions"):
        roi_rsa(ds.load(), ds.atlas(), _layers(6))


def test_parcel_region(tmp_path):
    from cortexmap.brain.phantom import mni_mask

    mask = mni_mask(3)
    vol = np.zeros(mask.shape, bool)
    vol[20:24, 10:14, 20:23] = True  # a box parcel
    rng = np.random.default_rng(5)
    ds = make_phantom({"box": rng.standard_normal((6, 20))}, tmp_path, regions={"box": vol},
                      n_subjects=1, n_runs=1, compress=False, progress=False)
    region = ds.truth["regions"][0]
    assert region["shape"] == "parcel"
    assert region["n_voxels"] == int((vol & np.asarray(mask.dataobj, bool)).sum())
    np.testing.assert_array_equal(ds.atlas().region_mask("box"),
                                  vol & np.asarray(mask.dataobj, bool))

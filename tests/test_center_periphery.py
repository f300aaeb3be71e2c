"""Center-periphery probe: renderings, background selectivity, unit groups, crossover RSA and
bad input (the phantom end-to-end runs are in test_center_periphery_phantom.py)."""

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from cortexmap.analyses.center_periphery import CenterPeripheryConfig, run_center_periphery
from cortexmap.errors import CortexmapError
from cortexmap.models import Extractor, Preprocessing
from cortexmap.models.architectures import build
from cortexmap.probes.center_periphery import (
    background_selectivity,
    check_masks,
    crossover_rsa,
    select_groups,
    split_foreground,
)
from cortexmap.probes.receptive_field import receptive_fields
from cortexmap.rsa import RDMs, compute_rdms
from cortexmap.stimuli import StimulusSet, load_bundled


def tiny_alexnet() -> torch.nn.Module:
    """The zoo's AlexNet architecture (conv1..conv5, fc6, fc7), random init, 64 px input."""
    model = build("alexnet", seed=0)
    model.cortexmap_preprocessing = Preprocessing(64, mean=(0.5,) * 3, std=(0.25,) * 3)
    return model.eval()


@pytest.fixture(scope="module")
def bundled():
    return load_bundled(size=64)


# --------------------------------------------------------------------------- renderings


def test_split_foreground_gray_and_mean(rng):
    images = rng.uniform(0, 1, (2, 8, 8, 3)).astype(np.float32)
    masks = np.zeros((2, 8, 8), bool)
    masks[:, 2:6, 2:6] = True
    obj, bg = split_foreground(images, masks, fill="gray")
    np.testing.assert_array_equal(obj[masks], images[masks])
    np.testing.assert_array_equal(bg[~masks], images[~masks])
    assert np.all(obj[~masks] == 0.5) and np.all(bg[masks] == 0.5)
    obj_m, bg_m = split_foreground(images, masks, fill="mean")
    # the fill of the object-only image is the mean colour of the object
    np.testing.assert_allclose(obj_m[0, 0, 0], images[0][masks[0]].mean(0), rtol=1e-5)
    np.testing.assert_allclose(bg_m[1, 3, 3], images[1][~masks[1]].mean(0), rtol=1e-5)
    with pytest.raises(CortexmapError, match="fill"):
        split_foreground(images, masks, fill="noise")


def test_background_selectivity_index():
    r_obj = np.array([[1.0, 0.0, 2.0, 0.0]] * 3)
    r_bg = np.array([[0.0, 1.0, 2.0, 0.0]] * 3)
    bsi = background_selectivity(r_obj, r_bg)
    np.testing.assert_allclose(bsi[:3], [-1.0, 1.0, 0.0])
    assert np.isnan(bsi[3])  # silent unit: undefined, joins no selective group
    with pytest.raises(CortexmapError, match="same layer"):
        background_selectivity(r_obj, r_bg[:, :2])


# --------------------------------------------------------------------------- masks (bad input)


def test_images_without_masks_named(bundled, tmp_path):
    with pytest.raises(CortexmapError, match="astronaut") as exc:
        check_masks(bundled.images, None, bundled.ids)
    assert "foreground mask" in str(exc.value)
    # through the analysis: a StimulusSet without masks when background groups are asked
    no_masks = StimulusSet(bundled.images[:5], bundled.ids[:5])
    cfg = CenterPeripheryConfig(layers=["conv1"], n_perm=10, n_boot=10)
    with pytest.raises(CortexmapError, match="foreground mask"):
        run_center_periphery(cfg, tmp_path / "out", model=tiny_alexnet(), stimuli=no_masks,
                             region_rdms={}, progress=False)
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_masks_of_wrong_size_and_empty_masks(bundled):
    with pytest.raises(CortexmapError, match="resize the masks"):
        check_masks(bundled.images, bundled.masks[:, :32, :32], bundled.ids)
    masks = bundled.masks.copy()
    masks[2] = False
    masks[4] = True
    with pytest.raises(CortexmapError) as exc:
        check_masks(bundled.images, masks, bundled.ids)
    msg = str(exc.value)
    assert f"no foreground (object) pixels: {bundled.ids[2]}" in msg
    assert f"no background pixels: {bundled.ids[4]}" in msg


# --------------------------------------------------------------------------- unit groups


def _bsi_rising_with_eccentricity(rf, c=8, seed=0):
    rng = np.random.default_rng(seed)
    ecc = rf.eccentricity()
    return np.clip(ecc[None] - 0.5 + 0.2 * rng.standard_normal((c, *ecc.shape)), -1, 1)


def test_select_groups_spatial_and_selective():
    model = tiny_alexnet()
    rf = receptive_fields(model, "conv2", 64)
    bsi = _bsi_rising_with_eccentricity(rf)
    ug = select_groups(rf, 8, bsi, ("central", "background"), central_radius=0.35,
                       top_fraction=0.2, exclusive=True, equal_sizes=True, seed=0)
    sizes = ug.sizes()
    assert sizes["central"] == sizes["background"] > 0
    assert not (ug.masks["central"] & ug.masks["background"]).any()
    ecc = np.broadcast_to(rf.eccentricity(), ug.shape)
    assert ecc[ug.masks["central"]].max() <= 0.35
    assert ecc[ug.masks["background"]].mean() > 2 * ecc[ug.masks["central"]].mean()
    layout = ug.layout("central")
    assert layout.shape == rf.grid and layout.max() <= 1
    summ = ug.summary()
    assert list(summ["group"]) == ["central", "background"]
    # patterns pick the group's units from (n, C, h, w) activations
    acts = np.arange(3 * 8 * 64, dtype=float).reshape(3, 8, 8, 8)
    pats = ug.patterns(acts, "central")
    assert pats.shape == (3, sizes["central"])
    np.testing.assert_array_equal(pats[0], acts[0].ravel()[ug.indices("central")])
    # unequal, overlapping groups when asked
    ug2 = select_groups(rf, 8, bsi, ("central", "object"), exclusive=False, equal_sizes=False)
    assert ug2.sizes()["central"] == 8 * int((rf.eccentricity() <= 0.35).sum())
    # the threshold rule
    ug3 = select_groups(rf, 8, bsi, ("peripheral", "background"), selection="threshold",
                        threshold=0.3, equal_sizes=False, exclusive=False)
    assert np.all(bsi[ug3.masks["background"]] >= 0.3)


def test_empty_groups_and_bad_group_settings():
    rf = receptive_fields(tiny_alexnet(), "conv2", 64)
    bsi = _bsi_rising_with_eccentricity(rf)
    with pytest.raises(CortexmapError, match="empty at threshold 0.99"):
        select_groups(rf, 8, np.clip(bsi, -0.5, 0.5), selection="threshold", threshold=0.99)
    with pytest.raises(CortexmapError, match="raise central_radius"):
        select_groups(rf, 8, bsi, central_radius=0.01)
    with pytest.raises(CortexmapError, match="lower peripheral_radius"):
        select_groups(rf, 8, bsi, ("peripheral", "background"), peripheral_radius=5.0)
    with pytest.raises(CortexmapError, match="two different names"):
        select_groups(rf, 8, bsi, ("central", "central"))
    with pytest.raises(CortexmapError, match="background selectivity"):
        select_groups(rf, 8, None, ("central", "background"))
    with pytest.raises(CortexmapError, match="shape"):
        select_groups(rf, 8, bsi[:4])


def test_non_convolutional_layer_is_refused(tmp_path):
    cfg = CenterPeripheryConfig(layers=["conv2", "fc6"], n_perm=10, n_boot=10)
    with pytest.raises(CortexmapError, match="'fc6' is not convolutional"):
        run_center_periphery(cfg, tmp_path, model=tiny_alexnet(), stimuli=load_bundled(64),
                             region_rdms={}, progress=False)


def test_background_selectivity_emerges_in_the_periphery(bundled):
    """Objects sit near the image centre, so units with peripheral receptive fields see more
    background: BSI rises with eccentricity even in a random network's first layer."""
    model = tiny_alexnet()
    ext = Extractor(model, ["conv1"], pooling="none")
    obj, bg = split_foreground(bundled.images, bundled.masks)
    bsi = background_selectivity(ext.extract(obj)["conv1"], ext.extract(bg)["conv1"])
    ecc = np.broadcast_to(receptive_fields(model, "conv1", 64).eccentricity(), bsi.shape)
    ok = np.isfinite(bsi)
    assert np.corrcoef(bsi[ok], ecc[ok])[0, 1] > 0.3


# --------------------------------------------------------------------------- crossover RSA


def _planted(rng, n=14, n_sub=4, crossed=True, noise=1.0):
    a = rng.standard_normal((n, 40))
    b = rng.standard_normal((n, 40))
    groups = compute_rdms([a + 0.5 * rng.standard_normal(a.shape),
                           b + 0.5 * rng.standard_normal(b.shape)], names=["central", "background"])

    def subjects(p):
        return compute_rdms(np.stack([p + noise * rng.standard_normal(p.shape)
                                      for _ in range(n_sub)]))

    return groups, {"fusiform": subjects(a), "parahippocampal": subjects(b if crossed else a)}


def test_crossover_rsa_recovers_planted_interaction(rng):
    groups, regions = _planted(rng)
    st = crossover_rsa(groups, regions, n_perm=300, n_boot=300, seed=0)
    tab = st.table.set_index(["group", "region"])
    assert st.interaction["interaction"] > 0.3 and st.interaction["significant"]
    assert st.interaction["ci_low"] > 0 and st.interaction["p_perm"] < 0.01
    assert tab.loc[("central", "fusiform"), "p_perm"] < 0.01
    assert tab.loc[("background", "parahippocampal"), "p_perm"] < 0.01
    # cells are means over subjects of per-subject Spearman correlations
    r0 = np.mean([spearmanr(groups.vectors[0], s).statistic
                  for s in regions["fusiform"].vectors])
    assert tab.loc[("central", "fusiform"), "r"] == pytest.approx(r0, abs=1e-10)
    assert np.isfinite(tab["nc_lower"]).all() and (tab["nc_upper"] >= tab["nc_lower"]).all()
    # swapping the regions flips the sign
    swapped = crossover_rsa(groups, regions, regions=("parahippocampal", "fusiform"),
                            n_perm=50, n_boot=50)
    assert swapped.interaction["interaction"] == pytest.approx(-st.interaction["interaction"])
    # subject bootstrap
    sb = crossover_rsa(groups, regions, n_perm=20, n_boot=200, bootstrap="subjects")
    assert sb.interaction["ci_low"] > 0


def test_crossover_rsa_null_not_significant(rng):
    groups, regions = _planted(rng, crossed=False)  # both regions carry the same geometry
    st = crossover_rsa(groups, regions, n_perm=300, n_boot=300, seed=0)
    assert not st.interaction["significant"]
    assert st.interaction["ci_low"] < 0 < st.interaction["ci_high"]


def test_crossover_rsa_bad_input(rng):
    groups, regions = _planted(rng)
    with pytest.raises(CortexmapError, match="same stimuli"):
        crossover_rsa(groups, {"f": regions["fusiform"].subset_conditions(range(10)),
                               "p": regions["parahippocampal"]})
    with pytest.raises(CortexmapError, match="same subjects"):
        crossover_rsa(groups, {"f": regions["fusiform"][:2], "p": regions["parahippocampal"]})
    with pytest.raises(CortexmapError, match="2 RDMs"):
        crossover_rsa(groups[:1], regions)
    with pytest.raises(CortexmapError, match="regions must name"):
        crossover_rsa(groups, regions, regions=("fusiform", "V1"))
    # plain arrays are accepted for region RDMs
    st = crossover_rsa(groups, {k: v.vectors for k, v in regions.items()}, n_perm=5, n_boot=5)
    assert isinstance(st.per_subject, np.ndarray) and st.per_subject.shape == (2, 2, 4)


def test_run_with_given_region_rdms_and_spatial_groups(tmp_path, bundled):
    """Real-data path: ROI RDMs given directly; spatial groups need no masks."""
    stim = StimulusSet(bundled.images, bundled.ids)  # no masks
    rng = np.random.default_rng(1)
    n = len(stim)
    regions = {
        "LOC": RDMs(rng.uniform(size=(3, n * (n - 1) // 2)), n),
        "PPA": RDMs(rng.uniform(size=(3, n * (n - 1) // 2)), n),
    }
    cfg = CenterPeripheryConfig(
        layers=["conv1", "conv3"], groups=("central", "peripheral"), foveal_region="LOC",
        peripheral_region="PPA", n_perm=20, n_boot=20,
    )
    res = run_center_periphery(cfg, tmp_path / "out", model=tiny_alexnet(), stimuli=stim,
                               region_rdms=regions, progress=False)
    assert list(res.tables["interaction"]["layer"]) == ["conv1", "conv3"]
    assert set(res.tables["crossover"]["group"]) == {"central", "peripheral"}
    assert (tmp_path / "out" / "interaction.parquet").exists()
    assert (tmp_path / "out" / "report.html").exists()
    assert len(res.findings) == 1  # no background group: the BSI finding is not claimed
    with pytest.raises(CortexmapError, match="already exists"):
        run_center_periphery(cfg, tmp_path / "out", model=tiny_alexnet(), stimuli=stim,
                             region_rdms=regions, progress=False)


def test_run_on_a_dataset_folder_reads_its_rois_through_the_resolver(tmp_path, bundled):
    """Real-data path: brain= a dataset folder; its ROI RDMs are the resolver's, on the stimulus
    ids in stimulus order, and the crossover is a real-data finding."""
    from cortexmap.brain import BrainDataset, make_phantom, slab_mask

    stim = StimulusSet(bundled.images, bundled.ids)
    rng = np.random.default_rng(2)
    ds = make_phantom({"LOC": rng.standard_normal((len(stim), 20)),
                       "PPA": rng.standard_normal((len(stim), 20))}, tmp_path / "data",
                      n_subjects=2, n_runs=1, mask=slab_mask(3),
                      conditions=list(stim.ids)[::-1], seed=0, progress=False)
    cfg = CenterPeripheryConfig(
        layers=["conv1"], groups=("central", "peripheral"), foveal_region="LOC",
        peripheral_region="PPA", n_perm=5, n_boot=5, brain=str(ds.root))
    res = run_center_periphery(cfg, tmp_path / "out", model=tiny_alexnet(), stimuli=stim,
                               progress=False)
    want = BrainDataset.of_phantom(ds).load().rdms(["LOC"], "correlation", list(stim.ids))
    got = RDMs.load(tmp_path / "out" / "region_rdms_LOC.npz")
    np.testing.assert_array_equal(got.vectors, want["LOC"].vectors)
    assert got.conditions == list(stim.ids)
    assert [f.evidence for f in res.findings] == ["real-data"]


@pytest.mark.slow
def test_crossover_rsa_false_positive_rate():
    """Calibration: with the same geometry in both regions the interaction is rarely called."""
    sig, perm = [], []
    for seed in range(20):
        groups, regions = _planted(np.random.default_rng(seed), n=16, crossed=False)
        st = crossover_rsa(groups, regions, n_perm=200, n_boot=200, seed=seed)
        sig.append(st.interaction["significant"])
        perm.append(st.interaction["p_perm"] < 0.05)
    assert np.mean(sig) <= 0.1 and np.mean(perm) <= 0.15

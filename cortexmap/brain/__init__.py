"""Brain side: NIfTI data, masks and ROI atlases, ROI RSA, a fast searchlight, group statistics,
layer -> region maps and the phantom brain (simulated subjects with a planted truth).

Public API (see docs/brain.md)::

    from cortexmap.brain import make_phantom, load_dataset, load_atlas, roi_rsa, searchlight
    ds = make_phantom({"V1": rdm_conv1, "fusiform": rdm_fc6}, "phantom/")
    brain = resolve_brain("data/my_fmri", regions=["V1"]).load()  # a dataset folder + atlas
    subjects = ds.load()                                   # list[BrainData]
    tables = roi_rsa(subjects, ds.atlas(), models)         # per ROI x model correlations
    maps = [searchlight(s, models, radius_mm=6) for s in subjects]
    group = group_test(maps, model="conv1")                 # sign-flip, max-stat FWE, FDR
"""

from cortexmap.brain.io import (
    Atlas,
    BrainData,
    BrainMasker,
    check_same_grid,
    load_atlas,
    load_dataset,
    load_img,
    load_mask,
    load_subject,
)
from cortexmap.brain.maps import (
    assign_layers,
    model_maps,
    overlap,
    overlap_table,
    recovery_scores,
    winner_map,
)
from cortexmap.brain.phantom import PhantomDataset, make_phantom, mni_mask, slab_mask
from cortexmap.brain.roi import as_model_rdms, group_rdms, roi_noise_ceilings, roi_rdms, roi_rsa
from cortexmap.brain.searchlight import (
    SearchlightResult,
    Spheres,
    make_spheres,
    searchlight,
    searchlight_rdms,
)
from cortexmap.brain.source import BrainDataset, BrainRegions, resolve_brain
from cortexmap.brain.stats import GroupTestResult, clusters, group_test, stack_maps

__all__ = [
    "Atlas", "BrainData", "BrainDataset", "BrainMasker", "BrainRegions", "GroupTestResult",
    "PhantomDataset", "SearchlightResult", "Spheres", "as_model_rdms", "assign_layers",
    "check_same_grid", "clusters", "group_rdms", "group_test", "load_atlas", "load_dataset",
    "load_img", "load_mask", "load_subject", "make_phantom", "make_spheres", "mni_mask",
    "model_maps", "overlap", "overlap_table", "recovery_scores", "roi_noise_ceilings", "roi_rdms",
    "roi_rsa", "searchlight", "resolve_brain", "searchlight_rdms", "slab_mask", "stack_maps",
    "winner_map",
]
# The runs on a dataset folder (configs + run functions): cortexmap.analyses.brain

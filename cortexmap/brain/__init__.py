"""Brain side: NIfTI data, masks and ROI atlases, ROI RSA, a fast searchlight, group statistics,
layer -> region maps and the phantom brain (simulated subjects with a planted truth).

Public API (see docs/brain.md)::

    from cortexmap.brain import make_phantom, load_dataset, load_atlas, roi_rsa, searchlight
    ds = make_phantom({"V1": rdm_conv1, "fusiform": rdm_fc6}, "phantom/")
    subjects = ds.load()                                   # list[BrainData]
    tables = roi_rsa(subjects, ds.atlas(), models)         # per ROI x model correlations
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
from cortexmap.brain.phantom import PhantomDataset, make_phantom, mni_mask
from cortexmap.brain.roi import as_model_rdms, group_rdms, roi_noise_ceilings, roi_rdms, roi_rsa

__all__ = [
    "Atlas", "BrainData", "BrainMasker", "PhantomDataset", "as_model_rdms", "check_same_grid",
    "group_rdms", "load_atlas", "load_dataset", "load_img", "load_mask", "load_subject",
    "make_phantom", "mni_mask", "roi_noise_ceilings", "roi_rdms", "roi_rsa",
]

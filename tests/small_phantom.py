"""A small phantom mask for fast end-to-end brain tests."""

import nibabel as nib
import numpy as np

from cortexmap.brain.phantom import REGION_COORDS, slab_mask


def small_mask(regions=("V1", "fusiform"), reach_mm: float = 16.0) -> nib.Nifti1Image:
    """The 3 mm slab mask cut to ``reach_mm`` around both spheres of each region."""
    img = slab_mask(3)
    data = np.asarray(img.dataobj).astype(bool)
    xyz = nib.affines.apply_affine(img.affine, np.indices(data.shape).reshape(3, -1).T)
    near = np.zeros(len(xyz), dtype=bool)
    for name in regions:
        x, y, z = REGION_COORDS[name]
        for c in ((x, y, z), (-x, y, z)):
            near |= np.linalg.norm(xyz - np.array(c), axis=1) < reach_mm
    return nib.Nifti1Image((data & near.reshape(data.shape)).astype(np.uint8), img.affine)

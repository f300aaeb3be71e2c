"""Stimuli: image sets, the bundled photographs, gratings, contrast, foreground masks.

Public API::

    from cortexmap.stimuli import StimulusSet, load_bundled, load_folder, gratings, set_contrast
"""

from cortexmap.stimuli.base import StimulusSet, resize_images, resize_masks
from cortexmap.stimuli.bundled import bundled_names, load_bundled
from cortexmap.stimuli.contrast import luminance, measure_contrast, set_contrast
from cortexmap.stimuli.folder import (
    FolderImages,
    list_images,
    load_folder,
    read_image,
    save_folder,
)
from cortexmap.stimuli.gratings import aperture_weights, grating, gratings
from cortexmap.stimuli.masks import (
    ellipse_mask,
    load_masks,
    polygon_mask,
    read_mask_file,
    resize_mask,
    threshold_mask,
)
from cortexmap.stimuli.source import load_stimuli

__all__ = [
    "FolderImages",
    "StimulusSet",
    "aperture_weights",
    "bundled_names",
    "ellipse_mask",
    "grating",
    "gratings",
    "list_images",
    "load_bundled",
    "load_folder",
    "load_masks",
    "load_stimuli",
    "luminance",
    "measure_contrast",
    "polygon_mask",
    "read_image",
    "read_mask_file",
    "resize_images",
    "resize_mask",
    "resize_masks",
    "save_folder",
    "set_contrast",
    "threshold_mask",
]

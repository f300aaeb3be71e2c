"""Models: loading, layer names, activation extraction, unit masks, activation stores.

Public API::

    from cortexmap.models import load, list_layers, Extractor, ActivationStore
    model = load("zoo:alexnet_sup_s0")            # or "mobilenet_v2", "alexnet:untrained", a file
    list_layers(model)                             # [LayerInfo(name, kind, shape), ...]
    acts = Extractor(model, ["conv3", "fc7"], pooling="mean").extract(stimuli)
"""

from cortexmap.models.extract import POOLINGS, Extractor, extract, spatial_view
from cortexmap.models.layers import (
    LayerInfo,
    default_conv_layers,
    later_layers,
    list_layers,
    module_names,
    probe,
    resolve_layers,
    spatial_layers,
)
from cortexmap.models.load import load, load_weights, torchvision_names
from cortexmap.models.preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocessing,
    input_size_of,
    preprocess,
)
from cortexmap.models.store import ActivationStore
from cortexmap.models.unit_masks import (
    CenterDisk,
    ImageMask,
    PeripheryRing,
    SpatialMask,
    center_disk,
    coverage,
    image_mask,
    periphery_ring,
)
from cortexmap.models.weights import UNTRAINED, WeightsRecord, imagenet_networks, model_card

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "POOLINGS",
    "UNTRAINED",
    "WeightsRecord",
    "ActivationStore",
    "CenterDisk",
    "Extractor",
    "ImageMask",
    "LayerInfo",
    "PeripheryRing",
    "Preprocessing",
    "SpatialMask",
    "center_disk",
    "coverage",
    "default_conv_layers",
    "extract",
    "image_mask",
    "imagenet_networks",
    "input_size_of",
    "later_layers",
    "list_layers",
    "load",
    "load_weights",
    "model_card",
    "module_names",
    "periphery_ring",
    "preprocess",
    "probe",
    "resolve_layers",
    "spatial_layers",
    "spatial_view",
    "torchvision_names",
]

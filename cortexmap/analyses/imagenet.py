"""The published analyses on real ImageNet networks, next to their untrained twins.

The zoo analyses run on small networks trained on procedural objects. These entries run the same
analyses on networks trained on natural images, from the offline weight packages
(:mod:`cortexmap.models.weights`: MobileNetV2 and EfficientNet-Lite0/1/2), each beside the same
architecture with random weights (``NAME:untrained``) as the control:

- ``orientation-imagenet``: orientation selectivity per layer (the stem and the end of each
  stage) of every network and its twin;
- ``contrast-imagenet``: contrast decoding per layer of MobileNetV2 and its twin, and
  accuracy versus contrast measured with the agreement proxy (the bundled photographs have no
  ImageNet labels: accuracy is the agreement with the network's own top-1 at full contrast);
- ``center-periphery-imagenet``: centre-periphery unit groups of MobileNetV2;
- ``synthesis-imagenet``: the layer-orthogonalizing synthesis on MobileNetV2 (orthogonality;
  the phantom mapping stays with the zoo entry).

Each config is the zoo analysis's config with other defaults (every field can still be set),
sized to finish in a few minutes on 2 CPU cores. Findings carry the entry's name and the
network they come from.
"""

from __future__ import annotations

from pydantic import Field

from cortexmap.analyses.center_periphery import CenterPeripheryConfig, run_center_periphery
from cortexmap.analyses.contrast import ContrastConfig, run_contrast
from cortexmap.analyses.orientation import OrientationConfig, run_orientation
from cortexmap.analyses.synthesis import SynthesisConfig, run_synthesis
from cortexmap.models.weights import STAGE_LAYERS, UNTRAINED
from cortexmap.probes.testset import AccuracyTarget

#: The real ImageNet classifiers the entries use (offline weight packages).
IMAGENET_CLASSIFIERS = ("mobilenet_v2", "efficientnet_lite0", "efficientnet_lite1",
                        "efficientnet_lite2")
_MOBILENET_STAGES = STAGE_LAYERS["mobilenet_v2"]


def with_twins(names) -> list[str]:
    """[a, a:untrained, b, b:untrained, ...]."""
    return [spec for n in names for spec in (n, n + UNTRAINED)]


def label_findings(result, name: str, networks: list[str]):
    """Name the entry as each finding's analysis, and the network in claims that do not name
    one already (the zoo analysis words its claims without the network)."""
    for f in result.findings:
        f.analysis = name
        if not any(n in f.claim for n in networks):
            f.claim = f"{f.claim.rstrip('.')} ({networks[0]})."
    return result


class ImageNetOrientationConfig(OrientationConfig):
    """:class:`OrientationConfig` on MobileNetV2 and EfficientNet-Lite0/1/2 with their twins:
    tuning only (no training dynamics: the packages hold final weights; no ablation)."""

    model: str = "mobilenet_v2"
    networks: list[str] | None = Field(default_factory=lambda: with_twins(IMAGENET_CLASSIFIERS))
    n_lower: int = Field(3, ge=1)
    dynamics: bool = False
    ablation: bool = False
    orientation_step: float = Field(15.0, gt=0, le=45)
    n_shuffles: int = Field(100, ge=0)
    test_images: str | None = "bundled"
    accuracy: AccuracyTarget = "agreement"


class ImageNetContrastConfig(ContrastConfig):
    """:class:`ContrastConfig` on MobileNetV2 with its untrained twin as the decoding control;
    the bundled photographs with the agreement proxy for accuracy."""

    model: str = "mobilenet_v2"
    control_model: str | None = "mobilenet_v2:untrained"
    layers: list[str] = Field(default_factory=lambda: list(_MOBILENET_STAGES))
    norm_layer: str | None = "features.0"
    test_images: str | None = "bundled"
    accuracy: AccuracyTarget = "agreement"
    rsa_images: int = 16
    n_splits: int = 4


class ImageNetCenterPeripheryConfig(CenterPeripheryConfig):
    """:class:`CenterPeripheryConfig` on MobileNetV2: the stage ends whose maps are at least
    14 x 14 (on coarser maps every background-selective position is also central)."""

    model: str = "mobilenet_v2"
    layers: list[str] | None = Field(default_factory=lambda: _MOBILENET_STAGES[1:5])
    image_size: int = 224


class ImageNetSynthesisConfig(SynthesisConfig):
    """:class:`SynthesisConfig` on MobileNetV2 (its default stage layers): the orthogonality
    result, at a reduced image size and without the phantom mapping (the zoo entry has it) so
    that it fits a CPU demo."""

    model: str = Field("mobilenet_v2", description="model spec for cortexmap.models.load")
    image_size: int | None = Field(96, description="synthesized image size")
    input_size: int | None = Field(96, description="resize images to this before the model")
    n_images: int = Field(8, description="number of images to synthesize (>= 3)")
    steps: int = Field(80, ge=0)
    mapping: bool = Field(False, description="phantom-brain mapping of natural/synth/residual")


def _networks(cfg) -> list[str]:
    nets = [cfg.model]
    for attr in ("networks", "control_model"):
        value = getattr(cfg, attr, None)
        nets += [value] if isinstance(value, str) else list(value or [])
    return list(dict.fromkeys(nets))


def run_orientation_imagenet(config: ImageNetOrientationConfig | None = None,
                             outdir="runs/orientation_imagenet", overwrite: bool = False,
                             progress: bool = True):
    """Orientation selectivity of the real networks and their untrained twins."""
    config = config or ImageNetOrientationConfig()
    res = run_orientation(config, outdir, overwrite=overwrite, progress=progress)
    return label_findings(res, "orientation-imagenet", _networks(config))


def run_contrast_imagenet(config: ImageNetContrastConfig | None = None,
                          outdir="runs/contrast_imagenet", overwrite: bool = False,
                          progress: bool = True):
    """Contrast decoding per layer and accuracy versus contrast on a real network."""
    config = config or ImageNetContrastConfig()
    res = run_contrast(config, outdir, overwrite=overwrite, progress=progress)
    return label_findings(res, "contrast-imagenet", _networks(config))


def run_center_periphery_imagenet(config: ImageNetCenterPeripheryConfig | None = None,
                                  outdir="runs/center_periphery_imagenet",
                                  overwrite: bool = False, progress: bool = True):
    """Centre-periphery unit groups of a real network."""
    config = config or ImageNetCenterPeripheryConfig()
    res = run_center_periphery(config, outdir, overwrite=overwrite, progress=progress)
    return label_findings(res, "center-periphery-imagenet", _networks(config))


def run_synthesis_imagenet(config: ImageNetSynthesisConfig | None = None,
                           outdir="runs/synthesis_imagenet", overwrite: bool = False,
                           progress: bool = True):
    """The layer-orthogonalizing synthesis on a real network."""
    config = config or ImageNetSynthesisConfig()
    res = run_synthesis(config, outdir, overwrite=overwrite, progress=progress)
    return label_findings(res, "synthesis-imagenet", _networks(config))

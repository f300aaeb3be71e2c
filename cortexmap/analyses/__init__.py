"""The analyses: one registry that the main job, the combined report and the CLI iterate.

Adding an analysis is one module (config, result, run, findings, figures on the contract of
:mod:`cortexmap.analyses.base`) plus one line below; ``cortexmap run NAME``, the ``[name]``
table of a job config file and the main job pick it up from here.
"""

from cortexmap.analyses.base import Analysis
from cortexmap.analyses.benchmark import BenchmarkConfig, run_benchmark
from cortexmap.analyses.brain import RoiRsaConfig, SearchlightConfig, run_roi_rsa, run_searchlight
from cortexmap.analyses.center_periphery import CenterPeripheryConfig, run_center_periphery
from cortexmap.analyses.contrast import ContrastConfig, run_contrast
from cortexmap.analyses.encode import EncodeConfig, run_encode
from cortexmap.analyses.imagenet import (
    ImageNetCenterPeripheryConfig,
    ImageNetContrastConfig,
    ImageNetOrientationConfig,
    ImageNetSynthesisConfig,
    run_center_periphery_imagenet,
    run_contrast_imagenet,
    run_orientation_imagenet,
    run_synthesis_imagenet,
)
from cortexmap.analyses.lesion import LesionConfig, run_lesion
from cortexmap.analyses.orientation import OrientationConfig, run_orientation
from cortexmap.analyses.power import PowerConfig, run_power
from cortexmap.analyses.synthesis import SynthesisConfig, run_synthesis
from cortexmap.analyses.universal import UniversalConfig, run_universal

# Earlier command-line spellings of config fields, kept as aliases of the generated options.
_TEST_SET = {"test_images": ["--images"], "test_labels": ["--labels"]}

REGISTRY: dict[str, Analysis] = {a.name: a for a in [
    Analysis("center-periphery", "Center–periphery organization", CenterPeripheryConfig,
             run_center_periphery,
             aliases={"phantom_snr": ["--snr"], "compare_method": ["--method"]}),
    Analysis("synthesis", "Layer-orthogonalizing synthesis and residual mapping",
             SynthesisConfig, run_synthesis,
             aliases={"n_images": ["-n"], "image_size": ["--size"],
                      "parameterization": ["--param"], "tv_weight": ["--tv"],
                      "phantom_snr": ["--snr"],
                      "calibrate_batchnorm": ["--calibrate-bn/--no-calibrate-bn"]}),
    Analysis("orientation", "Orientation selectivity and ablation", OrientationConfig,
             run_orientation,
             aliases={"orientation_step": ["--step"], "spatial_freqs": ["--sfs"],
                      "n_shuffles": ["--shuffles"], **_TEST_SET}),
    Analysis("lesion", "Kernel lesions", LesionConfig, run_lesion,
             aliases={"lesion_sets": ["--sets"], "n_workers": ["--workers"], **_TEST_SET}),
    Analysis("contrast", "Image contrast", ContrastConfig, run_contrast, aliases=_TEST_SET),
    Analysis("universal", "Universal dimensions", UniversalConfig, run_universal),
    Analysis("orientation-imagenet", "Orientation selectivity in ImageNet networks vs untrained "
             "twins", ImageNetOrientationConfig, run_orientation_imagenet,
             aliases={"orientation_step": ["--step"], "spatial_freqs": ["--sfs"],
                      "n_shuffles": ["--shuffles"], **_TEST_SET}),
    Analysis("center-periphery-imagenet", "Center–periphery unit groups in MobileNetV2",
             ImageNetCenterPeripheryConfig, run_center_periphery_imagenet),
    Analysis("contrast-imagenet", "Image contrast in MobileNetV2 vs its untrained twin",
             ImageNetContrastConfig, run_contrast_imagenet, aliases=_TEST_SET),
    Analysis("synthesis-imagenet", "Layer-orthogonalizing synthesis on MobileNetV2",
             ImageNetSynthesisConfig, run_synthesis_imagenet),
    Analysis("benchmark", "Real data: model-vs-brain benchmark", BenchmarkConfig, run_benchmark),
    Analysis("roi-rsa", "ROI RSA of a dataset", RoiRsaConfig, run_roi_rsa, in_job=False),
    Analysis("searchlight", "Group searchlight of a dataset", SearchlightConfig,
             run_searchlight, in_job=False),
    Analysis("encode", "Encoding models of a dataset", EncodeConfig, run_encode, in_job=False),
    # minutes even on the small default grid: run on its own, not in the main job
    Analysis("power", "Power analysis on the phantom", PowerConfig, run_power, in_job=False,
             aliases={"n_subjects": ["--subjects"], "n_runs": ["--runs"],
                      "radius_mm": ["--radius"]}),
]}

__all__ = ["REGISTRY", "Analysis"]

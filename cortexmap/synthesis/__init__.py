"""Layer-orthogonalizing image synthesis: the science of the synthesis analysis.

Optimize a small set of images through a network so that the RDMs of chosen layers are as
mutually uncorrelated as possible, then compare layer -> brain mapping for natural,
synthesized and residual RDMs on the phantom brain. The analysis itself (config, run,
findings, report) is :mod:`cortexmap.analyses.synthesis`; see docs/synthesis.md.

Building blocks: :class:`LayerRDMObjective` (layer RDMs + loss), :func:`synthesize` (the loop
with checkpoints), :class:`FourierImages` / :class:`PixelImages` (parameterizations),
:mod:`cortexmap.synthesis.priors`, :func:`compare_mappings` (natural vs synthesized vs residual
layer maps on the phantom brain).
"""

from cortexmap.synthesis.mapping import MappingResult, compare_mappings, partial_searchlight
from cortexmap.synthesis.objective import LayerRDMObjective
from cortexmap.synthesis.optimize import OptimizationResult, synthesize
from cortexmap.synthesis.parameterization import (
    FourierImages,
    ImageParameterization,
    PixelImages,
    make_parameterization,
)
from cortexmap.synthesis.priors import PriorConfig, jitter, range_penalty, total_variation

__all__ = [
    "FourierImages", "ImageParameterization", "LayerRDMObjective", "MappingResult",
    "OptimizationResult", "PixelImages", "PriorConfig", "compare_mappings", "jitter",
    "make_parameterization", "partial_searchlight", "range_penalty", "synthesize",
    "total_variation",
]

"""Layer-orthogonalizing image synthesis (DESIGN analysis 2).

Optimize a small set of images through a network so that the RDMs of chosen layers are as
mutually uncorrelated as possible, then compare layer -> brain mapping for natural,
synthesized and residual RDMs on the phantom brain. See docs/synthesis.md.

Example::

    from cortexmap.synthesis import SynthesisConfig, run_synthesis
    res = run_synthesis(SynthesisConfig(model="mobilenet_v2", steps=300), "runs/synth")
    res.tables["orthogonality"]          # mean |r| between layer RDMs per image set

Building blocks: :class:`LayerRDMObjective` (layer RDMs + loss), :func:`synthesize` (the loop
with checkpoints), :class:`FourierImages` / :class:`PixelImages` (parameterizations),
:mod:`cortexmap.synthesis.priors`, :func:`compare_mappings` (natural vs synthesized vs residual
layer maps on the phantom brain).
"""

from cortexmap.synthesis.analysis import (
    DEFAULT_LAYERS,
    SynthesisConfig,
    SynthesisResult,
    default_layers,
    run_synthesis,
)
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
    "DEFAULT_LAYERS", "FourierImages", "ImageParameterization", "LayerRDMObjective",
    "MappingResult", "OptimizationResult", "PixelImages", "PriorConfig", "SynthesisConfig",
    "SynthesisResult", "compare_mappings", "default_layers", "jitter", "make_parameterization",
    "partial_searchlight", "range_penalty", "run_synthesis", "synthesize", "total_variation",
]

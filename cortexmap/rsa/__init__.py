"""RSA core: RDMs, their comparison, noise ceilings, permutation/bootstrap tests, FDR, interop.

Public API (see docs/rsa.md)::

    from cortexmap.rsa import RDMs, compute_rdms, compare, noise_ceiling, permutation_test
    rdms = compute_rdms([layer1, layer2], metric="correlation", names=["conv1", "conv2"])
    sim = compare(rdms, brain_rdms, method="spearman")      # (2, n_brain)
    lower, upper = noise_ceiling(subject_rdms, method="spearman")
"""

from cortexmap.rsa.cka import cka, cka_frame
from cortexmap.rsa.compare import METHODS, CompareMethod, compare, rank_rows
from cortexmap.rsa.figures import plot_rdms, plot_similarity
from cortexmap.rsa.interop import from_rsatoolbox, to_rsatoolbox, to_rsatoolbox_dataset
from cortexmap.rsa.noise_ceiling import NoiseCeiling, noise_ceiling, pool_rdms
from cortexmap.rsa.rdm import METRICS, PatternMetric, RdmMetric, RDMs, compute_rdms
from cortexmap.rsa.stats import (
    BootstrapResult,
    PermutationResult,
    SignFlipResult,
    bootstrap_conditions,
    fdr,
    fdr_reject,
    permutation_test,
    sign_flip_test,
)

__all__ = [
    "METHODS", "METRICS", "CompareMethod", "PatternMetric", "RdmMetric",
    "BootstrapResult", "NoiseCeiling", "PermutationResult", "RDMs",
    "SignFlipResult", "bootstrap_conditions", "cka", "cka_frame", "compare", "compute_rdms",
    "fdr", "fdr_reject", "from_rsatoolbox", "noise_ceiling", "permutation_test", "plot_rdms",
    "plot_similarity", "pool_rdms", "rank_rows",
    "sign_flip_test", "to_rsatoolbox", "to_rsatoolbox_dataset",
]

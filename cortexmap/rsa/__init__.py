"""RSA core: RDMs, their comparison, noise ceilings, permutation/bootstrap tests, FDR, interop.

Public API (see docs/rsa.md)::

    from cortexmap.rsa import RDMs, compute_rdms, compare
    rdms = compute_rdms([layer1, layer2], metric="correlation", names=["conv1", "conv2"])
    sim = compare(rdms, brain_rdms, method="spearman")      # (2, n_brain)
"""

from cortexmap.rsa.compare import METHODS, compare, rank_rows
from cortexmap.rsa.rdm import METRICS, RDMs, compute_rdms

__all__ = ["METHODS", "METRICS", "RDMs", "compare", "compute_rdms", "rank_rows"]

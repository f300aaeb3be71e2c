"""Encoding models: cross-validated ridge from features (layer activations, any table) to
voxel or ROI responses, banded ridge over feature spaces (himalaya), variance partitioning,
noise-ceiling-normalised scores, NIfTI maps and group statistics (docs/encoding.md).

    from cortexmap.encoding import fit_encoding
    res = fit_encoding(layer_acts, responses, mask="mask.nii.gz")   # (n_runs, n_stim, n_vox)
    res.img("r2_norm").to_filename("r2_norm.nii.gz")
"""

from cortexmap.encoding.banded import BandedResult, fit_banded, variance_partition
from cortexmap.encoding.model import (
    EncodingResult,
    fit_encoding,
    fit_encoding_chunked,
    noise_ceiling,
    pearson_columns,
    r2_score_columns,
)

__all__ = [
    "BandedResult", "EncodingResult", "fit_banded", "fit_encoding", "fit_encoding_chunked",
    "noise_ceiling", "pearson_columns", "r2_score_columns", "variance_partition",
]

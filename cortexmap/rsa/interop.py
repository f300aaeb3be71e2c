"""Conversion to and from rsatoolbox objects (rsatoolbox is imported lazily; it is optional).

Metric names differ between the two packages: cortexmap's "sqeuclidean" (squared distance per
unit) is rsatoolbox's "euclidean" method, whose RDMs it labels "squared euclidean".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cortexmap.errors import CortexmapError
from cortexmap.rsa.rdm import RDMs

# cortexmap metric -> rsatoolbox dissimilarity_measure label
_TO_RSATOOLBOX = {
    "sqeuclidean": "squared euclidean",
    "euclidean": "euclidean (not squared)",
    "correlation": "correlation",
    "cosine": "cosine",
    "crossnobis": "crossnobis",
}
_FROM_RSATOOLBOX = {v: k for k, v in _TO_RSATOOLBOX.items()} | {"euclidean": "sqeuclidean"}
_CONDITION_KEYS = ("conditions", "conds", "stimulus", "stimuli", "condition")


def _rsatoolbox():
    try:
        import rsatoolbox
    except ImportError as exc:  # pragma: no cover - rsatoolbox is a dev dependency
        raise CortexmapError(
            "rsatoolbox is not installed; pip install 'rsatoolbox>=0.3,<0.4' to convert."
        ) from exc
    return rsatoolbox


def to_rsatoolbox(rdms: RDMs):
    """``RDMs`` -> ``rsatoolbox.rdm.RDMs`` (names in rdm_descriptors["name"], condition labels
    in pattern_descriptors["conditions"])."""
    rt = _rsatoolbox()
    pattern_descriptors = {"index": list(range(rdms.n_conditions))}
    if rdms.conditions is not None:
        pattern_descriptors["conditions"] = list(rdms.conditions)
    return rt.rdm.RDMs(
        dissimilarities=rdms.vectors.copy(),
        dissimilarity_measure=_TO_RSATOOLBOX.get(rdms.metric, rdms.metric),
        rdm_descriptors={**{k: list(v) for k, v in rdms.descriptors.items()},
                         "name": list(rdms.names), "index": list(range(len(rdms)))},
        pattern_descriptors=pattern_descriptors,
    )


def from_rsatoolbox(obj, names: Sequence[str] | None = None) -> RDMs:
    """``rsatoolbox.rdm.RDMs`` -> ``RDMs``. Names come from ``names``, else the rdm descriptor
    "name", else "rdm0", "rdm1", ...; condition labels from a pattern descriptor such as
    "conditions" or "conds" when present."""
    if not (hasattr(obj, "get_vectors") and hasattr(obj, "n_cond")):
        raise CortexmapError(
            f"Expected an rsatoolbox.rdm.RDMs object; got {type(obj).__name__}."
        )
    vectors = np.asarray(obj.get_vectors(), dtype=np.float64)
    if names is None:
        desc = getattr(obj, "rdm_descriptors", {}) or {}
        names = [str(n) for n in desc["name"]] if "name" in desc else None
    conditions = None
    pdesc = getattr(obj, "pattern_descriptors", {}) or {}
    for key in _CONDITION_KEYS:
        if key in pdesc and len(pdesc[key]) == obj.n_cond:
            conditions = [str(c) for c in pdesc[key]]
            break
    measure = obj.dissimilarity_measure or "unknown"
    desc = getattr(obj, "rdm_descriptors", {}) or {}
    descriptors = {str(k): [str(x) for x in v] for k, v in desc.items()
                   if k not in ("name", "index") and len(v) == len(vectors)}
    return RDMs(vectors, int(obj.n_cond), list(names) if names is not None else [],
                _FROM_RSATOOLBOX.get(measure, measure), conditions, descriptors)


def to_rsatoolbox_dataset(
    patterns: np.ndarray,
    conditions: Sequence | None = None,
    runs: Sequence | None = None,
    unit_names: Sequence[str] | None = None,
):
    """Patterns (n_obs, n_units) -> ``rsatoolbox.data.Dataset`` with obs descriptors "conds" and
    "runs" (use ``calc_rdm(ds, descriptor="conds", cv_descriptor="runs")``)."""
    rt = _rsatoolbox()
    x = np.asarray(patterns, dtype=np.float64)
    if x.ndim != 2:
        raise CortexmapError(f"patterns must be (n_obs, n_units); got shape {x.shape}.")
    obs = {"conds": np.asarray(conditions) if conditions is not None else np.arange(len(x))}
    if runs is not None:
        obs["runs"] = np.asarray(runs)
    chn = {"names": list(unit_names)} if unit_names is not None else None
    return rt.data.Dataset(x, obs_descriptors=obs, channel_descriptors=chn)

"""Conversion to and from rsatoolbox objects (rsatoolbox is imported lazily; it is optional).

Metric names differ between the two packages: cortexmap's "sqeuclidean" (squared distance per
unit) is rsatoolbox's "euclidean" method, whose RDMs it labels "squared euclidean".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cortexmap.errors import CortexmapError
from cortexmap.rsa.rdm import RDMs, rsatoolbox_module


def to_rsatoolbox(rdms: RDMs):
    """``RDMs`` -> ``rsatoolbox.rdm.RDMs`` (names in rdm_descriptors["name"], condition labels
    in pattern_descriptors["conditions"]); same as :meth:`RDMs.to_rsatoolbox`."""
    return rdms.to_rsatoolbox()


def from_rsatoolbox(obj, names: Sequence[str] | None = None) -> RDMs:
    """``rsatoolbox.rdm.RDMs`` -> ``RDMs``; same as :meth:`RDMs.from_rsatoolbox`."""
    return RDMs.from_rsatoolbox(obj, names=names)


def to_rsatoolbox_dataset(
    patterns: np.ndarray,
    conditions: Sequence | None = None,
    runs: Sequence | None = None,
    unit_names: Sequence[str] | None = None,
):
    """Patterns (n_obs, n_units) -> ``rsatoolbox.data.Dataset`` with obs descriptors "conds" and
    "runs" (use ``calc_rdm(ds, descriptor="conds", cv_descriptor="runs")``)."""
    rt = rsatoolbox_module()
    x = np.asarray(patterns, dtype=np.float64)
    if x.ndim != 2:
        raise CortexmapError(f"patterns must be (n_obs, n_units); got shape {x.shape}.")
    obs = {"conds": np.asarray(conditions) if conditions is not None else np.arange(len(x))}
    if runs is not None:
        obs["runs"] = np.asarray(runs)
    chn = {"names": list(unit_names)} if unit_names is not None else None
    return rt.data.Dataset(x, obs_descriptors=obs, channel_descriptors=chn)

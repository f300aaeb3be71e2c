"""Shared check of the lesion tests: the fast sweep against a naive forward pass per lesion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from cortexmap.probes import lesion as ls
from cortexmap.probes.contrast import contrast_series, model_input, stack_contrasts


def assert_sweep_matches_naive(net, layers, imgs, labels, contrasts=(1.0, 0.3), **kw):
    """The sweep's accuracy tables equal a naive full forward pass per lesion."""
    ibc = contrast_series(imgs, list(contrasts))
    sweep = ls.lesion_sweep(net, layers, ibc, labels, progress=False, **kw)
    stacked, lab, con, _ = stack_contrasts(ibc, labels)
    x = model_input(net, stacked)
    for layer, n_ch in sweep.n_channels.items():
        naive = ls.naive_lesion_correct(net, layer, x, torch.as_tensor(lab),
                                        ls.kernel_masks(n_ch))
        acc = pd.DataFrame(naive.T).groupby(con).mean().T  # (lesion, contrast)
        m = sweep.matrix(layer)
        base = sweep.baseline.set_index(["layer", "contrast"])["accuracy"]
        for c in m.columns:
            np.testing.assert_allclose(base[(layer, c)] - m[c].to_numpy(), acc[c].to_numpy(),
                                       atol=1e-12)
    return sweep

"""Differentiable RDMs: same numbers and pair order as cortexmap.rsa, finite gradients."""

import numpy as np
import pytest
import torch

from cortexmap.errors import CortexmapError
from cortexmap.rsa import compare, compute_rdms
from cortexmap.rsa.torch_rdm import (
    mean_abs_offdiagonal,
    orthogonality_loss,
    rdm_correlations,
    rdm_vector,
    rdm_vectors,
    rdm_vectors_batched,
)


@pytest.mark.parametrize("metric", ["correlation", "euclidean", "sqeuclidean", "cosine"])
def test_matches_compute_rdms(rng, metric):
    x = rng.normal(size=(9, 4, 3, 5))  # conv-like trailing shape is flattened
    ours = rdm_vector(torch.from_numpy(x), metric).numpy()
    ref = compute_rdms(x.reshape(9, -1), metric=metric).vectors[0]
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-9)


def test_layers_with_different_unit_counts_and_batched(rng):
    a, b = rng.normal(size=(7, 30)), rng.normal(size=(7, 11))
    ours = rdm_vectors({"a": torch.from_numpy(a), "b": torch.from_numpy(b)}).numpy()
    ref = compute_rdms([a, b]).vectors
    np.testing.assert_allclose(ours, ref, atol=1e-10)
    stack = rng.normal(size=(3, 7, 20))
    np.testing.assert_allclose(
        rdm_vectors_batched(torch.from_numpy(stack)).numpy(), compute_rdms(stack).vectors,
        atol=1e-10,
    )


def test_rdm_correlations_match_compare_pearson(rng):
    v = rng.normal(size=(4, 36))
    w = rng.normal(size=(3, 36))
    ours = rdm_correlations(torch.from_numpy(v), torch.from_numpy(w)).numpy()
    np.testing.assert_allclose(ours, compare(v, w, method="pearson"), atol=1e-10)
    full = rdm_correlations(torch.from_numpy(v)).numpy()
    off = full[np.triu_indices(4, 1)]
    assert orthogonality_loss(torch.from_numpy(v)).item() == pytest.approx(np.mean(off**2))
    assert mean_abs_offdiagonal(torch.from_numpy(full)).item() == pytest.approx(
        np.mean(np.abs(off)))


@pytest.mark.parametrize("metric", ["correlation", "euclidean", "cosine"])
def test_gradcheck(metric):
    x = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    y = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)

    def loss(a, b):
        return orthogonality_loss(torch.stack([rdm_vector(a, metric), rdm_vector(b, metric)]))

    assert torch.autograd.gradcheck(loss, (x, y))


def test_constant_pattern_and_identical_conditions_keep_gradients_finite():
    x = torch.randn(4, 8, requires_grad=True)
    const = torch.zeros(4, 8)
    const[1] = 1.0  # one varying condition; others constant -> undefined correlation
    same = torch.ones(4, 8)  # identical conditions: zero distances, sqrt at 0
    loss = orthogonality_loss(torch.stack([
        rdm_vector(x), rdm_vector(x * 0 + const), rdm_vector(x * 0 + same, "euclidean"),
    ]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


def test_identical_layers_give_loss_one_and_bad_input_errors():
    v = torch.rand(2, 10)
    v[1] = v[0] * 3 + 1
    assert orthogonality_loss(v).item() == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(CortexmapError, match="at least 2 RDMs"):
        orthogonality_loss(v[:1])
    with pytest.raises(CortexmapError, match="at least 3 conditions"):
        rdm_vector(torch.rand(2, 5))
    with pytest.raises(CortexmapError, match="metric"):
        rdm_vector(torch.rand(4, 5), "mahalanobis")
    with pytest.raises(CortexmapError, match="same conditions"):
        rdm_vectors([torch.rand(4, 5), torch.rand(5, 5)])
    with pytest.raises(CortexmapError, match="torch.Tensor"):
        rdm_vector(np.zeros((4, 5)))

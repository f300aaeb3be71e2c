"""Model evaluation with noise ceiling and dual bootstrap, checked against rsatoolbox."""

import numpy as np
import pytest
import rsatoolbox
from rsatoolbox.util.inference_util import extract_variances

from cortexmap.errors import CortexmapError
from cortexmap.rsa import RDMs, noise_ceiling
from cortexmap.rsa.evaluation import evaluate_models


def _data(rng, n_sub=5, n=20, m=4):
    truth = rng.random(n * (n - 1) // 2)
    subjects = RDMs(truth + 0.8 * rng.random((n_sub, truth.size)), n)
    models = RDMs(np.stack([truth + s * rng.random(truth.size) for s in (0.5, 1, 2, 8)][:m]),
                  n, [f"m{k}" for k in range(m)])
    return models, subjects


def test_variances_follow_rsatoolbox_formulas(rng):
    models, subjects = _data(rng)
    ev = evaluate_models(models, subjects, "spearman", n_boot=200, seed=1)
    cov = ev._covariances()
    model_var, diff_var, nc_var = extract_variances(cov, True, ev.n_subjects, ev.n_conditions)
    np.testing.assert_allclose(ev.variance(), model_var, rtol=1e-10)
    np.testing.assert_allclose(ev.pairwise().se ** 2, diff_var, rtol=1e-10)
    # p against the lower ceiling uses the variance of score - lower bound
    from scipy import stats

    t = (ev.observed - ev.ceiling.lower) / np.sqrt(nc_var[:, 0])
    np.testing.assert_allclose(ev.p_ceiling(), 2 * stats.t.sf(np.abs(t), ev.dof), rtol=1e-8)
    frame = ev.to_frame()
    assert (frame.ci_low < frame.score).all() and (frame.score < frame.ci_high).all()
    assert ev.best_fraction().sum() == pytest.approx(1.0)
    assert ev.pairwise().q_fdr.ge(ev.pairwise().p).all()


def test_grouped_noise_ceiling_is_rsatoolbox_leave_one_group_out(rng):
    _, subjects = _data(rng, n_sub=4)
    groups = np.array([0, 0, 1, 2])  # subject 0 drawn twice in a bootstrap sample
    vec = subjects.vectors[[0, 0, 1, 2]]
    ours = noise_ceiling(vec, "kendall_tau_a", groups=groups)
    rt = rsatoolbox.rdm.RDMs(vec, rdm_descriptors={"subject": groups})
    low, up = rsatoolbox.inference.boot_noise_ceiling(rt, method="tau-a",
                                                      rdm_descriptor="subject")
    assert ours.lower == pytest.approx(low, abs=1e-10)
    assert ours.upper == pytest.approx(up, abs=1e-10)


def test_single_data_rdm_gets_stimulus_bootstrap_only(rng):
    models, subjects = _data(rng)
    ev = evaluate_models(models, subjects[0], "spearman", n_boot=50)
    assert ev.ceiling is None and ev.dof == subjects.n_conditions - 1
    assert np.isfinite(ev.se()).all() and np.isnan(ev.p_ceiling()).all()


def test_matches_rsatoolbox_on_the_92_image_data(kriegeskorte92):
    hit = kriegeskorte92.subject_rdms("hIT")
    models = kriegeskorte92.model_rdms
    for ours, theirs in [("kendall_tau_a", "tau-a"), ("spearman", "spearman")]:
        ev = evaluate_models(models, hit, ours, n_boot=3)
        rt_models = [rsatoolbox.model.ModelFixed(name, models.vectors[k])
                     for k, name in enumerate(models.names)]
        rt_data = rsatoolbox.rdm.RDMs(hit.vectors)
        want = rsatoolbox.inference.eval_fixed(rt_models, rt_data, method=theirs)
        np.testing.assert_allclose(ev.observed, want.evaluations.reshape(len(models), -1)
                                   .mean(1), atol=1e-6)
        low, up = rsatoolbox.inference.boot_noise_ceiling(rt_data, method=theirs)
        assert ev.ceiling.lower == pytest.approx(low, abs=1e-6)
        assert ev.ceiling.upper == pytest.approx(up, abs=1e-6)


def test_crossvalidated_best_chooses_on_the_other_subjects(rng):
    models, subjects = _data(rng, n_sub=6, m=4)
    ev = evaluate_models(models, subjects, "spearman", n_boot=20, seed=0)
    score, chosen = ev.crossvalidated_best()
    # written out: choose on the other subjects, score on the held-out one
    ps = ev.per_subject
    expected = []
    for s in range(ev.n_subjects):
        k = int(np.argmax(np.delete(ps, s, axis=1).mean(1)))
        assert chosen[s] == k
        expected.append(ps[k, s])
    assert score == pytest.approx(np.mean(expected), abs=1e-12)
    # choosing on the same subjects can only flatter the score
    assert score <= ev.observed.max() + 1e-12


def test_crossvalidated_best_on_pure_noise_is_not_flattered(rng):
    # 40 unrelated models: the in-sample best beats the mean model, the cross-validated one not
    n, n_sub = 20, 8
    subjects = RDMs(rng.random((n_sub, n * (n - 1) // 2)), n)
    models = RDMs(rng.random((40, n * (n - 1) // 2)), n, [f"m{k}" for k in range(40)])
    ev = evaluate_models(models, subjects, "spearman", n_boot=10, seed=0)
    assert ev.observed.max() > 0.05
    assert ev.crossvalidated_best()[0] < ev.observed.max() - 0.03


def test_crossvalidated_best_needs_subjects(rng):
    models, subjects = _data(rng)
    ev = evaluate_models(models, subjects[0], "spearman", n_boot=10)
    with pytest.raises(CortexmapError, match="at least 2 subjects"):
        ev.crossvalidated_best()

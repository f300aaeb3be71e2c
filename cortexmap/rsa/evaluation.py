"""Evaluating model RDMs against subject RDMs: point estimates, noise ceiling, dual bootstrap.

The model-comparison scheme of rsatoolbox (Schütt et al. 2023, eLife 12:e82566): a model's
score is the mean over subjects of ``compare(model, subject RDM)``; its uncertainty comes from
bootstrapping stimuli and subjects together, with the variance corrected from the bootstraps over
subjects only, stimuli only and both (``rsatoolbox.inference.eval_dual_bootstrap`` without
cross-validation, and the variance formula of its ``extract_variances``). The same resamples
serve every model, so differences between models and against the noise ceiling are tested with
their covariance (t-tests as rsatoolbox's ``Result.test_pairwise``), FDR-corrected.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from cortexmap.errors import CortexmapError
from cortexmap.rsa.compare import canonical_method, compare
from cortexmap.rsa.noise_ceiling import NoiseCeiling, noise_ceiling
from cortexmap.rsa.rdm import RDMs, triu_indices
from cortexmap.rsa.stats import fdr
from cortexmap.utils.progress import track

_KINDS = ("both", "subjects", "stimuli")


@dataclass
class ModelEvaluation:
    """Model RDMs evaluated against subject RDMs.

    Attributes
    ----------
    names : model names (n_models).
    method : comparison method.
    per_subject : (n_models, n_subjects) compare(model, subject).
    ceiling : NoiseCeiling of the subject RDMs, or None for a single data RDM.
    boot : (n_boot, 3, n_models + 2) bootstrap evaluations; axis 1 = resampling of both
        stimuli and subjects, subjects only, stimuli only; the last two columns hold the lower
        and upper noise ceiling of the sample (NaN without a ceiling). Rows of degenerate
        samples (fewer than 3 distinct stimuli) are NaN.
    n_subjects, n_conditions : sizes of the data.
    """

    names: list[str]
    method: str
    per_subject: np.ndarray
    ceiling: NoiseCeiling | None
    boot: np.ndarray
    n_subjects: int
    n_conditions: int

    @property
    def observed(self) -> np.ndarray:
        """(n_models,) mean over subjects."""
        return self.per_subject.mean(1)

    @property
    def dof(self) -> int:
        """Degrees of freedom of the t-tests and intervals (rsatoolbox: min(n_rdm, n_cond) - 1;
        n_cond - 1 for a single data RDM)."""
        if self.n_subjects < 2:
            return self.n_conditions - 1
        return min(self.n_subjects, self.n_conditions) - 1

    def subset(self, index) -> ModelEvaluation:
        """The evaluation restricted to the models at ``index`` (same bootstrap samples)."""
        idx = np.asarray(index, dtype=int)
        m = len(self.names)
        cols = np.r_[idx, m, m + 1]
        return ModelEvaluation([self.names[i] for i in idx], self.method, self.per_subject[idx],
                               self.ceiling, self.boot[:, :, cols], self.n_subjects,
                               self.n_conditions)

    def _covariances(self) -> np.ndarray:
        """(3, n_models + 2, n_models + 2) covariance of the evaluations per bootstrap kind."""
        ok = ~np.isnan(self.boot[:, 0, 0])
        if ok.sum() < 2:
            raise CortexmapError("Too few valid bootstrap samples; raise n_boot.")
        cols = self.boot[ok]
        if self.ceiling is None:
            cols = np.nan_to_num(cols)  # no ceiling columns: zero variance, never used
        centred = cols - cols.mean(0, keepdims=True)
        return np.einsum("bki,bkj->kij", centred, centred) / (ok.sum() - 1)

    def _combine(self, var: np.ndarray) -> np.ndarray:
        """Dual-bootstrap variance from (3, ...) variances (rsatoolbox's small-sample formula);
        with one data RDM only the stimulus bootstrap exists."""
        n_r, n_p = self.n_subjects, self.n_conditions
        if n_r < 2:
            return n_p / (n_p - 1) * var[2]
        combined = (n_r / (n_r - 1) * var[1] + n_p / (n_p - 1) * var[2]
                    - n_p * n_r / (n_p - 1) / (n_r - 1) * (var[0] - var[1] - var[2]))
        combined = np.maximum(np.maximum(combined, n_r / (n_r - 1) * var[1]),
                              n_p / (n_p - 1) * var[2])
        return np.minimum(combined, var[0])

    def variance(self) -> np.ndarray:
        """(n_models,) dual-bootstrap variance of each model's score."""
        cov = self._covariances()
        m = len(self.names)
        return self._combine(np.einsum("kii->ki", cov)[:, :m])

    def se(self) -> np.ndarray:
        return np.sqrt(np.maximum(self.variance(), 0.0))

    def ci(self, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """t-based interval mean ± t(dof) · SE, as rsatoolbox's ``Result.get_ci``."""
        half = stats.t.ppf(0.5 + level / 2, self.dof) * self.se()
        return self.observed - half, self.observed + half

    def crossvalidated_best(self) -> tuple[float, np.ndarray]:
        """Score of the best model when the choice is cross-validated over subjects.

        For each subject the model with the highest mean score over the *other* subjects is
        chosen and scored on that subject alone, so choosing among many models (layers) does
        not inflate the score; its mean is comparable with the lower noise ceiling, which is
        built the same way (each subject against the mean of the others).

        Returns
        -------
        score : mean over subjects of the held-out subject's score of the chosen model.
        chosen : (n_subjects,) index of the model chosen for each subject.
        """
        if self.n_subjects < 2:
            raise CortexmapError(
                "A cross-validated choice needs the RDMs of at least 2 subjects; this "
                "evaluation has one data RDM."
            )
        ps = self.per_subject
        others = (ps.sum(1, keepdims=True) - ps) / (self.n_subjects - 1)
        chosen = np.argmax(others, axis=0)
        return float(ps[chosen, np.arange(self.n_subjects)].mean()), chosen

    def p_zero(self) -> np.ndarray:
        """One-sided p of score > 0 (t-test with the bootstrap variance, rsatoolbox t_test_0)."""
        t = self.observed / np.sqrt(np.maximum(self.variance(), np.finfo(float).eps))
        return stats.t.sf(t, self.dof)

    def p_ceiling(self) -> np.ndarray:
        """Two-sided p of score = lower noise ceiling, with their covariance (NaN without one)."""
        m = len(self.names)
        if self.ceiling is None:
            return np.full(m, np.nan)
        cov = self._covariances()
        var = self._combine(np.stack([
            np.diag(c)[:m] - 2 * c[:m, m] + c[m, m] for c in cov]))
        t = (self.observed - self.ceiling.lower) / np.sqrt(np.maximum(var, np.finfo(float).eps))
        return 2 * stats.t.sf(np.abs(t), self.dof)

    def pairwise(self) -> pd.DataFrame:
        """Every pair of models: difference a - b, its SE, t, two-sided p, FDR q (BH)."""
        m = len(self.names)
        a, b = np.triu_indices(m, 1)
        cov = self._covariances()[:, :m, :m]
        var = self._combine(np.stack([c[a, a] + c[b, b] - 2 * c[a, b] for c in cov]))
        diff = self.observed[a] - self.observed[b]
        se = np.sqrt(np.maximum(var, np.finfo(float).eps))
        p = 2 * stats.t.sf(np.abs(diff / se), self.dof)
        return pd.DataFrame({
            "model_a": np.asarray(self.names, dtype=object)[a],
            "model_b": np.asarray(self.names, dtype=object)[b],
            "difference": diff, "se": se, "t": diff / se, "p": p, "q_fdr": fdr(p),
        })

    def best_fraction(self, index: np.ndarray | None = None) -> np.ndarray:
        """Fraction of (stimulus and subject) bootstrap samples in which each model among
        ``index`` (default: all) scores highest: the stability of a best-model choice."""
        idx = np.arange(len(self.names)) if index is None else np.asarray(index)
        sample = self.boot[:, 0, idx]
        sample = sample[~np.isnan(sample).any(1)]
        winners = np.bincount(sample.argmax(1), minlength=len(idx))
        return winners / max(len(sample), 1)

    def to_frame(self, level: float = 0.95) -> pd.DataFrame:
        """One row per model: score, SE, CI, p vs 0, p vs lower ceiling, ceiling bounds."""
        lo, hi = self.ci(level)
        nc = self.ceiling
        return pd.DataFrame({
            "model": self.names, "method": self.method, "score": self.observed,
            "se": self.se(), "ci_low": lo, "ci_high": hi, "p_zero": self.p_zero(),
            "p_ceiling": self.p_ceiling(),
            "ceiling_lower": np.nan if nc is None else nc.lower,
            "ceiling_upper": np.nan if nc is None else nc.upper,
            "n_subjects": self.n_subjects,
        })


def evaluate_models(
    model_rdms: RDMs,
    subject_rdms: RDMs,
    method: str = "kendall_tau_a",
    n_boot: int = 1000,
    seed: int | None = 0,
    progress: bool = False,
) -> ModelEvaluation:
    """Score each model RDM against subject RDMs with noise ceiling and dual bootstrap.

    Parameters
    ----------
    model_rdms : RDMs (n_models) over the same conditions as ``subject_rdms``.
    subject_rdms : RDMs (n_subjects), one per subject (average sessions first); a single RDM
        (e.g. a group RDM) gets a stimulus-only bootstrap and no noise ceiling.
    method : comparison method (Kendall tau-a is the choice for models that predict ties).
    n_boot : bootstrap samples (stimuli and subjects resampled with replacement; pairs of a
        stimulus with its own copy are left out).
    seed : random seed.

    Returns
    -------
    ModelEvaluation
    """
    method = canonical_method(method)
    if model_rdms.n_conditions != subject_rdms.n_conditions:
        raise CortexmapError(
            f"Model RDMs have {model_rdms.n_conditions} conditions but the subject RDMs have "
            f"{subject_rdms.n_conditions}; both must describe the same stimuli in one order."
        )
    if n_boot < 2:
        raise CortexmapError(f"n_boot must be >= 2; got {n_boot}.")
    n, n_sub, m = subject_rdms.n_conditions, len(subject_rdms), len(model_rdms)
    full = compare(model_rdms, subject_rdms, method)  # (m, n_sub)
    ceiling = noise_ceiling(subject_rdms, method) if n_sub > 1 else None
    rng = np.random.default_rng(seed)
    mm, md = model_rdms.matrices(), subject_rdms.matrices()
    i, j = triu_indices(n)
    boot = np.full((n_boot, 3, m + 2), np.nan)

    def ceil(vectors: np.ndarray, groups: np.ndarray) -> list[float]:
        if ceiling is None:
            return [np.nan, np.nan]
        nc = noise_ceiling(vectors, method, groups=groups)
        return [nc.lower, nc.upper]

    for b in track(range(n_boot), "dual bootstrap", enabled=progress):
        subj = rng.integers(0, n_sub, n_sub)
        stim = rng.integers(0, n, n)
        if np.unique(stim).size < 3 or (n_sub > 1 and np.unique(subj).size < 2):
            continue
        keep = stim[i] != stim[j]
        ii, jj = stim[i][keep], stim[j][keep]
        data = md[:, ii, jj]
        resampled = compare(mm[:, ii, jj], data, method)  # (m, n_sub): stimuli resampled
        boot[b, 0] = [*resampled[:, subj].mean(1), *ceil(data[subj], subj)]
        boot[b, 1] = [*full[:, subj].mean(1), *ceil(subject_rdms.vectors[subj], subj)]
        boot[b, 2] = [*resampled.mean(1), *ceil(data, np.arange(n_sub))]
    return ModelEvaluation(list(model_rdms.names), method, full, ceiling, boot, n_sub, n)

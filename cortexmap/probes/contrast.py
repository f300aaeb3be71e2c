"""Image contrast in networks: accuracy-vs-contrast curves, where contrast is encoded, and
divisive normalisation as a baseline mechanism (Akbarinia & Gil-Rodríguez, Vision Research 2020).

Three questions, one module:

1. *How does accuracy fall with contrast?* :func:`accuracy_by_contrast` measures it and
   :func:`fit_contrast_curve` fits a Naka-Rushton psychometric function
   ``acc(c) = chance + (top - chance) * c**n / (c**n + c50**n)``; ``c50`` is the contrast at half
   maximum (half-way between chance and the asymptote).
2. *Where is contrast encoded?* :func:`contrast_decoding` trains a cross-validated linear probe
   (folds grouped by image, so the probe must generalise to unseen images) to read the contrast
   level out of each layer, and :func:`contrast_rsa` correlates each layer's RDM with a contrast
   model RDM (``|log c_i - log c_j|``) and, for reference, a category model RDM.
3. *Would contrast normalisation help?* :class:`DivisiveNormalization` (Carandini & Heeger 2012)
   divides each position by the local response energy; :func:`with_input_normalization` applies
   it to the image, :func:`with_layer_normalization` inserts it after a layer. Comparing the
   accuracy-vs-contrast curves with and without it shows how much a gain-control stage buys.

All images are float arrays (n, H, W, 3) in [0, 1]; contrast levels are fractions in (0, 1].
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import pandas as pd
import torch
from pydantic import AfterValidator, BeforeValidator
from torch import nn

from cortexmap.errors import CortexmapError
from cortexmap.models import Extractor, preprocess
from cortexmap.models.predict import predict
from cortexmap.models.split import layer_output, split_at
from cortexmap.rsa import compare, compute_rdms
from cortexmap.stimuli.contrast import set_contrast
from cortexmap.stimuli.procedural import apply_contrast

DEFAULT_CONTRASTS: tuple[float, ...] = (1.0, 0.5, 0.3, 0.1, 0.05, 0.03, 0.01)


# --------------------------------------------------------------------------- input checks
def check_contrasts(contrasts: Sequence[float]) -> list[float]:
    """Validate contrast levels: a non-empty list of fractions in (0, 1], no duplicates."""
    levels = [float(c) for c in contrasts]
    if not levels:
        raise CortexmapError("No contrast levels given; pass e.g. [1.0, 0.5, 0.1, 0.05, 0.01].")
    bad = [c for c in levels if not (np.isfinite(c) and 0.0 < c <= 1.0)]
    if bad:
        raise CortexmapError(
            f"Contrast level(s) {bad} are outside (0, 1]; contrast is a fraction of full "
            "contrast, e.g. 0.05 for 5 % (write 5 % as 0.05, not 5)."
        )
    if len(set(levels)) != len(levels):
        raise CortexmapError(f"Contrast levels {levels} contain duplicates; list each level once.")
    return levels


def _percent(levels):
    """Levels written as percentages ("5%") become fractions (0.05)."""
    if isinstance(levels, str):
        levels = [s for s in levels.split(",") if s.strip()]
    if isinstance(levels, (list, tuple)):
        return [float(v.strip().rstrip("%")) / 100 if isinstance(v, str) and "%" in v else v
                for v in levels]
    return levels


#: A config field of contrast levels: fractions, or percentages written "5%" (validated by
#: :func:`check_contrasts`).
ContrastLevels = Annotated[list[float], BeforeValidator(_percent),
                           AfterValidator(check_contrasts)]


def check_test_set(images: np.ndarray, labels: np.ndarray | None = None) -> None:
    """Refuse an empty test set and labels that do not match the images."""
    if images is None or len(images) == 0:
        raise CortexmapError(
            "The test set is empty (0 images); pass at least one image per class, e.g. "
            "n_images=100."
        )
    if images.ndim != 4 or images.shape[-1] != 3:
        raise CortexmapError(
            f"Images must be an array (n, H, W, 3) in [0, 1]; got shape {images.shape}."
        )
    if labels is not None and len(labels) != len(images):
        raise CortexmapError(
            f"There are {len(images)} images but {len(labels)} labels; give one label per image."
        )


def contrast_series(
    images: np.ndarray, contrasts: Sequence[float], kind: str = "relative"
) -> dict[float, np.ndarray]:
    """The same images at each contrast level: {contrast: (n, H, W, 3)}.

    kind "relative" (default, the paper's manipulation): ``I_c = m + c (I - m)`` about each
    image's mean, so c = 1 is the original image and c = 0.01 keeps 1 % of its contrast
    (:func:`cortexmap.stimuli.procedural.apply_contrast`). "rms" / "michelson": absolute target
    contrast via :func:`cortexmap.stimuli.set_contrast`.
    """
    levels = check_contrasts(contrasts)
    images = np.asarray(images, dtype=np.float32)
    check_test_set(images)
    if kind == "relative":
        return {c: np.asarray(apply_contrast(images, c), dtype=np.float32) for c in levels}
    if kind not in ("rms", "michelson"):
        raise CortexmapError(f"Contrast kind must be relative, rms or michelson; got {kind!r}.")

    return {c: np.asarray(set_contrast(images, c, kind=kind), dtype=np.float32) for c in levels}


def stack_contrasts(
    images_by_contrast: Mapping[float, np.ndarray], labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate {contrast: images} into one set.

    Returns images (n_c * n, H, W, 3), labels (n_c * n,), contrast per image (n_c * n,) and the
    index of the source image (n_c * n,) (used to group cross-validation folds by image).
    """
    levels = check_contrasts(list(images_by_contrast))
    labels = np.asarray(labels)
    sets = [np.asarray(images_by_contrast[c], dtype=np.float32) for c in levels]
    for s in sets:
        check_test_set(s, labels)
    n = len(labels)
    images = np.concatenate(sets)
    return (
        images,
        np.tile(labels, len(levels)),
        np.repeat(np.asarray(levels, dtype=np.float64), n),
        np.tile(np.arange(n), len(levels)),
    )


def model_input(model: nn.Module, images: np.ndarray) -> torch.Tensor:
    """Images (n, H, W, 3) in [0, 1] -> the model's input tensor (n, 3, S, S).

    Uses the model's ``cortexmap_preprocessing`` (resize + normalisation) when it has one
    (every model from ``cortexmap.models.load`` does); otherwise the images are only transposed.
    """
    prep = getattr(model, "cortexmap_preprocessing", None)
    if prep is not None:
        x = preprocess(np.asarray(images, dtype=np.float32), prep)
    else:
        x = torch.from_numpy(np.asarray(images, dtype=np.float32)).permute(0, 3, 1, 2)
    # One memory layout throughout: channels-last, in which oneDNN convolutions and pooling run
    # fastest on CPUs; mixing layouts makes every elementwise op several times slower.
    return x.contiguous(memory_format=torch.channels_last)


# --------------------------------------------------------------------------- accuracy vs contrast
def accuracy_by_contrast(
    model: nn.Module,
    images_by_contrast: Mapping[float, np.ndarray],
    labels: np.ndarray,
    class_names: Sequence[str] | None = None,
    per_class: bool = False,
    batch_size: int = 256,
) -> pd.DataFrame:
    """Top-1 accuracy of ``model`` at each contrast level.

    images_by_contrast: {contrast: images (n, H, W, 3)}, the same n images at each level.
    Returns a table with columns contrast, accuracy, n_correct, n_images (one row per level,
    highest contrast first) and, with ``per_class``, a ``class`` column (rows per class and level
    plus the overall rows with class "all").
    """
    images, lab, con, _ = stack_contrasts(images_by_contrast, labels)
    pred = predict(model, model_input(model, images), batch_size=batch_size)
    return accuracy_table(pred == lab, con, lab if per_class else None, class_names)


def accuracy_table(
    correct: np.ndarray,
    contrast: np.ndarray,
    labels: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Aggregate per-image correctness (n,) into accuracy per contrast (and per class)."""
    df = pd.DataFrame({"contrast": contrast, "correct": correct.astype(np.float64)})
    groups = [("all", df)]
    if labels is not None:
        names = list(class_names) if class_names is not None else None
        for lab in np.unique(labels):
            name = names[int(lab)] if names is not None else str(lab)
            groups.append((name, df[labels == lab]))
    rows = []
    for name, g in groups:
        agg = g.groupby("contrast")["correct"].agg(["mean", "sum", "size"]).reset_index()
        for r in agg.itertuples(index=False):
            row = {"contrast": r.contrast, "accuracy": r.mean, "n_correct": int(r.sum),
                   "n_images": int(r.size)}
            if labels is not None:
                row["class"] = name
            rows.append(row)
    out = pd.DataFrame(rows)
    return out.sort_values(["contrast"], ascending=False, kind="stable").reset_index(drop=True)


MAX_EXPONENT = 20.0  # upper bound of the fitted Naka-Rushton exponent (a step, in practice)


@dataclass
class ContrastCurve:
    """A Naka-Rushton fit of accuracy versus contrast.

    ``acc(c) = chance + (top - chance) * c**exponent / (c**exponent + c50**exponent)``;
    ``c50`` is the contrast at half maximum, ``r2`` the fit's coefficient of determination.
    ``steep``: the exponent reached its upper bound (:data:`MAX_EXPONENT`), i.e. accuracy jumps
    between two sampled levels and ``c50`` is only known to lie between them.
    """

    c50: float
    exponent: float
    top: float
    chance: float
    r2: float

    @property
    def steep(self) -> bool:
        return self.exponent >= 0.99 * MAX_EXPONENT

    def __call__(self, contrast) -> np.ndarray:
        return naka_rushton(np.asarray(contrast, dtype=float), self.c50, self.exponent,
                            self.top, self.chance)


def naka_rushton(c: np.ndarray, c50: float, exponent: float, top: float, chance: float):
    """Naka-Rushton / hyperbolic-ratio function between ``chance`` and ``top``."""
    cn = np.power(c, exponent)
    return chance + (top - chance) * cn / (cn + np.power(c50, exponent))


def fit_contrast_curve(
    contrasts: Sequence[float], accuracy: Sequence[float], chance: float
) -> ContrastCurve:
    """Fit :func:`naka_rushton` (c50, exponent, top free; chance fixed) by least squares.

    The fit is done in log-contrast for c50 so it is well conditioned over 1 %-100 %. With fewer
    than 3 levels the curve is under-determined and an error is raised.
    """
    from scipy.optimize import least_squares

    c = np.asarray(check_contrasts(contrasts), dtype=float)
    acc = np.asarray(accuracy, dtype=float)
    if len(c) < 3:
        raise CortexmapError(
            f"A contrast curve needs at least 3 contrast levels; got {len(c)}. Add levels, e.g. "
            "1.0, 0.1, 0.01."
        )
    top0 = max(acc.max(), chance + 1e-3)
    half = chance + (top0 - chance) / 2
    above = c[acc >= half]
    c50_0 = float(above.min()) if len(above) else float(c.max())

    def resid(p):
        log_c50, log_n, top = p
        return naka_rushton(c, np.exp(log_c50), np.exp(log_n), top, chance) - acc

    fit = least_squares(
        resid, x0=[np.log(c50_0), np.log(2.0), top0],
        bounds=([np.log(1e-4), np.log(0.2), chance], [np.log(10.0), np.log(MAX_EXPONENT), 1.0]),
    )
    log_c50, log_n, top = fit.x
    ss_res = float(np.sum(fit.fun**2))
    ss_tot = float(np.sum((acc - acc.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    return ContrastCurve(float(np.exp(log_c50)), float(np.exp(log_n)), float(top),
                         float(chance), r2)


def curve_table(curves: Mapping[str, ContrastCurve]) -> pd.DataFrame:
    """One row per named curve: condition, c50, exponent, top, chance, r2, steep."""
    return pd.DataFrame(
        [{"condition": k, "c50": v.c50, "exponent": v.exponent, "top": v.top,
          "chance": v.chance, "r2": v.r2, "steep": v.steep} for k, v in curves.items()]
    )


# --------------------------------------------------------------------------- where is contrast?
def layer_activations(
    model: nn.Module, layers: Sequence[str], images: np.ndarray, pooling: str = "mean",
    batch_size: int = 128,
) -> dict[str, np.ndarray]:
    """Activations of ``layers`` for images (n, H, W, 3) -> {layer: (n, n_features)}.

    ``pooling="mean"`` averages each channel over space (n, C); "none" keeps every unit.
    Uses :class:`cortexmap.models.Extractor` (forward hooks, batching).
    """

    if pooling not in {"mean", "max", "none", "center"}:
        raise CortexmapError(f"pooling must be mean, max, center or none; got {pooling!r}.")
    ext = Extractor(model, list(layers), pooling=pooling, batch_size=batch_size)
    # Feed the same tensor every other function here uses (the model's own preprocessing).
    acts = ext.extract(model_input(model, images))
    return {k: np.asarray(v, dtype=np.float64).reshape(len(images), -1) for k, v in acts.items()}


def contrast_decoding(
    activations: Mapping[str, np.ndarray],
    contrast: np.ndarray,
    groups: np.ndarray,
    n_splits: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """Cross-validated linear read-out of contrast from each layer.

    activations: {layer: (n_obs, n_features)}; contrast: level per observation (n_obs,);
    groups: source-image index per observation (n_obs,). Folds are grouped by image so every test
    image is unseen in training. Two linear probes: shrinkage LDA classifying the contrast level
    (``decoding_accuracy`` against ``chance`` = 1 / n_levels) and ridge regression of log10
    contrast (``log_contrast_r2``, out-of-fold R²).
    Returns one row per layer, in the given layer order.
    """
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.model_selection import GroupKFold, cross_val_predict

    contrast = np.asarray(contrast, dtype=float)
    groups = np.asarray(groups)
    levels = np.unique(contrast)
    n_groups = len(np.unique(groups))
    if len(levels) < 2:
        raise CortexmapError("Decoding contrast needs at least 2 contrast levels; add levels.")
    if n_groups < 2:
        raise CortexmapError("Decoding contrast needs at least 2 images; use more test images.")
    cv = GroupKFold(n_splits=min(n_splits, n_groups))
    y_class = np.searchsorted(levels, contrast)
    y_log = np.log10(contrast)
    rows = []
    for layer, x in activations.items():
        x = np.asarray(x, dtype=np.float64).reshape(len(contrast), -1)
        # One global scale, not per-feature z-scores: a unit almost silent in the training
        # folds would otherwise be blown up on the test fold (labels are not used here).
        x = (x - x.mean(0)) / max(float(x.std()), 1e-12)
        # Closed-form linear probes: shrinkage LDA (Ledoit-Wolf) for the level, ridge (alpha by
        # leave-one-out inside each training fold) for log contrast; as linear as logistic
        # regression and ~50x faster on hundreds of features.
        clf = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
        reg = RidgeCV(alphas=np.logspace(-3, 5, 17))
        with warnings.catch_warnings():  # convergence chatter on tiny folds is not informative
            warnings.simplefilter("ignore")
            pred_c = cross_val_predict(clf, x, y_class, groups=groups, cv=cv)
            pred_r = cross_val_predict(reg, x, y_log, groups=groups, cv=cv)
        rows.append({
            "layer": layer,
            "decoding_accuracy": float(np.mean(pred_c == y_class)),
            "chance": 1.0 / len(levels),
            "log_contrast_r2": float(r2_score(y_log, pred_r)),
            "n_features": x.shape[1],
            "n_observations": len(contrast),
        })
    return pd.DataFrame(rows)


def pixel_statistics(images: np.ndarray) -> np.ndarray:
    """Contrast-related image statistics, the baseline a layer must beat to "encode" contrast.

    images: (n, H, W, 3) in [0, 1]. Returns (n, 10): mean luminance, RMS contrast, Michelson
    contrast, 5-95 % luminance range and mean absolute luminance gradient, each raw and as
    log10 (offset 1e-4): what a linear read-out of the pixels themselves would use.
    """
    lum = np.asarray(images, dtype=np.float64).mean(-1)
    flat = lum.reshape(len(lum), -1)
    lo, hi = flat.min(1), flat.max(1)
    p5, p95 = np.percentile(flat, [5, 95], axis=1)
    grad = (np.abs(np.diff(lum, axis=1)).mean((1, 2)) + np.abs(np.diff(lum, axis=2)).mean((1, 2)))
    stats = np.column_stack([flat.mean(1), flat.std(1), (hi - lo) / (hi + lo + 1e-12), p95 - p5,
                             grad])
    return np.column_stack([stats, np.log10(stats + 1e-4)])


def contrast_model_rdm(contrast: np.ndarray) -> np.ndarray:
    """Model RDM vector of |log10 c_i - log10 c_j| in squareform upper-triangle order."""
    from scipy.spatial.distance import pdist

    return pdist(np.log10(np.asarray(contrast, dtype=float))[:, None], metric="cityblock")


def category_model_rdm(labels: np.ndarray) -> np.ndarray:
    """Model RDM vector: 0 for pairs of the same class, 1 otherwise."""
    from scipy.spatial.distance import pdist

    lab = np.asarray(labels)[:, None]
    return pdist(lab, metric=lambda a, b: float(a[0] != b[0]))


def contrast_rsa(
    activations: Mapping[str, np.ndarray],
    contrast: np.ndarray,
    labels: np.ndarray,
    metric: str = "euclidean",
    method: str = "spearman",
) -> pd.DataFrame:
    """RSA of each layer with a contrast model RDM and, for reference, a category model RDM.

    The default metric is Euclidean because contrast mostly scales response magnitude, which
    correlation distance discards.

    activations: {layer: (n_obs, n_features)} for n_obs = images x contrast levels.
    Returns one row per layer: rsa_contrast, rsa_category (``method`` correlations).
    """

    contrast = np.asarray(contrast, dtype=float)
    models = np.stack([contrast_model_rdm(contrast), category_model_rdm(labels)])
    rows = []
    for layer, x in activations.items():
        x = np.asarray(x, dtype=np.float64).reshape(len(contrast), -1)
        rdm = compute_rdms(x, metric=metric, names=[layer])
        r = np.asarray(compare(rdm, models, method=method))[0]
        rows.append({"layer": layer, "rsa_contrast": float(r[0]), "rsa_category": float(r[1]),
                     "metric": metric, "method": method})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- divisive normalisation
class DivisiveNormalization(nn.Module):
    """Divisive normalisation (Heeger 1992; Carandini & Heeger 2012) of a (n, C, H, W) tensor.

    ``y = m + gain * (x - m) / (sigma + s)`` where ``m`` is the local mean (``centered=True``; 0
    otherwise) and ``s`` the local RMS of ``x - m`` pooled over all channels and a
    ``pool_size`` x ``pool_size`` neighbourhood (the normalisation pool). ``sigma`` is the
    semi-saturation constant: at contrasts whose energy is far above it the output no longer
    depends on contrast; far below it the stage is a fixed gain. ``gain`` and ``sigma`` are set
    by :meth:`calibrate` from full-contrast data so the stage leaves full-contrast inputs at their
    usual scale (the network after it was trained without it).
    """

    def __init__(self, pool_size: int = 9, sigma: float = 0.1, centered: bool = True) -> None:
        super().__init__()
        if pool_size < 1 or pool_size % 2 == 0:
            raise CortexmapError(f"pool_size must be an odd positive integer; got {pool_size}.")
        if sigma <= 0:
            raise CortexmapError(f"sigma must be > 0 (semi-saturation); got {sigma}.")
        self.pool_size = pool_size
        self.sigma_frac = float(sigma)
        self.centered = centered
        self.register_buffer("gain", torch.tensor(1.0))
        self.register_buffer("sigma", torch.tensor(float(sigma)))

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        k = self.pool_size
        return nn.functional.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=False)

    def energy(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Local mean (n, C, H, W) and local RMS across channels (n, 1, H, W)."""
        if x.ndim != 4:
            raise CortexmapError(
                f"DivisiveNormalization needs (n, C, H, W) maps; got shape {tuple(x.shape)} "
                "(insert it after a convolutional layer)."
            )
        m = self._pool(x) if self.centered else torch.zeros_like(x)
        s = torch.sqrt(self._pool(((x - m) ** 2).mean(1, keepdim=True)) + 1e-12)
        return m, s

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> DivisiveNormalization:
        """Set ``sigma = sigma_frac * E[s]`` and ``gain = E[s] + sigma`` on full-contrast ``x``."""
        _, s = self.energy(x)
        typical = float(s.mean())
        self.sigma.fill_(self.sigma_frac * typical)
        self.gain.fill_(typical + float(self.sigma))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, s = self.energy(x)
        return m + self.gain * (x - m) / (self.sigma + s)


class _Chain(nn.Module):
    """``tail(norm(head(x)))`` as one module that keeps the model's preprocessing attributes."""

    def __init__(self, head: nn.Module, norm: nn.Module, tail: nn.Module) -> None:
        super().__init__()
        self.head, self.norm, self.tail = head, norm, tail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.norm(self.head(x)))


def _copy_attrs(src: nn.Module, dst: nn.Module) -> nn.Module:
    for attr in ("cortexmap_preprocessing", "cortexmap_name"):
        if hasattr(src, attr):
            setattr(dst, attr, getattr(src, attr))
    return dst.eval()


def with_input_normalization(
    model: nn.Module, calibration_images: np.ndarray, pool_size: int = 9, sigma: float = 0.1,
) -> nn.Module:
    """``model`` preceded by divisive (local contrast) normalisation of its preprocessed input.

    calibration_images: full-contrast images (n, H, W, 3) that set the stage's gain.
    """
    device = next(model.parameters()).device
    norm = DivisiveNormalization(pool_size, sigma, centered=True).to(device)
    norm.calibrate(model_input(model, calibration_images).to(device))
    return _copy_attrs(model, _Chain(nn.Identity(), norm, model))


def with_layer_normalization(
    model: nn.Module, layer: str, calibration_images: np.ndarray, pool_size: int = 3,
    sigma: float = 0.1,
) -> nn.Module:
    """``model`` with divisive normalisation of ``layer``'s output across channels and space.

    Rectified feature maps are normalised without centring (``centered=False``): each unit is
    divided by the pooled energy of its neighbours, the textbook gain-control stage.
    """

    head, tail = split_at(model, layer)
    device = next(model.parameters()).device
    norm = DivisiveNormalization(pool_size, sigma, centered=False).to(device)
    with torch.inference_mode():
        acts = layer_output(head, model_input(model, calibration_images).to(device))
    norm.calibrate(acts)
    return _copy_attrs(model, _Chain(head, norm, tail))

"""Orientation tuning of network units, measured like a V1 physiologist would (Ukita 2020).

Each unit is shown sinusoidal gratings at many orientations (default every 7.5 deg over 180 deg),
several spatial frequencies and several phases. Its *tuning curve* is its response as a function
of orientation (best spatial frequency; phases averaged, i.e. the mean rate over a drifting
grating's cycle, or their max), from which we read:

- the preferred orientation (argmax of the curve, on the stimulus grid),
- the orientation selectivity index ``OSI = (R_pref - R_orth) / (R_pref + R_orth)``,
- the circular variance ``CV = 1 - |sum_k R_k exp(2i theta_k)| / sum_k R_k``,
- a p-value against a *shuffled-orientation null*: each (orientation, phase) response is a trial;
  the orientation labels of the trials are permuted (within each spatial frequency), the curve and
  OSI recomputed, so a unit is selective only if its OSI exceeds what the same responses reach
  when orientation carries no information.

A "unit" is one channel of a layer, read either at the centre position of the feature map
(``unit="center"``, like a recorded neuron with a receptive field at the fixation point) or
averaged over all positions (``unit="mean"``). Fully connected layers only support
``unit="flat"`` (each output feature is a unit).

The numerical core (:func:`tuning_from_responses`) works on plain arrays; :func:`measure_tuning`
runs the gratings through a model with :class:`cortexmap.models.Extractor`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from cortexmap.errors import CortexmapError
from cortexmap.models import Extractor, input_size_of, probe, resolve_layers
from cortexmap.models.extract import spatial_view
from cortexmap.stimuli import gratings
from cortexmap.utils.progress import track

#: Default stimulus grid: 24 orientations (7.5 deg steps), 3 spatial frequencies, 4 phases.
DEFAULT_ORIENTATIONS: tuple[float, ...] = tuple(float(x) for x in np.arange(0.0, 180.0, 7.5))
DEFAULT_SPATIAL_FREQS: tuple[float, ...] = (4.0, 8.0, 12.0)  # cycles per image
DEFAULT_PHASES: tuple[float, ...] = (0.0, 90.0, 180.0, 270.0)

UnitMode = Literal["center", "mean", "flat"]


# --------------------------------------------------------------------------------------------
# Tuning-curve statistics (pure numpy)
# --------------------------------------------------------------------------------------------

def _check_orientations(orientations: Sequence[float]) -> np.ndarray:
    ori = np.asarray(orientations, dtype=np.float64)
    if ori.ndim != 1 or len(ori) < 4:
        raise CortexmapError(
            f"Need at least 4 orientations to measure tuning; got {len(np.atleast_1d(ori))}. "
            "Use e.g. numpy.arange(0, 180, 7.5)."
        )
    if len(np.unique(np.mod(ori, 180.0))) != len(ori):
        raise CortexmapError(
            "Orientations must be distinct modulo 180 deg (a grating at 0 and 180 deg is the same "
            "stimulus); pass orientations within [0, 180)."
        )
    return ori


def _orthogonal_index(orientations: np.ndarray) -> np.ndarray:
    """For each orientation index, the index of the orientation closest to it + 90 deg."""
    ori = np.mod(orientations, 180.0)
    target = np.mod(ori + 90.0, 180.0)
    # circular distance on the 180-deg orientation circle
    d = np.abs(target[:, None] - ori[None, :])
    d = np.minimum(d, 180.0 - d)
    return np.argmin(d, axis=1)


def preferred_orientation(curves: np.ndarray, orientations: Sequence[float]) -> np.ndarray:
    """Preferred orientation in degrees: argmax of each curve.

    curves: (n_units, n_orientations). Returns (n_units,) float64 in the orientation grid.
    """
    ori = _check_orientations(orientations)
    return np.mod(ori[np.argmax(curves, axis=1)], 180.0)


def osi(curves: np.ndarray, orientations: Sequence[float]) -> np.ndarray:
    """Orientation selectivity index ``(R_pref - R_orth) / (R_pref + R_orth)``.

    curves: (..., n_orientations) non-negative responses. R_pref is the curve maximum, R_orth the
    response at the grid orientation closest to pref + 90 deg. Units with no response
    (R_pref + R_orth == 0) get NaN. Returns (...) in [0, 1].
    """
    ori = _check_orientations(orientations)
    curves = np.asarray(curves, dtype=np.float64)
    pref = np.argmax(curves, axis=-1)
    orth = _orthogonal_index(ori)[pref]
    r_pref = np.take_along_axis(curves, pref[..., None], axis=-1)[..., 0]
    r_orth = np.take_along_axis(curves, orth[..., None], axis=-1)[..., 0]
    denom = r_pref + r_orth
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (r_pref - r_orth) / denom
    return np.where(denom > 0, out, np.nan)


def circular_variance(curves: np.ndarray, orientations: Sequence[float]) -> np.ndarray:
    """Circular variance ``1 - |sum_k R_k exp(2i theta_k)| / sum_k R_k`` on the doubled angle.

    0 = responds to one orientation only, 1 = untuned. curves: (..., n_orientations) non-negative.
    NaN for units with no response.
    """
    ori = np.deg2rad(_check_orientations(orientations))
    curves = np.asarray(curves, dtype=np.float64)
    total = curves.sum(axis=-1)
    vec = np.abs(curves @ np.exp(2j * ori))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = 1.0 - vec / total
    return np.where(total > 0, out, np.nan)


def _reduce_to_curves(
    responses: np.ndarray, phase_reduce: str, sf_reduce: str
) -> tuple[np.ndarray, np.ndarray]:
    """(n_ori, n_sf, n_phase, n_units) -> curves (n_units, n_ori), best-SF index (n_units,)."""
    r = np.maximum(responses, 0.0)  # firing rates: rectify (pre-ReLU layers can be negative)
    r = r.max(axis=2) if phase_reduce == "max" else r.mean(axis=2)  # (n_ori, n_sf, n_units)
    if sf_reduce == "best":
        # the SF at which the unit's peak response is largest, as physiologists pick the optimal SF
        best = np.argmax(r.max(axis=0), axis=0)  # (n_units,)
        curves = np.take_along_axis(r, best[None, None, :], axis=1)[:, 0, :]
    else:
        best = np.full(r.shape[2], -1)
        curves = r.mean(axis=1)
    return curves.T, best


@dataclass
class LayerTuning:
    """Orientation tuning of every unit of one layer.

    Arrays are indexed by unit (n_units,) except ``curves`` (n_units, n_orientations).
    ``selective`` = responsive, ``p_value < alpha`` under the shuffled-orientation null and
    ``osi >= min_osi``.
    """

    layer: str
    orientations: np.ndarray
    curves: np.ndarray
    preferred: np.ndarray
    osi: np.ndarray
    circular_variance: np.ndarray
    p_value: np.ndarray
    selective: np.ndarray
    best_sf: np.ndarray
    alpha: float
    unit_mode: str = "center"
    min_osi: float = 0.0

    @property
    def n_units(self) -> int:
        return int(self.curves.shape[0])

    @property
    def responsive(self) -> np.ndarray:
        return np.isfinite(self.osi)

    @property
    def fraction_selective(self) -> float:
        return float(self.selective.mean()) if self.n_units else float("nan")

    def units_table(self) -> pd.DataFrame:
        """One row per unit: preferred orientation, OSI, CV, p-value, selective, best SF index."""
        return pd.DataFrame({
            "layer": self.layer,
            "unit": np.arange(self.n_units),
            "preferred_deg": self.preferred,
            "osi": self.osi,
            "circular_variance": self.circular_variance,
            "p_value": self.p_value,
            "selective": self.selective,
            "best_sf_index": self.best_sf,
            "peak_response": self.curves.max(axis=1),
        })

    def summary(self) -> dict[str, float | int | str]:
        """Layer-level numbers: unit counts, OSI distribution, fraction selective."""
        resp = self.responsive
        o = self.osi[resp]
        return {
            "layer": self.layer,
            "n_units": self.n_units,
            "n_responsive": int(resp.sum()),
            "fraction_selective": self.fraction_selective,
            "osi_mean": float(np.mean(o)) if o.size else float("nan"),
            "osi_median": float(np.median(o)) if o.size else float("nan"),
            "osi_q90": float(np.quantile(o, 0.9)) if o.size else float("nan"),
            "cv_mean": float(np.mean(self.circular_variance[resp])) if o.size else float("nan"),
        }

    def ranking(self) -> np.ndarray:
        """Unit indices from most to least orientation-selective: by OSI, ties (rectified units
        often reach OSI = 1) broken by circular variance (lower = sharper); unresponsive last."""
        key = np.where(np.isfinite(self.osi), self.osi, -1.0)
        cv = np.where(np.isfinite(self.circular_variance), self.circular_variance, 2.0)
        return np.lexsort((cv, -key))


def _statistic(curves: np.ndarray, orientations: np.ndarray, statistic: str) -> np.ndarray:
    """Selectivity statistic of curves (..., n_ori); unresponsive units -> 0."""
    if statistic == "osi":
        val = osi(curves, orientations)
    else:  # vector strength on the doubled angle = 1 - circular variance
        val = 1.0 - circular_variance(curves, orientations)
    return np.nan_to_num(val, nan=0.0)


def shuffled_null(
    responses: np.ndarray,
    orientations: Sequence[float],
    n_shuffles: int = 200,
    seed: int = 0,
    phase_reduce: str = "mean",
    sf_reduce: str = "best",
    statistic: Literal["vector_strength", "osi"] = "vector_strength",
    chunk: int | None = None,
) -> np.ndarray:
    """Selectivity statistic of every unit under the shuffled-orientation null.

    responses: (n_ori, n_sf, n_phase, n_units). Each (orientation, phase) response is one
    "trial"; in every shuffle the orientation labels of the trials are permuted within each
    spatial frequency (the same permutation for all units, keeping their correlations), and the
    curve and statistic recomputed. Returns (n_shuffles, n_units).
    """
    n_ori, n_sf, n_ph, n_units = responses.shape
    rng = np.random.default_rng(seed)
    # trials (n_sf, n_ori * n_ph, n_units) so a permutation moves whole trials between orientations
    trials = responses.transpose(1, 0, 2, 3).reshape(n_sf, n_ori * n_ph, n_units)
    out = np.empty((n_shuffles, n_units))
    if chunk is None:  # bound the temporary (chunk, *responses.shape) to ~32 MB
        chunk = max(1, min(64, int(4e6 // responses.size)))
    for start in range(0, n_shuffles, chunk):
        m = min(chunk, n_shuffles - start)
        perm = np.argsort(rng.random((m, n_sf, n_ori * n_ph)), axis=2)
        shuffled = np.take_along_axis(trials[None], perm[..., None], axis=2)
        shuffled = shuffled.reshape(m, n_sf, n_ori, n_ph, n_units).transpose(0, 2, 1, 3, 4)
        for i in range(m):
            curves, _ = _reduce_to_curves(shuffled[i], phase_reduce, sf_reduce)
            out[start + i] = _statistic(curves, np.asarray(orientations), statistic)
    return out


def tuning_from_responses(
    responses: np.ndarray,
    orientations: Sequence[float],
    layer: str = "layer",
    n_shuffles: int = 200,
    alpha: float = 0.05,
    min_osi: float = 1 / 3,
    seed: int = 0,
    phase_reduce: Literal["max", "mean"] = "mean",
    sf_reduce: Literal["best", "mean"] = "best",
    statistic: Literal["vector_strength", "osi"] = "vector_strength",
    unit_mode: str = "center",
) -> LayerTuning:
    """Tuning curves and selectivity statistics from a grid of responses.

    responses: (n_orientations, n_spatial_freqs, n_phases, n_units) responses of each unit to
    each grating. ``phase_reduce``: combine phases by mean (the F0 / mean rate over a drifting
    grating's cycle, the physiologists' default) or max; ``sf_reduce``: take each unit's best
    spatial frequency or average them.
    """
    ori = _check_orientations(orientations)
    responses = np.asarray(responses, dtype=np.float64)
    if responses.ndim != 4 or responses.shape[0] != len(ori):
        raise CortexmapError(
            f"responses must have shape (n_orientations={len(ori)}, n_sf, n_phases, n_units); "
            f"got {responses.shape}."
        )
    if not np.isfinite(responses).all():
        raise CortexmapError("responses contain NaN/inf; check the model's outputs.")
    if phase_reduce not in ("max", "mean") or sf_reduce not in ("best", "mean"):
        raise CortexmapError("phase_reduce must be 'max' or 'mean'; sf_reduce 'best' or 'mean'.")
    if not 0 < alpha < 1:
        raise CortexmapError(f"alpha must be in (0, 1); got {alpha}.")
    if not 0 <= min_osi < 1:
        raise CortexmapError(f"min_osi must be in [0, 1); got {min_osi}.")
    curves, best = _reduce_to_curves(responses, phase_reduce, sf_reduce)
    o = osi(curves, ori)
    if statistic not in ("vector_strength", "osi"):
        raise CortexmapError(f"statistic must be 'vector_strength' or 'osi'; got {statistic!r}.")
    if n_shuffles > 0:
        null = shuffled_null(responses, ori, n_shuffles, seed, phase_reduce, sf_reduce, statistic)
        obs = _statistic(curves, ori, statistic)
        # tiny tolerance so floating-point ties count as "null at least as extreme"
        p = (1.0 + (null >= obs[None] - 1e-12).sum(axis=0)) / (1.0 + n_shuffles)
        p = np.where(np.isfinite(o), p, 1.0)  # unresponsive units are never selective
    else:
        p = np.full(len(o), np.nan)
    selective = np.isfinite(o) & (p < alpha) & (np.nan_to_num(o) >= min_osi)
    return LayerTuning(
        layer=layer, orientations=ori, curves=curves, preferred=preferred_orientation(curves, ori),
        osi=o, circular_variance=circular_variance(curves, ori), p_value=p, selective=selective,
        best_sf=best, alpha=alpha, unit_mode=unit_mode, min_osi=min_osi,
    )


# --------------------------------------------------------------------------------------------
# Running gratings through a model
# --------------------------------------------------------------------------------------------

@dataclass
class OrientationTuning:
    """Tuning of several layers of one model (``layers`` keeps the requested order)."""

    layers: dict[str, LayerTuning]
    orientations: np.ndarray
    spatial_freqs: np.ndarray
    phases: np.ndarray
    model_name: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    def __getitem__(self, layer: str) -> LayerTuning:
        return self.layers[layer]

    def summary(self) -> pd.DataFrame:
        """One row per layer: unit counts, OSI distribution, fraction of selective units."""
        df = pd.DataFrame([lt.summary() for lt in self.layers.values()])
        df.insert(0, "model", self.model_name)
        return df

    def units(self) -> pd.DataFrame:
        """One row per (layer, unit)."""
        df = pd.concat([lt.units_table() for lt in self.layers.values()], ignore_index=True)
        df.insert(0, "model", self.model_name)
        return df


def grating_responses(
    stimuli, acts: np.ndarray, orientations: np.ndarray, spatial_freqs: np.ndarray,
    phases: np.ndarray,
) -> np.ndarray:
    """Arrange activations of grating stimuli into (n_ori, n_sf, n_phase, n_units).

    stimuli: the StimulusSet from :func:`cortexmap.stimuli.gratings` (its ``metadata`` gives
    each image's parameters); acts: (n_images, n_units).
    """
    meta = stimuli.metadata
    oi = np.searchsorted(orientations, meta["orientation_deg"].to_numpy())
    si = np.searchsorted(spatial_freqs, meta["spatial_freq_cpi"].to_numpy())
    pi = np.searchsorted(phases, meta["phase_deg"].to_numpy())
    out = np.full((len(orientations), len(spatial_freqs), len(phases), acts.shape[1]), np.nan)
    out[oi, si, pi] = acts
    if np.isnan(out).any():
        raise CortexmapError("The grating set does not cover every orientation x SF x phase.")
    return out


def measure_tuning(
    model,
    layers: Sequence[str],
    orientations: Sequence[float] = DEFAULT_ORIENTATIONS,
    spatial_freqs: Sequence[float] = DEFAULT_SPATIAL_FREQS,
    phases: Sequence[float] = DEFAULT_PHASES,
    unit: UnitMode = "center",
    contrast: float = 1.0,
    size: int | None = None,
    n_shuffles: int = 200,
    alpha: float = 0.05,
    min_osi: float = 1 / 3,
    phase_reduce: Literal["max", "mean"] = "mean",
    sf_reduce: Literal["best", "mean"] = "best",
    statistic: Literal["vector_strength", "osi"] = "vector_strength",
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = True,
) -> OrientationTuning:
    """Orientation tuning of every unit of ``layers`` of a loaded model.

    Full-field gratings (``size`` px, default the model's input size) over the orientation x
    spatial frequency (cycles/image) x phase grid are run through the model; a unit is one
    channel read at the centre of the feature map (``unit="center"``) or averaged over positions
    (``unit="mean"``); ``unit="flat"`` treats every feature of a flattened layer as a unit (for
    fully connected layers). Centre/mean need a spatial (n, C, H, W) layer (or the patch
    tokens of a vision transformer). See :func:`tuning_from_responses` for the other options.
    """
    import torch


    ori = np.sort(np.mod(_check_orientations(orientations), 180.0))
    sfs = np.sort(np.asarray(spatial_freqs, dtype=float))
    phs = np.sort(np.asarray(phases, dtype=float))
    if unit not in ("center", "mean", "flat"):
        raise CortexmapError(f"unit must be 'center', 'mean' or 'flat'; got {unit!r}.")
    size = int(size or input_size_of(model, default=64))
    layers = resolve_layers(model, layers)
    infos = probe(model, layers, input_size=size)
    for name in layers:
        shape = tuple(infos[name].shape)
        if unit != "flat" and spatial_view(torch.zeros(1, *shape)) is None:
            raise CortexmapError(
                f"Layer {name!r} has output shape {shape} with no spatial positions, so "
                f"unit={unit!r} (one channel at the centre / averaged over positions) is "
                "undefined; use a convolutional layer, or unit='flat' for fully connected layers."
            )
    stim = gratings(ori, sfs, phs, contrast=contrast, size=size)
    pooling = {"center": "center", "mean": "mean", "flat": "none"}[unit]
    acts = Extractor(model, layers, pooling=pooling, batch_size=batch_size).extract(stim)
    result: dict[str, LayerTuning] = {}
    for name in track(layers, "orientation tuning", enabled=progress):
        a = np.asarray(acts[name], dtype=np.float64).reshape(len(stim), -1)
        resp = grating_responses(stim, a, ori, sfs, phs)
        result[name] = tuning_from_responses(
            resp, ori, layer=name, n_shuffles=n_shuffles, alpha=alpha, min_osi=min_osi, seed=seed,
            phase_reduce=phase_reduce, sf_reduce=sf_reduce, statistic=statistic, unit_mode=unit,
        )
    return OrientationTuning(
        layers=result, orientations=ori, spatial_freqs=sfs, phases=phs,
        model_name=str(getattr(model, "cortexmap_name", type(model).__name__)),
    )


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------

def plot_tuning_curves(layers: LayerTuning | Sequence[LayerTuning], n_examples: int = 6):
    """Tuning curves of the most selective units (normalised to peak), one row per layer.

    Each panel gives the unit, its OSI and circular variance; dashed line = preferred
    orientation, * = selective against the shuffled null.
    """
    import matplotlib.pyplot as plt

    rows = [layers] if isinstance(layers, LayerTuning) else list(layers)
    fig, axes = plt.subplots(len(rows), n_examples, figsize=(1.9 * n_examples, 1.7 * len(rows)),
                             squeeze=False, sharex=True, sharey=True)
    for r, lt in enumerate(rows):
        order = [u for u in lt.ranking() if np.isfinite(lt.osi[u])][:n_examples]
        for c, ax in enumerate(axes[r]):
            if c >= len(order):
                ax.axis("off")
                continue
            u = order[c]
            curve = lt.curves[u]
            ax.plot(lt.orientations, curve / max(curve.max(), 1e-12), "o-", ms=2, lw=1)
            ax.axvline(lt.preferred[u], color="C3", lw=0.8, ls="--")
            mark = "*" if lt.selective[u] else ""
            ax.set_title(f"{lt.layer}:{u}{mark} OSI {lt.osi[u]:.2f} CV "
                         f"{lt.circular_variance[u]:.2f}", fontsize=6.5)
            ax.set_xticks([0, 90])
            ax.set_ylim(0, 1.05)
            ax.tick_params(labelsize=6)
    fig.supxlabel("grating orientation (deg)", fontsize=8)
    fig.supylabel("response / peak", fontsize=8)
    fig.tight_layout()
    return fig


def plot_osi_distributions(tuning: OrientationTuning):
    """Per layer: OSI distribution (violin) and fraction of selective units (bars)."""
    import matplotlib.pyplot as plt

    names = list(tuning.layers)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(max(6, 1.4 * len(names) * 2), 3.2))
    data = [tuning[n].osi[tuning[n].responsive] for n in names]
    pos = [i for i, d in enumerate(data) if len(d) > 1]
    if pos:
        a1.violinplot([data[i] for i in pos], positions=pos, showmedians=True)
    a1.set_xticks(range(len(names)), names, rotation=30, fontsize=8)
    a1.set_ylabel("OSI")
    a1.set_ylim(0, 1)
    a1.set_title("OSI of responsive units", fontsize=9)
    a2.bar(range(len(names)), [tuning[n].fraction_selective for n in names], color="C2")
    a2.set_xticks(range(len(names)), names, rotation=30, fontsize=8)
    a2.set_ylabel("fraction selective")
    a2.set_ylim(0, 1)
    a2.set_title("selective vs shuffled-orientation null", fontsize=9)
    fig.tight_layout()
    return fig

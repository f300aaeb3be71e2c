"""Unit ablation with a cached layer: the causal test of Ukita (2020).

Zero the k most orientation-selective units (channels) of a layer and compare the damage with two
controls of the same size, k random units (many draws, giving a confidence interval) and the k
least selective units. Damage is measured as

- the drop in test accuracy, and
- the loss of *shift invariance* of higher layers: the Pearson correlation between a layer's
  response to an image and to copies shifted by a few pixels (several shift sizes, four
  directions, edges replicated).

Efficiency: the network is split at the ablated layer (:func:`cortexmap.models.split.split_at`),
the layer output is computed **once** per image and cached, and every ablation only reruns the
rest of the network. Many ablations are stacked into one large batch (mask x cached features), so
a sweep of hundreds of ablations costs a few tail passes instead of hundreds of full forwards.
:func:`ablate_units` is the plain (hook-based) alternative for one-off use on a full model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.fx
from torch import nn

from cortexmap.errors import CortexmapError
from cortexmap.models.hooks import forward_hooks
from cortexmap.models.split import layer_output, split_at
from cortexmap.probes.lesion import linear_stage
from cortexmap.utils.progress import track

#: Shift directions (dy, dx) applied at each shift size: right, left, down, up.
DIRECTIONS: tuple[tuple[int, int], ...] = ((0, 1), (0, -1), (1, 0), (-1, 0))


# --------------------------------------------------------------------------------------------
# Unit sets
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class UnitSet:
    """One ablation: which units (channel indices) of the layer are zeroed.

    condition: "intact" | "most" | "least" | "random"; draw numbers random sets (0 otherwise).
    """

    condition: str
    k: int
    draw: int
    units: tuple[int, ...]


def check_k(k: int, n_units: int, layer: str = "layer") -> None:
    """Raise unless 0 < k <= n_units."""
    if not 0 < int(k) <= n_units:
        raise CortexmapError(
            f"Cannot ablate k={k} units of {layer!r}: it has {n_units} units. Choose k between 1 "
            f"and {n_units}."
        )


def make_unit_sets(
    ranking: Sequence[int],
    ks: Sequence[int],
    n_random: int = 20,
    seed: int = 0,
    layer: str = "layer",
) -> list[UnitSet]:
    """Unit sets for the most / least selective units and random controls.

    ranking: (n_units,) unit indices from most to least selective. For each k: the first k, the
    last k and ``n_random`` random draws of k units. The intact network comes first.
    """
    ranking = np.asarray(ranking, dtype=int)
    n = len(ranking)
    if n == 0 or len(np.unique(ranking)) != n:
        raise CortexmapError("ranking must be a permutation of the layer's unit indices.")
    rng = np.random.default_rng(seed)
    sets = [UnitSet("intact", 0, 0, ())]
    for k in ks:
        check_k(k, n, layer)
        sets.append(UnitSet("most", int(k), 0, tuple(sorted(ranking[:k].tolist()))))
        sets.append(UnitSet("least", int(k), 0, tuple(sorted(ranking[n - k:].tolist()))))
        for d in range(n_random):
            units = rng.choice(n, size=k, replace=False)
            sets.append(UnitSet("random", int(k), d, tuple(sorted(units.tolist()))))
    return sets


def _unit_masks(unit_sets: Sequence[UnitSet], n_units: int) -> torch.Tensor:
    """(n_sets, n_units) float mask: 0 for ablated units, 1 elsewhere."""
    masks = torch.ones(len(unit_sets), n_units)
    for i, s in enumerate(unit_sets):
        if s.units:
            if max(s.units) >= n_units:
                raise CortexmapError(
                    f"Unit index {max(s.units)} is out of range for a layer with {n_units} units."
                )
            masks[i, list(s.units)] = 0.0
    return masks


def unit_axis(t: torch.Tensor) -> int:
    """Axis of the units of a layer output: channels of (n, C, H, W) and features of (n, D)
    are axis 1; transformer tokens (n, T, D) have their units (embedding dims) last."""
    return -1 if t.ndim == 3 else 1


def _apply_mask(feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """feats (n, C, ...) or tokens (n, T, C) * mask (C,), broadcast over the other dims."""
    if unit_axis(feats) == -1:
        return feats * mask
    return feats * mask.view(1, -1, *([1] * (feats.ndim - 2)))


@contextlib.contextmanager
def ablate_units(model: nn.Module, layer: str, units: Sequence[int]) -> Iterator[nn.Module]:
    """Temporarily zero units (channels; token dims of a transformer) of ``layer``'s output.

    The simple full-forward alternative to :class:`LayerAblator` (and its reference in tests)::

        with ablate_units(model, "conv2", [3, 7]):
            logits = model(x)
    """
    try:
        module = model.get_submodule(layer)
    except AttributeError as exc:
        names = [n for n, _ in model.named_modules() if n]
        raise CortexmapError(
            f"Layer {layer!r} is not a module of the model; valid names include {names[:30]}."
        ) from exc
    idx = list(units)

    def hook(_m, _inp, out):
        out = out.clone()
        out.index_fill_(unit_axis(out) % out.ndim, torch.tensor(idx, dtype=torch.long), 0.0)
        return out

    with forward_hooks({module: hook}):
        yield model


# --------------------------------------------------------------------------------------------
# Shift invariance
# --------------------------------------------------------------------------------------------

def shift_images(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Translate images (n, C, H, W) by (dy, dx) pixels, replicating the edge pixels."""
    if dy == 0 and dx == 0:
        return x
    h, w = x.shape[-2:]
    if abs(dy) >= h or abs(dx) >= w:
        raise CortexmapError(f"Shift ({dy}, {dx}) px is not smaller than the image ({h}x{w}).")
    pad = (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0))  # left, right, top, bottom
    padded = torch.nn.functional.pad(x, pad, mode="replicate")
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[..., top:top + h, left:left + w]


def pattern_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation between matching rows of a (n, d) and b (n, d) -> (n,).

    Constant rows (e.g. a fully ablated response) give 0.
    """
    a = a.flatten(1).double()
    b = b.flatten(1).double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    den = a.norm(dim=1) * b.norm(dim=1)
    r = (a * b).sum(1) / den.clamp_min(1e-12)
    return torch.where(den > 0, r, torch.zeros_like(r))


# --------------------------------------------------------------------------------------------
# The cached ablator
# --------------------------------------------------------------------------------------------

class LayerAblator:
    """Evaluate many channel ablations of ``layer`` from one cached forward pass.

    ``head`` computes the layer output, ``tail`` the rest of the network
    (``tail(head(x)) == model(x)``); ablating a unit set means ``tail(head(x) * mask)``.

    Example::

        ab = LayerAblator(model, "conv2")
        feats = ab.cache(x)                       # (n, C, H, W), once
        correct = ab.correct(feats, labels, sets) # (n_sets, n) bool, batched over sets
    """

    def __init__(
        self, model: nn.Module, layer: str, batch_size: int = 512, linear_shortcut: bool = True
    ) -> None:
        self.model = model
        self.layer = layer
        self.head, self.tail = split_at(model, layer)
        self.head.eval()
        self.tail.eval()
        self.batch_size = int(batch_size)
        self._taps: dict[tuple[str, ...], nn.Module] = {}
        # the tail's first linear operation is corrected, not rerun (the lesion engine's stage)
        self._stage = linear_stage(self.tail) if linear_shortcut else None

    @torch.inference_mode()
    def cache(self, x: torch.Tensor) -> torch.Tensor:
        """Layer output for images x (n, 3, H, W) -> (n, C, ...) computed in batches."""

        return layer_output(self.head, x, self.batch_size)

    def n_units(self, feats: torch.Tensor) -> int:
        """Units of the layer: channels (n, C, H, W), features (n, D) or token dims (n, T, D)."""
        return int(feats.shape[unit_axis(feats)])

    def _ablated_pre(self, f: torch.Tensor, y0: torch.Tensor, units: tuple[int, ...]):
        """Output of the tail's first (linear) layer with ``units`` zeroed: the intact output
        minus the contribution of the ablated input units (k/C of the layer's cost)."""
        stage = self._stage
        if unit_axis(f) == -1:  # token dims (n, T, D) read by a Linear: units are its inputs
            idx = list(units)
            return y0 - f[..., idx] @ stage.conv.weight[:, idx].T
        mask = torch.zeros(1, f.shape[1], dtype=torch.bool)
        mask[0, list(units)] = True
        return stage.lesioned(y0, f, mask, None)

    def _batches(
        self, feats: torch.Tensor, unit_sets: Sequence[UnitSet], shortcut: bool = False
    ) -> Iterator[tuple[slice, slice, torch.Tensor]]:
        """Yield (set slice, image slice, stacked inputs (n_s * n_i, ...)) for the tail.

        Inputs are the masked layer output, or with ``shortcut`` the ablated output of the
        tail's first linear layer (to be fed to ``self._stage.rest``). Several ablations are stacked
        into one batch of about ``batch_size`` rows, so small tails run as a few large matrix
        products instead of many small ones.
        """
        n = len(feats)
        masks = _unit_masks(unit_sets, self.n_units(feats)).to(feats.dtype)
        y0 = self._stage.preactivation(feats, self.batch_size) if shortcut else None

        def piece(s: int, i0: int, i1: int) -> torch.Tensor:
            if shortcut:
                return self._ablated_pre(feats[i0:i1], y0[i0:i1], unit_sets[s].units)
            return _apply_mask(feats[i0:i1], masks[s])

        if n >= self.batch_size:  # one ablation at a time, images in chunks
            for s in range(len(unit_sets)):
                for i in range(0, n, self.batch_size):
                    i1 = min(n, i + self.batch_size)
                    yield slice(s, s + 1), slice(i, i1), piece(s, i, i1)
            return
        per = max(1, self.batch_size // n)
        for s in range(0, len(unit_sets), per):
            s1 = min(len(unit_sets), s + per)
            yield slice(s, s1), slice(0, n), torch.cat([piece(j, 0, n) for j in range(s, s1)])

    def _n_batches(self, n: int, n_sets: int) -> int:
        if n >= self.batch_size:
            return n_sets * -(-n // self.batch_size)
        return -(-n_sets // max(1, self.batch_size // n))

    @torch.inference_mode()
    def outputs(
        self, feats: torch.Tensor, unit_sets: Sequence[UnitSet],
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None, progress: bool = False,
    ) -> torch.Tensor:
        """Network outputs for every ablation -> (n_sets, n, ...), optionally ``reduce``d."""
        n = len(feats)
        out: torch.Tensor | None = None
        # a generator, so only one stacked batch is in memory at a time
        shortcut = self._stage is not None
        run = self._stage.rest if shortcut else self.tail
        batches = self._batches(feats, unit_sets, shortcut)
        total = self._n_batches(n, len(unit_sets))
        for sset, iset, stacked in track(batches, f"ablating {self.layer}", total=total,
                                         enabled=progress):
            y = run(stacked)
            y = reduce(y) if reduce is not None else y
            y = y.reshape(sset.stop - sset.start, iset.stop - iset.start, *y.shape[1:])
            if out is None:
                out = torch.empty(len(unit_sets), n, *y.shape[2:], dtype=y.dtype)
            out[sset, iset] = y
        assert out is not None
        return out

    def correct(
        self, feats: torch.Tensor, labels: torch.Tensor | np.ndarray,
        unit_sets: Sequence[UnitSet], progress: bool = False,
    ) -> np.ndarray:
        """Whether each image is classified correctly under each ablation -> (n_sets, n) bool."""
        labels = torch.as_tensor(np.asarray(labels)).long()
        pred = self.outputs(feats, unit_sets, reduce=lambda y: y.argmax(1), progress=progress)
        return (pred == labels[None]).numpy()

    def _tap_module(self, layers: Sequence[str]) -> nn.Module:
        """A module returning {layer: output} of higher layers from the tail (cached)."""
        key = tuple(layers)
        if key not in self._taps:
            from torchvision.models.feature_extraction import create_feature_extractor

            try:
                self._taps[key] = create_feature_extractor(self.tail, {n: n for n in layers})
            except (ValueError, RuntimeError, KeyError) as exc:
                raise CortexmapError(
                    f"Cannot read layers {list(layers)} after the ablated layer {self.layer!r}: "
                    f"{exc}. Shift-invariance layers must come after the ablated layer."
                ) from exc
        return self._taps[key]

    @torch.inference_mode()
    def layer_responses(
        self, feats: torch.Tensor, unit_sets: Sequence[UnitSet], layers: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """Responses of higher ``layers`` under each ablation -> {layer: (n_sets, n, d)}."""
        taps = self._tap_module(layers)
        n = len(feats)
        out: dict[str, torch.Tensor] = {}
        for sset, iset, stacked in self._batches(feats, unit_sets):
            res = taps(stacked)
            for name in layers:
                y = res[name].flatten(1)
                y = y.reshape(sset.stop - sset.start, iset.stop - iset.start, -1)
                if name not in out:
                    out[name] = torch.empty(len(unit_sets), n, y.shape[-1], dtype=y.dtype)
                out[name][sset, iset] = y
        return out

    def shift_invariance(
        self, x: torch.Tensor, unit_sets: Sequence[UnitSet], layers: Sequence[str],
        shifts: Sequence[int] = (2, 4, 8), progress: bool = False,
    ) -> pd.DataFrame:
        """Shift invariance of ``layers`` under each ablation.

        For every image, shift size s and direction (right, left, down, up), the Pearson
        correlation between the layer response to the image and to its shifted copy, averaged
        over directions -> long table (set index, layer, shift_px, image, invariance).
        """
        base = self.layer_responses(self.cache(x), unit_sets, layers)
        rows = []
        for s in track(list(shifts), "shift invariance", enabled=progress):
            acc = {name: torch.zeros(len(unit_sets), len(x), dtype=torch.float64)
                   for name in layers}
            for dy, dx in DIRECTIONS:
                shifted = self.layer_responses(
                    self.cache(shift_images(x, dy * s, dx * s)), unit_sets, layers)
                for name in layers:
                    a, b = base[name], shifted[name]
                    r = pattern_correlation(a.flatten(0, 1), b.flatten(0, 1))
                    acc[name] += r.view(len(unit_sets), len(x)) / len(DIRECTIONS)
            for name in layers:
                vals = acc[name].numpy()
                for si in range(len(unit_sets)):
                    rows.append(pd.DataFrame({
                        "set": si, "layer": name, "shift_px": int(s),
                        "image": np.arange(len(x)), "invariance": vals[si],
                    }))
        return pd.concat(rows, ignore_index=True)


# --------------------------------------------------------------------------------------------
# Statistics over ablations
# --------------------------------------------------------------------------------------------

def _bootstrap_ci(
    values: np.ndarray, n_boot: int, seed: int, level: float = 0.95
) -> tuple[float, float]:
    """Percentile CI of the mean of ``values`` (n,) resampled over images."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    means = values[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def summarize_drops(
    unit_sets: Sequence[UnitSet], correct: np.ndarray, n_boot: int = 1000, seed: int = 0,
    level: float = 0.95,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Accuracy drop of every ablation and a per-(condition, k) summary with CIs.

    correct: (n_sets, n_images) bool, row 0 = intact network. Random controls get a CI over
    draws (percentiles of the draws' drops); most/least get a bootstrap CI over test images of
    the paired drop. ``p_vs_random`` = fraction of random draws whose drop is at least as large
    (one-sided, with +1 smoothing).
    Returns (per-set table, summary table).
    """
    if unit_sets[0].condition != "intact":
        raise CortexmapError("The first unit set must be the intact network.")
    intact = correct[0].astype(float)
    acc = correct.mean(axis=1)
    per = pd.DataFrame({
        "condition": [s.condition for s in unit_sets], "k": [s.k for s in unit_sets],
        "draw": [s.draw for s in unit_sets], "accuracy": acc, "drop": acc[0] - acc,
        "units": [" ".join(map(str, s.units)) for s in unit_sets],
    })
    rows = []
    q = [(1 - level) / 2, 1 - (1 - level) / 2]
    for k in sorted({s.k for s in unit_sets if s.k > 0}):
        rnd = per[(per.condition == "random") & (per.k == k)]["drop"].to_numpy()
        for cond in ("most", "least", "random"):
            sel = np.flatnonzero((per.condition == cond).to_numpy() & (per.k == k).to_numpy())
            if not len(sel):
                continue
            drops = per["drop"].to_numpy()[sel]
            if cond == "random":
                lo, hi = np.quantile(drops, q) if len(drops) > 1 else (drops[0], drops[0])
                p = float("nan")
            else:
                paired = intact - correct[sel[0]].astype(float)
                lo, hi = _bootstrap_ci(paired, n_boot, seed + k, level)
                p = (1 + np.sum(rnd >= drops[0])) / (1 + len(rnd)) if len(rnd) else float("nan")
            rows.append({
                "condition": cond, "k": k, "n_draws": len(drops),
                "drop": float(drops.mean()), "ci_low": float(lo), "ci_high": float(hi),
                "accuracy": float(acc[0] - drops.mean()), "p_vs_random": p,
            })
    return per, pd.DataFrame(rows)


def summarize_invariance(
    unit_sets: Sequence[UnitSet], inv: pd.DataFrame, level: float = 0.95
) -> pd.DataFrame:
    """Mean shift invariance per (condition, k, layer, shift) with a CI over random draws.

    inv: output of :meth:`LayerAblator.shift_invariance`. ``change`` = ablated - intact.
    """
    meta = pd.DataFrame({
        "set": range(len(unit_sets)), "condition": [s.condition for s in unit_sets],
        "k": [s.k for s in unit_sets], "draw": [s.draw for s in unit_sets],
    })
    per_set = inv.groupby(["set", "layer", "shift_px"], as_index=False)["invariance"].mean()
    per_set = per_set.merge(meta, on="set")
    intact = per_set[per_set.condition == "intact"].set_index(["layer", "shift_px"])["invariance"]
    q = [(1 - level) / 2, 1 - (1 - level) / 2]
    rows = []
    for (cond, k, layer, shift), g in per_set.groupby(["condition", "k", "layer", "shift_px"]):
        vals = g["invariance"].to_numpy()
        lo, hi = (np.quantile(vals, q) if len(vals) > 1 else (vals[0], vals[0]))
        base = float(intact.loc[(layer, shift)])
        rows.append({
            "condition": cond, "k": int(k), "layer": layer, "shift_px": int(shift),
            "invariance": float(vals.mean()), "ci_low": float(lo), "ci_high": float(hi),
            "change": float(vals.mean()) - base, "n_draws": len(vals),
        })
    return pd.DataFrame(rows)


@dataclass
class AblationResult:
    """Tables of one ablation experiment (see :func:`run_ablation`)."""

    layer: str
    unit_sets: list[UnitSet]
    per_set: pd.DataFrame
    accuracy: pd.DataFrame
    invariance: pd.DataFrame = field(default_factory=pd.DataFrame)


def run_ablation(
    model: nn.Module,
    layer: str,
    ranking: Sequence[int],
    images: torch.Tensor,
    labels: torch.Tensor | np.ndarray,
    ks: Sequence[int] = (4,),
    n_random: int = 20,
    shift_set: torch.Tensor | None = None,
    shift_layers: Sequence[str] = (),
    shifts: Sequence[int] = (2, 4, 8),
    n_random_shift: int = 5,
    seed: int = 0,
    batch_size: int = 512,
    progress: bool = True,
) -> AblationResult:
    """Ablate the most / least selective and random units of ``layer``.

    images: preprocessed test images (n, 3, S, S) with ``labels`` (n,). ``ranking``: unit
    indices from most to least selective. Shift invariance of ``shift_layers`` is measured on
    ``shift_set`` (default: the first 64 test images) for intact, most, least and the first
    ``n_random_shift`` random draws of every k.
    """
    ab = LayerAblator(model, layer, batch_size=batch_size)
    feats = ab.cache(images)
    n_units = ab.n_units(feats)
    if len(ranking) != n_units:
        raise CortexmapError(
            f"The ranking has {len(ranking)} units but layer {layer!r} has {n_units} channels; "
            "rank the channels of the same layer."
        )
    sets = make_unit_sets(ranking, ks, n_random, seed, layer)
    correct = ab.correct(feats, labels, sets, progress=progress)
    per, summary = summarize_drops(sets, correct, seed=seed)
    inv = pd.DataFrame()
    if shift_layers:
        xs = images[:64] if shift_set is None else shift_set
        sub = [s for s in sets if s.condition != "random" or s.draw < n_random_shift]
        inv_long = ab.shift_invariance(xs, sub, list(shift_layers), shifts, progress=progress)
        inv = summarize_invariance(sub, inv_long)
    return AblationResult(layer=layer, unit_sets=sets, per_set=per, accuracy=summary,
                          invariance=inv)


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------

_COLORS = {"most": "C3", "random": "C7", "least": "C0", "intact": "k"}


def plot_accuracy_drops(summary: pd.DataFrame):
    """Accuracy drop vs k for most / random / least selective ablations, with CI bars.

    summary: the ``accuracy`` table of :func:`run_ablation` / :func:`summarize_drops`.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    ks = sorted(summary["k"].unique())
    width = 0.8 / 3
    for j, cond in enumerate(("most", "random", "least")):
        g = summary[summary["condition"] == cond].set_index("k").reindex(ks)
        pos = np.arange(len(ks)) + (j - 1) * width
        err = np.vstack([g["drop"] - g["ci_low"], g["ci_high"] - g["drop"]]).clip(min=0)
        ax.bar(pos, g["drop"], width, yerr=err, color=_COLORS[cond], capsize=3, label=cond)
    ax.set_xticks(range(len(ks)), [f"k={k}" for k in ks])
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel("test accuracy drop")
    ax.legend(fontsize=7, title="ablated units", title_fontsize=7)
    fig.tight_layout()
    return fig


def plot_shift_invariance(invariance: pd.DataFrame, k: int | None = None):
    """Shift invariance vs shift size per higher layer, intact vs ablations (one k).

    invariance: the ``invariance`` table of :func:`run_ablation`; random: mean and 95 % range.
    """
    import matplotlib.pyplot as plt

    k = int(invariance.loc[invariance["k"] > 0, "k"].max()) if k is None else k
    layers = list(dict.fromkeys(invariance["layer"]))
    fig, axes = plt.subplots(1, len(layers), figsize=(2.6 * len(layers), 2.6), squeeze=False,
                             sharey=True)
    for ax, layer in zip(axes[0], layers, strict=True):
        d = invariance[invariance["layer"] == layer]
        for cond in ("intact", "most", "random", "least"):
            g = d[(d["condition"] == cond) & ((d["k"] == k) | (cond == "intact"))]
            g = g.sort_values("shift_px")
            if g.empty:
                continue
            ax.plot(g["shift_px"], g["invariance"], "o-", ms=3, color=_COLORS[cond], label=cond)
            if cond == "random":
                ax.fill_between(g["shift_px"], g["ci_low"], g["ci_high"],
                                color=_COLORS[cond], alpha=0.25)
        ax.set_title(layer, fontsize=9)
        ax.set_xlabel("shift (px)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("response correlation")
    axes[0][-1].legend(fontsize=7, title=f"k={k}", title_fontsize=7)
    fig.tight_layout()
    return fig

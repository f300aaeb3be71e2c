"""Center-periphery organization (Mohsenzadeh et al., Sci Rep 2020).

Split a convolutional layer's units (channel x feature-map position) into groups by *where they
look* and *what they prefer*, build one RDM per group, and compare the groups with brain regions
that prefer the fovea (fusiform / LOC) or the periphery (parahippocampal / PPA).

Unit groups (:func:`select_groups`)
    ``central``     positions whose receptive-field centre lies within ``central_radius``
                    eccentricity of the image centre (all channels there);
    ``peripheral``  positions beyond ``peripheral_radius`` (default: ``central_radius``);
    ``background``  units with a high background selectivity index (BSI, below);
    ``object``      units with a low (negative) BSI.
    Selective groups are taken by a BSI ``threshold`` or as the ``top_fraction`` of units;
    ``exclusive`` removes units that fall in both groups; ``equal_sizes`` subsamples the larger
    group (seeded) so RSA is not confounded by unit counts.

Background selectivity index (:func:`background_selectivity`)
    Every image is rendered twice with its foreground mask: object only (background replaced by
    a neutral fill) and background only (object replaced by the fill). With ``R_obj`` and
    ``R_bg`` a unit's mean response over images::

        BSI = (R_bg - R_obj) / (|R_bg| + |R_obj|)     in [-1, 1]

    +1: responds only to backgrounds, -1: only to objects; silent units get NaN and join no
    selective group. Meant for non-negative (post-ReLU) responses; on signed responses the
    sign of the index still says which rendering drives the unit more.

Crossover RSA (:func:`crossover_rsa`)
    For groups (g1, g2) = (central, background) and regions (foveal, peripheral): the 2x2 table of
    RSA correlations (mean over subjects), permutation p-values (condition labels, one-sided),
    noise ceilings of each region, and the crossover interaction

        I = (r[g1, foveal] + r[g2, peripheral]) - (r[g1, peripheral] + r[g2, foveal])

    with a bootstrap confidence interval (resampling conditions, or subjects) and a
    permutation p-value. ``I > 0`` with a CI above zero reproduces the paper's claim.

End to end (:func:`cortexmap.analyses.center_periphery.run_center_periphery`): zoo model,
bundled images with masks, and a phantom brain whose foveal region carries the geometry of
object-only renderings (centre-driven) and whose peripheral region carries that of
background-only renderings (background-driven).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from cortexmap.errors import CortexmapError
from cortexmap.probes.receptive_field import ReceptiveFields, project_mask
from cortexmap.rsa import (
    RDMs,
    bootstrap_conditions,
    compare,
    noise_ceiling,
    permutation_test,
)
from cortexmap.rsa.rdm import n_conditions_from_pairs
from cortexmap.stimuli import resize_masks

GROUPS = ("central", "peripheral", "background", "object")
_SPATIAL = ("central", "peripheral")
SELECTIVE_GROUPS = ("background", "object")


# ============================================================================================
# Stimulus renderings and the background selectivity index


def check_masks(
    images: np.ndarray, masks: np.ndarray | None, ids: list[str] | None = None
) -> np.ndarray:
    """Validate foreground masks for background selectivity; return them as bool (n, H, W).

    Raises CortexmapError when masks are missing, have the wrong size, or leave an image with no
    object or no background pixels (naming those images).
    """
    n = len(images)
    ids = list(ids) if ids is not None else [f"image {i}" for i in range(n)]
    if masks is None:
        shown = ", ".join(ids[:10]) + (" ..." if n > 10 else "")
        raise CortexmapError(
            f"Background selectivity needs a foreground mask per image, but none of the {n} "
            f"images has one ({shown}). Load images with masks (load_bundled() ships them; "
            "load_folder(..., masks_dir=...)), or use only spatial groups "
            "(groups=('central', 'peripheral'))."
        )
    masks = np.asarray(masks)
    if masks.ndim != 3 or len(masks) != n or masks.shape[1:] != images.shape[1:3]:
        raise CortexmapError(
            f"Foreground masks have shape {masks.shape} but the images need "
            f"{(n, *images.shape[1:3])} (one H x W mask per image); resize the masks to the "
            "images (cortexmap.stimuli.masks.resize_mask) or pass the matching masks."
        )
    masks = masks.astype(bool)
    fg = masks.reshape(n, -1).mean(1)
    empty = [ids[i] for i in np.flatnonzero(fg == 0)]
    full = [ids[i] for i in np.flatnonzero(fg == 1)]
    if empty or full:
        parts = []
        if empty:
            parts.append(f"no foreground (object) pixels: {', '.join(empty[:10])}")
        if full:
            parts.append(f"no background pixels: {', '.join(full[:10])}")
        raise CortexmapError(
            "Some foreground masks cannot separate object from background -- "
            + "; ".join(parts)
            + ". Fix those masks or drop the images (stimuli.subset(...))."
        )
    return masks


def split_foreground(
    images: np.ndarray, masks: np.ndarray, fill: Literal["gray", "mean"] = "gray"
) -> tuple[np.ndarray, np.ndarray]:
    """Object-only and background-only renderings of (n, H, W, 3) images with (n, H, W) masks.

    The removed part is filled with neutral gray 0.5 (``fill="gray"``) or with the mean colour of
    the part that is kept (``"mean"``, no luminance step at the mask edge on average).
    Returns (object_only, background_only), both float32 (n, H, W, 3).
    """
    if fill not in ("gray", "mean"):
        raise CortexmapError(f"fill must be 'gray' or 'mean'; got {fill!r}.")
    images = np.asarray(images, dtype=np.float32)
    m = np.asarray(masks, dtype=bool)[..., None]

    def fill_value(keep: np.ndarray) -> np.ndarray:
        if fill == "gray":
            return np.full((len(images), 1, 1, 3), 0.5, dtype=np.float32)
        k = keep.astype(np.float32)
        return ((images * k).sum((1, 2), keepdims=True) / k.sum((1, 2), keepdims=True)).astype(
            np.float32
        )

    obj = np.where(m, images, fill_value(m))
    bg = np.where(m, fill_value(~m), images)
    return obj.astype(np.float32), bg.astype(np.float32)


def background_selectivity(resp_object: np.ndarray, resp_background: np.ndarray) -> np.ndarray:
    """Background selectivity index per unit.

    resp_object, resp_background: (n_images, *unit_shape) responses to object-only and
    background-only renderings (e.g. (n, C, h, w)). Returns (*unit_shape,) float64 in [-1, 1]:
    ``(R_bg - R_obj) / (|R_bg| + |R_obj|)`` of image-mean responses; NaN where both are 0.
    """
    r_obj = np.asarray(resp_object, dtype=np.float64).mean(0)
    r_bg = np.asarray(resp_background, dtype=np.float64).mean(0)
    if r_obj.shape != r_bg.shape:
        raise CortexmapError(
            f"Object-only responses have unit shape {r_obj.shape} but background-only responses "
            f"{r_bg.shape}; pass responses of the same layer."
        )
    den = np.abs(r_bg) + np.abs(r_obj)
    with np.errstate(invalid="ignore", divide="ignore"):
        bsi = (r_bg - r_obj) / den
    bsi[den <= 1e-12 * max(float(den.max(initial=0.0)), 1e-300)] = np.nan
    return bsi


def object_coverage(rf: ReceptiveFields, masks: np.ndarray) -> np.ndarray:
    """(h, w) mean over images of the fraction of each position's receptive field that the
    object covers. masks: bool (n, H, W) at any size (resized to the model input)."""
    return object_coverage_per_image(rf, masks).mean(0)


def object_coverage_per_image(rf: ReceptiveFields, masks: np.ndarray) -> np.ndarray:
    """(n, h, w): the fraction of each position's receptive field the object covers, per image."""
    m = resize_masks(np.asarray(masks, dtype=bool), tuple(rf.input_size))
    return np.stack([project_mask(rf, mk) for mk in m])


# ============================================================================================
# Unit groups


@dataclass
class UnitGroups:
    """Unit groups of one layer.

    Attributes
    ----------
    layer: layer name.
    shape: (C, h, w) unit shape of the layer.
    masks: group name -> bool (C, h, w) membership.
    eccentricity: (h, w) receptive-field eccentricity of each position (see receptive_field).
    selectivity: (C, h, w) background selectivity index, or None when not measured.
    rf: the layer's ReceptiveFields.
    criteria: group name -> how it was selected (for tables and reports).
    object_coverage: (h, w) mean fraction of each position's receptive field covered by the
        object (foreground mask), over images; None without masks (see :func:`object_coverage`).
    """

    layer: str
    shape: tuple[int, int, int]
    masks: dict[str, np.ndarray]
    eccentricity: np.ndarray
    selectivity: np.ndarray | None
    rf: ReceptiveFields | None = None
    criteria: dict[str, str] = field(default_factory=dict)
    object_coverage: np.ndarray | None = None

    @property
    def names(self) -> list[str]:
        return list(self.masks)

    def indices(self, name: str) -> np.ndarray:
        """Flat unit indices (into ``C * h * w``) of a group, sorted."""
        return np.flatnonzero(self.masks[name].ravel())

    def sizes(self) -> dict[str, int]:
        return {g: int(m.sum()) for g, m in self.masks.items()}

    def layout(self, name: str) -> np.ndarray:
        """(h, w) fraction of the channels at each position that belong to the group."""
        return self.masks[name].mean(0)

    def patterns(self, activations: np.ndarray, name: str) -> np.ndarray:
        """(n, n_units_in_group) responses of the group's units; activations (n, C, h, w)."""
        act = np.asarray(activations)
        if act.shape[1:] != self.shape:
            raise CortexmapError(
                f"Activations of {self.layer!r} have unit shape {act.shape[1:]} but the groups "
                f"were drawn on {self.shape}; use activations of the same layer and input size."
            )
        return act.reshape(len(act), -1)[:, self.indices(name)]

    def summary(self) -> pd.DataFrame:
        """One row per group: size, mean eccentricity, mean BSI, mean object coverage of its
        units' receptive fields, and the selection criterion."""
        ecc = np.broadcast_to(self.eccentricity, self.shape)
        cov = (np.broadcast_to(self.object_coverage, self.shape)
               if self.object_coverage is not None else None)
        rows = []
        for g, m in self.masks.items():
            bsi = float(np.nanmean(self.selectivity[m])) if self.selectivity is not None else np.nan
            rows.append({
                "layer": self.layer, "group": g, "n_units": int(m.sum()),
                "fraction_of_layer": float(m.mean()),
                "mean_eccentricity": float(ecc[m].mean()), "mean_bsi": bsi,
                "mean_object_coverage": float(cov[m].mean()) if cov is not None else np.nan,
                "criterion": self.criteria.get(g, ""),
            })
        return pd.DataFrame(rows)


def _spatial_mask(name: str, ecc: np.ndarray, c: int, central_radius: float,
                  peripheral_radius: float, layer: str) -> tuple[np.ndarray, str]:
    if name == "central":
        pos = ecc <= central_radius
        crit = f"RF eccentricity <= {central_radius:g}"
        hint = f"raise central_radius (smallest eccentricity here: {ecc.min():.3f})"
    else:
        pos = ecc > peripheral_radius
        crit = f"RF eccentricity > {peripheral_radius:g}"
        hint = f"lower peripheral_radius (largest eccentricity here: {ecc.max():.3f})"
    if not pos.any():
        raise CortexmapError(
            f"Layer {layer!r}: the {name!r} group is empty ({crit} holds for none of its "
            f"{ecc.size} positions); {hint}."
        )
    return np.broadcast_to(pos, (c, *ecc.shape)).copy(), crit


def _selective_mask(name: str, bsi: np.ndarray, selection: str, threshold: float,
                    top_fraction: float, layer: str) -> tuple[np.ndarray, str]:
    valid = np.isfinite(bsi)
    score = np.where(valid, bsi if name == "background" else -bsi, -np.inf)
    if selection == "threshold":
        sel = score >= threshold
        sign = ">=" if name == "background" else "<="
        crit = f"BSI {sign} {threshold if name == 'background' else -threshold:g}"
        if not sel.any():
            best = float(np.max(score[valid])) if valid.any() else np.nan
            raise CortexmapError(
                f"Layer {layer!r}: the {name!r} group is empty at threshold {threshold:g} "
                f"({crit} holds for no unit; the most {name}-selective unit has "
                f"{'BSI' if name == 'background' else '-BSI'} = {best:.3f}). Lower the threshold "
                "or use selection='top_fraction'."
            )
    else:
        k = int(round(top_fraction * int(valid.sum())))
        if k < 1:
            raise CortexmapError(
                f"Layer {layer!r}: top_fraction={top_fraction:g} of its {int(valid.sum())} "
                f"responsive units selects no {name!r} unit; raise top_fraction."
            )
        flat = score.ravel()
        order = np.argsort(-flat, kind="stable")[:k]
        sel = np.zeros(flat.size, dtype=bool)
        sel[order] = True
        sel = sel.reshape(bsi.shape)
        crit = f"top {top_fraction:g} by {'BSI' if name == 'background' else '-BSI'}"
    return sel, crit


def select_groups(
    rf: ReceptiveFields,
    n_channels: int,
    selectivity: np.ndarray | None = None,
    groups: tuple[str, str] = ("central", "background"),
    central_radius: float = 0.35,
    peripheral_radius: float | None = None,
    selection: Literal["threshold", "top_fraction"] = "top_fraction",
    threshold: float = 0.2,
    top_fraction: float = 0.25,
    exclusive: bool = True,
    equal_sizes: bool = True,
    seed: int = 0,
) -> UnitGroups:
    """Draw two unit groups of one convolutional layer.

    rf: receptive fields of the layer (grid (h, w)). n_channels: C.
    selectivity: (C, h, w) background selectivity index; required for 'background'/'object'.
    groups: two names from ``GROUPS``; the first is compared with foveal regions, the second
        with peripheral ones.
    Returns :class:`UnitGroups` with bool (C, h, w) masks.
    """
    groups = tuple(groups)
    if len(groups) != 2 or len(set(groups)) != 2 or any(g not in GROUPS for g in groups):
        raise CortexmapError(
            f"groups must be two different names from {GROUPS}; got {groups}."
        )
    if selection not in ("threshold", "top_fraction"):
        raise CortexmapError(f"selection must be 'threshold' or 'top_fraction'; got {selection!r}.")
    if not 0 < top_fraction <= 1:
        raise CortexmapError(f"top_fraction must be in (0, 1]; got {top_fraction}.")
    shape = (int(n_channels), *rf.grid)
    ecc = rf.eccentricity()
    peripheral_radius = central_radius if peripheral_radius is None else peripheral_radius
    if selectivity is not None:
        selectivity = np.asarray(selectivity, dtype=np.float64)
        if selectivity.shape != shape:
            raise CortexmapError(
                f"Selectivity of {rf.layer!r} has shape {selectivity.shape} but the layer has "
                f"units {shape}; compute it from activations of this layer."
            )
    masks, criteria = {}, {}
    for g in groups:
        if g in _SPATIAL:
            masks[g], criteria[g] = _spatial_mask(
                g, ecc, shape[0], central_radius, peripheral_radius, rf.layer
            )
        else:
            if selectivity is None:
                raise CortexmapError(
                    f"Group {g!r} needs the background selectivity index (images with "
                    "foreground masks); pass selectivity= or use spatial groups only."
                )
            masks[g], criteria[g] = _selective_mask(
                g, selectivity, selection, threshold, top_fraction, rf.layer
            )
    a, b = groups
    if exclusive:
        both = masks[a] & masks[b]
        if both.any():
            masks[a], masks[b] = masks[a] & ~both, masks[b] & ~both
            for g in groups:
                criteria[g] += f"; {int(both.sum())} units in both groups removed"
                if not masks[g].any():
                    raise CortexmapError(
                        f"Layer {rf.layer!r}: every unit of the {g!r} group is also in the other "
                        "group, so the exclusive group is empty; use exclusive=False or "
                        "change the radii/threshold."
                    )
    if equal_sizes:
        n = min(int(masks[a].sum()), int(masks[b].sum()))
        rng = np.random.default_rng(seed)
        for g in groups:
            idx = np.flatnonzero(masks[g].ravel())
            if idx.size > n:
                keep = np.sort(rng.choice(idx, size=n, replace=False))
                m = np.zeros(masks[g].size, dtype=bool)
                m[keep] = True
                masks[g] = m.reshape(shape)
                criteria[g] += f"; random {n} kept (equal sizes)"
    return UnitGroups(rf.layer, shape, masks, ecc, selectivity, rf, criteria)


# ============================================================================================
# Crossover RSA


@dataclass
class CrossoverStats:
    """Result of :func:`crossover_rsa` for one layer.

    table: one row per (group, region): r (mean over subjects), r_sem, p_perm, nc_lower,
        nc_upper. interaction: dict with interaction, ci_low, ci_high, p_boot, p_perm.
    per_subject: (2 groups, 2 regions, n_subjects) correlations.
    boot: (n_boot,) bootstrap interactions.
    """

    table: pd.DataFrame
    interaction: dict[str, float]
    per_subject: np.ndarray
    boot: np.ndarray


def as_subject_rdms(x, name: str) -> RDMs:
    if isinstance(x, RDMs):
        return x
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 3:
        return RDMs.from_matrices(arr, names=[f"{name}_s{i}" for i in range(len(arr))])
    if arr.ndim in (1, 2):
        arr = np.atleast_2d(arr)
        return RDMs(arr, n_conditions_from_pairs(arr.shape[1], f"{name} RDMs"),
                    [f"{name}_s{i}" for i in range(len(arr))])
    raise CortexmapError(
        f"Region {name!r} RDMs must be RDMs, (n_subjects, n_pairs) vectors or (n_subjects, n, n) "
        f"matrices; got shape {arr.shape}."
    )


def crossover_interaction(r: np.ndarray) -> np.ndarray:
    """r: (..., 2 groups, 2 regions) -> crossover interaction (...)."""
    return (r[..., 0, 0] + r[..., 1, 1]) - (r[..., 0, 1] + r[..., 1, 0])


def region_means(r: np.ndarray, n_sub: int) -> np.ndarray:
    """(..., 2 groups, 2 * n_sub) correlations with [foveal subjects, peripheral subjects]
    -> (..., 2 groups, 2 regions) means over subjects (NaN-aware)."""
    shape = r.shape[:-1] + (2, n_sub)
    return np.nanmean(r.reshape(shape), axis=-1)


def crossover_rsa(
    group_rdms: RDMs,
    region_rdms: dict[str, RDMs | np.ndarray],
    regions: tuple[str, str] | None = None,
    method: str = "spearman",
    n_perm: int = 1000,
    n_boot: int = 1000,
    bootstrap: Literal["conditions", "subjects"] = "conditions",
    alpha: float = 0.05,
    seed: int = 0,
) -> CrossoverStats:
    """2x2 RSA of two unit-group RDMs against a foveal and a peripheral region.

    group_rdms: RDMs with 2 sets (first: the group expected to match the foveal region).
    region_rdms: region name -> subject RDMs (RDMs, (n_subjects, n_pairs) or (n_subjects, n, n)),
        the same subjects in the same order for both regions.
    regions: (foveal, peripheral) names (default: the first two keys of region_rdms).
    method: RDM comparison (``cortexmap.rsa.compare``): spearman, pearson, kendall_tau_a, cosine.
    n_perm: condition-label permutations (``cortexmap.rsa.permutation_test``; every subject and
        region RDM shares each permutation) for one-sided p-values of each cell (r > 0) and of
        the interaction (I > 0).
    n_boot: bootstrap samples for the interaction CI; ``bootstrap`` resamples conditions
        (``cortexmap.rsa.bootstrap_conditions``: generalizes to new stimuli) or subjects
        (generalizes to new subjects).
    Cell statistics are means over subjects of per-subject correlations, so they sit on the
    same scale as the regions' noise ceilings.
    """
    if len(group_rdms) != 2:
        raise CortexmapError(
            f"group_rdms must hold 2 RDMs (two unit groups); got {len(group_rdms)}."
        )
    if bootstrap not in ("conditions", "subjects"):
        raise CortexmapError(f"bootstrap must be 'conditions' or 'subjects'; got {bootstrap!r}.")
    if n_perm < 1 or n_boot < 1:
        raise CortexmapError("n_perm and n_boot must be at least 1.")
    regions = tuple(regions) if regions is not None else tuple(list(region_rdms)[:2])
    if len(regions) != 2 or any(r not in region_rdms for r in regions):
        raise CortexmapError(
            f"regions must name a foveal and a peripheral region among {list(region_rdms)}; "
            f"got {regions}."
        )
    regs = [as_subject_rdms(region_rdms[r], r) for r in regions]
    n = group_rdms.n_conditions
    for name, reg in zip(regions, regs, strict=True):
        if reg.n_conditions != n:
            raise CortexmapError(
                f"Region {name!r} RDMs have {reg.n_conditions} conditions but the unit-group RDMs "
                f"have {n}; both must describe the same stimuli in the same order."
            )
    if len(regs[0]) != len(regs[1]):
        raise CortexmapError(
            f"Region {regions[0]!r} has {len(regs[0])} subject RDMs but {regions[1]!r} has "
            f"{len(regs[1])}; give both regions' RDMs for the same subjects, in the same order."
        )
    n_sub = len(regs[0])
    data = RDMs(np.concatenate([regs[0].vectors, regs[1].vectors]), n,
                [f"{r}:{s}" for r, reg in zip(regions, regs, strict=True) for s in reg.names])

    per_subject = compare(group_rdms, data, method=method).reshape(2, 2, n_sub)
    r_mean = per_subject.mean(-1)
    inter = float(crossover_interaction(r_mean))

    perm = permutation_test(group_rdms, data, method=method, n_perm=n_perm, seed=seed)
    null = region_means(perm.null, n_sub)  # (n_perm, 2, 2)
    p_cell = (1 + (null >= r_mean[None] - 1e-12).sum(0)) / (n_perm + 1)
    p_perm_i = float((1 + (crossover_interaction(null) >= inter - 1e-12).sum()) / (n_perm + 1))

    if bootstrap == "conditions":
        bs = bootstrap_conditions(group_rdms, data, method=method, n_boot=n_boot, seed=seed + 1)
        boot = crossover_interaction(region_means(bs.samples, n_sub))
    else:
        rng = np.random.default_rng(seed + 1)
        idx = rng.integers(0, n_sub, size=(n_boot, n_sub))
        boot = crossover_interaction(per_subject[:, :, idx].transpose(2, 0, 1, 3).mean(-1))
    boot = boot[np.isfinite(boot)]
    lo, hi = np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    tail = min(int((boot <= 0).sum()), int((boot >= 0).sum()))
    p_boot = float(min(1.0, 2 * (1 + tail) / (len(boot) + 1)))  # two-sided, never exactly 0

    nc = [_noise_ceiling(r, method) for r in regs]
    rows = []
    for g in range(2):
        for k in range(2):
            vals = per_subject[g, k]
            rows.append({
                "group": group_rdms.names[g], "region": regions[k],
                "region_kind": ("foveal", "peripheral")[k],
                "r": float(vals.mean()),
                "r_sem": float(vals.std(ddof=1) / np.sqrt(n_sub)) if n_sub > 1 else np.nan,
                "p_perm": float(p_cell[g, k]), "nc_lower": nc[k][0], "nc_upper": nc[k][1],
                "n_subjects": n_sub,
            })
    interaction = {
        "interaction": inter, "ci_low": float(lo), "ci_high": float(hi),
        "p_boot": p_boot, "p_perm": p_perm_i, "significant": bool(lo > 0 or hi < 0),
    }
    return CrossoverStats(pd.DataFrame(rows), interaction, per_subject, boot)


def _noise_ceiling(subject_rdms: RDMs, method: str) -> tuple[float, float]:
    """Leave-one-subject-out noise ceiling (lower, upper); NaN with fewer than 2 subjects."""
    if len(subject_rdms) < 2:
        return (np.nan, np.nan)
    lower, upper = noise_ceiling(subject_rdms, method=method)
    return float(lower), float(upper)

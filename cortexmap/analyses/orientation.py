"""Analysis 3 (Ukita, Neural Networks 2020): orientation selectivity and its causal role.

``run_orientation(OrientationConfig(), "runs/orientation")`` measures, on the default zoo network:

1. **Tuning** of every channel of the chosen layers to gratings (orientation every 7.5 deg,
   several spatial frequencies and phases): OSI, circular variance, preferred orientation and
   the fraction of units selective against a shuffled-orientation null (``tuning_*`` tables).
2. **Training dynamics**: the same statistics over the network's epoch checkpoints beside the
   test accuracy of each checkpoint (``dynamics``).
3. **Across networks** (architectures, objectives, seeds of the zoo): lower-layer selectivity
   against test accuracy, with Spearman / Pearson correlations (``networks``,
   ``network_correlation``).
4. **Ablation**: zero the k most selective channels of one layer vs k random (many draws) and
   k least selective; test-accuracy drop with CIs and shift invariance of the higher layers
   (``ablation_*``, ``shift_invariance``), computed from a cached layer output.

Everything lands in ``outdir`` as Parquet + CSV tables, ``report.html`` and ``provenance.json``.
A run interrupted during the dynamics / network sweeps resumes from the per-model results it
already wrote (``outdir/partial``) when started again with the same settings.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import ConfigDict, Field
from torch import nn

from cortexmap.analyses.base import write_outputs
from cortexmap.errors import CortexmapError
from cortexmap.models import input_size_of, load, preprocess, probe, resolve_layers
from cortexmap.models.layers import later_layers, spatial_layers
from cortexmap.models.load import load_entry
from cortexmap.models.predict import predict
from cortexmap.models.untrained import untrained_twin
from cortexmap.models.weights import UNTRAINED, stage_layers, weights_record
from cortexmap.models.zoo import checkpoints, list_zoo
from cortexmap.probes.ablation import (
    AblationResult,
    check_k,
    plot_accuracy_drops,
    plot_shift_invariance,
    run_ablation,
)
from cortexmap.probes.orientation import (
    DEFAULT_PHASES,
    OrientationTuning,
    measure_tuning,
    plot_osi_distributions,
    plot_tuning_curves,
)
from cortexmap.probes.testset import (
    TestSet,
    TestSetFields,
    check_model_fits,
    name_proxy,
    output_size,
    resolve_test_set,
)
from cortexmap.report import Finding
from cortexmap.utils.dask import close_client, get_client
from cortexmap.utils.io import prepare_output_dir, write_json, write_table
from cortexmap.utils.progress import track

ANALYSIS = "orientation"
#: Fraction of selective lower-layer units above which "lower layers are orientation selective".
SELECTIVE_FRACTION = 0.25
#: How much more of the lower layers' units must be selective in a trained network than in its
#: untrained twin for "training makes them selective".
TWIN_MARGIN = 0.10
#: Untrained versions a network without an epoch-0 checkpoint is compared against.
UNTRAINED_SEEDS = 3
#: Default grating spatial frequencies in cycles per pixel: 4, 8 and 12 cycles across a 64 px
#: image, 14, 28 and 42 across 224 px (a fixed count per image would put a 224 px network's
#: small early receptive fields far below their preferred frequency).
DEFAULT_SF_CPP: tuple[float, ...] = (1 / 16, 1 / 8, 3 / 16)


class OrientationConfig(TestSetFields):
    """Settings of the orientation analysis (defaults: the zoo AlexNet, its checkpoints, the zoo).

    Tuning: ``layers`` (default: every spatial top-level layer; for the real ImageNet networks
    the stem and the end of each stage), ``unit`` ("center" channel at the centre of the map,
    or "mean" over positions), orientations every ``orientation_step`` deg over 180,
    ``spatial_freqs`` in ``sf_unit`` ("cycles/pixel", the default, so the gratings scale with
    each network's input size; or "cycles/image"), ``phases`` (deg), ``n_shuffles`` of the
    shuffled-orientation null and its ``alpha``, ``min_osi`` (a selective unit also needs
    OSI >= min_osi, default 1/3 = R_pref >= 2 R_orth).
    Dynamics: ``dynamics`` on/off, ``dynamics_model`` (default ``model``): a zoo network with
    epoch checkpoints, or a folder of the user's checkpoints (state_dict files whose names end
    in their epoch number, e.g. ``epoch_3.pt``; ``dynamics_arch`` names their architecture
    unless the files store it). Networks: ``networks`` (default: the whole zoo; [] skips), each
    a model spec or ``SPEC=WEIGHTS`` (a local weights file for that network), ``n_lower``
    lower layers per network. Ablation: ``ablation_layer`` (default the second tuned layer),
    ``ks``, ``n_random`` draws, ``shift_layers`` (default: every top-level layer after the
    ablated one except the classifier), ``shifts`` in px, ``n_shift_images``. Test set:
    ``n_test`` procedural test images (``test_seed``), or ``test_images`` + ``test_labels`` (+
    ``class_names``), or ``accuracy="agreement"`` (proxy; see
    :mod:`cortexmap.probes.testset`); a network whose output size does not match the test
    set's classes is refused before any work. ``scheduler``: Dask scheduler for the
    dynamics / network sweeps (None = serial in this process). ``report``: write report.html.
    """

    model_config = ConfigDict(extra="forbid")

    model: str = "zoo:alexnet_sup_s0"
    layers: list[str] | None = None
    unit: Literal["center", "mean"] = "center"
    orientation_step: float = Field(7.5, gt=0, le=45)
    spatial_freqs: list[float] = Field(default_factory=lambda: list(DEFAULT_SF_CPP))
    sf_unit: Literal["cycles/pixel", "cycles/image"] = "cycles/pixel"
    phases: list[float] = Field(default_factory=lambda: list(DEFAULT_PHASES))
    contrast: float = Field(1.0, gt=0, le=1)
    n_shuffles: int = Field(200, ge=0)
    alpha: float = Field(0.05, gt=0, lt=1)
    min_osi: float = Field(1 / 3, ge=0, lt=1)
    statistic: Literal["vector_strength", "osi"] = "vector_strength"
    phase_reduce: Literal["mean", "max"] = "mean"
    n_examples: int = Field(8, ge=1)

    dynamics: bool = True
    dynamics_model: str | None = None
    dynamics_arch: str | None = None
    networks: list[str] | None = None
    n_lower: int = Field(2, ge=1)

    ablation: bool = True
    ablation_layer: str | None = None
    ks: list[int] = Field(default_factory=lambda: [4, 8])
    n_random: int = Field(20, ge=2)
    shift_layers: list[str] | None = None
    shifts: list[int] = Field(default_factory=lambda: [2, 4, 8])
    n_shift_images: int = Field(64, ge=2)
    n_random_shift: int = Field(5, ge=1)

    n_test: int = Field(1000, ge=10)
    test_seed: int = 0
    seed: int = 0
    batch_size: int = Field(256, ge=1)
    scheduler: str | None = None
    report: bool = True

    def orientations(self) -> np.ndarray:
        return np.arange(0.0, 180.0 - 1e-9, self.orientation_step)

    def fingerprint(self) -> str:
        """Hash of every setting, so a resumed run never mixes results of other settings."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


@dataclass
class OrientationResult:
    """Tables, findings and the objects behind them (see the module docstring)."""

    config: OrientationConfig
    outdir: Path
    tuning: OrientationTuning
    tables: dict[str, pd.DataFrame]
    findings: list[Finding] = field(default_factory=list)
    ablation: AblationResult | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def add_to_report(self, report) -> None:
        """Add the orientation section (tuning, dynamics, networks, ablation figures)."""
        _add_to_report(self, report)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def tuned_layers(model: nn.Module, input_size: int | None = None) -> list[str]:
    """The layers tuned by default: for the real ImageNet networks the stem and the end of each
    resolution stage (:data:`cortexmap.models.weights.STAGE_LAYERS`), else every top-level layer
    whose output has a spatial grid (conv maps or patch tokens)."""
    staged = stage_layers(model)
    if staged is not None:
        return staged
    return spatial_layers(model, input_size or input_size_of(model, default=64), top_level=True,
                          tokens=True)


def _zoo_base(spec: str) -> str | None:
    return spec[4:].split("@")[0] if spec.startswith("zoo:") else None


def checkpoint_epochs(spec: str) -> list[int]:
    """Epochs with a saved checkpoint of zoo network ``spec`` or in a folder of checkpoints;
    CortexmapError if there are none."""
    if Path(spec).expanduser().is_dir():
        return [e for e, _ in folder_checkpoints(spec)]
    base = _zoo_base(spec)
    hint = ("Training dynamics need a zoo network saved at several epochs, e.g. "
            "zoo:alexnet_sup_s0 (see `cortexmap zoo list`), or a folder of your checkpoints "
            "(dynamics_model=FOLDER, files named by epoch such as epoch_3.pt), or turn them off "
            "with dynamics=False (--no-dynamics).")
    if base is None:
        raise CortexmapError(f"Model {spec!r} has no epoch checkpoints. {hint}")

    epochs = checkpoints(base)
    if not epochs:
        raise CortexmapError(f"Zoo model {spec!r} has no epoch checkpoints. {hint}")
    return sorted(epochs)


_CHECKPOINT_SUFFIXES = {".pt", ".pth", ".ckpt", ".bin"}


def folder_checkpoints(folder: str | os.PathLike) -> list[tuple[int, str]]:
    """(epoch, path) of the checkpoint files in ``folder``, by epoch: the last number in each
    file name is its epoch (``epoch_3.pt``, ``ckpt-010.pth``)."""
    import re

    root = Path(folder).expanduser()
    found: dict[int, str] = {}
    for f in sorted(root.iterdir()):
        numbers = re.findall(r"\d+", f.stem)
        if f.is_file() and f.suffix.lower() in _CHECKPOINT_SUFFIXES and numbers:
            epoch = int(numbers[-1])
            if epoch in found:
                raise CortexmapError(
                    f"Checkpoints {Path(found[epoch]).name} and {f.name} in {root} both look "
                    f"like epoch {epoch}; keep one file per epoch (the last number in a file "
                    "name is its epoch)."
                )
            found[epoch] = str(f)
    if len(found) < 2:
        raise CortexmapError(
            f"Training dynamics need at least 2 checkpoints in {root}; found {len(found)} "
            f"({', '.join(sorted(_CHECKPOINT_SUFFIXES))} files whose names end in the epoch, "
            "e.g. epoch_0.pt, epoch_5.pt)."
        )
    return sorted(found.items())


def _dynamics_specs(config: OrientationConfig) -> list[tuple[int, str]]:
    """(epoch, loadable spec) of every checkpoint of the training-dynamics network."""
    spec = config.dynamics_model or config.model
    if Path(spec).expanduser().is_dir():
        return folder_checkpoints(spec)
    return [(e, f"zoo:{_zoo_base(spec)}@ep{e}") for e in checkpoint_epochs(spec)]


@functools.lru_cache(maxsize=4)
def _cached_test_set(key: str, size: int, n: int, seed: int) -> TestSet:
    return resolve_test_set(TestSetFields.model_validate_json(key), size, n, seed)


def _test_set(config: OrientationConfig, model: nn.Module,
              strict: bool = True) -> tuple[torch.Tensor, np.ndarray | None, TestSet]:
    """Test images preprocessed for ``model`` (n, 3, S, S), what its accuracy is measured
    against (n,) and the :class:`TestSet`.

    strict: a model that does not fit the test set is an error; otherwise (a sweep item) its
    targets are None and its accuracy is not measured. Under the agreement proxy a sweep item
    has no accuracy either (agreement of a network with itself is 1).
    """
    size = input_size_of(model, default=64)
    key = json.dumps({k: getattr(config, k) for k in TestSetFields.model_fields})
    ts = _cached_test_set(key, size, config.n_test, config.test_seed)
    x = preprocess(ts.images, model.cortexmap_preprocessing)
    if strict:
        check_model_fits(model, ts)
        return x, ts.targets(model, config.batch_size), ts
    if ts.proxy:
        return x, None, ts
    try:
        check_model_fits(model, ts)
    except CortexmapError:
        return x, None, ts
    return x, np.asarray(ts.labels), ts


@torch.inference_mode()
def accuracy(
    model: nn.Module, x: torch.Tensor, labels: np.ndarray, batch_size: int = 256
) -> float:
    """Top-1 accuracy of ``model`` on preprocessed images x (n, 3, S, S)."""
    return float((predict(model, x, batch_size) == np.asarray(labels)).mean())


def spatial_freqs_cpi(config: OrientationConfig, size: int) -> list[float]:
    """The config's spatial frequencies in cycles per image of a ``size`` px input."""
    if config.sf_unit == "cycles/image":
        return list(config.spatial_freqs)
    bad = [f for f in config.spatial_freqs if not 0 < f < 0.5]
    if bad:
        raise CortexmapError(
            f"Spatial frequencies in cycles/pixel must lie in (0, 0.5) (0.5 = Nyquist); got "
            f"{bad}. For cycles per image set sf_unit='cycles/image' (CLI --sf-unit)."
        )
    return [f * size for f in config.spatial_freqs]


def _tuning_kwargs(config: OrientationConfig, model: nn.Module) -> dict[str, Any]:
    size = input_size_of(model, default=64)
    return dict(
        orientations=config.orientations(), spatial_freqs=spatial_freqs_cpi(config, size),
        phases=config.phases, unit=config.unit, contrast=config.contrast,
        n_shuffles=config.n_shuffles, alpha=config.alpha, min_osi=config.min_osi,
        statistic=config.statistic,
        phase_reduce=config.phase_reduce, seed=config.seed, batch_size=config.batch_size,
    )


def _model_row(spec: str, layers: Sequence[str] | None, n_lower: int,
               config: OrientationConfig, x: torch.Tensor | None,
               labels: np.ndarray | None) -> pd.DataFrame:
    """Per-layer tuning summary + test accuracy of one model (a dynamics / network sweep item).

    ``spec`` is a model spec or ``SPEC=WEIGHTS``; a network whose outputs do not fit the test
    set gets accuracy NaN and says why in ``accuracy_note`` (never a silent 0).
    """
    model = load_entry(spec, arch=config.dynamics_arch if Path(spec).is_file() else None)
    names = list(layers) if layers else tuned_layers(model)[:n_lower]
    tuning = measure_tuning(model, names, progress=False, **_tuning_kwargs(config, model))
    note = ""
    if x is None:
        x, labels, ts = _test_set(config, model, strict=False)
        if labels is None:
            k = output_size(model)
            note = ("agreement proxy: no accuracy across networks" if ts.proxy else
                    f"not measured: {k} outputs vs {ts.n_classes} test classes ({ts.source})")
    df = tuning.summary()
    df["model"] = spec
    df["test_accuracy"] = (accuracy(model, x, labels, config.batch_size) if labels is not None
                           else float("nan"))
    df["accuracy_note"] = note
    df["layer_rank"] = np.arange(len(df))
    return df


class _Partial:
    """Per-model results of the sweeps under ``outdir/partial`` for resuming a run."""

    def __init__(self, outdir: Path, fingerprint: str) -> None:
        self.dir = outdir / "partial"
        self.fingerprint = fingerprint

    def path(self, key: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_@" else "_" for c in key)
        return self.dir / f"{safe}.parquet"

    def get(self, key: str) -> pd.DataFrame | None:
        p = self.path(key)
        return pd.read_parquet(p) if p.exists() else None

    def put(self, key: str, df: pd.DataFrame) -> None:
        write_table(df, self.path(key).with_suffix(""))


def _sweep(specs: Sequence[str], config: OrientationConfig, partial: _Partial,
           layers: Sequence[str] | None, x, labels, description: str,
           progress: bool) -> list[pd.DataFrame]:
    """Run :func:`_model_row` for every spec (resuming, serially or on a Dask cluster)."""
    todo = [s for s in specs if partial.get(s) is None]
    if todo and config.scheduler:
        client = get_client(config.scheduler)
        try:
            futures = client.map(_model_row, todo, layers=layers, n_lower=config.n_lower,
                                 config=config, x=None, labels=None, pure=False)
            for spec, fut in zip(todo, futures, strict=True):
                partial.put(spec, fut.result())
        finally:
            close_client(client)
    else:
        for spec in track(todo, description, enabled=progress):
            partial.put(spec, _model_row(spec, layers, config.n_lower, config, x, labels))
    return [partial.get(s) for s in specs]


def _spearman(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    from scipy.stats import spearmanr

    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan"), float("nan")
    r = spearmanr(a, b)
    return float(r.statistic), float(r.pvalue)


def _pearson(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    from scipy.stats import pearsonr

    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan"), float("nan")
    r = pearsonr(a, b)
    return float(r.statistic), float(r.pvalue)


# --------------------------------------------------------------------------------------------
# The analysis
# --------------------------------------------------------------------------------------------

def run_orientation(
    config: OrientationConfig | None = None,
    outdir: str | os.PathLike = "runs/orientation",
    overwrite: bool = False,
    progress: bool = True,
    model: nn.Module | None = None,
) -> OrientationResult:
    """Run the orientation analysis (see the module docstring) and write its outputs.

    model: an already built module to use instead of loading ``config.model`` (the spec then
    only labels it; the dynamics still need ``config.dynamics_model`` / ``config.model`` to be a
    zoo network with checkpoints).
    """
    config = config or OrientationConfig()
    torch.manual_seed(config.seed)
    net = load(model if model is not None else config.model)
    layers = resolve_layers(net, config.layers) if config.layers else tuned_layers(net)
    if not layers:
        raise CortexmapError(
            f"Model {config.model!r} has no top-level layer with a spatial output; give conv "
            "layers explicitly with layers=[...] (see `cortexmap layers MODEL`)."
        )
    # fail fast, before any output is written, on settings the later steps would reject
    x_test, y_test, test_set = _test_set(config, net)
    spatial_freqs_cpi(config, 64)
    dyn_specs = _dynamics_specs(config) if config.dynamics else []
    if dyn_specs and Path(dyn_specs[0][1]).is_file():  # user checkpoints: loadable?

        load(dyn_specs[0][1], arch=config.dynamics_arch)
    abl_layer = config.ablation_layer or (layers[1] if len(layers) > 1 else layers[0])
    if config.ablation:
        _check_ablation(net, abl_layer, config.ks)

    out = Path(outdir)
    partial = _Partial(out, config.fingerprint())
    stamp = partial.dir / "fingerprint.json"
    resuming = stamp.exists() and json.loads(stamp.read_text()).get("fp") == config.fingerprint()
    if not resuming:
        prepare_output_dir(out, overwrite)
        if partial.dir.exists():  # results of other settings (allowed by overwrite): drop them
            shutil.rmtree(partial.dir)
        write_json(stamp, {"fp": config.fingerprint()})

    tuning = measure_tuning(net, layers, progress=progress, **_tuning_kwargs(config, net))
    tables: dict[str, pd.DataFrame] = {
        "tuning_summary": tuning.summary(),
        "tuning_units": tuning.units(),
        "tuning_curves": _curves_table(tuning),
    }
    acc = accuracy(net, x_test, y_test, config.batch_size)
    extras: dict[str, Any] = {"test_accuracy": acc, "layers": layers, "ablation_layer": abl_layer,
                              "accuracy_measure": test_set.describe(),
                              "accuracy_proxy": test_set.proxy}

    if config.dynamics:
        epoch_of = {spec: e for e, spec in dyn_specs}
        # under the proxy each checkpoint is compared with itself: no accuracy over training
        y_dyn = None if test_set.proxy else y_test
        rows = _sweep(list(epoch_of), config, partial, layers, x_test, y_dyn,
                      "training dynamics", progress)
        dyn = pd.concat(rows, ignore_index=True)
        dyn.insert(0, "epoch", dyn["model"].map(epoch_of).astype(int))
        tables["dynamics"] = dyn

    if _epoch0(config, tables) is None:  # no epoch-0 checkpoint: several untrained versions
        tables["untrained_copy"] = _untrained_tuning(config, net, layers, model is None)

    names = config.networks
    if names is None:
        names = [f"zoo:{e.name}" for e in list_zoo()]
    if names:
        rows = _sweep(list(names), config, partial, None, None, None, "networks", progress)
        nets = pd.concat(rows, ignore_index=True)
        tables["networks"] = nets
        if np.isfinite(_lower(nets, config.n_lower)["test_accuracy"].to_numpy(float)).sum() >= 3:
            tables["network_correlation"] = _network_correlation(nets)
        twins = twin_table(nets)
        if len(twins):
            tables["untrained_twins"] = twins

    ablation = None
    if config.ablation:
        ablation = _ablation(config, net, tuning, layers, abl_layer, x_test, y_test, progress)
        tables["ablation_sets"] = ablation.per_set
        tables["ablation_accuracy"] = ablation.accuracy
        if len(ablation.invariance):
            tables["shift_invariance"] = ablation.invariance

    result = OrientationResult(config=config, outdir=out, tuning=tuning, tables=tables,
                               ablation=ablation, extras=extras)
    result.findings = _findings(result) + _twin_findings(result)
    if test_set.proxy:
        name_proxy([f for f in result.findings if "accuracy" in f.claim])
    write_outputs(result, out,
                  f"Orientation selectivity: {config.model}" if config.report else None,
                  inputs={"test_images": x_test.numpy()[:16]},
                  models={config.model: weights_record(net)})
    return result


def _check_ablation(net: nn.Module, layer: str, ks: Sequence[int]) -> None:
    """The ablation layer exists and has at least max(ks) units."""
    resolve_layers(net, [layer])
    shape = probe(net, [layer], input_size=input_size_of(net, default=64))[layer].shape
    n_units = shape[-1] if len(shape) == 2 else shape[0]  # tokens (T, D): D; (C, ...): C
    for k in ks:
        check_k(k, n_units, layer)


def _untrained_tuning(config: OrientationConfig, net: nn.Module, layers: Sequence[str],
                      from_spec: bool) -> pd.DataFrame:
    """Tuning summary of the lower layers of ``UNTRAINED_SEEDS`` untrained versions of ``net``
    (column ``seed``): initialisations differ enough between seeds and schemes that one draw
    can decide a margin by itself."""
    rows = []
    for k in range(UNTRAINED_SEEDS):
        seed = config.seed + 1 + k
        twin = untrained_twin(net, seed=seed, spec=config.model if from_spec else None)
        summ = measure_tuning(twin, layers[:config.n_lower], progress=False,
                              **_tuning_kwargs(config, twin)).summary()
        summ.insert(0, "seed", seed)
        summ.insert(1, "initialisation", twin.cortexmap_name)
        rows.append(summ)
    return pd.concat(rows, ignore_index=True)


def _lower_rows(summary: pd.DataFrame, n_lower: int) -> pd.DataFrame:
    """The first ``n_lower`` layers of one network's tuning summary."""
    if "layer_rank" in summary:
        summary = summary.sort_values("layer_rank")
    return summary.head(n_lower)


def _curves_table(tuning: OrientationTuning) -> pd.DataFrame:
    """Long table: layer, unit, orientation_deg, response (tuning curve values)."""
    parts = []
    for name, lt in tuning.layers.items():
        n, k = lt.curves.shape
        parts.append(pd.DataFrame({
            "layer": name, "unit": np.repeat(np.arange(n), k),
            "orientation_deg": np.tile(lt.orientations, n), "response": lt.curves.ravel(),
        }))
    return pd.concat(parts, ignore_index=True)


def _lower(df: pd.DataFrame, n_lower: int) -> pd.DataFrame:
    """Mean over each model's first ``n_lower`` layers -> one row per model."""
    low = df[df["layer_rank"] < n_lower]
    return low.groupby("model", as_index=False, sort=False).agg(
        fraction_selective=("fraction_selective", "mean"), osi_mean=("osi_mean", "mean"),
        test_accuracy=("test_accuracy", "first"), layers=("layer", lambda s: ",".join(s)),
    )


def twin_table(nets: pd.DataFrame) -> pd.DataFrame:
    """Each trained network of a sweep beside its untrained twin (``X`` and ``X:untrained``
    both swept): per layer, the fraction of selective units and the mean / median OSI."""
    models = list(dict.fromkeys(nets["model"]))
    parts = []
    for m in models:
        if m.endswith(UNTRAINED) or m + UNTRAINED not in models:
            continue
        a = nets[nets["model"] == m]
        b = nets[nets["model"] == m + UNTRAINED].set_index("layer")
        cols = ["fraction_selective", "osi_mean", "osi_median"]
        both = a[a["layer"].isin(b.index)][["layer", "layer_rank", *cols]].copy()
        for c in cols:
            both[f"{c}_untrained"] = b.loc[both["layer"], c].to_numpy()
        both.insert(0, "network", m)
        parts.append(both)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _twin_findings(res: OrientationResult) -> list[Finding]:
    """One verdict per trained network: its lower layers vs those of its untrained twin."""
    cfg, twins = res.config, res.tables.get("untrained_twins")
    if twins is None or not len(twins):
        return []
    extra = res.tables.get("untrained_copy")  # more random initialisations of cfg.model
    out = []
    for net, g in twins.groupby("network", sort=False):
        low = g[g["layer_rank"] < cfg.n_lower]
        trained = float(low["fraction_selective"].mean())
        inits = {f"{net}:untrained (seed 0)": float(low["fraction_selective_untrained"].mean())}
        if extra is not None and net == cfg.model and "seed" in extra:
            for seed, e in extra.groupby("seed", sort=True):
                inits[f"seed {seed}"] = float(_lower_rows(e, cfg.n_lower)
                                              ["fraction_selective"].mean())
        random_ = max(inits.values())
        per_layer = "; ".join(
            f"{r.layer} {r.fraction_selective:.0%} vs {r.fraction_selective_untrained:.0%} "
            f"(mean OSI {r.osi_mean:.2f} vs {r.osi_mean_untrained:.2f})" for r in g.itertuples())
        out.append(Finding(
            claim=f"Training makes the lower layers of {net} orientation selective: more of "
                  "their units are selective than in the same architecture with random weights.",
            reproduced=bool(trained >= SELECTIVE_FRACTION and trained - random_ >= TWIN_MARGIN),
            numbers=f"{net}, selective fraction trained vs untrained (seed 0) per layer: "
                    f"{per_layer}.",
            analysis=ANALYSIS,
            evidence="in-silico",
            criterion=f"Over the first {cfg.n_lower} layers the trained network's mean selective "
                      f"fraction is at least {SELECTIVE_FRACTION:.0%} and exceeds that of every "
                      f"random initialisation measured by at least {TWIN_MARGIN:.2f}.",
            control=f"{len(inits)} random initialisation(s), mean selective fraction over the "
                    f"first {cfg.n_lower} layers: "
                    + ", ".join(f"{k} {v:.0%}" for k, v in inits.items())
                    + f"; trained {trained:.0%}, trained - most selective {trained - random_:+.2f}"
                    + ("" if len(inits) > 1 else " (a single draw)") + ".",
        ))
    return out


def training_objective(spec: str) -> str:
    """Training objective of a network spec: the zoo card's (supervised, simclr, untrained),
    "untrained" for ``X:untrained``, otherwise "supervised" (pretrained classifiers)."""
    if spec.endswith(UNTRAINED):
        return "untrained"
    if spec.startswith("zoo:"):
        for e in list_zoo():
            if f"zoo:{e.name}" == spec.split("@")[0]:
                return e.objective
    return "supervised"


def partial_spearman(a: np.ndarray, b: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    """Spearman correlation of a and b controlling for a categorical covariate: the ranks of
    both are regressed on the group dummies and the residuals correlated; p from the t
    distribution with n - 2 - (n_groups - 1) degrees of freedom. NaN when undefined."""
    from scipy.stats import rankdata, t

    levels = sorted(set(groups))
    design = np.column_stack([np.ones(len(a))] + [np.asarray(groups) == g for g in levels[1:]])
    df = len(a) - design.shape[1] - 1
    if df < 1:
        return np.nan, np.nan
    res = [r - design @ np.linalg.lstsq(design, r, rcond=None)[0]
           for r in (rankdata(a), rankdata(b))]
    den = np.sqrt((res[0] @ res[0]) * (res[1] @ res[1]))
    if den < 1e-12:
        return np.nan, np.nan
    rho = float(res[0] @ res[1] / den)
    tstat = rho * np.sqrt(df / max(1 - rho**2, 1e-12))
    return rho, float(2 * t.sf(abs(tstat), df))


def _network_correlation(nets: pd.DataFrame) -> pd.DataFrame:
    """Lower-layer selectivity vs test accuracy over the networks whose accuracy was measured:
    all networks, within the supervised family, and partialling out the training objective
    (one row per measure and scope)."""
    n_lower = int(nets["layer_rank"].max()) + 1
    low = _lower(nets, n_lower)
    low = low[np.isfinite(low["test_accuracy"].to_numpy(dtype=float))]
    objective = np.array([training_objective(m) for m in low["model"]])
    rows = []
    for measure in ("fraction_selective", "osi_mean"):
        a, b = low[measure].to_numpy(), low["test_accuracy"].to_numpy()
        rho, p_rho = _spearman(a, b)
        r, p_r = _pearson(a, b)
        rows.append({"measure": measure, "scope": "all", "n_networks": len(low),
                     "spearman_rho": rho, "spearman_p": p_rho, "pearson_r": r, "pearson_p": p_r})
        sup = objective == "supervised"
        rho, p_rho = _spearman(a[sup], b[sup])
        r, p_r = _pearson(a[sup], b[sup])
        rows.append({"measure": measure, "scope": "supervised", "n_networks": int(sup.sum()),
                     "spearman_rho": rho, "spearman_p": p_rho, "pearson_r": r, "pearson_p": p_r})
        rho, p_rho = partial_spearman(a, b, objective)
        rows.append({"measure": measure, "scope": "objective partialled out",
                     "n_networks": len(low), "spearman_rho": rho, "spearman_p": p_rho,
                     "pearson_r": np.nan, "pearson_p": np.nan})
    return pd.DataFrame(rows)


def _ablation(config, net, tuning, layers, abl_layer, x_test, y_test, progress):
    if abl_layer in tuning.layers:
        lt = tuning[abl_layer]
    else:  # ablate a layer that was not in the tuning list: measure it now
        lt = measure_tuning(net, [abl_layer], progress=False,
                            **_tuning_kwargs(config, net))[abl_layer]
    shift_layers = (config.shift_layers if config.shift_layers is not None
                    else later_layers(net, abl_layer))
    return run_ablation(
        net, abl_layer, lt.ranking(), x_test, y_test, ks=config.ks, n_random=config.n_random,
        shift_set=x_test[:config.n_shift_images], shift_layers=shift_layers,
        shifts=config.shifts, n_random_shift=config.n_random_shift, seed=config.seed,
        batch_size=config.batch_size, progress=progress,
    )


# --------------------------------------------------------------------------------------------
# Findings
# --------------------------------------------------------------------------------------------

def _epoch0(cfg: OrientationConfig, t: dict[str, pd.DataFrame]) -> tuple[str, pd.DataFrame] | None:
    """The same network before training, when the dynamics measured it: ("epoch 0", per-layer
    rows of the first checkpoint)."""
    d = t.get("dynamics")
    if d is None or (cfg.dynamics_model not in (None, cfg.model)) or not (d["epoch"] == 0).any():
        return None
    return "epoch 0 (the same network before training)", d[d["epoch"] == 0]


def _findings(res: OrientationResult) -> list[Finding]:
    cfg, t = res.config, res.tables
    out: list[Finding] = []
    summ = t["tuning_summary"]
    low = summ.head(cfg.n_lower)
    frac = float(low["fraction_selective"].mean())
    per_layer = ", ".join(f"{r.layer} {r.fraction_selective:.0%} (median OSI {r.osi_median:.2f})"
                          for r in summ.itertuples())
    before = _epoch0(cfg, t)
    if before is None:
        base = t["untrained_copy"]
        label = f"{base['seed'].nunique()} untrained versions ({base['initialisation'].iloc[0]}" \
                f"{', ...' if base['seed'].nunique() > 1 else ''})"
    else:
        label, base = before
        base = base.assign(seed=0)
    per_seed = {seed: _lower_rows(g, cfg.n_lower) for seed, g in base.groupby("seed", sort=True)}
    frac0 = {seed: float(g["fraction_selective"].mean()) for seed, g in per_seed.items()}
    margin = frac - max(frac0.values())
    control = "; ".join(
        (f"seed {seed}: " if before is None else "")
        + ", ".join(f"{r.layer} {r.fraction_selective:.0%}" for r in per_seed[seed].itertuples())
        + f", mean {frac0[seed]:.0%}" for seed in per_seed)
    out.append(Finding(
        claim="Training makes many units of the lower layers orientation selective (beating the "
              f"shuffled-orientation null with OSI >= {cfg.min_osi:.2f}): more than in the same "
              "network before training.",
        reproduced=bool(margin >= TWIN_MARGIN),
        numbers=f"{cfg.model}, {cfg.unit} units, alpha {cfg.alpha}: selective fraction "
                f"{per_layer}; mean over the first {cfg.n_lower} layers {frac:.0%}.",
        analysis=ANALYSIS,
        evidence="in-silico",
        criterion=f"The mean selective fraction of the first {cfg.n_lower} layers exceeds that "
                  "of the network before training (its epoch-0 checkpoint, or else every one of "
                  f"{UNTRAINED_SEEDS} untrained versions) by at least {TWIN_MARGIN:.2f}.",
        control=f"{label}: {control}; trained - before {margin:+.2f} (against the most "
                "selective).",
    ))
    if "dynamics" in t:
        d = t["dynamics"]
        lo = d[d["layer_rank"] < cfg.n_lower].groupby("epoch").agg(
            osi=("osi_mean", "mean"), frac=("fraction_selective", "mean"),
            acc=("test_accuracy", "first"))
        rho_e, _ = _spearman(lo.index.to_numpy(float), lo["osi"].to_numpy())
        rho_a, p_a = _spearman(lo["osi"].to_numpy(), lo["acc"].to_numpy())
        first, last = lo.iloc[0], lo.iloc[-1]
        out.append(Finding(
            claim="Orientation selectivity of the lower layers grows during training, together "
                  "with test accuracy.",
            reproduced=bool(last["osi"] > first["osi"] and rho_a > 0),
            numbers=f"{_dynamics_label(cfg)}, epochs "
                    f"{lo.index.min()}..{lo.index.max()} ({len(lo)} checkpoints), first "
                    f"{cfg.n_lower} layers: mean OSI {first['osi']:.2f} -> {last['osi']:.2f}, "
                    f"selective fraction {first['frac']:.2f} -> {last['frac']:.2f}, accuracy "
                    f"{first['acc']:.3f} -> {last['acc']:.3f}; Spearman(epoch, OSI) {rho_e:.2f}, "
                    f"Spearman(OSI, accuracy) {rho_a:.2f} (p {p_a:.3f}).",
            analysis=ANALYSIS,
            evidence="in-silico",
            criterion="Mean lower-layer OSI is higher at the last checkpoint than at the first "
                      "and Spearman(OSI, accuracy) over checkpoints is positive.",
            control=f"the first checkpoint (epoch {lo.index.min()}): mean OSI {first['osi']:.2f}, "
                    f"selective fraction {first['frac']:.2f}, accuracy {first['acc']:.3f}.",
        ))
    if "network_correlation" in t:
        c = t["network_correlation"].set_index(["measure", "scope"])
        o, f = c.loc[("osi_mean", "all")], c.loc[("fraction_selective", "all")]
        sup, part = c.loc[("osi_mean", "supervised")], c.loc[("osi_mean",
                                                              "objective partialled out")]
        out.append(Finding(
            claim="Across networks, lower-layer orientation selectivity correlates positively "
                  "with generalization (test accuracy), beyond what the training objective "
                  "explains.",
            reproduced=bool(part.spearman_rho > 0 and part.spearman_p < 0.05
                            and sup.spearman_rho > 0),
            numbers=f"mean OSI of the first {cfg.n_lower} layers vs test accuracy, objective "
                    f"partialled out: Spearman rho {part.spearman_rho:.2f} (p "
                    f"{part.spearman_p:.3f}) over {int(part.n_networks)} networks; within the "
                    f"{int(sup.n_networks)} supervised networks: rho {sup.spearman_rho:.2f} (p "
                    f"{sup.spearman_p:.3f}).",
            analysis=ANALYSIS,
            evidence="in-silico",
            criterion="The partial Spearman rho (training objective controlled) is above 0 with "
                      "p < 0.05, and the rho within the supervised networks is above 0.",
            control=f"all networks pooled (objectives mixed): Spearman rho {o.spearman_rho:.2f} "
                    f"(p {o.spearman_p:.3f}), Pearson r {o.pearson_r:.2f} (p "
                    f"{o.pearson_p:.3f}); selective fraction: Spearman rho "
                    f"{f.spearman_rho:.2f} (p {f.spearman_p:.3f}).",
        ))
    if res.ablation is not None:
        out.extend(_ablation_findings(res))
    return out


def _dynamics_label(cfg: OrientationConfig) -> str:
    spec = cfg.dynamics_model or cfg.model
    return _zoo_base(spec) or spec


def _ablation_findings(res: OrientationResult) -> list[Finding]:
    a = res.ablation.accuracy.set_index(["condition", "k"])
    layer = res.ablation.layer
    ks = sorted(a.index.get_level_values("k").unique())
    wins, parts, controls = 0, [], []
    for k in ks:
        most, rnd, least = a.loc[("most", k)], a.loc[("random", k)], a.loc[("least", k)]
        win = most["drop"] > rnd["ci_high"] and most["drop"] > least["drop"]
        wins += int(win)
        parts.append(f"k={k}: most {most['drop']:.3f} [{most['ci_low']:.3f}, {most['ci_high']:.3f}]"
                     f" (p_vs_random {most['p_vs_random']:.3f})")
        controls.append(f"k={k}: random {rnd['drop']:.3f} [{rnd['ci_low']:.3f}, "
                        f"{rnd['ci_high']:.3f}], least selective {least['drop']:.3f}")
    out = [Finding(
        claim=f"Ablating the most orientation-selective units of {layer} lowers test accuracy "
              "more than ablating as many random (above their 95 % range) or least selective "
              "units.",
        reproduced=bool(wins > len(ks) / 2),
        numbers=f"accuracy drop (intact {res.extras['test_accuracy']:.3f}): " + "; ".join(parts),
        analysis=ANALYSIS,
        evidence="in-silico",
        criterion="For most k, the most-selective set's drop exceeds the upper end of the "
                  "random sets' 95 % range and the least-selective set's drop.",
        control=f"{res.config.n_random} random sets of k units (95 % range) and the k least "
                "selective units: " + "; ".join(controls),
    )]
    inv = res.tables.get("shift_invariance")
    if inv is not None and len(inv):
        k = max(ks)
        sub = inv[inv["k"] == k]
        change = sub.groupby("condition")["change"].mean()
        rnd = sub[sub["condition"] == "random"]
        intact = inv[inv["condition"] == "intact"].set_index(["layer", "shift_px"])["invariance"]
        # lower end of the random draws' range, as a change from intact, averaged like the means
        rnd_low = float((rnd["ci_low"].to_numpy()
                         - intact.loc[list(zip(rnd["layer"], rnd["shift_px"], strict=True))]
                         .to_numpy()).mean())
        most, least = float(change.get("most", np.nan)), float(change.get("least", np.nan))
        out.append(Finding(
            claim=f"Ablating the most selective units of {layer} reduces the shift invariance of "
                  "higher layers more than random (below their 95 % range) or least-selective "
                  "ablation.",
            reproduced=bool(most < rnd_low and most < least),
            numbers=f"k={k}, change of invariance vs intact averaged over layers "
                    f"{', '.join(dict.fromkeys(inv['layer']))} and shifts "
                    f"{sorted(inv['shift_px'].unique().tolist())} px: most {most:+.4f}.",
            control=f"random sets {float(change.get('random', np.nan)):+.4f} (lower end of the "
                    f"95 % range {rnd_low:+.4f}); least selective {least:+.4f}.",
            analysis=ANALYSIS,
            evidence="in-silico",
            criterion="The most-selective ablation's change of invariance is below the lower end "
                      "of the random sets' 95 % range and below the least-selective change.",
        ))
    return out


# --------------------------------------------------------------------------------------------
# Figures and report
# --------------------------------------------------------------------------------------------

def plot_preferred_histograms(tuning: OrientationTuning):
    """Histogram of preferred orientations of selective units per layer."""
    import matplotlib.pyplot as plt

    names = list(tuning.layers)
    fig, axes = plt.subplots(1, len(names), figsize=(2.4 * len(names), 2.3), squeeze=False)
    step = float(np.diff(tuning.orientations).min()) if len(tuning.orientations) > 1 else 7.5
    bins = np.append(tuning.orientations, 180.0) - step / 2
    for ax, n in zip(axes[0], names, strict=True):
        lt = tuning[n]
        ax.hist(lt.preferred[lt.selective], bins=bins, color="C0")
        ax.set_title(f"{n} ({int(lt.selective.sum())} sel.)", fontsize=8)
        ax.set_xticks([0, 45, 90, 135])
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("units")
    fig.supxlabel("preferred orientation (deg; 0 = horizontal stripes)", fontsize=8)
    fig.tight_layout()
    return fig


def plot_dynamics(dyn: pd.DataFrame):
    """Mean OSI (left) and fraction of selective units (right) per layer over epochs, with the
    test accuracy of each checkpoint (dashed, right axes)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    acc = dyn.groupby("epoch")["test_accuracy"].first()
    for ax, col, label in ((axes[0], "osi_mean", "mean OSI"),
                           (axes[1], "fraction_selective", "fraction selective")):
        for layer, g in dyn.groupby("layer", sort=False):
            ax.plot(g["epoch"], g[col], "o-", ms=3, label=layer)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_ylim(0, 1)
        twin = ax.twinx()
        twin.plot(acc.index, acc.values, "k--", lw=1.5, label="test accuracy")
        twin.set_ylim(0, 1)
        twin.set_ylabel("test accuracy", fontsize=8)
    h1, l1 = axes[0].get_legend_handles_labels()
    axes[0].legend(h1 + [plt.Line2D([], [], color="k", ls="--")], l1 + ["test accuracy"],
                   fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def plot_networks(nets: pd.DataFrame):
    """Lower-layer mean OSI vs test accuracy, one point per network."""
    import matplotlib.pyplot as plt

    low = _lower(nets, int(nets["layer_rank"].max()) + 1)
    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    ax.scatter(low["osi_mean"], low["test_accuracy"], color="C1")
    for r in low.itertuples():
        ax.annotate(r.model.removeprefix("zoo:"), (r.osi_mean, r.test_accuracy),
                    fontsize=6, xytext=(3, 2), textcoords="offset points")
    ax.set_xlabel("lower-layer mean OSI")
    ax.set_ylabel("test accuracy")
    fig.tight_layout()
    return fig


def plot_twins(twins: pd.DataFrame):
    """Selective fraction per layer, trained (solid) vs untrained twin (dashed), per network."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    for i, (net, g) in enumerate(twins.groupby("network", sort=False)):
        ax.plot(g["layer_rank"], g["fraction_selective"], "o-", color=f"C{i}", label=net)
        ax.plot(g["layer_rank"], g["fraction_selective_untrained"], "s--", color=f"C{i}",
                alpha=0.6)
    ax.set_xlabel("layer (stem, then the end of each stage)")
    ax.set_ylabel("fraction selective")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, title="solid: trained, dashed: untrained", title_fontsize=7)
    fig.tight_layout()
    return fig


def _add_to_report(res: OrientationResult, report) -> None:
    cfg = res.config
    where = "centre of the map" if cfg.unit == "center" else "mean over positions"
    sec = report.section(
        "Orientation selectivity and its causal role (Ukita 2020)",
        f"Gratings at {len(cfg.orientations())} orientations (every {cfg.orientation_step:g} "
        f"deg), spatial frequencies {cfg.spatial_freqs} {cfg.sf_unit} and phases {cfg.phases} "
        f"deg were shown to {cfg.model} (accuracy {res.extras['test_accuracy']:.3f}: "
        f"{res.extras['accuracy_measure']}). A unit "
        f"is one channel read at the {where}; it is selective when its "
        f"{cfg.statistic.replace('_', ' ')} beats {cfg.n_shuffles} "
        f"orientation-shuffled controls (p < {cfg.alpha}) and its OSI is at least "
        f"{cfg.min_osi:.2f}.",
    )
    sec.figure(plot_osi_distributions(res.tuning),
               "OSI of responsive units per layer (left) and the fraction of units selective "
               "against the shuffled-orientation null (right).")
    sec.figure(plot_preferred_histograms(res.tuning),
               "Preferred orientations of the selective units of each layer.")
    shown = list(res.tuning.layers)[:2]
    sec.figure(plot_tuning_curves([res.tuning[n] for n in shown], n_examples=cfg.n_examples),
               f"Tuning curves of the most selective units of {' and '.join(shown)} (one row "
               "per layer, normalised to the peak; dashed line = preferred orientation; "
               "* = selective).")
    sec.table(res.tables["tuning_summary"], "Per-layer orientation tuning summary.")
    if "dynamics" in res.tables:
        sub = sec.subsection("Training dynamics")
        sub.figure(plot_dynamics(res.tables["dynamics"]),
                   "Mean OSI (left) and fraction of orientation-selective units (right) per "
                   "layer across the epoch checkpoints (solid) and the test accuracy of each "
                   "checkpoint (dashed).")
        sub.table(res.tables["dynamics"][["epoch", "layer", "fraction_selective", "osi_mean",
                                          "test_accuracy"]], "Selectivity over training.")
    if "network_correlation" in res.tables:
        sub = sec.subsection("Across networks")
        sub.figure(plot_networks(res.tables["networks"]),
                   f"Mean OSI of each network's first {cfg.n_lower} spatial layers against its "
                   "test accuracy.")
        sub.table(res.tables["network_correlation"],
                  "Correlation of lower-layer selectivity with test accuracy across networks.")
    elif "networks" in res.tables:
        nets = res.tables["networks"]
        sub = sec.subsection("Across networks")
        sub.table(nets[["model", "layer", "fraction_selective", "osi_mean", "test_accuracy",
                        "accuracy_note"]],
                  "Selectivity per network and layer (fewer than 3 networks with a measured "
                  "accuracy: no correlation).")
    if "untrained_twins" in res.tables:
        sub = sec.subsection("Trained networks and their untrained twins")
        sub.figure(plot_twins(res.tables["untrained_twins"]),
                   "Fraction of orientation-selective units per layer of each trained network "
                   "(solid) and of the same architecture with random weights (dashed).")
        sub.table(res.tables["untrained_twins"], "Selectivity per layer, trained vs untrained.")
    if res.ablation is not None:
        sub = sec.subsection(f"Ablation of {res.ablation.layer}")
        sub.figure(plot_accuracy_drops(res.ablation.accuracy),
                   f"Test-accuracy drop after zeroing k units of {res.ablation.layer}: most "
                   f"selective, {cfg.n_random} random draws (95 % range) and least selective "
                   "(bootstrap 95 % CI over test images).")
        sub.table(res.ablation.accuracy, "Accuracy drop per condition and k.")
        if len(res.ablation.invariance):
            sub.figure(plot_shift_invariance(res.ablation.invariance),
                       "Shift invariance (correlation of a layer's response to an image and its "
                       "shifted copy, 4 directions) of the higher layers for the intact network "
                       "and after each ablation (largest k).")

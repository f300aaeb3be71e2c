"""The optimization loop: Adam on the image parameters, with priors, progress, checkpoints, resume.

A checkpoint holds the parameters, the optimizer state, the jitter generator state and the
history, so a resumed run continues exactly where the interrupted one stopped (bit-identical
on CPU). It is written atomically: a crash during the write keeps the previous checkpoint.
A NaN/inf loss stops the run with the step and the most likely cause.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from cortexmap.errors import CortexmapError
from cortexmap.rsa.torch_rdm import mean_abs_offdiagonal, rdm_correlations
from cortexmap.synthesis.objective import LayerRDMObjective
from cortexmap.synthesis.parameterization import ImageParameterization
from cortexmap.synthesis.priors import PriorConfig, jitter, range_penalty, total_variation
from cortexmap.utils.io import atomic_path
from cortexmap.utils.progress import make_progress

HISTORY_COLUMNS = ["step", "loss", "orthogonality_loss", "mean_abs_r", "tv", "range"]


@dataclass
class OptimizationResult:
    """Final images (n, 3, H, W) float32 on CPU in [0, 1], and one history row per step."""

    images: torch.Tensor
    history: pd.DataFrame
    resumed_from: int
    steps: int


def _save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _read_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable or truncated file
        raise CortexmapError(
            f"Checkpoint {path} cannot be read ({exc}); delete it to start over."
        ) from exc


def checkpoint_fingerprint(path: str | os.PathLike) -> str | None:
    """The settings fingerprint a synthesis checkpoint was written with (None if unreadable)."""
    try:
        return _read_checkpoint(Path(path)).get("fingerprint")
    except CortexmapError:
        return None


def _load_checkpoint(path: Path, fingerprint: str | None) -> dict:
    state = _read_checkpoint(path)
    if fingerprint is not None and state.get("fingerprint") != fingerprint:
        raise CortexmapError(
            f"Checkpoint {path} was written by a run with different settings (model, weights, "
            "layers, image count or size, parameterization, seed); delete it, pass resume=False "
            "(--no-resume), or restore the original settings."
        )
    return state


def _diagnose_nan(
    objective: LayerRDMObjective, param: ImageParameterization, step: int, lr: float
) -> str:
    """Say why the loss is not finite: diverged parameters, a broken model, or a dead layer."""
    where = f"The synthesis loss became NaN/inf at step {step}"
    with torch.no_grad():
        if any(not torch.isfinite(p).all() for p in param.parameters()):
            return (f"{where}: the image parameters diverged. Likely cause: the learning rate "
                    f"(lr={lr:g}) is too high; lower it (e.g. lr={lr / 10:g}).")
        images = param()
        if not torch.isfinite(images).all():
            return f"{where}: the images contain NaN/inf. Lower the learning rate (lr={lr:g})."
        feats = objective.features(images)
        for name, f in feats.items():
            if not torch.isfinite(f).all():
                return (f"{where}: the model's output at layer {name!r} contains NaN/inf for "
                        "finite images. Likely cause: broken weights or an unstable operation in "
                        "the model; check the checkpoint or drop that layer.")
        for name, f in feats.items():
            flat = f.reshape(f.shape[0], -1).double()
            if (flat.std(dim=1) == 0).any():
                return (f"{where}: layer {name!r} gives constant activations for some images "
                        "(e.g. all ReLUs dead), so its correlation-distance RDM is undefined. "
                        "Drop that layer, use metric='euclidean', or lower the learning rate.")
    return (f"{where}. Likely cause: the learning rate (lr={lr:g}) is too high for this model; "
            "lower it, or add a total-variation prior.")


def synthesize(
    objective: LayerRDMObjective,
    param: ImageParameterization,
    steps: int = 500,
    lr: float = 0.05,
    priors: PriorConfig | None = None,
    seed: int = 0,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 50,
    resume: bool = True,
    fingerprint: str | None = None,
    progress: bool = True,
) -> OptimizationResult:
    """Optimize ``param``'s images so the objective's layer RDMs decorrelate.

    Each step: images = param(), shifted by a random jitter; loss = mean squared correlation
    between every pair of layer RDMs + tv_weight * TV + range_weight * range penalty; one Adam
    step. ``checkpoint`` (a file path) is written every ``checkpoint_every`` steps and at the
    end; with ``resume`` an existing checkpoint (whose ``fingerprint`` matches) is continued.

    Returns the final images (no jitter) and the per-step history
    (columns: step, loss, orthogonality_loss, mean_abs_r, tv, range).
    """
    priors = priors or PriorConfig()
    if steps < 0:
        raise CortexmapError(f"steps must be >= 0; got {steps}.")
    if lr <= 0:
        raise CortexmapError(f"lr must be positive; got {lr}.")
    if param.n < 3:
        raise CortexmapError(
            f"Synthesis needs at least 3 images for an RDM; got {param.n}. Use n_images >= 3 "
            "(16 in the paper)."
        )
    device = objective.mean.device
    param = param.to(device)
    optimizer = torch.optim.Adam(param.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(int(seed))
    history: list[dict] = []
    start = 0
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and ckpt.exists() and resume:
        state = _load_checkpoint(ckpt, fingerprint)
        param.load_state_dict(state["param"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        history = list(state["history"])
        start = int(state["step"])
    resumed_from = start

    def save(step: int) -> None:
        if ckpt is not None:
            _save_checkpoint(ckpt, {
                "step": step, "param": param.state_dict(), "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(), "history": history,
                "fingerprint": fingerprint,
            })

    bar = make_progress() if progress else None
    task = None
    if bar is not None:
        bar.start()
        task = bar.add_task("synthesizing", total=steps, completed=min(start, steps), info="")
    try:
        for step in range(start, steps):
            optimizer.zero_grad(set_to_none=True)
            images = param()
            loss_orth, vecs = objective(jitter(images, priors.jitter, generator))
            loss = loss_orth
            # priors with weight 0 are only logged: kept out of the graph (saves their backward)
            with torch.set_grad_enabled(priors.tv_weight > 0):
                tv = total_variation(images)
            with torch.set_grad_enabled(priors.range_weight > 0):
                rng = range_penalty(images)
            if priors.tv_weight > 0:
                loss = loss + priors.tv_weight * tv
            if priors.range_weight > 0:
                loss = loss + priors.range_weight * rng
            if not torch.isfinite(loss):
                raise CortexmapError(_diagnose_nan(objective, param, step, lr))
            loss.backward()
            if any(p.grad is not None and not torch.isfinite(p.grad).all()
                   for p in param.parameters()):
                raise CortexmapError(
                    _diagnose_nan(objective, param, step, lr).replace("loss", "gradient", 1)
                )
            optimizer.step()
            with torch.no_grad():
                mar = float(mean_abs_offdiagonal(rdm_correlations(vecs)))
            history.append({
                "step": step, "loss": loss.item(), "orthogonality_loss": loss_orth.item(),
                "mean_abs_r": mar, "tv": tv.item(), "range": rng.item(),
            })
            if bar is not None:
                bar.update(task, advance=1, info=f"loss {loss.item():.4f}  mean|r| {mar:.3f}")
            if ckpt is not None and checkpoint_every > 0 and (step + 1) % checkpoint_every == 0:
                save(step + 1)
    finally:
        if bar is not None:
            bar.stop()
    if ckpt is not None and start < steps:
        save(steps)
    with torch.no_grad():
        final = param().clamp(0.0, 1.0).float().cpu()
    return OptimizationResult(
        images=final, history=pd.DataFrame(history, columns=HISTORY_COLUMNS),
        resumed_from=resumed_from, steps=steps,
    )

"""The training loop: seeded, checkpointed, resumable, with a progress bar of loss and accuracy.

Data are drawn fresh every epoch from the procedural stream (epoch ``e`` uses train images
``e*images_per_epoch ..``), so a network never sees an image twice and resuming needs no stored
dataset. Each epoch re-seeds the torch RNG from ``(seed, epoch)``; together with the saved
optimizer and scheduler state this makes an interrupted-and-resumed run bit-identical to an
uninterrupted one.

Folder layout written by :func:`train`::

    outdir/
      config.json, provenance.json
      last.pt                      full state after the latest finished epoch (resume point)
      checkpoints/ep{E}.pt         model + history at each epoch in ``checkpoint_epochs``
      final.pt                     trained model (after the linear probe for simclr/untrained)
      history.parquet/.csv         one row per epoch
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, Field, field_validator
from torch import nn

from cortexmap.errors import CortexmapError
from cortexmap.models.architectures import ARCHITECTURES, build, feature_dim, fold_batchnorm
from cortexmap.models.checkpoint import (
    CHECKPOINT_FORMAT,
    DATA_MEAN,
    DATA_STD,
    attach_preprocessing,
    load_checkpoint,
    save_checkpoint,
)
from cortexmap.models.predict import predict
from cortexmap.stimuli.procedural import CLASSES, generate
from cortexmap.train.objectives import (
    ProjectionHead,
    fit_linear_probe,
    simclr_step,
    supervised_step,
)
from cortexmap.utils.io import write_json, write_table
from cortexmap.utils.progress import make_progress
from cortexmap.utils.provenance import write_provenance


class TrainConfig(BaseModel):
    """Everything that determines a training run (saved as config.json and in each checkpoint)."""

    arch: str = "alexnet"
    objective: Literal["supervised", "simclr", "untrained"] = "supervised"
    epochs: int = Field(10, ge=0)
    images_per_epoch: int = Field(10240, ge=1)
    batch_size: int = Field(128, ge=2)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    warmup_epochs: float = Field(0.5, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    temperature: float = Field(0.2, gt=0)
    train_norm: bool = True  # BatchNorm in AlexNet/VGG while training, folded away afterwards
    # contrast augmentation: this fraction of training images is shown at a contrast drawn
    # log-uniformly from contrast_range (None = always full contrast)
    contrast_range: tuple[float, float] | None = None
    contrast_fraction: float = Field(0.5, ge=0, le=1)

    @field_validator("contrast_range")
    @classmethod
    def _valid_range(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not 0 < v[0] <= v[1] <= 1:
            raise ValueError(f"contrast_range must satisfy 0 < low <= high <= 1, got {v}")
        return v
    seed: int = 0
    data_seed: int = 0
    size: int = 64
    n_val: int = Field(1024, ge=1)
    probe_images: int = Field(5120, ge=10)
    checkpoint_epochs: list[int] = Field(default_factory=list)
    num_threads: int | None = None

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, v: str) -> str:
        if v not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {v!r}; choose one of {list(ARCHITECTURES)}")
        return v


@dataclass
class TrainResult:
    """model (eval mode, with ``cortexmap_preprocessing``), per-epoch ``history``, ``outdir``."""

    model: nn.Module
    history: pd.DataFrame
    outdir: Path
    train_seconds: float


def normalize(images: np.ndarray) -> torch.Tensor:
    """(n, H, W, 3) float in [0, 1] -> (n, 3, H, W) float32 normalised with DATA_MEAN/DATA_STD."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    mean = torch.tensor(DATA_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(DATA_STD).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def epoch_data(config: TrainConfig, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised training images and labels (n,) for 1-based ``epoch``.

    Images are (n, 3, S, S); for SimCLR (n, 2, 3, S, S): each image and its object in a second
    scene (``generate(view=1)``), so the positive pair shares the object but not the background
    photograph, which would otherwise be the easiest thing to match.
    """
    n, start = config.images_per_epoch, (epoch - 1) * config.images_per_epoch
    contrast = None
    if config.contrast_range is not None:  # one level per image, shared by its views
        rng = np.random.default_rng([config.data_seed, epoch, 7])
        lo, hi = np.log(config.contrast_range[0]), np.log(config.contrast_range[1])
        contrast = np.exp(rng.uniform(lo, hi, n)).astype(np.float32)
        contrast[rng.random(n) >= config.contrast_fraction] = 1.0
    xs = []
    for view in (0, 1) if config.objective == "simclr" else (0,):
        imgs, labels, _, _ = generate("train", n, config.data_seed, config.size, start=start,
                                      view=view)
        if contrast is not None:
            m = imgs.mean(axis=(1, 2, 3), keepdims=True)
            imgs = m + contrast[:, None, None, None] * (imgs - m)  # as procedural.apply_contrast
        xs.append(normalize(imgs))
    return (xs[0] if len(xs) == 1 else torch.stack(xs, 1)), torch.from_numpy(labels)


def _check_writable(outdir: Path) -> None:
    try:
        (outdir / "checkpoints").mkdir(parents=True, exist_ok=True)
        probe = outdir / "checkpoints" / ".write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CortexmapError(
            f"Checkpoint folder {outdir} is not writable ({exc.strerror or exc}); choose another "
            "output folder (--out) or fix its permissions."
        ) from exc


@torch.no_grad()
def evaluate(
    model: nn.Module, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
    batch_size: int = 512,
) -> float:
    """Top-1 accuracy of ``model`` on images (n, H, W, 3) in [0, 1] (or normalised tensors)."""
    x = images if isinstance(images, torch.Tensor) else normalize(images)
    y = torch.as_tensor(labels)
    was_training = model.training
    model.eval()
    correct = int((predict(model, x, batch_size) == y.numpy()).sum())
    model.train(was_training)
    return correct / max(len(x), 1)


def _lr_lambda(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    total = max(config.epochs * steps_per_epoch, 1)
    warm = int(config.warmup_epochs * steps_per_epoch)

    def f(step: int) -> float:  # linear warm-up, cosine decay to 2 % of the peak
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(total - warm, 1)
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return f


def train(
    config: TrainConfig,
    outdir: str | os.PathLike,
    resume: bool = True,
    progress: bool = True,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    name: str | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train ``config.arch`` with ``config.objective``; return the trained model and history.

    ``resume``: continue from ``outdir/last.pt`` if it exists and was written with the same
    config (``epochs`` may grow); otherwise start afresh. ``callback(epoch, row)`` runs after each
    finished epoch (and after its checkpoint is saved). ``stop_after=E`` ends training after
    epoch E of the planned ``config.epochs`` (the learning-rate schedule stays the planned one,
    so a later call without it resumes exactly). Self-supervised and untrained networks
    get a linear probe (``classifier`` fitted on frozen penultimate features of
    ``probe_images`` training images) so accuracy is defined for every network.
    """
    out = Path(outdir)
    _check_writable(out)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    name = name or f"{config.arch}_{config.objective}_s{config.seed}"

    model = build(config.arch, len(CLASSES), seed=config.seed, train_norm=config.train_norm)
    head = ProjectionHead(feature_dim(model)) if config.objective == "simclr" else None
    params = list(model.parameters()) + (list(head.parameters()) if head else [])
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(config.images_per_epoch / config.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(config, steps_per_epoch))
    history: list[dict[str, float]] = []
    start_epoch, elapsed = 1, 0.0

    val_imgs, val_labels, _, _ = generate("val", config.n_val, config.data_seed, config.size)
    x_val, y_val = normalize(val_imgs), torch.from_numpy(val_labels)

    last = out / "last.pt"
    if resume and last.exists():
        ckpt = load_checkpoint(last)
        saved = TrainConfig(**ckpt["config"]).model_dump(exclude={"epochs", "num_threads"})
        if saved != config.model_dump(exclude={"epochs", "num_threads"}):
            raise CortexmapError(
                f"{last} was written by a different training config; use another output "
                "folder or resume=False (--no-resume) to start afresh."
            )
        if ckpt["epochs_planned"] != config.epochs:
            # the cosine schedule depends on the planned length: only an unchanged plan is exact
            raise CortexmapError(
                f"{last} was planned for {ckpt['epochs_planned']} epochs, not {config.epochs}; "
                "resume with the same --epochs or start afresh with --no-resume."
            )
        model.load_state_dict(ckpt["model"])
        if head is not None:
            head.load_state_dict(ckpt["head"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        history = list(ckpt["history"])
        start_epoch, elapsed = ckpt["epoch"] + 1, ckpt.get("train_seconds", 0.0)

    def state(epoch: int, full: bool) -> dict[str, Any]:
        s: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT, "arch": config.arch, "num_classes": len(CLASSES),
            "objective": config.objective, "config": config.model_dump(mode="json"),
            "epoch": epoch, "epochs_planned": config.epochs, "history": list(history),
            # resume points keep the training-time BatchNorm; shipped weights have it folded
            "train_norm": full and config.train_norm,
            "model": {k: v.detach().clone() for k, v in
                      (model if full else fold_batchnorm(model)).state_dict().items()},
            "preprocessing": {"size": config.size, "mean": DATA_MEAN, "std": DATA_STD},
            "train_seconds": elapsed, "name": name,
        }
        if full:
            s["optimizer"] = opt.state_dict()
            s["scheduler"] = sched.state_dict()
            if head is not None:
                s["head"] = head.state_dict()
        return s

    if start_epoch == 1:
        write_json(out / "config.json", config.model_dump(mode="json"))
        write_provenance(out, config=config, seed=config.seed)
        if 0 in config.checkpoint_epochs:
            row = {"epoch": 0, "train_loss": float("nan"), "train_acc": float("nan"),
                   "val_acc": evaluate(model, x_val, y_val) if config.objective == "supervised"
                   else float("nan"), "lr": 0.0, "seconds": 0.0, "images_seen": 0}
            history.append(row)
            save_checkpoint(out / "checkpoints" / "ep0.pt", state(0, full=False))

    if stop_after is not None and stop_after < 0:
        raise CortexmapError(f"stop_after must be >= 0, got {stop_after}.")
    last_epoch = config.epochs if stop_after is None else min(stop_after, config.epochs)
    if start_epoch - 1 > last_epoch:
        raise CortexmapError(
            f"{last} is already at epoch {start_epoch - 1}, past stop_after={stop_after}; use "
            "another output folder or resume=False to train afresh."
        )
    bar = make_progress() if progress else None
    if bar is not None:
        bar.start()
    # the next epoch's images render in a background thread while this epoch trains (the
    # renderer releases the GIL); the data depend only on the epoch number, so results are unchanged
    pool = ThreadPoolExecutor(max_workers=1)
    upcoming = pool.submit(epoch_data, config, start_epoch) if start_epoch <= last_epoch else None
    try:
        for epoch in range(start_epoch, last_epoch + 1):
            torch.manual_seed(config.seed * 100_003 + epoch)
            t0 = time.perf_counter()
            x, y = upcoming.result()
            upcoming = pool.submit(epoch_data, config, epoch + 1) if epoch < last_epoch else None
            order = torch.randperm(len(x))
            model.train()
            if head is not None:
                head.train()
            loss_sum, correct, seen = 0.0, 0, 0
            task = bar.add_task(f"{name} epoch {epoch}/{config.epochs}", total=steps_per_epoch,
                                info="") if bar is not None else None
            for b in range(steps_per_epoch):
                idx = order[b * config.batch_size : (b + 1) * config.batch_size]
                xb, yb = x[idx], y[idx]
                if config.objective == "supervised":
                    loss, ok = supervised_step(model, xb, yb, config.label_smoothing)
                    n_pred = len(xb)
                else:
                    loss, ok = simclr_step(model, head, xb, config.temperature)
                    n_pred = 2 * len(xb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                loss_sum += float(loss.detach()) * len(xb)
                correct += ok
                seen += n_pred
                if bar is not None:
                    bar.update(task, advance=1,
                               info=f"loss {loss_sum / (b * config.batch_size + len(xb)):.3f} "
                                    f"acc {correct / seen:.3f}")
            elapsed += time.perf_counter() - t0
            row = {
                "epoch": epoch, "train_loss": loss_sum / len(x), "train_acc": correct / seen,
                "val_acc": evaluate(model, x_val, y_val) if config.objective == "supervised"
                else float("nan"),
                "lr": float(sched.get_last_lr()[0]), "seconds": elapsed,
                "images_seen": epoch * config.images_per_epoch,
            }
            history.append(row)
            if bar is not None:
                bar.update(task, info=f"loss {row['train_loss']:.3f} acc {row['train_acc']:.3f} "
                                      f"val {row['val_acc']:.3f}")
            if epoch in config.checkpoint_epochs:
                save_checkpoint(out / "checkpoints" / f"ep{epoch}.pt", state(epoch, full=False))
            save_checkpoint(last, state(epoch, full=True))
            if callback is not None:
                callback(epoch, row)
    finally:
        if upcoming is not None:
            upcoming.cancel()
        pool.shutdown(wait=True)
        if bar is not None:
            bar.stop()

    if config.objective != "supervised":
        # linear probe on frozen features so accuracy (and contrast-accuracy) is defined
        t0 = time.perf_counter()
        imgs, labels, _, _ = generate("train", config.probe_images, config.data_seed + 7919,
                                      config.size)
        fit_linear_probe(model, normalize(imgs), torch.from_numpy(labels), len(CLASSES),
                         seed=config.seed)
        elapsed += time.perf_counter() - t0
        history.append({"epoch": last_epoch, "train_loss": float("nan"),
                        "train_acc": float("nan"), "val_acc": evaluate(model, x_val, y_val),
                        "lr": 0.0, "seconds": elapsed,
                        "images_seen": last_epoch * config.images_per_epoch,
                        "probe": 1.0})
    final = state(last_epoch, full=False)
    final["linear_probe"] = config.objective != "supervised"
    save_checkpoint(out / "final.pt", final)
    hist = pd.DataFrame(history)
    write_table(hist, out / "history")
    model = fold_batchnorm(model.eval()).eval()
    attach_preprocessing(model, config.size, name)
    return TrainResult(model=model, history=hist, outdir=out, train_seconds=elapsed)

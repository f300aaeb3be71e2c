"""Recipes of the bundled zoo and the builder that trains and packages them.

``build_zoo(names)`` trains each recipe into ``workdir/NAME`` (resumable: rerunning after an
interruption continues from the last finished epoch; a finished run is not retrained), then
packages it into the zoo folder: float16 weights ``NAME.pt`` (+ ``NAME@epE.pt`` epoch
checkpoints), a model card ``NAME.md``/``NAME.json`` with test accuracy at the contrast levels
of :data:`CARD_CONTRASTS`, and the index ``index.json``.

Reproduce the shipped zoo with ``python scripts/train_zoo.py`` (or ``cortexmap train-zoo``).
"""

from __future__ import annotations

import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from cortexmap.errors import CortexmapError
from cortexmap.models.checkpoint import (
    DATA_MEAN,
    DATA_STD,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from cortexmap.stimuli.procedural import CLASSES, apply_contrast, generate
from cortexmap.train.loop import TrainConfig, evaluate, normalize, train
from cortexmap.utils.io import write_json, write_text
from cortexmap.utils.progress import track

CARD_CONTRASTS: tuple[float, ...] = (1.0, 0.5, 0.1, 0.05, 0.01)
N_TEST = 2000
COMMAND = "python scripts/train_zoo.py"
# Optimiser state and the SimCLR head stay in the run folder; the zoo ships the network only.
_TRAINING_STATE = ("optimizer", "scheduler", "head")

# One torch thread per run: a run's result does not depend on the machine's core count.
_SUP = dict(objective="supervised", num_threads=1, batch_size=64, lr=3e-3, epochs=10,
            images_per_epoch=8192)
_SSL = dict(objective="simclr", num_threads=1, batch_size=128, lr=2e-3, epochs=10,
            images_per_epoch=8192)
ZOO_RECIPES: dict[str, TrainConfig] = {
    "alexnet_sup_s0": TrainConfig(arch="alexnet", seed=0, checkpoint_epochs=[0, 1, 2, 4, 6, 10],
                                  **_SUP),
    "alexnet_sup_s1": TrainConfig(arch="alexnet", seed=1, **_SUP),
    # half the training images at a random contrast of 1-100 %: graded low-contrast accuracy
    "alexnet_supcontrast_s0": TrainConfig(arch="alexnet", seed=0, contrast_range=(0.01, 1.0),
                                          **_SUP),
    "vgg_sup_s0": TrainConfig(arch="vgg", seed=0, **_SUP),
    "resnet_sup_s0": TrainConfig(arch="resnet", seed=0, **_SUP),
    "vit_sup_s0": TrainConfig(arch="vit", seed=0, **{**_SUP, "epochs": 12}, weight_decay=0.05),
    "alexnet_simclr_s0": TrainConfig(arch="alexnet", seed=0, **_SSL),
    "vgg_simclr_s0": TrainConfig(arch="vgg", seed=0, **_SSL),
    "resnet_simclr_s0": TrainConfig(arch="resnet", seed=0, **_SSL),
    "alexnet_untrained_s0": TrainConfig(arch="alexnet", objective="untrained", seed=0, epochs=0,
                                        num_threads=1),
    "resnet_untrained_s0": TrainConfig(arch="resnet", objective="untrained", seed=0, epochs=0,
                                       num_threads=1),
}


def default_zoo_dir() -> Path:
    """The zoo folder shipped inside the package (``cortexmap/data/zoo``)."""
    return Path(__file__).resolve().parents[1] / "data" / "zoo"


def contrast_accuracy(
    model: torch.nn.Module, n: int = N_TEST, seed: int = 0, size: int = 64,
    contrasts: tuple[float, ...] = CARD_CONTRASTS,
) -> dict[str, float]:
    """Test-split accuracy at each contrast: {"100%": acc, "50%": ..., "1%": ...}."""
    imgs, labels, _, _ = generate("test", n, seed, size)
    out = {}
    for c in contrasts:
        out[f"{c * 100:g}%"] = round(evaluate(model, normalize(apply_contrast(imgs, c)), labels), 4)
    return out


def _half(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def _fmt(v: float) -> str:
    return "-" if v != v else f"{v:.3f}"  # NaN (no training yet at epoch 0) as a dash


def _card_markdown(card: dict[str, Any]) -> str:
    # highest contrast first (a card read back from JSON has its keys sorted as text)
    acc = dict(sorted(card["test_accuracy"].items(), key=lambda kv: -float(kv[0].rstrip("%"))))
    lines = [
        f"# {card['name']}",
        "",
        f"- **Architecture:** `{card['arch']}` ({card['n_params']:,} parameters; top-level "
        f"layers {', '.join(f'`{x}`' for x in card['layers'])})",
        f"- **Objective:** {card['objective_text']}",
        f"- **Classifier:** {card['classifier_text']}",
        (f"- **Training:** {card['epochs']} epochs x {card['images_per_epoch']} fresh procedural "
         f"images (seed {card['seed']}, data seed {card['data_seed']}), batch "
         f"{card['batch_size']}, AdamW lr {card['lr']}, weight decay {card['weight_decay']}, "
         + (f"cosine schedule planned for {card['epochs_planned']} epochs and stopped after "
            f"{card['epochs']} (accuracy bar passed; shared-CPU time budget)"
            if card.get("epochs_planned", card["epochs"]) != card["epochs"] else "cosine schedule")
         if card["epochs"] else
         f"- **Training:** none; weights are the seeded initialisation (seed {card['seed']})")
        + f"; {card['train_seconds']:.0f} s on {card['machine']}",
        f"- **Command:** `{card['command']}`",
        f"- **Input:** {card['size']}x{card['size']} RGB in [0, 1], normalised with mean "
        f"{list(card['mean'])} and std {list(card['std'])}; classes: {', '.join(CLASSES)}",
        f"- **Epoch checkpoints:** {', '.join(str(e) for e in card['checkpoints']) or 'none'}",
        "",
        f"Test accuracy ({card['n_test']} procedural test images; chance 10 %):",
        "",
        "| contrast | " + " | ".join(acc) + " |",
        "|---|" + "---|" * len(acc),
        "| accuracy | " + " | ".join(f"{v * 100:.1f} %" for v in acc.values()) + " |",
    ]
    if card["history"]:
        lines += ["", "Training history:", "", "| epoch | train loss | train acc | val acc |",
                  "|---|---|---|---|"]
        for h in card["history"]:
            lines.append(f"| {h['epoch']} | {_fmt(h['train_loss'])} | {_fmt(h['train_acc'])} | "
                         f"{_fmt(h['val_acc'])} |")
    return "\n".join(lines) + "\n"


def package(
    name: str, run_dir: str | os.PathLike, zoo_dir: str | os.PathLike, n_test: int = N_TEST
) -> dict[str, Any]:
    """Copy a finished run into the zoo: fp16 weights, epoch checkpoints and the model card.

    The card's accuracies are measured on ``n_test`` test-split images with the float16-rounded
    weights, i.e. exactly the network that ships.
    """
    run, zoo = Path(run_dir), Path(zoo_dir)
    ckpt = load_checkpoint(run / "final.pt")
    cfg = TrainConfig(**ckpt["config"])
    model = model_from_checkpoint(ckpt, run / "final.pt")
    # evaluate the float16-rounded weights, i.e. exactly what is shipped
    model.load_state_dict({k: v.float() for k, v in _half(model.state_dict()).items()})
    acc = contrast_accuracy(model, n=n_test, size=cfg.size)
    epochs = []
    for e in sorted(cfg.checkpoint_epochs):
        src = run / "checkpoints" / f"ep{e}.pt"
        if src.exists():
            c = load_checkpoint(src)
            c["model"] = _half(c["model"])
            c["name"] = f"{name}@ep{e}"
            save_checkpoint(zoo / f"{name}@ep{e}.pt", c, drop=_TRAINING_STATE)
            epochs.append(e)
    ckpt["model"] = _half(ckpt["model"])
    ckpt["name"] = name
    save_checkpoint(zoo / f"{name}.pt", ckpt, drop=_TRAINING_STATE)
    objective_text = {
        "supervised": "supervised 10-way classification (cross-entropy)" + (
            f"; {cfg.contrast_fraction:.0%} of training images at a contrast drawn log-uniformly "
            f"from {cfg.contrast_range[0]:.0%}-{cfg.contrast_range[1]:.0%}"
            if cfg.contrast_range else ""),
        "simclr": f"self-supervised SimCLR (NT-Xent, temperature {cfg.temperature}; views by "
                  "random resized crop, flip, colour/contrast jitter, 20 % greyscale)",
        "untrained": "none (random initialisation; an untrained control)",
    }[cfg.objective]
    classifier_text = (
        "trained end to end with the network" if cfg.objective == "supervised" else
        f"linear probe fitted on frozen penultimate features of {cfg.probe_images} training "
        "images (L-BFGS softmax regression); the rest of the network is not changed by it"
    )
    card = {
        "name": name, "arch": cfg.arch, "objective": cfg.objective,
        "objective_text": objective_text, "classifier_text": classifier_text,
        "linear_probe": cfg.objective != "supervised",
        "n_params": sum(p.numel() for p in model.parameters()),
        "layers": [n for n, _ in model.named_children()],
        "epochs": int(ckpt["epoch"]), "epochs_planned": cfg.epochs,
        "images_per_epoch": cfg.images_per_epoch, "seed": cfg.seed,
        "data_seed": cfg.data_seed, "batch_size": cfg.batch_size, "lr": cfg.lr,
        "weight_decay": cfg.weight_decay, "train_seconds": float(ckpt.get("train_seconds", 0.0)),
        "machine": f"{platform.machine()} CPU, {cfg.num_threads or torch.get_num_threads()} "
                   "torch thread(s), 2-core machine shared with other jobs",
        "command": f"{COMMAND} {name}", "size": cfg.size, "mean": DATA_MEAN, "std": DATA_STD,
        "checkpoints": epochs, "n_test": n_test, "test_accuracy": acc,
        "history": [
            {k: (None if isinstance(v, float) and v != v else v) for k, v in h.items()}
            for h in ckpt["history"] if "probe" not in h
        ],
        "packaged": datetime.now(UTC).isoformat(timespec="seconds"),
        "weights": f"{name}.pt", "config": cfg.model_dump(mode="json"),
    }
    write_json(zoo / f"{name}.json", card)
    hist_md = [{k: float("nan") if v is None else v for k, v in h.items()}
               for h in card["history"]]
    write_text(zoo / f"{name}.md", _card_markdown({**card, "history": hist_md}))
    return card


def refresh_cards(zoo_dir: str | os.PathLike) -> None:
    """Re-render every ``NAME.md`` from its ``NAME.json`` (after a change of the card layout)."""
    import json

    for card_file in sorted(Path(zoo_dir).glob("*.json")):
        if card_file.name != "index.json":
            card = json.loads(card_file.read_text())
            hist = [{k: float("nan") if v is None else v for k, v in h.items()}
                    for h in card["history"]]
            write_text(card_file.with_suffix(".md"), _card_markdown({**card, "history": hist}))


def write_index(zoo_dir: str | os.PathLike) -> Path:
    """Rewrite ``index.json`` from the model cards present in ``zoo_dir``."""
    import json

    zoo = Path(zoo_dir)
    entries = {}
    for card_file in sorted(zoo.glob("*.json")):
        if card_file.name == "index.json":
            continue
        card = json.loads(card_file.read_text())
        entries[card["name"]] = {
            k: card[k] for k in ("arch", "objective", "seed", "epochs", "weights", "checkpoints",
                                 "test_accuracy", "linear_probe", "n_params")
        }
    return write_json(zoo / "index.json", {"format": "cortexmap-zoo-v1", "models": entries})


def build_zoo(
    names: list[str] | None = None, workdir: str | os.PathLike = "runs/zoo_train",
    zoo_dir: str | os.PathLike | None = None, progress: bool = True,
) -> list[dict[str, Any]]:
    """Train (resumably) and package the named recipes (all by default); return their cards."""

    names = list(names or ZOO_RECIPES)
    unknown = [n for n in names if n not in ZOO_RECIPES]
    if unknown:
        raise CortexmapError(
            f"Unknown zoo recipe(s) {', '.join(unknown)}; valid: {', '.join(ZOO_RECIPES)}."
        )
    zoo = Path(zoo_dir) if zoo_dir else default_zoo_dir()
    cards = []
    for name in track(names, "zoo", enabled=progress):
        t0 = time.perf_counter()
        cfg = ZOO_RECIPES[name]
        run = Path(workdir) / name
        final = load_checkpoint(run / "final.pt") if (run / "final.pt").exists() else None
        done = final is not None and final["config"] == cfg.model_dump(mode="json") and \
            final["epoch"] == cfg.epochs
        if not done:
            def log(epoch: int, row: dict[str, float], name: str = name) -> None:
                print(f"{name} epoch {epoch}: " + ", ".join(
                    f"{k} {v:.4g}" for k, v in row.items() if k != "epoch"), flush=True)

            train(cfg, run, resume=True, progress=progress, name=name, callback=log)
        cards.append(package(name, run, zoo))
        write_index(zoo)
        print(f"{name}: {cards[-1]['test_accuracy']} ({time.perf_counter() - t0:.0f} s)",
              flush=True)
    return cards

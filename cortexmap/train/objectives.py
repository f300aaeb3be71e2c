"""Training objectives: supervised classification, SimCLR contrastive learning, linear probes.

All augmentations are batched tensor operations (one ``affine_grid`` for random resized crops and
flips, closed-form colour jitter), so the self-supervised objective costs two forward/backward
passes per image and nothing else of note.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cortexmap.models.architectures import feature_dim, features

OBJECTIVES = ("supervised", "simclr", "untrained")


def supervised_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0
) -> tuple[torch.Tensor, int]:
    """Cross-entropy loss and number of correct predictions for a batch x (n, 3, H, W), y (n,)."""
    logits = model(x)
    loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    return loss, int((logits.argmax(1) == y).sum())


def augment(x: torch.Tensor, min_scale: float = 0.35) -> torch.Tensor:
    """SimCLR-style views of a normalised batch x (n, 3, H, W): crop+resize, flip, colour.

    Random resized crop (area ``min_scale``..1, aspect 3/4..4/3) and horizontal flip in one
    ``affine_grid``/``grid_sample``; brightness, contrast and saturation jitter; 20 % greyscale.
    Uses the global torch RNG (the training loop seeds it per epoch).
    """
    n = x.shape[0]
    dev, dt = x.device, x.dtype
    area = torch.empty(n, device=dev).uniform_(min_scale, 1.0)
    log_r = torch.empty(n, device=dev).uniform_(math.log(3 / 4), math.log(4 / 3))
    ratio = torch.exp(log_r)
    sx = torch.sqrt(area * ratio).clamp(max=1.0)
    sy = torch.sqrt(area / ratio).clamp(max=1.0)
    tx = (torch.rand(n, device=dev) * 2 - 1) * (1 - sx)
    ty = (torch.rand(n, device=dev) * 2 - 1) * (1 - sy)
    flip = torch.where(torch.rand(n, device=dev) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=dev, dtype=dt)
    theta[:, 0, 0] = sx * flip
    theta[:, 0, 2] = tx
    theta[:, 1, 1] = sy
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    # colour jitter in normalised space: brightness shift, contrast and saturation scaling
    bright = torch.empty(n, 1, 1, 1, device=dev).uniform_(-0.4, 0.4)
    contrast = torch.empty(n, 1, 1, 1, device=dev).uniform_(0.6, 1.4)
    sat = torch.empty(n, 1, 1, 1, device=dev).uniform_(0.6, 1.4)
    grey = out.mean(dim=1, keepdim=True)
    sat = torch.where(torch.rand(n, 1, 1, 1, device=dev) < 0.2, torch.zeros_like(sat), sat)
    out = grey + sat * (out - grey)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return (mean + contrast * (out - mean) + bright).to(dt)


class ProjectionHead(nn.Sequential):
    """SimCLR projection MLP: features (n, d) -> (n, out_dim)."""

    def __init__(self, in_dim: int, hidden: int = 128, out_dim: int = 64) -> None:
        super().__init__(
            nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim)
        )


def nt_xent(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2
) -> tuple[torch.Tensor, int]:
    """Normalised-temperature cross-entropy (SimCLR) for paired projections (n, d) and (n, d).

    Returns the loss and how many of the 2n views pick their partner as the nearest other view.
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))  # a view is not its own positive
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    loss = F.cross_entropy(sim, target)
    return loss, int((sim.argmax(1) == target).sum())


def simclr_step(
    model: nn.Module, head: nn.Module, x: torch.Tensor, temperature: float = 0.2
) -> tuple[torch.Tensor, int]:
    """SimCLR loss; counts correct positive matches.

    x: (n, 3, H, W), two augmented views of each image, or (n, 2, 3, H, W) pairs of renderings
    of one object (see ``epoch_data``), one augmented view of each.
    """
    a, b = (x, x) if x.ndim == 4 else (x[:, 0], x[:, 1])
    v1, v2 = augment(a), augment(b)
    z = head(features(model, torch.cat([v1, v2])))
    return nt_xent(z[: len(x)], z[len(x):], temperature)


@torch.no_grad()
def extract_features(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Penultimate features (n, feature_dim) in eval mode."""
    was_training = model.training
    model.eval()
    out = torch.cat([features(model, x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


def fit_linear_probe(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int = 10,
    epochs: int = 60, weight_decay: float = 1e-4, seed: int = 0,
) -> float:
    """Replace ``model.classifier`` by a linear read-out fitted on frozen features.

    x (n, 3, H, W) normalised images, y (n,) labels. The features are standardised inside the
    fit and the scaling is folded back into the Linear layer, so the network stays a plain
    ``classifier(features(x))``. Full-batch L-BFGS on softmax cross-entropy. Returns training
    accuracy.
    """
    feats = extract_features(model, x)
    mu, sd = feats.mean(0), feats.std(0) + 1e-6
    z = (feats - mu) / sd
    gen = torch.Generator().manual_seed(seed)
    lin = nn.Linear(z.shape[1], num_classes)
    with torch.no_grad():
        lin.weight.normal_(0, 0.01, generator=gen)
        lin.bias.zero_()
    opt = torch.optim.LBFGS(lin.parameters(), lr=1, max_iter=epochs, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(lin(z), y) + weight_decay * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        w = lin.weight / sd  # fold standardisation into the layer
        b = lin.bias - (w * mu).sum(1)
        clf = nn.Linear(feature_dim(model), num_classes)
        clf.weight.copy_(w)
        clf.bias.copy_(b)
    model.classifier = clf
    with torch.no_grad():
        return float((lin(z).argmax(1) == y).float().mean())

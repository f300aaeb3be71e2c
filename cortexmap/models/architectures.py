"""Small architectures (0.1-0.5 M parameters) for 64x64 RGB inputs that train on CPU in minutes.

Every network's top-level children have readable names, which become the layer names of
``cortexmap.models.list_layers`` and of the analyses:

=========  =================================================================================
alexnet    ``conv1``..``conv5`` (each ``nn.Sequential`` Conv2d+ReLU[+MaxPool]), ``fc6``, ``fc7``,
           ``classifier``
vgg        ``block1``..``block3`` (two 3x3 Conv2d+ReLU, MaxPool), ``fc6``, ``classifier``
resnet     ``stem``, ``layer1``..``layer3`` (BasicBlocks with BatchNorm), ``avgpool``,
           ``classifier``
vit        ``patch_embed`` (convolutional stem -> 4x4 tokens), ``block1``..``block4``
           (pre-norm transformer blocks, tokens (n, 16, dim)), ``norm``, ``classifier``
=========  =================================================================================

``classifier`` is always the last ``nn.Linear`` (features -> classes); ``feature_dim(model)``
gives its input size, used by the linear probes of self-supervised and untrained networks.
"""

from __future__ import annotations

import torch
from torch import nn

from cortexmap.errors import CortexmapError


def _conv(
    cin: int, cout: int, k: int = 3, stride: int = 1, pool: bool = False, norm: bool = False
) -> nn.Sequential:
    """Conv2d (+ BatchNorm2d when ``norm``, training only) + ReLU (+ 2x2 MaxPool)."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2)]
    if norm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class AlexNetSmall(nn.Sequential):
    """AlexNet in miniature: 5 conv blocks (5x5 stride-2 first), 2 fully connected layers.

    Input (n, 3, 64, 64); conv1 (n, 16, 16, 16); conv2 (n, 32, 8, 8); conv3/conv4 (n, 48, 8, 8);
    conv5 (n, 32, 4, 4); fc6 (n, 256); fc7 (n, 128); classifier (n, num_classes).
    """

    def __init__(self, num_classes: int = 10, norm: bool = False) -> None:
        super().__init__()
        self.conv1 = _conv(3, 16, k=5, stride=2, pool=True, norm=norm)
        self.conv2 = _conv(16, 32, pool=True, norm=norm)
        self.conv3 = _conv(32, 48, norm=norm)
        self.conv4 = _conv(48, 48, norm=norm)
        self.conv5 = _conv(48, 32, pool=True, norm=norm)
        self.fc6 = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.2), nn.Linear(32 * 4 * 4, 256), nn.ReLU(inplace=True)
        )
        self.fc7 = nn.Sequential(nn.Dropout(0.2), nn.Linear(256, 128), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(128, num_classes)


class VGGSmall(nn.Sequential):
    """VGG in miniature: three blocks of two 3x3 convolutions, one hidden fully connected layer.

    block1 (n, 16, 16, 16) (first conv stride 2); block2 (n, 32, 8, 8); block3 (n, 64, 4, 4);
    fc6 (n, 256); classifier (n, num_classes).
    """

    def __init__(self, num_classes: int = 10, norm: bool = False) -> None:
        super().__init__()
        self.block1 = nn.Sequential(
            *_conv(3, 16, stride=2, norm=norm), *_conv(16, 16, pool=True, norm=norm)
        )
        self.block2 = nn.Sequential(*_conv(16, 32, norm=norm), *_conv(32, 32, pool=True, norm=norm))
        self.block3 = nn.Sequential(*_conv(32, 64, norm=norm), *_conv(64, 64, pool=True, norm=norm))
        self.fc6 = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 4 * 4, 256), nn.ReLU(inplace=True)
        )
        self.classifier = nn.Linear(256, num_classes)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv+BN, identity (or 1x1 strided projection) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNetSmall(nn.Sequential):
    """ResNet in miniature: stem (conv stride 2 + max-pool), then stages of 1, 2, 2 blocks.

    stem (n, 24, 16, 16); layer1 (n, 24, 16, 16); layer2 (n, 48, 8, 8); layer3 (n, 96, 4, 4);
    avgpool (n, 96); classifier (n, num_classes).
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 24, 5, 2, 2, bias=False), nn.BatchNorm2d(24), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.layer1 = nn.Sequential(BasicBlock(24, 24))
        self.layer2 = nn.Sequential(BasicBlock(24, 48, 2), BasicBlock(48, 48))
        self.layer3 = nn.Sequential(BasicBlock(48, 96, 2), BasicBlock(96, 96))
        self.avgpool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(96, num_classes)


class TransformerBlock(nn.Module):
    """Pre-norm transformer block on tokens (n, n_tokens, dim)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 2) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Convolutional stem (three stride-2 convs) then 2x2 patches -> tokens (n, 16, dim) + position.

    A convolutional stem instead of one large linear patch projection makes small ViTs train
    much faster on small data (Xiao et al., 2021, "Early convolutions help transformers see";
    the "hybrid" ViT of Dosovitskiy et al., 2021).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 24, 3, 2, 1), nn.BatchNorm2d(24), nn.ReLU(inplace=True),
            nn.Conv2d(24, 48, 3, 2, 1), nn.BatchNorm2d(48), nn.ReLU(inplace=True),
            nn.Conv2d(48, 96, 3, 2, 1), nn.BatchNorm2d(96), nn.ReLU(inplace=True),
        )
        self.proj = nn.Conv2d(96, dim, 2, 2)
        self.pos = nn.Parameter(torch.zeros(1, 16, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(self.stem(x))  # (n, dim, 4, 4)
        return x.flatten(2).transpose(1, 2) + self.pos


class TokenMean(nn.Module):
    """LayerNorm then mean over tokens: (n, n_tokens, dim) -> (n, dim)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(x).mean(dim=1)


class ViTSmall(nn.Sequential):
    """A small vision transformer: conv stem to 4x4 tokens of width 96, four blocks, mean pool.

    patch_embed (n, 16, 96); block1..block4 (n, 16, 96); norm (n, 96); classifier (n, classes).
    """

    def __init__(self, num_classes: int = 10, dim: int = 96, heads: int = 4, depth: int = 4):
        super().__init__()
        self.patch_embed = PatchEmbed(dim)
        for i in range(depth):
            self.add_module(f"block{i + 1}", TransformerBlock(dim, heads))
        self.norm = TokenMean(dim)
        self.classifier = nn.Linear(dim, num_classes)


ARCHITECTURES: dict[str, type[nn.Module]] = {
    "alexnet": AlexNetSmall, "vgg": VGGSmall, "resnet": ResNetSmall, "vit": ViTSmall,
}
FOLDABLE = ("alexnet", "vgg")


def _init(model: nn.Module) -> nn.Module:
    # He initialisation: the BN-free AlexNet/VGG start learning at once instead of idling for
    # hundreds of steps with PyTorch's default (smaller) conv init.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def build(
    arch: str, num_classes: int = 10, seed: int | None = None, train_norm: bool = False
) -> nn.Module:
    """Build architecture ``arch`` (one of :data:`ARCHITECTURES`), seeded if ``seed`` is given.

    ``train_norm=True`` inserts BatchNorm2d after each convolution of the BN-free AlexNet and
    VGG (it speeds up training several-fold); :func:`fold_batchnorm` then folds it into the
    convolutions, giving the plain Conv2d+ReLU network that is shipped. ResNet and ViT have
    their own normalisation and ignore it.
    """
    if arch not in ARCHITECTURES:
        raise CortexmapError(
            f"Unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}."
        )
    kwargs = {"num_classes": num_classes}
    if arch in FOLDABLE:
        kwargs["norm"] = train_norm
    if seed is not None:
        # a private generator state: building a net must not disturb the caller's global RNG
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _init(ARCHITECTURES[arch](**kwargs))
    return _init(ARCHITECTURES[arch](**kwargs))


def has_foldable_norm(model: nn.Module) -> bool:
    """True for an AlexNet/VGG built with ``train_norm=True`` (BatchNorm still inside)."""
    return isinstance(model, (AlexNetSmall, VGGSmall)) and any(
        isinstance(m, nn.BatchNorm2d) for m in model.modules()
    )


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """The BN-free twin of a ``train_norm`` AlexNet/VGG with identical eval-mode outputs.

    Each eval-mode BatchNorm is an affine map per channel, so it folds exactly into the
    preceding convolution: ``W' = W * g / s``, ``b' = (b - mu) * g / s + beta`` with
    ``s = sqrt(var + eps)``. Lesioning a folded kernel (zero weight and bias) then silences the
    channel, as it should. Other models are returned unchanged.
    """
    if not has_foldable_norm(model):
        return model
    arch = next(k for k, v in ARCHITECTURES.items() if isinstance(model, v))
    plain = ARCHITECTURES[arch](num_classes=model.classifier.out_features, norm=False)
    mods = list(model.modules())
    convs = [(m, mods[i + 1]) for i, m in enumerate(mods) if isinstance(m, nn.Conv2d)]
    targets = [m for m in plain.modules() if isinstance(m, nn.Conv2d)]
    for (conv, bn), dst in zip(convs, targets, strict=True):
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        dst.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        dst.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    lin_src = [m for m in model.modules() if isinstance(m, nn.Linear)]
    lin_dst = [m for m in plain.modules() if isinstance(m, nn.Linear)]
    for src, dst in zip(lin_src, lin_dst, strict=True):
        dst.load_state_dict(src.state_dict())
    return plain.train(model.training)


def feature_dim(model: nn.Module) -> int:
    """Input width of ``model.classifier`` (the penultimate feature size)."""
    return int(model.classifier.in_features)


def features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Penultimate features (n, feature_dim): every child except ``classifier``."""
    for name, child in model.named_children():
        if name != "classifier":
            x = child(x)
    return x

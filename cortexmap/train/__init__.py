"""Training small networks on the procedural object dataset (issue 3).

- :mod:`cortexmap.train.architectures`: ``build(arch)``; AlexNet-, VGG-, ResNet- and ViT-like
  networks for 64x64 inputs with readable top-level layer names.
- :mod:`cortexmap.train.objectives`: supervised cross-entropy, SimCLR (NT-Xent with batched
  augmentations), linear probes on frozen features.
- :mod:`cortexmap.train.loop`: ``TrainConfig``, ``train(config, outdir, resume=True)`` with
  epoch checkpoints, accuracy history, resume and a progress bar.
- :mod:`cortexmap.train.recipes`: the zoo's recipes and ``build_zoo`` (train + package).
"""

from cortexmap.train.architectures import ARCHITECTURES, build, feature_dim, features
from cortexmap.train.loop import (
    DATA_MEAN,
    DATA_STD,
    TrainConfig,
    TrainResult,
    evaluate,
    load_checkpoint,
    model_from_checkpoint,
    normalize,
    train,
)
from cortexmap.train.objectives import OBJECTIVES, augment, fit_linear_probe, nt_xent

__all__ = [
    "ARCHITECTURES", "DATA_MEAN", "DATA_STD", "OBJECTIVES", "TrainConfig", "TrainResult",
    "augment", "build", "evaluate", "feature_dim", "features", "fit_linear_probe",
    "load_checkpoint", "model_from_checkpoint", "normalize", "nt_xent", "train",
]

"""Training small networks on the procedural object dataset.

The architectures (``build(arch)``) and the checkpoint files live in
:mod:`cortexmap.models.architectures` and :mod:`cortexmap.models.checkpoint`, so that loading a
zoo network never needs the training code.

- :mod:`cortexmap.train.objectives`: supervised cross-entropy, SimCLR (NT-Xent with batched
  augmentations), linear probes on frozen features.
- :mod:`cortexmap.train.loop`: ``TrainConfig``, ``train(config, outdir, resume=True)`` with
  epoch checkpoints, accuracy history, resume and a progress bar.
- :mod:`cortexmap.train.recipes`: the zoo's recipes and ``build_zoo`` (train + package).
"""

from cortexmap.models.architectures import ARCHITECTURES, build, feature_dim, features
from cortexmap.models.checkpoint import DATA_MEAN, DATA_STD, load_checkpoint, model_from_checkpoint
from cortexmap.train.loop import TrainConfig, TrainResult, evaluate, normalize, train
from cortexmap.train.objectives import OBJECTIVES, augment, fit_linear_probe, nt_xent

__all__ = [
    "ARCHITECTURES", "DATA_MEAN", "DATA_STD", "OBJECTIVES", "TrainConfig", "TrainResult",
    "augment", "build", "evaluate", "feature_dim", "features", "fit_linear_probe",
    "load_checkpoint", "model_from_checkpoint", "normalize", "nt_xent", "train",
]

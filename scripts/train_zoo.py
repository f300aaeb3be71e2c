"""Train and package the bundled zoo (cortexmap/data/zoo): ``scripts/train_zoo.py [NAME ...]``.

Without names, every recipe of ``cortexmap.train.recipes.ZOO_RECIPES`` is trained in turn.
Training runs live in ``runs/zoo_train/NAME`` and resume after an interruption; a finished run
is only re-packaged (weights, epoch checkpoints, model card, index).
"""

from __future__ import annotations

import argparse

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="zoo names (default: all recipes)")
    parser.add_argument("--workdir", default="runs/zoo_train")
    parser.add_argument("--zoo-dir", default=None, help="default: cortexmap/data/zoo")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    from cortexmap.train.recipes import build_zoo

    build_zoo(args.names or None, args.workdir, args.zoo_dir, progress=not args.no_progress)


if __name__ == "__main__":
    main()

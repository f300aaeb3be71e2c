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
    parser.add_argument("--cards-only", action="store_true",
                        help="only re-render the Markdown cards and index.json from the records")
    args = parser.parse_args()
    torch.set_num_threads(2)
    from cortexmap.train.recipes import build_zoo, default_zoo_dir, refresh_cards, write_index

    if args.cards_only:
        zoo = args.zoo_dir or default_zoo_dir()
        refresh_cards(zoo)
        write_index(zoo)
        return

    build_zoo(args.names or None, args.workdir, args.zoo_dir, progress=not args.no_progress)


if __name__ == "__main__":
    main()

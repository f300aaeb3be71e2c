"""One resolver from a brain setting (``brain``, ``atlas``, ``atlas_table``) to voxel patterns and
ROI masks, with one policy for every analysis.

The policy:

- ``brain="phantom"``: the analysis simulates the subjects itself (what it plants is its own
  business); :func:`resolve_brain` returns ``None`` and the analysis opens the phantom folder it
  wrote with :meth:`BrainDataset.of_phantom`, so the subjects and the atlas are read exactly as a
  real dataset's.
- any other value is a dataset folder in the :func:`~cortexmap.brain.io.load_dataset` layout
  (``mask.nii[.gz]``, ``sub-*/`` run files and condition tables).
- its ROI atlas: ``atlas`` (label image) and ``atlas_table`` (index/name table) when given, both
  of them; else the folder's own ``atlas.nii.gz`` (or ``atlas.nii``) and ``atlas.tsv``.
  Analyses that need ROIs require it; a searchlight runs without one.
- the regions an analysis asks for must be in the atlas, and (when loading) the conditions it
  asks for must be in the dataset.

Every problem (an unknown name, a missing folder or atlas file, half an atlas, an unknown
region) is a :class:`~cortexmap.errors.CortexmapError` raised by :func:`resolve_brain`, which
reads no voxel data, so analyses call it before they create any output or start any work.

Example::

    ds = resolve_brain("data/my_fmri", regions=["V1", "LOC"])   # checked, nothing loaded
    brain = ds.load(conditions=stimulus_ids)                    # subjects + atlas
    v1 = brain.patterns("V1", stimulus_ids)                     # per subject (n_cond, n_vox)
    rdms = brain.rdms(["V1", "LOC"], metric="correlation", conditions=stimulus_ids)
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cortexmap.brain.io import Atlas, BrainData, load_atlas, load_dataset
from cortexmap.brain.roi import roi_rdms
from cortexmap.errors import CortexmapError

if TYPE_CHECKING:
    from cortexmap.brain.phantom import PhantomDataset
    from cortexmap.config import BrainFields
    from cortexmap.rsa import RDMs

#: The ``brain`` value that asks for a simulated brain.
PHANTOM = "phantom"


@dataclass
class BrainRegions:
    """A loaded brain dataset: its subjects and its ROI atlas (``None`` without one)."""

    root: Path
    subjects: list[BrainData]
    atlas: Atlas | None

    def _atlas(self) -> Atlas:
        if self.atlas is None:
            raise CortexmapError(f"Brain dataset {self.root} was opened without an ROI atlas; "
                                 "pass atlas= and atlas_table=.")
        return self.atlas

    def masks(self, region: str) -> list[np.ndarray]:
        """Per subject, a bool mask over its voxels (``n_voxels``) of the atlas ``region``."""
        atlas = self._atlas()
        return [atlas.region_mask(region, s.masker) for s in self.subjects]

    def patterns(self, region: str, conditions: Sequence[str]) -> list[np.ndarray]:
        """Per subject, the condition-mean patterns of ``region``, shape (n_conditions,
        n_region_voxels), rows in the order of ``conditions``."""
        return [s.condition_patterns(list(conditions))[:, mask]
                for s, mask in zip(self.subjects, self.masks(region), strict=True)]

    def rdms(self, regions: Sequence[str], metric: str = "correlation",
             conditions: Sequence[str] | None = None) -> dict[str, RDMs]:
        """{region: subject RDMs} (:func:`~cortexmap.brain.roi.roi_rdms`)."""
        return roi_rdms(self.subjects, self._atlas(), metric=metric, rois=list(regions),
                        conditions=None if conditions is None else list(conditions))


@dataclass(frozen=True)
class BrainDataset:
    """A brain dataset folder and its atlas files, checked but not loaded (see the module
    docstring for the policy)."""

    root: Path
    atlas: Path | None = None
    atlas_table: Path | None = None

    @classmethod
    def of_phantom(cls, phantom: PhantomDataset) -> BrainDataset:
        """The folder a phantom was written to, with its atlas."""
        return cls(Path(phantom.root), phantom.atlas_path, phantom.atlas_table_path)

    def load_atlas(self) -> Atlas | None:
        """The ROI atlas, or ``None`` when the dataset has none."""
        if self.atlas is None or self.atlas_table is None:
            return None
        return load_atlas(self.atlas, self.atlas_table)

    def load(self, conditions: Sequence[str] | None = None) -> BrainRegions:
        """Read every subject and the atlas; ``conditions`` (e.g. the stimulus ids) must all be
        conditions of the dataset."""
        subjects = load_dataset(self.root)
        if conditions is not None:
            have = set(subjects[0].condition_names)
            missing = [c for c in conditions if c not in have]
            if missing:
                raise CortexmapError(
                    f"The brain dataset {self.root} has no condition for stimuli "
                    f"{missing[:10]}; its condition names must be the stimulus ids (image "
                    "file stems).")
        return BrainRegions(self.root, subjects, self.load_atlas())


def _folder_atlas(root: Path) -> tuple[Path | None, Path | None]:
    img = next((p for p in (root / "atlas.nii.gz", root / "atlas.nii") if p.is_file()), None)
    table = root / "atlas.tsv"
    return img, table if table.is_file() else None


def resolve_brain(
    brain: str | os.PathLike | BrainFields,
    atlas: str | os.PathLike | None = None,
    atlas_table: str | os.PathLike | None = None,
    *,
    regions: Sequence[str] = (),
    require_atlas: bool = True,
) -> BrainDataset | None:
    """Check a brain setting before any work; ``None`` for ``"phantom"``.

    Parameters
    ----------
    brain : str, path-like or BrainFields
        ``"phantom"`` or a dataset folder; a config with ``brain``, ``atlas`` and
        ``atlas_table`` fields (:class:`~cortexmap.config.BrainFields`) gives all three.
    atlas, atlas_table : str or path-like, optional
        The ROI label image and its index/name table (both or neither); default: the
        dataset's ``atlas.nii.gz`` and ``atlas.tsv``.
    regions : sequence of str
        Regions the analysis reads; each must be named in the atlas.
    require_atlas : bool
        Refuse a dataset without an atlas (False: the dataset may have none).

    Returns
    -------
    BrainDataset or None
        The checked dataset (load it with :meth:`BrainDataset.load`); ``None`` for the phantom.
    """
    if hasattr(brain, "brain"):
        brain, atlas, atlas_table = brain.brain, brain.atlas, brain.atlas_table
    if str(brain) == PHANTOM:
        return None
    root = Path(brain)
    if not root.is_dir():
        close = difflib.get_close_matches(str(brain), [PHANTOM], n=1)
        hint = f" (did you mean {PHANTOM!r}?)" if close else ""
        raise CortexmapError(
            f"Unknown brain {str(brain)!r}{hint}: brain is {PHANTOM!r} (simulated subjects with "
            "a planted truth) or a dataset folder in the cortexmap.brain.load_dataset layout "
            "(mask.nii.gz, sub-*/ run files and condition tables), and no such folder exists.")
    if (atlas is None) != (atlas_table is None):
        given, other = ("atlas", "atlas_table") if atlas is not None else ("atlas_table", "atlas")
        raise CortexmapError(
            f"{given} is set but {other} is not; give both (the ROI label image and its "
            f"index/name table), or neither to use the dataset's atlas.nii.gz and atlas.tsv.")
    if atlas is not None:
        img, table = Path(atlas), Path(atlas_table)
        for what, path in (("atlas", img), ("atlas_table", table)):
            if not path.is_file():
                raise CortexmapError(f"The {what} file {path} does not exist; fix the path.")
    else:
        img, table = _folder_atlas(root)
        if img is None or table is None:
            if require_atlas or regions:
                raise CortexmapError(
                    f"No ROI atlas for brain dataset {root}: expected {root / 'atlas.nii.gz'} "
                    f"and {root / 'atlas.tsv'}; pass atlas= (label image) and atlas_table= "
                    "(index/name table).")
            return BrainDataset(root)
    dataset = BrainDataset(root, img, table)
    if regions:
        known = dataset.load_atlas().region_names
        unknown = [r for r in regions if r not in known]
        if unknown:
            raise CortexmapError(
                f"Region(s) {unknown} are not in the atlas of {root} ({img.name}); its regions: "
                f"{known}. Choose regions of the atlas or pass another atlas.")
    return dataset

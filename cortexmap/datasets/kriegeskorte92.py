"""The 92-image set of Kriegeskorte et al. (2008): images, human and monkey IT, judgements."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from scipy import ndimage

from cortexmap.datasets.base import RealData
from cortexmap.datasets.fetch import Source, locate
from cortexmap.errors import CortexmapError
from cortexmap.rsa import RDMs
from cortexmap.stimuli import StimulusSet

SOURCE = Source(
    name="kriegeskorte92",
    base_url="https://raw.githubusercontent.com/rsagroup/rsatoolbox/main/demos/92imageData",
    citation="Kriegeskorte, Mur, Ruff, Kiani, Bodurka, Esteky, Tanaka & Bandettini (2008). "
             "Matching categorical object representations in inferior temporal cortex of man "
             "and monkey. Neuron 60:1126-1141.",
    licence="MIT (rsatoolbox repository)",
)
_GREY = 128  # the uniform background value of all three channels


def _loadmat(path):
    from scipy.io import loadmat

    try:
        return loadmat(path, squeeze_me=True, struct_as_record=False)
    except (OSError, ValueError, TypeError) as exc:  # checksum passed: a scipy/format problem
        raise CortexmapError(f"Cannot read {path}: {exc}.") from exc


def foreground_mask(image: np.ndarray) -> np.ndarray:
    """Exact object mask of one (H, W, 3) uint8 image on the uniform grey background.

    Background = the 4-connected regions of exactly (128, 128, 128) that touch the image border;
    grey pixels enclosed by the object belong to the object.
    """
    grey = (image == _GREY).all(-1)
    labels, _ = ndimage.label(grey)
    border = np.unique(np.r_[labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    return ~np.isin(labels, border[border > 0])


def _rdm_stack(structs, n: int) -> tuple[np.ndarray, list[str]]:
    mats = [np.asarray(s.RDM, dtype=np.float64) for s in np.atleast_1d(structs).ravel()]
    names = [str(s.name) for s in np.atleast_1d(structs).ravel()]
    iu = np.triu_indices(n, 1)
    return np.stack([m[iu] if m.ndim == 2 else m for m in mats]), names


def fetch_kriegeskorte92(data_dir: str | os.PathLike | None = None, download: bool = True,
                         size: int | None = None) -> RealData:
    """The 92 object images with human IT (fMRI), monkey IT and human judgement RDMs.

    Parameters
    ----------
    data_dir : folder holding ``kriegeskorte92/`` (or that folder itself); default: search
        ``CORTEXMAP_DATA``, the user cache and ``../shared/data``, then download.
    download : allow downloading from the public rsatoolbox repository when no copy is found.
    size : resize the images (175 x 175) and masks to ``size`` x ``size``; None keeps them.

    Returns
    -------
    RealData with
      - ``stimuli``: 92 images (175 x 175 on a uniform grey background), ids ``obj01``..
        ``obj92``, categories (human/nonhuman body part or face, natural/artificial inanimate),
        exact foreground masks, and a metadata table with the published category flags;
      - ``rdms`` (4186 dissimilarities each): ``hIT`` fMRI RDMs of 4 subjects x 2 sessions
        (region "hIT", 1 - Pearson r), the figure-1 group RDMs ``mIT`` (674 neurons, region
        "mIT", subject "monkeys") and ``hIT`` (316 voxels, subject "group"), and 16 similarity-
        judgement RDMs (region "judgement");
      - ``model_rdms``: the 8 classic model RDMs (animacy, ..., HMAX, V1, Silhouette, RADON).
    """
    folder = locate(SOURCE, data_dir, download)
    sums = SOURCE.checksums()
    supp = _loadmat(folder / "Kriegeskorte_Neuron2008_supplementalData.mat")
    objs = np.atleast_1d(supp["stimuli_92objs"])
    raw = np.stack([np.asarray(o.image, dtype=np.uint8) for o in objs])
    n = len(raw)
    ids = [f"obj{k + 1:02d}" for k in range(n)]
    meta = pd.DataFrame({"id": ids, "category": [str(o.category) for o in objs]})
    for flag in ("human", "face", "animal", "natural"):
        meta[flag] = [bool(getattr(o, flag)) for o in objs]
    vectors = np.asarray(supp["categoryVectors"])
    for k, label in enumerate(np.atleast_1d(supp["categoryLabels"])):
        meta[f"is_{label}"] = vectors[:, k].astype(bool)
    stimuli = StimulusSet(raw, ids, list(meta.category), np.stack([foreground_mask(im)
                                                                   for im in raw]),
                          meta, name="kriegeskorte92")
    if size is not None:
        stimuli = stimuli.resized(size)

    parts = []
    brain = np.atleast_1d(_loadmat(folder / "92_brainRDMs.mat")["RDMs"])
    vec, names = _rdm_stack(brain.T, n)  # MATLAB order (subject, session) -> subject-major
    fields = [[p.strip() for p in nm.split("|")] for nm in names]
    parts.append(RDMs(vec, n, [f"hIT|{f[1]}|{f[2].split(':')[-1].strip()}" for f in fields],
                      "correlation", ids, {
                          "kind": ["brain"] * len(vec), "region": ["hIT"] * len(vec),
                          "subject": [f[1] for f in fields],
                          "session": [f[2].split(":")[-1].strip() for f in fields],
                          "measure": ["fMRI"] * len(vec)}))
    vec, names = _rdm_stack(supp["RDMs_mIT_hIT_fig1"], n)
    parts.append(RDMs(vec, n, ["mIT|674 neurons", "hIT|316 voxels"], "correlation", ids, {
        "kind": ["brain", "brain"], "region": ["mIT", "hIT (group)"],
        "subject": ["monkeys", "group"], "session": ["all", "all"],
        "measure": ["cell recordings", "fMRI"]}))
    vec, names = _rdm_stack(_loadmat(folder / "92_behavRDMs.mat")["rdms_behav_92"], n)
    subjects = [nm.split("|")[-1].strip() for nm in names]
    parts.append(RDMs(vec, n, [f"judgement|{s}" for s in subjects], "judgement", ids, {
        "kind": ["behaviour"] * len(vec), "region": ["judgement"] * len(vec),
        "subject": subjects, "session": ["1"] * len(vec),
        "measure": ["similarity judgement"] * len(vec)}))
    vec, names = _rdm_stack(_loadmat(folder / "92_modelRDMs.mat")["Models"], n)
    models = RDMs(vec, n, names, "model", ids, {"kind": ["model"] * len(vec)})
    return RealData(
        "kriegeskorte92", stimuli, RDMs.concat(parts), folder, sums, models,
        SOURCE.citation, SOURCE.licence,
        notes={"hIT": "human IT fMRI RDMs, 4 subjects x 2 sessions (316 most visually "
                      "responsive voxels in the group RDM)",
               "mIT": "monkey IT, 674 neurons of 2 monkeys, one group RDM: no noise ceiling"},
    )

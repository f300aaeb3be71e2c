"""The Algonauts-2019 78-image set: EVC and IT fMRI RDMs of 15 subjects."""

from __future__ import annotations

import os

import numpy as np

from cortexmap.datasets.base import RealData
from cortexmap.datasets.fetch import Source, locate
from cortexmap.errors import CortexmapError
from cortexmap.rsa import RDMs
from cortexmap.stimuli.folder import load_folder

SOURCE = Source(
    name="algonauts78",
    base_url="https://raw.githubusercontent.com/cvai-roig-lab/Net2Brain/main/net2brain/tests/data",
    remote={
        **{f"stimuli/image_{k:02d}.jpg": f"stimuli_data/image_{k:02d}.jpg" for k in range(1, 79)},
        "fmri_EVC_RDMs.npz": "brain_data/fmri_EVC_RDMs.npz",
        "fmri_IT_RDMs.npz": "brain_data/fmri_IT_RDMs.npz",
        "noise_ceiling_log.json": "brain_data/noise_ceiling_log.json",
    },
    citation="Cichy, Roig, Andonian, Dwivedi, Lahner, Lascelles, Mohsenzadeh, Ramakrishnan & "
             "Oliva (2019). The Algonauts Project: a platform for communication between the "
             "sciences of biological and artificial intelligence. arXiv:1905.05675.",
    licence="BSD-3-Clause (Net2Brain repository)",
)
_NOMINAL_SIZE = 399  # the smallest side among the files


def _region(path, region: str, ids: list[str]) -> RDMs:
    try:
        with np.load(path, allow_pickle=False) as z:
            mats = np.asarray(z["arr_0"], dtype=np.float64)
    except (OSError, KeyError, ValueError) as exc:
        raise CortexmapError(f"Cannot read {path}: {exc}.") from exc
    if mats.ndim != 3 or mats.shape[1:] != (len(ids), len(ids)):
        raise CortexmapError(f"{path} holds shape {mats.shape}; (subjects, {len(ids)}, "
                             f"{len(ids)}) expected.")
    k = len(mats)
    subjects = [f"sub{s + 1:02d}" for s in range(k)]
    return RDMs(RDMs.from_matrices(mats).vectors, len(ids), [f"{region}|{s}" for s in subjects],
                "correlation", ids, {"kind": ["brain"] * k, "region": [region] * k,
                                     "subject": subjects, "session": ["1"] * k,
                                     "measure": ["fMRI"] * k})


def fetch_algonauts78(data_dir: str | os.PathLike | None = None, download: bool = True,
                      size: int | None = None) -> RealData:
    """78 natural object images with early visual cortex (EVC) and IT fMRI RDMs.

    Parameters
    ----------
    data_dir : folder holding ``algonauts78/`` (or that folder itself); default: search
        ``CORTEXMAP_DATA``, the user cache and ``../shared/data``, then download.
    download : allow downloading from the public Net2Brain repository when no copy is found.
    size : image size; None gives 399 x 399: the files are nominally 400 px, but 15 are 399 and
        2 are 402 px wide; every image is centre-cropped to a square and resized, and 399 (the
        smallest side) means none is upsampled.

    Returns
    -------
    RealData with ``stimuli`` (78 images, ids ``image_01``..``image_78``, no categories or masks:
    natural scenes have no uniform background) and ``rdms``: 15 per-subject RDMs for each of the
    regions "EVC" and "IT" (descriptors kind, region, subject, session, measure). The per-subject
    RDMs are noisy: Spearman noise ceilings are only about 0.003-0.065.
    """
    folder = locate(SOURCE, data_dir, download)
    stimuli = load_folder(folder / "stimuli", size=size or _NOMINAL_SIZE)
    stimuli.name = "algonauts78"
    rdms = RDMs.concat([_region(folder / f"fmri_{r}_RDMs.npz", r, stimuli.ids)
                        for r in ("EVC", "IT")])
    return RealData("algonauts78", stimuli, rdms, folder, SOURCE.checksums(), None,
                    SOURCE.citation, SOURCE.licence,
                    notes={"EVC": "early visual cortex, 15 subjects",
                           "IT": "inferior temporal cortex, 15 subjects"})

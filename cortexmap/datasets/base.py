"""`RealData`: what a real-data fetcher returns (stimuli, measured RDMs, where they came from)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cortexmap.errors import CortexmapError
from cortexmap.rsa import RDMs
from cortexmap.stimuli import StimulusSet


@dataclass
class RealData:
    """A real data set: stimuli and the brain / behaviour RDMs measured with them.

    Attributes
    ----------
    name : data set name (its folder name).
    stimuli : StimulusSet of the n images, in the RDMs' condition order.
    rdms : RDMs (n_rdms, n (n - 1) / 2) of brain and behaviour data with descriptors
        ``kind`` ("brain"/"behaviour"), ``region``, ``subject``, ``session`` and ``measure``.
    path : the folder the files were read from.
    checksums : SHA-256 of every file read (relative path -> digest), for provenance.
    model_rdms : reference model RDMs shipped with the data, or None.
    citation, licence : whom to cite and under which licence the files are shared.
    """

    name: str
    stimuli: StimulusSet
    rdms: RDMs
    path: Path
    checksums: dict[str, str]
    model_rdms: RDMs | None = None
    citation: str = ""
    licence: str = ""
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def regions(self) -> list[str]:
        return list(dict.fromkeys(self.rdms.descriptors["region"]))

    def subject_rdms(self, region: str) -> RDMs:
        """One RDM per subject of ``region``, the mean over that subject's sessions
        (names = subject ids; descriptors kept, session "mean")."""
        if region not in self.regions:
            raise CortexmapError(f"{self.name} has no region {region!r}; choose from "
                                 f"{self.regions}.")
        sel = self.rdms.select(region=region)
        subjects = list(dict.fromkeys(sel.descriptors["subject"]))
        vec = np.stack([sel.select(subject=s).vectors.mean(0) for s in subjects])
        first = [sel.descriptors["subject"].index(s) for s in subjects]
        desc = {k: [v[i] for i in first] for k, v in sel.descriptors.items()}
        desc["session"] = ["mean"] * len(subjects)
        return RDMs(vec, sel.n_conditions, subjects, sel.metric, sel.conditions, desc)

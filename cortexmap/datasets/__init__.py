"""Fetchers for real reference data (nilearn style): find, verify, download, read.

Public API::

    from cortexmap.datasets import fetch_kriegeskorte92, fetch_algonauts78
    k92 = fetch_kriegeskorte92()          # RealData: .stimuli, .rdms, .model_rdms, .path
    hit = k92.subject_rdms("hIT")         # 4 subjects, sessions averaged
    alg = fetch_algonauts78(size=224)
    it = alg.rdms.select(region="IT")     # 15 subjects

Files are looked for in ``data_dir``, ``$CORTEXMAP_DATA``, the user cache and ``../shared/data``,
verified against shipped SHA-256 sums, and downloaded from their public source when absent.
"""

from cortexmap.datasets.algonauts78 import fetch_algonauts78
from cortexmap.datasets.base import RealData
from cortexmap.datasets.fetch import DATA_ENV, DataNotFoundError, cache_dir, search_dirs
from cortexmap.datasets.kriegeskorte92 import fetch_kriegeskorte92

FETCHERS = {"kriegeskorte92": fetch_kriegeskorte92, "algonauts78": fetch_algonauts78}

__all__ = ["DATA_ENV", "FETCHERS", "DataNotFoundError", "RealData", "cache_dir",
           "fetch_algonauts78", "fetch_kriegeskorte92", "search_dirs"]

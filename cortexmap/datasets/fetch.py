"""Find a real data set on disk, verify it, and download it when it is nowhere to be found.

Search order (as nilearn's fetchers): an explicit ``data_dir``, the ``CORTEXMAP_DATA``
environment variable (one or more folders separated by ``os.pathsep``), the user cache
(``$XDG_CACHE_HOME/cortexmap/data``, default ``~/.cache/cortexmap/data``), and ``shared/data``
in the parent folder of the working directory or of the cortexmap checkout (``../shared/data``;
also up to two levels further up, for nested worktrees). Every file of a found copy is
checked against the SHA-256 sums shipped with cortexmap, so a corrupt or truncated file is named
rather than read. When no intact copy exists, the files are downloaded from their public source
into the user cache and verified the same way; offline (or with ``download=False``), a
:class:`~cortexmap.errors.CortexmapError` says where to put the files.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from cortexmap.errors import CortexmapError
from cortexmap.utils.io import atomic_path

DATA_ENV = "CORTEXMAP_DATA"
#: Replaces the public base URL of every data set (a mirror, or ``file://`` URLs in tests).
URL_ENV = "CORTEXMAP_DATA_URL"
#: Set to 1 to forbid downloads (the same switch as for network weights).
OFFLINE_ENV = "CORTEXMAP_OFFLINE"
_TIMEOUT_S = 20
_SHARED_LEVELS = 3  # how many parents of the checkout may hold shared/data


class DataNotFoundError(CortexmapError):
    """No intact copy of a data set could be found or downloaded."""


@dataclass(frozen=True)
class Source:
    """Where a data set comes from: its files (local name -> path under ``base_url``)."""

    name: str
    base_url: str
    remote: dict[str, str] = field(default_factory=dict)
    citation: str = ""
    licence: str = ""

    def checksums(self) -> dict[str, str]:
        """Local relative path -> SHA-256, from the sums shipped in cortexmap."""
        text = resources.files("cortexmap.datasets").joinpath(
            f"checksums/{self.name}.sha256").read_text(encoding="utf-8")
        sums = {}
        for line in text.splitlines():
            if line.strip():
                digest, rel = line.split(maxsplit=1)
                sums[rel.strip().lstrip("*")] = digest
        return sums

    def url(self, rel: str) -> str:
        base = os.environ.get(URL_ENV, "").rstrip("/")
        base = f"{base}/{self.name}" if base else self.base_url.rstrip("/")
        return f"{base}/{self.remote.get(rel, rel)}"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_dir() -> Path:
    """The user cache of downloaded data sets."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "cortexmap" / "data"


def search_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Parent folders searched for ``<dataset name>/``, in order (explicit path first)."""
    dirs: list[Path] = []
    if data_dir is not None:
        dirs.append(Path(data_dir).expanduser())
    dirs += [Path(p).expanduser() for p in os.environ.get(DATA_ENV, "").split(os.pathsep) if p]
    dirs.append(cache_dir())
    checkout = Path(__file__).resolve().parents[2]  # the folder holding the cortexmap package
    for base in (Path.cwd().resolve(), checkout):
        # ../shared/data, also from a worktree nested one or two levels deeper
        dirs += [parent / "shared" / "data" for parent in base.parents[:_SHARED_LEVELS]]
    return list(dict.fromkeys(dirs))


def problems(folder: Path, sums: dict[str, str]) -> list[str]:
    """What is wrong with the copy in ``folder``: missing files and checksum mismatches."""
    found = []
    for rel, digest in sums.items():
        path = folder / rel
        if not path.is_file():
            found.append(f"missing {path}")
            continue
        actual = sha256(path)
        if actual != digest:
            size = path.stat().st_size
            found.append(f"corrupt or truncated {path} ({size} bytes; SHA-256 {actual[:12]}... "
                         f"but {digest[:12]}... expected)")
    return found


def _own_folder(source: Source, data_dir: str | os.PathLike) -> Path:
    """An explicit ``data_dir`` is either the data set's own folder or the folder holding it."""
    d = Path(data_dir).expanduser()
    if not d.is_dir():
        raise CortexmapError(f"data_dir {d} does not exist or is not a folder.")
    first = next(iter(source.checksums()))
    return d if (d / first).exists() and not (d / source.name).is_dir() else d / source.name


def _download(source: Source, sums: dict[str, str], target: Path) -> list[str]:
    """Download missing or bad files into ``target``; returns what still failed."""
    failed = []
    for rel, digest in sums.items():
        path = target / rel
        if path.is_file() and sha256(path) == digest:
            continue
        url = source.url(rel)
        try:
            with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as resp:  # noqa: S310
                data = resp.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            failed.append(f"could not download {url}: {exc}")
            break  # offline or blocked: the other files would fail the same way
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            failed.append(f"download of {url} has SHA-256 {actual[:12]}... but {digest[:12]}... "
                          "was expected (corrupt or changed upstream)")
            continue
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    return failed


def locate(source: Source, data_dir: str | os.PathLike | None = None,
           download: bool = True) -> Path:
    """The folder holding an intact copy of ``source``; download it if none is found.

    With ``data_dir`` only that folder is used (and downloaded into); otherwise the folders of
    :func:`search_dirs` are tried in order and a download goes to the user cache. Raises
    CortexmapError naming every corrupt or missing file it saw, and where to put the files,
    when no intact copy can be had.
    """
    sums = source.checksums()
    if data_dir is not None:
        candidates = [_own_folder(source, data_dir)]
        target = candidates[0]
    else:
        candidates = [d / source.name for d in search_dirs() if (d / source.name).is_dir()]
        target = cache_dir() / source.name
    if os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes"}:
        download = False
    seen: list[str] = []
    for folder in candidates:
        bad = problems(folder, sums)
        if not bad:
            return folder
        seen += bad
    if download:
        failed = _download(source, sums, target)
        if not failed:
            return target
        seen += failed
    where = "\n  ".join(str(d / source.name) for d in search_dirs(data_dir))
    more = [f"... and {len(seen) - 12} more"] if len(seen) > 12 else []
    detail = "\n  ".join(seen[:12] + more)
    raise DataNotFoundError(
        f"The {source.name} data set was not found intact"
        + (f":\n  {detail}\n" if detail else ".\n")
        + f"Searched:\n  {where}\n"
        f"Put its files (from {source.base_url}) in a folder named {source.name} under one of "
        f"these, set {DATA_ENV}=<folder holding {source.name}/>, or pass data_dir=. "
        + ("" if download else f"Downloads were switched off (download=False or {OFFLINE_ENV}). ")
        + "Files whose checksum does not match are never read: delete and replace them."
    )

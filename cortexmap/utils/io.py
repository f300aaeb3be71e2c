"""Atomic output: every result file is written to a temporary sibling, then renamed.

A crash or Ctrl-C therefore never leaves a half-written result behind, and a run that is
resumed can trust that any file it finds is complete.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from cortexmap.errors import CortexmapError


def safe_filename(name: str) -> str:
    """``name`` as a single file-name component that stays inside its folder.

    Letters, digits and ``-_.@`` are kept (so layer names like ``features.3`` read the same);
    anything else, path separators included, becomes ``_``; a leading dot becomes ``_`` too,
    so neither ``..`` nor a hidden file can come out.
    """
    safe = re.sub(r"[^A-Za-z0-9_.@-]", "_", str(name))
    return "_" + safe[1:] if not safe or safe.startswith(".") else safe


def safe_filenames(names: list[str], what: str = "name") -> dict[str, str]:
    """{name: safe_filename(name)}; CortexmapError when two names would share a file."""
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name in names:
        safe = safe_filename(name)
        if safe in seen and seen[safe] != name:
            raise CortexmapError(
                f"The {what}s {seen[safe]!r} and {name!r} map to the same file name {safe!r} "
                f"(characters other than letters, digits and -_.@ become _); rename one."
            )
        seen[safe] = name
        out[name] = safe
    return out


#: Files cortexmap keeps in every output folder it prepares: who made it, and who writes now.
MARKER, LOCK = ".cortexmap", ".cortexmap.lock"
_HELD: dict[Path, tuple[int, bool]] = {}  # lock file -> (pid holding it, folder made by it)


def _user_entries(out: Path) -> list[Path]:
    return [e for e in out.iterdir() if e.name not in (MARKER, LOCK)]


def written_by_cortexmap(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an output folder cortexmap prepared (its marker or provenance)."""
    p = Path(path)
    return p.is_dir() and not p.is_symlink() and (
        (p / MARKER).is_file() or (p / "provenance.json").is_file())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _acquire(lock: Path, what: Path, created: bool) -> None:
    """Take ``lock`` (a file holding the owner's pid) for this process until it exits."""
    pid = os.getpid()
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                holder = 0
            if holder == pid:
                break
            if holder and _alive(holder):
                raise CortexmapError(
                    f"Output {what} is in use by another cortexmap run (process {holder}); wait "
                    f"for it to finish or choose another output. If no such run exists, delete "
                    f"{lock}."
                ) from None
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()  # stale: its run was killed
            continue
        except OSError as exc:
            raise CortexmapError(
                f"Output {what} is not writable ({exc.strerror or exc}); choose another output "
                "or fix its permissions."
            ) from exc
        with os.fdopen(fd, "w") as fh:
            fh.write(str(pid))
        break
    key = lock.resolve()
    if key not in _HELD or _HELD[key][0] != pid:
        _HELD[key] = (pid, created)


def lock_output_dir(path: str | os.PathLike, created: bool = False) -> None:
    """Hold output folder ``path`` for this process until it exits; refuse while another live
    run holds it.

    The lock is a file with the holder's process id, so one killed by SIGKILL never blocks a
    later run (a lock whose process is gone is taken over).
    """
    _acquire(Path(path) / LOCK, Path(path), created)


def lock_output_path(path: str | os.PathLike) -> None:
    """Like :func:`lock_output_dir` for an output replaced as a whole (a file, a zarr store):
    the lock file sits beside it, ``.NAME.cortexmap.lock``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    _acquire(p.parent / f".{p.name}{LOCK}", p, False)


def release_output_dirs() -> None:
    """Drop this process's locks; remove folders it created that stayed empty (a failed run)."""
    pid = os.getpid()
    for lock, (holder, created) in list(_HELD.items()):
        if holder != pid:  # a forked child never releases its parent's folders
            continue
        del _HELD[lock]
        with contextlib.suppress(OSError):
            if int(lock.read_text().strip() or 0) == pid:
                lock.unlink()
        with contextlib.suppress(OSError):
            if created and not _user_entries(lock.parent):
                (lock.parent / MARKER).unlink(missing_ok=True)
                lock.parent.rmdir()


atexit.register(release_output_dirs)


def prepare_output_dir(
    path: str | os.PathLike, overwrite: bool = False, replace: bool = False
) -> Path:
    """Create ``path`` as an output folder, lock it for this run and check it is writable.

    A non-empty folder is refused unless ``overwrite``. With ``replace`` (commands whose output
    is one whole set of files), ``overwrite`` empties the folder first, but only a folder that
    cortexmap wrote: anything else is refused and left as it is.
    """
    out = Path(path)
    if os.path.lexists(out) and not out.exists():
        raise CortexmapError(f"Output path {out} is a broken symbolic link; choose a folder path.")
    if out.exists() and not out.is_dir():
        raise CortexmapError(f"Output path {out} exists and is a file; choose a folder path.")
    entries = _user_entries(out) if out.exists() else []
    if entries and not overwrite:
        raise CortexmapError(
            f"Output folder {out} already exists and is not empty; pass --overwrite "
            "(overwrite=True) to replace its results, or choose another folder."
        )
    if entries and replace and not written_by_cortexmap(out):
        raise CortexmapError(
            f"Output folder {out} holds files cortexmap did not write; --overwrite only "
            "replaces cortexmap's own output folders, so nothing was deleted. Choose another "
            "folder."
        )
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CortexmapError(
            f"Cannot create output folder {out} ({exc.strerror or exc}); choose another folder "
            "or fix its permissions."
        ) from exc
    try:
        lock_output_dir(out, created=created)
    except CortexmapError:
        if created:  # leave no empty folder behind
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    if entries and replace:
        for e in entries:
            if e.is_dir() and not e.is_symlink():
                shutil.rmtree(e)
            else:
                e.unlink()
    if not (out / MARKER).exists():
        try:
            write_json(out / MARKER, {"written_by": "cortexmap"})
        except OSError as exc:
            raise CortexmapError(
                f"Output folder {out} is not writable ({exc.strerror or exc}); choose another "
                "folder or fix its permissions."
            ) from exc
    return out


def check_output_file(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse to replace an existing file unless ``overwrite``; create parent folders."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise CortexmapError(
            f"Output file {p} already exists; pass --overwrite (overwrite=True) to replace it."
        )
    if p.is_dir():
        raise CortexmapError(f"Output file {p} is a folder; choose a file path.")
    try:  # before any work: a read-only place fails now, not after the computation
        p.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p.parent, prefix=f".{p.name}.", suffix=".probe"):
            pass
    except OSError as exc:
        raise CortexmapError(
            f"Cannot write {p} ({exc.strerror or exc}); choose another output path or fix the "
            "folder's permissions."
        ) from exc
    return p


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    Works for files and folders (e.g. a zarr store written by a library).
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        yield tmp
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default))


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    return str(obj)


def write_table(df: pd.DataFrame, path_stem: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``df`` as ``<stem>.parquet`` and ``<stem>.csv``, each atomically."""
    stem = Path(path_stem)
    parquet, csv = stem.with_suffix(".parquet"), stem.with_suffix(".csv")
    with atomic_path(parquet) as tmp:
        df.to_parquet(tmp, index=False)
    with atomic_path(csv) as tmp:
        df.to_csv(tmp, index=False)
    return parquet, csv

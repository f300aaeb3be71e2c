"""A finished analysis stored as data that cannot execute: JSON and Parquet, never pickle.

The main job keeps, per analysis, ``result.json`` (format tag, resume key, findings and the
analysis's rendered report sections: titles, intros and HTML blocks) and one Parquet file per
table of the result under ``tables/``. :func:`load_result` rebuilds a :class:`StoredResult`
from those files, so ``cortexmap report`` and a resumed job never unpickle a file that someone
could have put into a run folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cortexmap.errors import CortexmapError
from cortexmap.report.document import Finding, Report, Section, _Block
from cortexmap.utils.io import atomic_path, safe_filenames, write_json

RESULT_FORMAT = "cortexmap-result/1"
RESULT_FILE = "result.json"


@dataclass
class StoredResult:
    """A finished analysis read back from its folder: findings, report sections, tables."""

    findings: list[Finding]
    sections: list[Section]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    key: dict[str, Any] = field(default_factory=dict)

    def add_to_report(self, report: Report) -> None:
        report.sections.extend(self.sections)


def _section_to_dict(sec: Section) -> dict[str, Any]:
    return {
        "title": sec.title, "intro": sec.intro,
        "blocks": [{"kind": b.kind, "html": b.html} for b in sec.blocks],
        "subsections": [_section_to_dict(s) for s in sec.subsections],
    }


# markup that could run in the browser that opens the report; cortexmap's own blocks (escaped
# text, pandas tables, base64 PNGs) never contain it
_ACTIVE = re.compile(r"<\s*(script|iframe|object|embed|link|meta|style)\b|<[^>]*\son\w+\s*="
                     r"|javascript:", re.IGNORECASE)


def _block(d: dict[str, Any]) -> _Block:
    kind, html = str(d["kind"]), str(d["html"])
    if _ACTIVE.search(html):
        raise ValueError("a report block holds active markup (script, event handler)")
    return _Block(kind, html)


def _section_from_dict(d: dict[str, Any]) -> Section:
    return Section(
        title=str(d["title"]), intro=str(d.get("intro", "")),
        blocks=[_block(b) for b in d.get("blocks", [])],
        subsections=[_section_from_dict(s) for s in d.get("subsections", [])],
    )


def _finding_from_dict(d: dict[str, Any]) -> Finding:
    names = {f.name for f in dataclasses.fields(Finding)}
    return Finding(**{k: v for k, v in d.items() if k in names})


def _result_tables(result: Any) -> dict[str, pd.DataFrame]:
    """A result's tables: its ``tables`` dict and any other DataFrame field of a dataclass."""
    out = {k: v for k, v in (getattr(result, "tables", None) or {}).items()
           if isinstance(v, pd.DataFrame)}
    if dataclasses.is_dataclass(result):
        for f in dataclasses.fields(result):
            value = getattr(result, f.name, None)
            if isinstance(value, pd.DataFrame) and f.name not in out:
                out[f.name] = value
    return out


def save_result(folder: str | os.PathLike, result: Any, key: dict[str, Any]) -> StoredResult:
    """Store ``result`` (an analysis result with ``findings`` and ``add_to_report``) in ``folder``
    and return it as a :class:`StoredResult` (its report sections rendered once).

    The tables go first and ``result.json`` last, so a folder whose ``result.json`` exists is
    complete (each file is written atomically).
    """
    out = Path(folder)
    scratch = Report("")
    result.add_to_report(scratch)
    tables = {}
    frames = _result_tables(result)
    stems = safe_filenames(list(frames), "table")
    for name, df in frames.items():
        stem = stems[name]
        try:
            with atomic_path(out / "tables" / f"{stem}.parquet") as tmp:
                df.to_parquet(tmp, index=False)
        except Exception:  # a column Parquet cannot hold (pyarrow errors vary): kept in the HTML
            continue
        tables[name] = f"tables/{stem}.parquet"
    write_json(out / RESULT_FILE, {
        "format": RESULT_FORMAT,
        "key": key,
        "findings": [dataclasses.asdict(f) for f in result.findings],
        "sections": [_section_to_dict(s) for s in scratch.sections],
        "tables": tables,
    })
    return StoredResult(result.findings, scratch.sections,
                        {k: v for k, v in frames.items() if k in tables}, key)


def load_result(path: str | os.PathLike) -> StoredResult:
    """Read a result stored by :func:`save_result` (``path``: its folder or ``result.json``)."""
    p = Path(path)
    if p.is_dir():
        p = p / RESULT_FILE
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != RESULT_FORMAT:
            raise ValueError(f"no format tag {RESULT_FORMAT!r}")
        tables = {}
        for name, rel in data.get("tables", {}).items():
            file = (p.parent / rel).resolve()
            if p.parent.resolve() not in file.parents:
                raise ValueError(f"table {name!r} points outside its folder")
            tables[name] = pd.read_parquet(file)
        return StoredResult(
            findings=[_finding_from_dict(f) for f in data["findings"]],
            sections=[_section_from_dict(s) for s in data["sections"]],
            tables=tables,
            key=data.get("key", {}),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CortexmapError(
            f"Saved result {p} cannot be read ({type(exc).__name__}: {exc}); run the analysis "
            "again (cortexmap demo --no-resume) to re-create it."
        ) from exc

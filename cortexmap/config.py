"""Analysis configs from TOML, YAML or JSON files, validated with pydantic.

Every analysis has a pydantic ``XConfig`` whose defaults run on the bundled data; a user's file
overrides any subset of its fields (TOML is the documented format, see ``examples/``; YAML and
JSON are accepted too). Validation problems become one ``CortexmapError`` that names the field.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from cortexmap.errors import CortexmapError

C = TypeVar("C", bound=BaseModel)


def read_config_file(path: str | os.PathLike, section: str | None = None) -> dict[str, Any]:
    """The mapping in a .toml / .yaml / .yml / .json file (optionally one top-level section)."""
    p = Path(path)
    if not p.is_file():
        raise CortexmapError(f"Config file {p} does not exist; check the path.")
    if p.suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise CortexmapError(
            f"Config file {p} has suffix {p.suffix!r}; use .toml, .yaml/.yml or .json."
        )
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix == ".toml":
            data = tomllib.loads(text)
        elif p.suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text) or {}
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, yaml.YAMLError, ValueError) as exc:
        raise CortexmapError(f"Config file {p} cannot be parsed: {exc}") from exc
    if not isinstance(data, dict):
        raise CortexmapError(f"Config file {p} must hold a mapping of option names to values.")
    if section is not None and isinstance(data.get(section), dict):
        data = data[section]
    return data


def build_config(cls: type[C], values: dict[str, Any], source: str = "config") -> C:
    """Validate ``values`` into ``cls``; the error names the offending field and what it needs."""
    try:
        return cls(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        )
        valid = ", ".join(cls.model_fields)
        raise CortexmapError(
            f"Invalid {source} for {cls.__name__}: {problems}. Valid fields: {valid}."
        ) from exc


def load_config(
    cls: type[C], path: str | os.PathLike | None = None, section: str | None = None,
    **overrides: Any,
) -> C:
    """Config of type ``cls`` from an optional file, with non-None ``overrides`` applied on top."""
    values = read_config_file(path, section) if path is not None else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return build_config(cls, values, source=str(path) if path else "options")

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


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A mapping that refuses a repeated key (a silent last-one-wins hides a typo)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice in one table; keep one")
        out[key] = value
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load that refuses a key repeated in one mapping."""

    def construct_mapping(self, node, deep=False):
        pairs = [(self.construct_object(k, deep=deep), self.construct_object(v, deep=deep))
                 for k, v in node.value]
        try:
            return _unique_pairs(pairs)
        except ValueError as exc:
            raise yaml.constructor.ConstructorError(
                None, None, str(exc), node.start_mark) from exc


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
            data = tomllib.loads(text)  # repeated keys are a TOML error already
        elif p.suffix == ".json":
            data = json.loads(text, object_pairs_hook=_unique_pairs)
        else:
            data = yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, yaml.YAMLError, ValueError) as exc:
        raise CortexmapError(f"Config file {p} cannot be parsed: {exc}") from exc
    if not isinstance(data, dict):
        raise CortexmapError(f"Config file {p} must hold a mapping of option names to values.")
    if section is not None and isinstance(data.get(section), dict):
        data = data[section]
    return _resolve_relative(data, p.parent)


def _resolve_relative(value: Any, base: Path) -> Any:
    """Relative paths in a config file that exist beside the file (and not in the working
    folder) are read from beside the file, so a config works from any working folder."""
    if isinstance(value, dict):
        return {k: _resolve_relative(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_relative(v, base) for v in value]
    if (isinstance(value, str) and value and not os.path.isabs(value)
            and not os.path.exists(value) and (base / value).exists()):
        return str(base / value)
    return value


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

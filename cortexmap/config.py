"""Analysis configs: the shared base, the shared field types, and reading them from files.

Every analysis has a pydantic ``XConfig`` that subclasses :class:`AnalysisConfig` (unknown
fields are refused, a config is immutable once built) and whose defaults run on the bundled
data. A concept that several analyses share has one field name and one type here (its bounds
and description travel with the type), so ``seed``, ``model``, ``layers``, ``stimuli``,
``brain`` or ``scheduler`` mean the same everywhere. A user's file overrides any subset of the
fields (TOML is the documented format, see ``examples/``; YAML and JSON are accepted too).
Validation problems become one ``CortexmapError`` that names the field, before any work starts.
"""

from __future__ import annotations

import contextvars
import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cortexmap.errors import CortexmapError

C = TypeVar("C", bound=BaseModel)
# Where the values of the config being built come from (a file section, command-line options),
# for the error message.
_SOURCE: contextvars.ContextVar[str] = contextvars.ContextVar("config_source", default="settings")


class AnalysisConfig(BaseModel):
    """Base of every analysis config: unknown fields are errors (a typo never passes silently),
    defaults are validated too, and a built config is frozen (derive variants with
    ``model_copy(update=...)``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:  # one CortexmapError naming each bad field
            raise CortexmapError(_invalid(type(self), exc, _SOURCE.get())) from None


# -- shared field types: one name, one meaning, one bound per concept --------------------------
Seed = Annotated[int, Field(ge=0, description="Random seed; every random draw derives from it.")]
ModelSpec = Annotated[str, Field(
    min_length=1, description="Network spec for cortexmap.models.load (zoo:NAME, a torchvision "
    "or timm name, NAME:untrained, or a TorchScript/checkpoint file).")]
LayerNames = Annotated[list[str] | None, Field(
    description="Layer names (cortexmap models layers MODEL lists them); None: the analysis's "
    "default layers.")]
StimuliSource = Annotated[str, Field(
    min_length=1, description="'bundled' (the bundled photographs) or a folder of images.")]
BrainSource = Annotated[str, Field(
    min_length=1, description="'phantom' (simulated subjects with a planted truth) or a dataset "
    "folder in the cortexmap.brain.load_dataset layout.")]
Scheduler = Annotated[str | None, Field(
    description="Dask scheduler: None runs in this process; 'local', a scheduler address or "
    "'slurm' runs on a Dask cluster.")]
Count = Annotated[int, Field(ge=1)]
Alpha = Annotated[float, Field(gt=0, lt=1, description="Significance level.")]


class ModelFields(AnalysisConfig):
    """The network: ``model`` plus an optional local ``weights`` file and its ``arch``."""

    model: ModelSpec = "zoo:alexnet_sup_s0"
    weights: str | None = Field(None, description="Local weights file for the model.")
    arch: str | None = Field(None, description="Architecture of a state_dict weights file.")


class BrainFields(AnalysisConfig):
    """The brain data: ``brain`` plus, for a dataset folder, its ROI ``atlas`` and names."""

    brain: BrainSource = "phantom"
    atlas: str | None = Field(None, description="ROI label image (default: the dataset's "
                              "atlas.nii.gz).")
    atlas_table: str | None = Field(None, description="ROI names of the atlas (default: the "
                                    "dataset's atlas.tsv).")


class DaskFields(AnalysisConfig):
    """Where the parallel work runs."""

    scheduler: Scheduler = None


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
    token = _SOURCE.set(source)
    try:
        return cls(**values)
    except ValidationError as exc:
        raise CortexmapError(_invalid(cls, exc, source)) from exc
    finally:
        _SOURCE.reset(token)


def _invalid(cls: type[BaseModel], exc: ValidationError, source: str) -> str:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg'].rstrip('.')}"
        for err in exc.errors()
    )
    return (f"Invalid {source} for {cls.__name__}: {problems}. Valid fields: "
            f"{', '.join(cls.model_fields)}.")


def load_config(
    cls: type[C], path: str | os.PathLike | None = None, section: str | None = None,
    **overrides: Any,
) -> C:
    """Config of type ``cls`` from an optional file, with non-None ``overrides`` applied on top."""
    values = read_config_file(path, section) if path is not None else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return build_config(cls, values, source=str(path) if path else "options")

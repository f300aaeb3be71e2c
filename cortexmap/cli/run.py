"""``cortexmap run NAME``: one command per registered analysis, generated from its config.

Every field of the analysis's config is an option (``n_perm`` -> ``--n-perm``) whose help is
the field's description and its default, so the command line can never restate a default
differently from the config. Lists are comma-separated (``--layers conv1,conv3``), mappings
are JSON (or the config's own spelling), booleans are ``--flag/--no-flag``. Values come from
the config defaults, then a ``--config`` file (its ``[name]`` table, or the whole file), then
the options; all of them are validated together by the config before any output folder
exists.
"""

from __future__ import annotations

import inspect
import json
import os
import types
import typing
from pathlib import Path
from typing import Any

import typer
from pydantic.fields import FieldInfo

from cortexmap.analyses import REGISTRY, Analysis
from cortexmap.cli.common import console, print_findings, split_list
from cortexmap.config import build_config, read_config_file

#: What a command does and worked examples, shown under its title in ``--help``.
HELP: dict[str, str] = {
    "center-periphery": """Mohsenzadeh et al. 2020: central-bias and background-selective \
units against foveal and peripheral brain regions. Per convolutional layer: receptive fields of \
every feature-map position, a background selectivity index from object-only / background-only \
renderings, two unit groups, their RDMs, and the unit-group x region RSA table with \
permutation p-values, noise ceilings and a bootstrap CI of the crossover interaction.

Examples:

  cortexmap run center-periphery --out runs/center_periphery

  cortexmap run center-periphery --phantom null --out runs/cp_null

  cortexmap run center-periphery --model alexnet --layers features.2,features.5,features.12 \\
      --selection threshold --threshold 0.3 --out runs/cp_alexnet

  cortexmap run center-periphery --stimuli my_images/ --masks-dir my_masks/ \\
      --brain my_fmri/ --foveal-region LOC --peripheral-region PPA --out runs/cp_real
""",
    "synthesis": """Images whose layer RDMs are mutually uncorrelated, then natural / \
synthesized / residual mapping on the phantom brain.

Examples:

  cortexmap run synthesis --out runs/synthesis

  cortexmap run synthesis --model mobilenet_v2 --size 96 --out runs/synthesis_mobilenet

  cortexmap run synthesis --config examples/synthesis_googlenet.toml --out runs/s --overwrite
""",
    "orientation": """Orientation tuning of units to gratings, its growth over training \
epochs, its relation to generalization across networks, and the causal test by ablating the \
most selective units (against random and least-selective controls). Re-running into the same \
folder with the same settings resumes the per-model sweeps.

Examples:

  cortexmap run orientation --out runs/orientation

  cortexmap run orientation --layers conv1,conv2,conv3 --ablation-layer conv1 --ks 2,4,8 \\
      --out runs/orientation_conv1

  cortexmap run orientation --model mobilenet_v2 --images photos/ --labels labels.csv \\
      --class-names imagenet --no-dynamics --networks none --out runs/o_mobilenet
""",
    "lesion": """Remove each kernel of each layer in turn and measure accuracy at contrasts \
100..1 %; find the kernels whose removal hurts low contrast most and test that removing them \
together hurts more than removing as many random kernels. Re-running into the same folder \
resumes the per-layer sweep.

Examples:

  cortexmap run lesion --out runs/lesion

  cortexmap run lesion --layers conv1,conv2 --mode mean --per-class --n-images 500 \\
      --sets "conv1:3+7+9;conv2:1+2" --workers 2 --out runs/lesion_mean
""",
    "contrast": """Accuracy versus contrast with a Naka-Rushton fit, where contrast is \
encoded (decoding and RSA per layer), and divisive normalisation as a baseline mechanism.

Examples:

  cortexmap run contrast --out runs/contrast

  cortexmap run contrast --model zoo:vgg_sup_s0 --layers block1,block2,block3,fc6 \\
      --norm-layer block1 --out runs/contrast_vgg
""",
    "universal": """Chen & Bonner: dimensions many networks share are the brain-aligned ones.

Examples:

  cortexmap run universal --out runs/universal

  cortexmap run universal --networks zoo:alexnet_sup_s0,zoo:vgg_sup_s0,zoo:resnet_sup_s0 \\
      --n-dims 20 --scheduler local --out runs/universal_small
""",
    "benchmark": """Networks x layers against real brain and behaviour RDMs. Needs the \
92-image and Algonauts-78 sets: ../shared/data, the user cache, $CORTEXMAP_DATA or \
--data-dir; downloaded with checksums when online. See docs/real_data.md.

Examples:

  cortexmap run benchmark --out runs/benchmark

  cortexmap run benchmark --networks mobilenet_v2,mobilenet_v2:untrained --targets hIT,IT \\
      --n-boot 200 --out runs/bench_small
""",
    "encode": """Voxel-wise encoding models of every subject of a dataset folder: \
cross-validated ridge from a feature table to each voxel (penalty chosen per voxel), R² and \
Pearson r on held-out stimuli, normalised by each voxel's noise ceiling when there are repeated \
runs; group sign-flip test (max-statistic FWE). With 2-3 feature spaces (an .npz with one array \
per space): variance partitioning (unique / shared R²) and banded ridge (himalaya) per region. \
Features: .npy (n_conditions, n_features) or .npz (one array per feature space), rows in the \
order of the dataset's condition tables. Also `cortexmap encode DATASET FEATURES`.

Examples:

  cortexmap run encode --dataset runs/phantom --features layer.npy --out runs/enc

  cortexmap run encode --dataset data/study --features spaces.npz --scheduler local \\
      --out runs/enc2
""",
    "power": """How many subjects does an RSA study need? Simulates phantoms (a network's \
layer RDMs planted in brain regions, as `cortexmap phantom`) over a grid of SNR x subjects x \
runs x searchlight radius with repetitions, runs ROI RSA and the group searchlight (sign-flip, \
max-statistic FWE) on each, and reports recovery (fraction of planted regions detected, Dice), \
the family-wise false-positive rate on null phantoms (SNR 0) and the subjects needed for 80 % \
recovery per SNR. Grid cells run as dask tasks (--scheduler local for a LocalCluster). Its \
findings are method checks: recovery of a planted truth, not a brain result. Also \
`cortexmap power`.

Examples:

  cortexmap run power --out runs/power

  cortexmap run power --snr 0.35,1 --subjects 4,8,12,16 --mask mni --scheduler local \\
      --out runs/pw

  cortexmap power --rdms runs/rdms/rdms.npz --layers conv1,fc7 --regions V1,LOC --out runs/pw2
""",
}

#: Generated commands that are also top-level commands (``cortexmap power``).
TOP_LEVEL = ("power",)

# Options every generated command has; no config field may use these names.
_COMMON = ("out", "config", "overwrite", "progress")


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the type without ``Optional``/``Annotated``, whether None is allowed)."""
    optional = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            optional = optional or len(args) < len(typing.get_args(annotation))
            annotation = args[0] if len(args) == 1 else str
        else:
            return annotation, optional


def _kind(info: FieldInfo) -> tuple[type, str]:
    """(the option's Python type, how its text becomes a value: scalar, list, json)."""
    tp, _ = _unwrap(info.annotation)
    origin = typing.get_origin(tp)
    if origin in (list, tuple, set):
        inner, _ = _unwrap(typing.get_args(tp)[0]) if typing.get_args(tp) else (str, False)
        return str, "json" if typing.get_origin(inner) in (list, tuple, dict) else "list"
    if origin is dict or tp is dict:
        return str, "json"
    if origin is typing.Literal:
        values = typing.get_args(tp)
        return (type(values[0]) if len({type(v) for v in values}) == 1 else str), "scalar"
    if tp in (bool, int, float, str):
        return tp, "scalar"
    return str, "scalar"


def _default_text(info: FieldInfo) -> str:
    value = info.get_default(call_default_factory=True)
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) if value else "none"
    if isinstance(value, dict):
        return json.dumps(value) if value else "{}"
    return "none" if value is None else str(value)


def _help(info: FieldInfo) -> str:
    tp, _ = _unwrap(info.annotation)
    text = (info.description or "").rstrip(".")
    if typing.get_origin(tp) is typing.Literal:
        text += (". " if text else "") + "One of: " + ", ".join(map(str, typing.get_args(tp)))
    if info.is_required():
        return f"{text} (required)".strip()
    if "default" in text.lower():  # the description already says what the default does
        return text
    return f"{text} (default: {_default_text(info)})".strip()


def _parse(name: str, text: Any, mode: str) -> Any:
    if mode == "list":
        return split_list(text)
    if mode == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text  # the config reads its own spellings (e.g. lesion sets) or names the error
    return text


def _command(analysis: Analysis):
    """A typer command function for ``analysis`` whose parameters are its config's fields."""
    fields = analysis.config.model_fields
    clash = set(fields) & set(_COMMON)
    if clash:
        raise RuntimeError(f"{analysis.config.__name__} fields {clash} clash with common options")
    modes = {name: _kind(info)[1] for name, info in fields.items()}
    params = [
        inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, annotation=Path,
                          default=typer.Option(Path(f"runs/{analysis.section}"), "--out", "-o",
                                               help="Output folder.")),
        inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Path | None,
                          default=typer.Option(None, "--config", help=(
                              f"TOML/YAML/JSON file of {analysis.config.__name__} fields: its "
                              f"'{analysis.section}' table, or the whole file."))),
    ]
    own = [n for n in vars(analysis.config).get("__annotations__", {}) if n in fields]
    for name in own + [n for n in fields if n not in own]:  # the analysis's own fields first
        info = fields[name]
        tp, _ = _kind(info)
        flag = "--" + name.replace("_", "-")
        decls = [f"{flag}/--no-{flag[2:]}" if tp is bool else flag]
        decls += analysis.aliases.get(name, [])
        params.append(inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, annotation=tp | None,
            default=typer.Option(None, *decls, help=_help(info), show_default=False)))
    params += [
        inspect.Parameter("overwrite", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                          default=typer.Option(False, "--overwrite",
                                               help="Replace cortexmap's results in OUT.")),
        inspect.Parameter("progress", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                          default=typer.Option(True, "--progress/--no-progress",
                                               help="Show progress bars.")),
    ]

    def command(**options: Any) -> None:
        out, config_file = options.pop("out"), options.pop("config")
        overwrite, progress = options.pop("overwrite"), options.pop("progress")
        values = read_config_file(config_file, analysis.section) if config_file else {}
        values.update({name: _parse(name, text, modes[name])
                       for name, text in options.items() if text is not None})
        cfg = build_config(analysis.config, values,
                           source=str(config_file) if config_file else "options")
        progress = progress and not os.environ.get("CORTEXMAP_NO_PROGRESS")
        result = analysis.run(cfg, out, overwrite=overwrite, progress=progress)
        print_findings(result.findings)
        console.print(f"results in {out} (report: {Path(out) / 'report.html'})")

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__name__ = analysis.section
    return command


def _command_help(analysis: Analysis) -> str:
    text = HELP.get(analysis.name) or inspect.cleandoc(analysis.config.__doc__ or "")
    return f"{analysis.title}.\n\n{text}"


def register(app: typer.Typer, run_app: typer.Typer) -> None:
    """Add ``cortexmap run NAME`` for every registered analysis that has no command yet."""
    taken = {c.name for c in run_app.registered_commands}
    for analysis in REGISTRY.values():
        if analysis.name not in taken:
            run_app.command(analysis.name, help=_command_help(analysis))(_command(analysis))
    for name in TOP_LEVEL:
        analysis = REGISTRY[name]
        app.command(name, help=_command_help(analysis))(_command(analysis))

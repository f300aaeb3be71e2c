"""Every example config validates against its analysis's config class (docs stay true)."""

from pathlib import Path

import pytest

from cortexmap.config import read_config_file
from cortexmap.pipeline import ANALYSES, analysis_config

EXAMPLES = Path(__file__).parents[1] / "examples"
SINGLE = {
    "center_periphery_own_data.toml": "center-periphery",
    "synthesis_googlenet.toml": "synthesis",
    "orientation.toml": "orientation",
    "orientation_own_data.toml": "orientation",
    "lesion.toml": "lesion",
    "universal.toml": "universal",
    "benchmark.toml": "benchmark",
}


@pytest.mark.parametrize("file,analysis", sorted(SINGLE.items()))
def test_single_analysis_examples_validate(file, analysis):
    values = read_config_file(EXAMPLES / file)
    cfg = analysis_config(analysis, values)
    for key, value in values.items():
        assert getattr(cfg, key) == value or list(getattr(cfg, key)) == value


def test_all_toml_has_a_valid_table_for_every_analysis():
    values = read_config_file(EXAMPLES / "all.toml")
    for name, analysis in ANALYSES.items():
        if analysis.in_job:
            analysis_config(name, values[analysis.section], demo=True)


def test_every_example_is_covered():
    assert {p.name for p in EXAMPLES.glob("*.toml")} == set(SINGLE) | {"all.toml"}

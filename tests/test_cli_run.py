"""`cortexmap run NAME`, generated from each registered config: options, aliases, errors."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cortexmap.analyses import REGISTRY
from cortexmap.analyses.lesion import LesionConfig
from cortexmap.cli import app
from cortexmap.errors import CortexmapError

runner = CliRunner()


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_analysis_has_a_command_whose_help_states_the_config_defaults(name):
    res = runner.invoke(app, ["run", name, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "--out" in res.output and "--config" in res.output
    cfg = REGISTRY[name].config
    for field, info in cfg.model_fields.items():
        assert f"--{field.replace('_', '-')}" in res.output
        if isinstance(info.default, (int, float)) and not isinstance(info.default, bool) \
                and "default" not in (info.description or "").lower():
            assert f"(default: {info.default})" in res.output, field


def test_contrast_levels_and_lesion_sets_read_their_spellings():
    assert LesionConfig(contrasts=["100%", "5%", "1%"]).contrasts == [1.0, 0.05, 0.01]
    assert LesionConfig(contrasts="1,0.5,0.01").contrasts == [1.0, 0.5, 0.01]
    sets = LesionConfig(lesion_sets="conv1:3+7+9;conv2:1+2;conv1:0+1").lesion_sets
    assert sets == {"conv1": [[3, 7, 9], [0, 1]], "conv2": [[1, 2]]}
    for bad in ("conv1", "conv1:", "conv1:a+b"):
        with pytest.raises(CortexmapError, match="LAYER:K1"):
            LesionConfig(lesion_sets=bad)


@pytest.mark.parametrize("args, message", [
    (["run", "lesion", "--contrasts", "1,0,0.5"], "outside"),
    (["run", "lesion", "--contrasts", "1,1.5"], "outside"),
    (["run", "lesion", "--n-images", "0"], "empty"),
    (["run", "contrast", "--n-images", "0"], "empty"),
    (["run", "lesion", "--mode", "noise"], "mode"),
    (["run", "lesion", "--sets", "conv1"], "LAYER:K1"),
    (["run", "center-periphery", "--method", "kendall"], "compare_method"),  # an old spelling
    (["run", "searchlight", "--dataset", "d", "--correction", "bonferroni"], "correction"),
])
def test_bad_input_is_a_clear_error_before_any_output(tmp_path, args, message):
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "o"), "--no-progress"])
    assert isinstance(res.exception, CortexmapError)
    assert message in str(res.exception)
    assert not (tmp_path / "o").exists()

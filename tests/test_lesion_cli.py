"""CLI of analysis 5: `cortexmap run lesion` / `cortexmap run contrast` parsing and errors."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cortexmap.cli import app
from cortexmap.cli.lesion import _contrasts, _sets
from cortexmap.errors import CortexmapError

runner = CliRunner()


def test_commands_are_registered_with_help():
    for cmd in ("lesion", "contrast"):
        res = runner.invoke(app, ["run", cmd, "--help"])
        assert res.exit_code == 0 and "--out" in res.output


def test_list_parsers():
    assert _contrasts("1,0.5,0.01") == [1.0, 0.5, 0.01]
    assert _contrasts("100%,5%,1%") == [1.0, 0.05, 0.01]
    assert _sets("conv1:3+7+9;conv2:1+2;conv1:0+1") == {"conv1": [[3, 7, 9], [0, 1]],
                                                          "conv2": [[1, 2]]}
    for bad in ("conv1", "conv1:", "conv1:a+b"):
        with pytest.raises(CortexmapError, match="LAYER:K1"):
            _sets(bad)


@pytest.mark.parametrize("args, message", [
    (["run", "lesion", "--contrasts", "1,0,0.5"], "outside"),
    (["run", "lesion", "--contrasts", "1,1.5"], "outside"),
    (["run", "lesion", "--n-images", "0"], "empty"),
    (["run", "contrast", "--n-images", "0"], "empty"),
    (["run", "lesion", "--mode", "noise"], "mode"),
])
def test_bad_input_is_a_clear_error(tmp_path, args, message):
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "o"), "--no-progress"])
    assert isinstance(res.exception, CortexmapError)
    assert message in str(res.exception)

"""Every `cortexmap run ANALYSIS --config FILE` validates the file before any work starts."""

import subprocess
import sys

import pytest

ANALYSES = ["center-periphery", "synthesis", "orientation", "lesion", "contrast", "universal",
            "benchmark"]


@pytest.mark.parametrize("analysis", ANALYSES)
def test_bad_config_field_is_named_and_nothing_is_written(tmp_path, analysis):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("no_such_option = 3\n")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", "from cortexmap.cli import main; main()", "run", analysis,
         "--config", str(cfg), "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "no_such_option" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()

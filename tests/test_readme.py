"""The README's Python tour runs as written (documentation that cannot drift)."""

import re
from pathlib import Path

import pytest


@pytest.mark.slow
def test_readme_python_tour_runs(tmp_path, monkeypatch, capsys):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    tour = re.search(r"### Python API\n\n```python\n(.*?)```", readme, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(tour, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "classifier" in out and "zoo:alexnet_sup_s0  conv2" in out  # layers, tuning table
    assert (tmp_path / "runs" / "tour_phantom" / "truth.json").exists()

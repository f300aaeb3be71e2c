"""The main job's mechanics (config sections, resume, combined report) with a stand-in analysis.

The real analyses are exercised end to end in tests/test_demo.py; here a minimal analysis
module keeps the job logic fast to test.
"""

from dataclasses import dataclass, field

import pandas as pd
import pytest

from cortexmap import pipeline
from cortexmap.analyses import Analysis
from cortexmap.config import AnalysisConfig
from cortexmap.errors import CortexmapError
from cortexmap.report import Finding


class EchoConfig(AnalysisConfig):
    value: int = 1


@dataclass
class EchoResult:
    value: int
    findings: list = field(default_factory=list)

    def add_to_report(self, report):
        report.section(f"Echo {self.value}").table(pd.DataFrame({"v": [self.value]}), "value")


CALLS = []


def run_echo(cfg, outdir, overwrite=False, progress=True):
    CALLS.append(cfg.value)
    outdir.mkdir(parents=True, exist_ok=True)
    return EchoResult(cfg.value, [Finding("echo works", cfg.value > 0, f"value={cfg.value}",
                                               evidence="in-silico",
                                               criterion="The value is positive.")])


@pytest.fixture
def echo(monkeypatch):
    entry = Analysis("echo", "Echo", EchoConfig, run_echo)
    monkeypatch.setitem(pipeline.ANALYSES, "echo", entry)
    monkeypatch.setitem(pipeline.DEMO_SETTINGS, "echo", {"value": 2})
    CALLS.clear()


def test_job_uses_config_sections_resumes_and_reports(tmp_path, echo):
    cfg = tmp_path / "job.toml"
    cfg.write_text("[echo]\nvalue = 5\n")
    res = pipeline.run_job(tmp_path / "run", ["echo"], config_file=cfg, progress=False)
    assert CALLS == [5] and res.findings[0].analysis == "echo"
    html = res.report_path.read_text()
    assert "Echo 5" in html and "Summary of findings" in html
    again = pipeline.run_job(tmp_path / "run", ["echo"], config_file=cfg, progress=False)
    assert CALLS == [5] and bool(again.timings.resumed.iloc[0])  # reused, not rerun
    pipeline.run_job(tmp_path / "run", ["echo"], progress=False, resume=False, overwrite=True)
    assert CALLS == [5, 2]  # demo settings when the file does not set the value
    pipeline.run_job(tmp_path / "run", ["echo"], config_file=cfg, progress=False)
    assert CALLS == [5, 2, 5]  # a saved result from another config is not reused


def test_job_validates_every_config_before_running(tmp_path, echo):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[echo]\nvalue = "x"\n')
    with pytest.raises(CortexmapError, match=r"Invalid \[echo\] for EchoConfig: value"):
        pipeline.run_job(tmp_path / "run", ["echo"], config_file=cfg, progress=False)
    assert CALLS == [] and not (tmp_path / "run").exists()
    with pytest.raises(CortexmapError, match="Unknown analysis 'nope'; choose from"):
        pipeline.run_job(tmp_path / "run", ["nope"], progress=False)


def test_existing_folder_is_refused_without_overwrite(tmp_path, echo):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x.txt").write_text("keep")
    with pytest.raises(CortexmapError, match="--overwrite"):
        pipeline.run_job(tmp_path / "run", ["echo"], progress=False)


def test_report_command_rebuilds_the_combined_report(tmp_path, echo):
    from typer.testing import CliRunner

    from cortexmap.cli import app

    pipeline.run_job(tmp_path / "run", ["echo"], progress=False)
    out = tmp_path / "again.html"
    res = CliRunner().invoke(app, ["report", str(tmp_path / "run"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    html = out.read_text()
    assert "Echo 2" in html and "echo works" in html
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert isinstance(res.exception, CortexmapError) and "no result.json" in str(res.exception)


class FileConfig(AnalysisConfig):
    weights: str
    value: int = 1


def test_resume_reruns_when_weights_or_named_files_change(tmp_path, echo, monkeypatch):
    # the same names with other contents (a retrained zoo, an edited weight file) are not
    # served from the saved result
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "index.json").write_text("{}")
    monkeypatch.setenv("CORTEXMAP_ZOO_DIR", str(zoo))
    weights = tmp_path / "net.pt"
    weights.write_bytes(b"v1")
    monkeypatch.setitem(pipeline.ANALYSES, "echo", Analysis("echo", "Echo", FileConfig, run_echo))
    cfg = tmp_path / "job.toml"
    cfg.write_text(f'[echo]\nweights = "{weights}"\nvalue = 3\n')

    def run():
        return pipeline.run_job(tmp_path / "run", ["echo"], config_file=cfg, progress=False)

    run()
    assert bool(run().timings.resumed.iloc[0]) and CALLS == [3]
    weights.write_bytes(b"v2")
    assert not bool(run().timings.resumed.iloc[0]) and CALLS == [3, 3]
    (zoo / "net.pt").write_bytes(b"retrained")
    assert not bool(run().timings.resumed.iloc[0]) and CALLS == [3, 3, 3]
    assert bool(run().timings.resumed.iloc[0])

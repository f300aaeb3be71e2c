import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from cortexmap.errors import CortexmapError
from cortexmap.report import EVIDENCE, Finding, Report, findings_table
from tests.report_check import check_report, chromium_paths


def _report(tmp_path):
    report = Report("Test report", "subtitle")
    for i in range(3):
        sec = report.section(f"Section {i}", "Intro with `code` and **bold**.")
        fig, ax = plt.subplots()
        ax.plot(np.arange(5) * i)
        sec.figure(fig, f"Figure {i}: a line.")
        sec.table(pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]}), "A table.")
        sec.subsection(f"Detail {i}").text("More text.\n\nSecond paragraph.")
    report.findings([
        Finding("A claim", True, "r = 0.9", "demo", evidence="in-silico",
                criterion="r above 0.5.", control="untrained twin r = 0.2"),
        Finding("Another claim", False, "r = 0.1", "demo", evidence="real-data",
                criterion="r above 0.5."),
        Finding("Planted layer found", True, "Dice 0.9", "demo", evidence="method-check",
                criterion="Dice >= 0.7."),
        Finding("Planted layer missed", False, "Dice 0.1", "demo", evidence="method-check",
                criterion="Dice >= 0.7."),
    ])
    return report.write(tmp_path / "report.html")


def test_report_is_self_contained_with_summary_and_navigation(tmp_path):
    html = _report(tmp_path).read_text()
    assert html.count("data:image/png;base64,") == 3
    assert 'href="#summary"' in html and 'id="section-2"' in html and 'id="detail-1"' in html
    assert "<strong>bold</strong>" in html and "<code>code</code>" in html
    assert '<td class="yes">reproduced</td>' in html
    assert '<td class="no">not reproduced</td>' in html
    assert "http://" not in html and "https://" not in html  # nothing fetched from outside


def test_summary_shows_evidence_class_criterion_and_control(tmp_path):
    html = _report(tmp_path).read_text()
    summary = html[html.index('id="summary"'):html.index("</table>", html.index('id="summary"'))]
    assert "<th>Evidence</th>" in summary
    for ev in EVIDENCE:  # each class has its own badge style and is explained up front
        assert f'class="evidence ev-{ev}"' in summary and f"<strong>{ev}</strong>" in summary
    assert "recovered the planted truth: yes" in summary
    assert "recovered the planted truth: no" in summary
    rows = summary.split('<tr class="finding">')[1:]
    assert len(rows) == 4
    for row in rows[2:]:  # method checks never read as reproductions
        assert "reproduced" not in row
    assert summary.count("<b>Criterion:</b>") == 4 and "untrained twin r = 0.2" in summary


def test_finding_validates_evidence_and_criterion():
    with pytest.raises(CortexmapError, match="evidence must be one of"):
        Finding("c", True, "n", evidence="simulation", criterion="x.")
    with pytest.raises(CortexmapError, match="no pass criterion"):
        Finding("c", True, "n", evidence="in-silico", criterion=" ")
    with pytest.raises(TypeError):
        Finding("c", True, "n")  # evidence and criterion are required
    f = Finding("c", 1, "n", evidence="method-check", criterion="x.")
    assert f.reproduced is True and f.verdict == "recovered the planted truth: yes"
    table = findings_table([f])
    assert list(table.columns[:2]) == ["analysis", "evidence"]
    assert table.loc[0, "criterion"] == "x." and table.loc[0, "verdict"] == f.verdict


def test_duplicate_section_titles_get_unique_anchors(tmp_path):
    report = Report("t")
    report.section("Same")
    report.section("Same")
    html = report.render()
    assert 'id="same"' in html and 'id="same-2"' in html


def require_browser():
    """Skip without chromium locally; CI sets CORTEXMAP_REQUIRE_BROWSER=1 so it must be there."""
    if chromium_paths() is None:
        if os.environ.get("CORTEXMAP_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium and chromedriver are required (apt-get install chromium "
                        "chromium-driver)")
        pytest.skip("needs chromium + chromedriver (CI installs them)")


@pytest.mark.browser
def test_report_in_headless_chromium(tmp_path):
    require_browser()
    result = check_report(_report(tmp_path))
    assert result["n_images"] == 3 and result["broken"] == []
    assert result["missing_targets"] == [] and result["n_links"] >= 8
    assert result["console_errors"] == []
    assert max(result["scrolled"]) > 0

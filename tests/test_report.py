import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from cortexmap.report import Finding, Report
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
    report.findings([Finding("A claim", True, "r = 0.9", "demo"),
                     Finding("Another claim", False, "r = 0.1", "demo")])
    return report.write(tmp_path / "report.html")


def test_report_is_self_contained_with_summary_and_navigation(tmp_path):
    html = _report(tmp_path).read_text()
    assert html.count("data:image/png;base64,") == 3
    assert 'href="#summary"' in html and 'id="section-2"' in html and 'id="detail-1"' in html
    assert "<strong>bold</strong>" in html and "<code>code</code>" in html
    assert '<td class="yes">yes</td>' in html and '<td class="no">no</td>' in html
    assert "http://" not in html and "https://" not in html  # nothing fetched from outside


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

"""The main report's opening sections: layer RDMs and layer CKA, each with an untrained twin."""

import numpy as np
import pytest

from cortexmap.analyses.overview import cka_summary, layer_overview
from cortexmap.report import Report


def test_overview_sections_finding_and_untrained_control():
    report = Report("overview")
    (finding,) = layer_overview(report, "zoo:alexnet_sup_s0", layers=["conv1", "conv3", "fc7"])
    rdm_sec, cka_sec = report.sections
    assert rdm_sec.title == "Layer RDMs on the bundled images"
    assert cka_sec.title == "Layer similarity by CKA"
    assert [b.kind for b in cka_sec.blocks] == ["figure", "figure", "table"]
    table_html = cka_sec.blocks[-1].html
    assert table_html.count("<td>untrained</td>") == 2
    assert table_html.count("<td>debiased</td>") == 2
    assert finding.evidence == "in-silico" and finding.criterion
    assert "untrained copy" in finding.control and "mean |Spearman|" in finding.control


def test_cka_summary_means_over_layer_pairs():
    m = np.array([[1.0, 0.8, 0.2], [0.8, 1.0, 0.6], [0.2, 0.6, 1.0]])
    t = cka_summary({("trained", False): m, ("trained", True): m - 0.1})
    assert list(t.estimate) == ["standard", "debiased"]
    assert t.mean_offdiagonal_cka.iloc[0] == pytest.approx((0.8 + 0.2 + 0.6) / 3)
    assert t.adjacent_layers_cka.iloc[0] == pytest.approx((0.8 + 0.6) / 2)
    assert t.adjacent_layers_cka.iloc[1] == pytest.approx((0.7 + 0.5) / 2)

"""Layer maps on the phantom: recovery of planted regions, assignment, overlap; CLI end to end."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cortexmap.brain import overlap, overlap_table
from cortexmap.brain.group import group_searchlight
from cortexmap.brain.phantom import make_phantom, slab_mask
from cortexmap.rsa import compute_rdms

REGIONS = ["V1", "LOC", "fusiform", "parahippocampal"]


def test_overlap_values():
    a = np.array([1, 1, 1, 0, 0], bool)
    b = np.array([0, 1, 1, 1, 0], bool)
    ov = overlap(a, b)
    assert ov["dice"] == pytest.approx(2 * 2 / 6) and ov["jaccard"] == pytest.approx(2 / 4)
    assert np.isnan(overlap(np.zeros(3, bool), np.zeros(3, bool))["dice"])
    df = overlap_table({"a": a, "b": b, "c": a})
    assert len(df) == 3 and df.query("a == 'a' and b == 'c'")["dice"].item() == 1.0


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    rng = np.random.default_rng(0)
    models = compute_rdms([rng.standard_normal((12, 40)) for _ in REGIONS],
                          names=[f"layer{i}" for i in range(len(REGIONS))])
    ds = make_phantom({r: models[i] for i, r in enumerate(REGIONS)},
                      tmp_path_factory.mktemp("ph"), n_subjects=10, n_runs=2, snr=2.0, seed=0,
                      mask=slab_mask(3), compress=False, progress=False)
    res = group_searchlight(ds.load(), models, atlas=ds.atlas(), planted=ds.planted,
                            radius_mm=6.0, n_perm=1024, scheduler="serial", progress=False)
    return ds, res


def test_searchlight_recovers_planted_regions(mapped):
    ds, res = mapped
    rec = res.tables["recovery"]
    assert list(rec["region"]) == REGIONS
    assert (rec["dice"] >= 0.7).all(), rec
    assert res.findings[0].reproduced
    assert next(iter(res.group.values())).exact  # 10 subjects: all 1024 sign patterns


def test_assignment_and_clusters(mapped):
    ds, res = mapped
    asg = res.tables["assignment"]
    best = dict(zip(asg[asg["best"]]["region"], asg[asg["best"]]["model"], strict=True))
    assert best == ds.planted
    cl = res.tables["clusters"]
    # each layer: two clusters (both hemispheres) whose peaks lie in the planted region
    for region, layer in ds.planted.items():
        mine = cl[cl["model"] == layer]
        assert len(mine) >= 2 and set(mine.head(2)["peak_region"]) == {region}
        assert set(np.sign(mine.head(2)["peak_x"])) == {-1.0, 1.0}
    ov = res.tables["overlap"]
    assert (ov["dice"].fillna(0) < 0.2).all()  # distinct regions, distinct maps


def test_cli_end_to_end(tmp_path, monkeypatch):
    from cortexmap.cli import app

    monkeypatch.setenv("CORTEXMAP_NO_PROGRESS", "1")
    rng = np.random.default_rng(1)
    compute_rdms([rng.standard_normal((8, 20)) for _ in range(2)],
                 names=["conv1", "fc7"]).save(tmp_path / "rdms.npz")
    runner = CliRunner()
    ph = tmp_path / "ph"
    r = runner.invoke(app, ["phantom", str(ph), "--rdms", str(tmp_path / "rdms.npz"),
                            "--regions", "V1,fusiform", "--n-subjects", "2", "--slab",
                            "--snr", "1"])
    assert r.exit_code == 0, r.output
    truth = json.loads((ph / "truth.json").read_text())
    assert [x["planted"] for x in truth["regions"]] == ["conv1", "fc7"]
    r = runner.invoke(app, ["roi-rsa", str(ph), "--out", str(tmp_path / "roi")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "roi" / "summary.parquet").exists()
    assert (tmp_path / "roi" / "report.html").exists()
    r = runner.invoke(app, ["searchlight", str(ph), "--out", str(tmp_path / "sl"),
                            "--scheduler", "serial", "--n-perm", "100"])
    assert r.exit_code == 0, r.output
    for f in ["clusters.csv", "assignment.csv", "recovery.csv", "report.html",
              "group/winner.nii.gz", "group/mean_fc7.nii.gz", "subjects/sub-01/r_conv1.nii.gz",
              "provenance.json"]:
        assert (tmp_path / "sl" / f).exists(), f
    # a clear error (exit code 2 from main) for a condition-count mismatch
    compute_rdms([rng.standard_normal((5, 20))], names=["x"]).save(tmp_path / "bad.npz")
    r = runner.invoke(app, ["roi-rsa", str(ph), "--out", str(tmp_path / "roi2"),
                            "--rdms", str(tmp_path / "bad.npz")])
    assert r.exit_code != 0 and "conditions" in str(r.exception)


def test_report_and_figures(mapped, tmp_path):
    import matplotlib.pyplot as plt

    from cortexmap.brain.figures import glass_brain, slices, winner_figure
    from cortexmap.report import Report

    ds, res = mapped
    g = next(iter(res.group.values()))
    for fig in (glass_brain(g.img("mean"), "mean r"), slices(g.img("t"), threshold=1.0),
                winner_figure(res.subjects[0].winner_img(), res.subjects[0].model_names)):
        assert isinstance(fig, plt.Figure)
        plt.close(fig)
    report = Report("brain")
    res.add_to_report(report)
    html = report.write(tmp_path / "r.html").read_text()
    assert "Searchlight RSA" in html and html.count("data:image/png;base64") >= 5

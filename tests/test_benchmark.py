"""The real-data benchmark: numbers equal rsatoolbox's, tables and findings, skip without data."""

import numpy as np
import pytest
import rsatoolbox

from cortexmap.analyses.benchmark import BenchmarkConfig, run_benchmark
from cortexmap.analyses.benchmark_report import HOW_TO_GET_DATA
from cortexmap.analyses.networks import stage_layers
from cortexmap.datasets import DataNotFoundError, fetch
from cortexmap.rsa import RDMs

NETS = ["zoo:alexnet_sup_s0", "zoo:alexnet_untrained_s0", "zoo:vgg_sup_s0"]


@pytest.fixture(scope="module")
def bench(kriegeskorte92, algonauts78, tmp_path_factory):
    cfg = BenchmarkConfig(networks=NETS, n_layers=3, n_boot=12, n_boot_variants=12,
                          n_dims=6, ks=[1, 2, 3, 6])
    return run_benchmark(cfg, tmp_path_factory.mktemp("bench") / "out", progress=False)


@pytest.mark.parametrize(("ours", "theirs"), [("kendall_tau_a", "tau-a"),
                                              ("spearman", "spearman")])
def test_scores_and_ceilings_equal_rsatoolbox(bench, kriegeskorte92, algonauts78, ours, theirs):
    scores = bench.tables["scores"]
    for target, data, dataset in [("hIT", kriegeskorte92, "kriegeskorte92"),
                                  ("IT", algonauts78, "algonauts78")]:
        layers = RDMs.load(bench.outdir / "rdms" / f"{dataset}.npz")
        subjects = data.subject_rdms(target)
        rt_data = rsatoolbox.rdm.RDMs(subjects.vectors)
        models = [rsatoolbox.model.ModelFixed(n, layers.vectors[k])
                  for k, n in enumerate(layers.names)]
        want = rsatoolbox.inference.eval_fixed(models, rt_data, method=theirs)
        want = want.evaluations.reshape(len(models), -1).mean(1)
        got = scores[(scores.target == target) & (scores.method == ours)]
        np.testing.assert_allclose(got.score.to_numpy(), want, atol=1e-6)
        low, up = rsatoolbox.inference.boot_noise_ceiling(rt_data, method=theirs)
        np.testing.assert_allclose(got.ceiling_lower, low, atol=1e-6)
        np.testing.assert_allclose(got.ceiling_upper, up, atol=1e-6)


def test_tables_findings_and_outputs(bench):
    t = bench.tables
    best = t["best"]
    assert set(best.network) == set(NETS)
    assert len(best) == len(NETS) * len(bench.config.targets) * len(bench.config.methods)
    assert best.stability.between(0, 1).all()
    for (target, method, net), sub in t["scores"].groupby(["target", "method", "network"]):
        row = best[(best.target == target) & (best.method == method) & (best.network == net)]
        assert row.score.iloc[0] == sub.score.max()
    assert (t["pairwise"].q_fdr >= t["pairwise"].p - 1e-12).all()
    assert t["pairwise"].model_a.isin(NETS).all()
    assert set(t["families"].family) == {"zoo", "untrained"}
    # the ceiling verdict uses a layer chosen on the other subjects, never the in-sample best
    ceil = t["ceilings"].set_index(["target", "method"])
    for target in ("hIT", "EVC", "IT"):
        row = ceil.loc[(target, bench.config.methods[0])]
        top = best[(best.target == target) & (best.method == bench.config.methods[0])]
        assert row.best_cv <= top.score.max() + 1e-12 and row.best_cv_layers
        found = next(f for f in bench.findings if f"the {target} noise ceiling" in f.claim)
        assert found.reproduced == bool(row.best_cv >= row.lower)
        assert "leave one subject out" in found.numbers and "same subjects" in found.control
    ref = t["reference"]
    mit = ref[ref.comparison.str.startswith("mIT vs hIT") & (ref.method == "spearman")]
    assert mit.score.iloc[0] == pytest.approx(0.4389, abs=1e-3)
    assert len(ref[ref.comparison == "model RDM vs hIT subjects"]) == 2 * 9
    assert {"universal_relation", "universal_reduction", "residual_specificity",
            "residual_assignment"} <= set(t)
    assert set(t["residual_specificity"].method) == {"plain", "residual", "partial"}
    assert bench.findings and all(f.evidence == "real-data" and f.criterion
                                  for f in bench.findings)
    assert (bench.outdir / "figures" / "bars_kendall_tau_a.png").stat().st_size > 1000
    html = (bench.outdir / "report.html").read_text()
    assert "noise ceiling" in html and "no real-data test" in html


def test_without_data_error_or_skip(tmp_path, monkeypatch):
    monkeypatch.setenv("CORTEXMAP_DATA", str(tmp_path / "none"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(fetch, "_SHARED_LEVELS", 0)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataNotFoundError, match="not found"):
        run_benchmark(BenchmarkConfig(download=False), tmp_path / "err", progress=False)
    assert not (tmp_path / "err").exists()  # nothing written before the error
    res = run_benchmark(BenchmarkConfig(download=False, if_missing="skip"), tmp_path / "skip",
                        progress=False)
    assert res.skipped and not res.findings
    html = (tmp_path / "skip" / "report.html").read_text()
    assert "Real data: skipped" in html and "CORTEXMAP_DATA" in html
    assert "shared/data" in HOW_TO_GET_DATA


def test_stage_layers_span_the_network():
    from cortexmap.models import load
    from cortexmap.models.weights import STAGE_LAYERS

    m = load("mobilenet_v2:untrained")  # curated stage ends of the real networks
    layers = stage_layers(m, 224, 4)
    assert layers[0] == "features.0" and layers[-1] == "features.18" and len(layers) == 4
    assert set(layers) <= set(STAGE_LAYERS["mobilenet_v2"])
    assert stage_layers(load(NETS[0]), 64, 3) == ["conv1", "conv5", "classifier"]
    assert stage_layers(load("zoo:vit_sup_s0"), 64, 3) == ["patch_embed", "block3",
                                                           "classifier"]


def test_bad_network_or_layer_fails_before_output(tmp_path, kriegeskorte92, algonauts78):
    from cortexmap.errors import CortexmapError

    with pytest.raises(CortexmapError, match="no_such_layer"):
        run_benchmark(BenchmarkConfig(networks=NETS[:1], layers={NETS[0]: ["no_such_layer"]}),
                      tmp_path / "out", progress=False)
    with pytest.raises(CortexmapError):
        run_benchmark(BenchmarkConfig(networks=["zoo:no_such_net"]), tmp_path / "out",
                      progress=False)
    assert not (tmp_path / "out").exists()


def test_demo_part_without_data_says_skipped(tmp_path, monkeypatch):
    from cortexmap.pipeline import run_job

    monkeypatch.setenv("CORTEXMAP_DATA", str(tmp_path / "none"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(fetch, "_SHARED_LEVELS", 0)
    monkeypatch.chdir(tmp_path)
    job = run_job(tmp_path / "demo", analyses=["benchmark"], demo=True, progress=False)
    assert job.results["benchmark"].skipped and job.findings == []
    html = job.report_path.read_text()
    assert "Real data: skipped" in html and "shared/data" in html

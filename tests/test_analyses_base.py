"""The analysis contract, checked for every analysis in the registry.

Each analysis refuses an unknown field and a bad value when its config is built (before any
work or output), runs on tiny inputs, and leaves its tables, findings with an evidence class and
pass criterion, a report section, report.html and provenance.json behind. A new registry entry
needs its tiny settings below; nothing else here changes.
"""

import typing

import numpy as np
import pandas as pd
import pytest

from cortexmap.analyses import REGISTRY
from cortexmap.analyses.base import AnalysisConfig, AnalysisResult
from cortexmap.analyses.brain import PhantomConfig, run_phantom
from cortexmap.brain.phantom import embed_geometry
from cortexmap.errors import CortexmapError
from cortexmap.report import EVIDENCE, Report
from tests.small_phantom import small_mask

ZOO2 = ["zoo:alexnet_sup_s0", "zoo:vgg_sup_s0"]

# The smallest settings that still exercise every output; "{dataset}" is a phantom dataset.
TINY: dict[str, dict] = {
    "center-periphery": dict(layers=["conv1", "conv2"], image_size=64, n_perm=5, n_boot=5,
                             phantom_subjects=2, phantom_runs=1),
    "synthesis": dict(layers=["conv1", "conv2"], n_images=4, steps=2, mapping=False),
    "orientation": dict(layers=["conv1"], orientation_step=45, spatial_freqs=[0.125],
                        phases=[0.0], n_shuffles=5, dynamics=False, networks=[],
                        ablation=False, n_test=20),
    "lesion": dict(layers=["conv1"], contrasts=[1.0, 0.1], n_images=20, n_top=2,
                   n_random_sets=2),
    "contrast": dict(layers=["conv1", "fc6"], contrasts=[1.0, 0.3, 0.1], n_images=20,
                     n_splits=2, rsa_images=6),
    "universal": dict(networks=ZOO2, n_images=40, n_dims=4, ks=[1, 2], n_folds=2,
                      phantom_subjects=1),
    "benchmark": dict(networks=["zoo:alexnet_sup_s0"], n_layers=2, n_boot=10, targets=["hIT"],
                      universal=False, residual=False, download=False, if_missing="skip"),
    "orientation-imagenet": dict(networks=["mobilenet_v2", "mobilenet_v2:untrained"],
                                 layers=["features.0"], orientation_step=45,
                                 spatial_freqs=[0.125], phases=[0.0], n_shuffles=5),
    "contrast-imagenet": dict(layers=["features.0", "features.3"], contrasts=[1.0, 0.3, 0.1],
                              n_splits=2, rsa_images=6),
    "center-periphery-imagenet": dict(layers=["features.6"], image_size=96, n_perm=5,
                                      n_boot=5, phantom_subjects=2, phantom_runs=1),
    "synthesis-imagenet": dict(layers=["features.0", "features.3"], n_images=4, steps=2),
    "roi-rsa": dict(dataset="{dataset}"),
    "searchlight": dict(dataset="{dataset}", n_perm=10, radius_mm=4.0, min_voxels=5),
    # features: the geometry planted in V1, as patterns (written beside the dataset)
    "encode": dict(dataset="{dataset}", features="{dataset}/../features.npy", n_perm=20,
                   n_folds=2, alphas=[1.0, 100.0]),
    "power": dict(rdms="{dataset}/model_rdms.npz", regions=["V1", "LOC"], snr=[2.0],
                  n_subjects=[2], n_runs=[1], radius_mm=[6.0], repetitions=1,
                  null_repetitions=0, n_perm=10, mask="{dataset}/../mask.nii.gz"),
}


def test_every_analysis_has_tiny_settings():
    assert set(TINY) == set(REGISTRY), "give each registered analysis its tiny settings here"


def _bad_value(cfg: type[AnalysisConfig]) -> dict:
    """A value of a categorical field that is not one of its options (else a negative seed)."""
    for name, info in cfg.model_fields.items():
        tp = info.annotation
        while typing.get_origin(tp) is typing.Annotated:
            tp = typing.get_args(tp)[0]
        if typing.get_origin(tp) is typing.Literal:
            return {name: "not-an-option"}
    return {"seed": -1}


@pytest.mark.parametrize("name", list(REGISTRY))
def test_config_rejects_unknown_field_and_bad_value_before_any_work(name, tmp_path):
    analysis = REGISTRY[name]
    required = {k: "x" for k, f in analysis.config.model_fields.items() if f.is_required()}
    with pytest.raises(CortexmapError, match="not_a_field"):
        analysis.config(**required, not_a_field=1)
    bad = _bad_value(analysis.config)
    with pytest.raises(CortexmapError, match=next(iter(bad))):
        analysis.config(**required, **bad)
    with pytest.raises(CortexmapError):  # through the job's config files too
        from cortexmap.config import build_config

        build_config(analysis.config, {**required, **bad}, source=f"[{analysis.section}]")
    assert not any(tmp_path.iterdir())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom") / "ds"
    cfg = PhantomConfig(layers=["conv1", "fc7"], regions=["V1", "LOC"], n_subjects=2, n_runs=1,
                        slab=True, snr=1.0)
    ph = run_phantom(cfg, root, progress=False)
    np.save(root.parent / "features.npy", embed_geometry(ph.model_rdms().subset(["conv1"]))[0])
    small_mask(("V1", "LOC")).to_filename(root.parent / "mask.nii.gz")
    return root


SLOW = {"searchlight"}  # a whole-brain slab, even on a tiny phantom


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in REGISTRY])
def test_analysis_runs_on_tiny_inputs_and_writes_every_output(name, tmp_path, dataset):
    analysis = REGISTRY[name]
    values = {k: (v.format(dataset=dataset) if isinstance(v, str) else v)
              for k, v in TINY[name].items()}
    cfg = analysis.config(**values)
    out = tmp_path / name
    result = analysis(cfg, out, progress=False)
    assert isinstance(result, AnalysisResult) and result.config == cfg
    assert (out / "report.html").is_file() and (out / "provenance.json").is_file()
    written = [pd.read_parquet(p) for p in out.rglob("*.parquet")]
    for table, frame in result.tables.items():
        assert isinstance(frame, pd.DataFrame)
        assert not len(frame) or any(
            w.shape == frame.shape and list(w.columns) == list(map(str, frame.columns))
            for w in written), f"table {table!r} has no Parquet file in {out}"
    skipped = getattr(result, "skipped", "")
    assert result.findings or skipped
    for f in result.findings:
        assert f.evidence in EVIDENCE and f.criterion.strip() and f.numbers.strip()
    report = Report("contract")
    result.add_to_report(report)
    assert report.sections


def test_write_outputs_writes_tables_findings_files_figures_report_and_provenance(tmp_path):
    import json
    from dataclasses import dataclass, field

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cortexmap.analyses.base import Seed, write_outputs
    from cortexmap.report import Finding

    class TinyConfig(AnalysisConfig):
        seed: Seed = 7

    @dataclass
    class TinyResult:
        config: TinyConfig
        tables: dict = field(default_factory=dict)
        findings: list = field(default_factory=list)

        def add_to_report(self, report):
            report.section("Tiny", "A section.")

    finding = Finding("a claim", True, "r = 0.9", "tiny", evidence="in-silico",
                      criterion="r > 0.5")
    table = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    result = TinyResult(TinyConfig(), {"scores": table, "empty": table.iloc[:0],
                                       "renamed": table}, [finding])
    fig, _ = plt.subplots()
    got = write_outputs(result, tmp_path, "Tiny run", table_files={"renamed": "other_name"},
                        skip_empty=True, files={"sub/blob.bin": b"\x00\x01",
                                                "called.txt": lambda p: p.write_text("hi")},
                        figures={"figures/plot.png": fig}, inputs={"x": [1, 2, 3]})
    assert got == tmp_path
    names = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert names == sorted([
        "scores.parquet", "scores.csv", "other_name.parquet", "other_name.csv",
        "findings.parquet", "findings.csv", "sub/blob.bin", "called.txt", "figures/plot.png",
        "report.html", "provenance.json"])
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "scores.parquet"), table)
    assert pd.read_csv(tmp_path / "findings.csv")["claim"].tolist() == ["a claim"]
    assert (tmp_path / "sub/blob.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "figures/plot.png").read_bytes()[:4] == b"\x89PNG"
    html = (tmp_path / "report.html").read_text()
    assert "Tiny run" in html and "a claim" in html
    prov = json.loads((tmp_path / "provenance.json").read_text())
    assert prov["seed"] == 7 and prov["config"] == {"seed": 7} and set(prov["inputs"]) == {"x"}
    # no report, no findings table: only tables and provenance
    out = tmp_path / "bare"
    out.mkdir()
    write_outputs(TinyResult(TinyConfig(), {"scores": table}), out, None, findings=False)
    assert sorted(p.name for p in out.iterdir()) == [
        "provenance.json", "scores.csv", "scores.parquet"]


# the analyses that read a brain setting, and the config values that name it
BRAIN_RUNS = {"center-periphery": ("brain", {"layers": ["conv1"]}),
              "universal": ("brain", {"networks": ZOO2}),
              "roi-rsa": ("dataset", {}), "searchlight": ("dataset", {})}


@pytest.mark.parametrize("name", list(BRAIN_RUNS))
def test_a_bad_brain_is_refused_before_any_output(name, tmp_path, dataset):
    """One resolver (cortexmap.brain.resolve_brain): an unknown name and a dataset without its
    atlas are CortexmapErrors before the output folder exists."""
    import shutil

    field_name, extra = BRAIN_RUNS[name]
    analysis = REGISTRY[name]
    no_atlas = tmp_path / "no_atlas"
    shutil.copytree(dataset, no_atlas)
    (no_atlas / "atlas.tsv").unlink()
    cases = [("no-such-brain", "Unknown brain 'no-such-brain'")]
    if name != "searchlight":  # a searchlight runs without an atlas
        cases.append((str(no_atlas), "No ROI atlas for brain dataset"))
    for value, match in cases:
        cfg = analysis.config(**{field_name: value, **extra})
        with pytest.raises(CortexmapError, match=match):
            analysis(cfg, tmp_path / "out", progress=False)
        assert not (tmp_path / "out").exists()

"""run_orientation end to end on a small planted zoo: tuning, dynamics, networks, ablation, CLI."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from cortexmap.analyses.orientation import (
    UNTRAINED_SEEDS,
    OrientationConfig,
    checkpoint_epochs,
    run_orientation,
    tuned_layers,
)
from cortexmap.errors import CortexmapError
from cortexmap.stimuli.gratings import grating


def _gabors(n: int, ksize: int = 5, wavelength_px: float = 4.0) -> torch.Tensor:
    """(n, 3, k, k) zero-mean Gabor-like kernels at n orientations over 180 deg."""
    r = np.arange(ksize) - ksize // 2
    env = np.exp(-(r[None] ** 2 + r[:, None] ** 2) / (2 * 1.5**2))
    out = []
    for o in np.arange(n) * 180.0 / n:
        k = (grating(o, ksize / wavelength_px, 90.0, size=ksize) - 0.5) * env
        out.append(k - k.mean())
    return torch.tensor(np.stack(out), dtype=torch.float32)[:, None].repeat(1, 3, 1, 1)


def _state(seed: int, gabor_mix: float) -> dict:
    """AlexNetSmall weights whose conv1 is ``gabor_mix`` Gabor + (1 - mix) random filters."""
    from cortexmap.models.architectures import build

    model = build("alexnet", 10, seed=seed)
    w = model.conv1[0].weight.data
    g = _gabors(w.shape[0]) * w.std() / _gabors(w.shape[0]).std()
    model.conv1[0].weight.data = gabor_mix * g + (1 - gabor_mix) * w
    return model.state_dict()


@pytest.fixture(scope="module")
def planted_zoo(tmp_path_factory):
    """A zoo folder: 'toy' with checkpoints at epochs 1-3 whose conv1 turns into Gabors, and
    two more networks; selectivity rises by construction."""
    from cortexmap.models.checkpoint import CHECKPOINT_FORMAT

    root = tmp_path_factory.mktemp("zoo")
    models = {}

    def save(label: str, state: dict) -> None:
        torch.save({"format": CHECKPOINT_FORMAT, "arch": "alexnet", "num_classes": 10,
                    "model": state, "preprocessing": {"size": 64}, "history": []},
                   root / f"{label}.pt")

    for e, mix in zip((1, 2, 3), (0.0, 0.5, 1.0), strict=True):
        save(f"toy@ep{e}", _state(0, mix))
    save("toy", _state(0, 1.0))
    save("other", _state(1, 0.3))
    save("third", _state(2, 0.8))
    for name, ckpts in (("toy", [1, 2, 3]), ("other", []), ("third", [])):
        models[name] = {"arch": "alexnet", "objective": "supervised", "seed": 0, "epochs": 3,
                        "weights": f"{name}.pt", "checkpoints": ckpts, "test_accuracy": {},
                        "linear_probe": False, "n_params": 0}
    (root / "index.json").write_text(json.dumps({"format": "cortexmap-zoo-v1",
                                                 "models": models}))
    return root


@pytest.fixture
def zoo_env(planted_zoo, monkeypatch):
    monkeypatch.setenv("CORTEXMAP_ZOO_DIR", str(planted_zoo))
    return planted_zoo


def small_config(**kw) -> OrientationConfig:
    base = dict(
        model="zoo:toy", orientation_step=15.0, spatial_freqs=[8.0, 16.0], sf_unit="cycles/image",
        phases=[0, 90, 180, 270],
        n_shuffles=30, layers=["conv1", "conv2"], networks=["zoo:toy", "zoo:other", "zoo:third"],
        ks=[2, 4], n_random=4, shifts=[2, 4], n_shift_images=8, n_random_shift=2, n_test=40,
        batch_size=128,
    )
    base.update(kw)
    return OrientationConfig(**base)


def test_run_orientation_end_to_end(zoo_env, tmp_path):
    from cortexmap.models import load

    out = tmp_path / "run"
    res = run_orientation(small_config(), out, progress=False)
    t = res.tables
    for name in ("tuning_summary", "tuning_units", "tuning_curves", "dynamics", "networks",
                 "network_correlation", "ablation_sets", "ablation_accuracy",
                 "shift_invariance"):
        assert (out / f"{name}.parquet").exists() and (out / f"{name}.csv").exists(), name
    assert (out / "report.html").exists() and (out / "provenance.json").exists()
    html = (out / "report.html").read_text()
    assert html.count("<img") == 7 and "Training dynamics" in html
    # tuning: 12 orientations, conv1 16 channels + conv2 32 channels
    assert len(t["tuning_units"]) == 48 and len(t["tuning_curves"]) == 48 * 12
    # planted dynamics: conv1 turns into a Gabor bank -> its selective fraction rises
    d = t["dynamics"][t["dynamics"].layer == "conv1"].set_index("epoch")
    assert list(d.index) == [1, 2, 3]
    assert d.loc[3, "fraction_selective"] > d.loc[1, "fraction_selective"]
    assert d.loc[3, "fraction_selective"] >= 0.75
    # networks: one row per (network, lower layer); correlations over 3 networks
    assert set(t["networks"].model) == {"zoo:toy", "zoo:other", "zoo:third"}
    assert set(t["network_correlation"].measure) == {"fraction_selective", "osi_mean"}
    assert set(t["network_correlation"].scope) == {"all", "supervised",
                                                   "objective partialled out"}
    # ablation of conv2 (the second tuned layer): 1 intact + 2 k x (most, least, 4 random)
    assert len(t["ablation_sets"]) == 1 + 2 * 6
    acc = t["ablation_accuracy"]
    assert set(acc.condition) == {"most", "least", "random"} and (acc.ci_low <= acc.ci_high).all()
    inv = t["shift_invariance"]
    assert set(inv.layer) == {"conv3", "conv4", "conv5", "fc6", "fc7"}
    # the ablated sets are those ranked by the conv2 OSI
    ranking = res.tuning["conv2"].ranking()
    most2 = t["ablation_sets"].query("condition == 'most' and k == 2").units.iloc[0]
    assert sorted(map(int, most2.split())) == sorted(ranking[:2].tolist())
    # findings: one per part, each with numbers
    assert len(res.findings) == 5 and all(f.numbers and f.analysis == "orientation"
                                          for f in res.findings)
    assert res.findings[1].reproduced  # planted rise of selectivity over epochs
    # no epoch-0 checkpoint here: selectivity is judged against an untrained copy
    assert "untrained copy" in res.findings[0].control and "untrained_copy" in t
    # ... several of them: one random draw does not decide the margin by itself
    assert t["untrained_copy"]["seed"].nunique() == UNTRAINED_SEEDS
    assert all(f"seed {s}:" in res.findings[0].control for s in t["untrained_copy"]["seed"])
    assert all(f.evidence == "in-silico" and f.control for f in res.findings)
    # the intact accuracy recorded in the ablation equals a plain evaluation of the model
    model = load("zoo:toy")
    assert t["ablation_sets"].accuracy.iloc[0] == pytest.approx(res.extras["test_accuracy"])
    assert tuned_layers(model) == ["conv1", "conv2", "conv3", "conv4", "conv5"]


def test_resume_reuses_partial_results(zoo_env, tmp_path):
    out = tmp_path / "run"
    cfg = small_config(ablation=False, networks=[], n_shuffles=0, report=False)
    run_orientation(cfg, out, progress=False)
    part = out / "partial" / "zoo_toy@ep2.parquet"
    df = pd.read_parquet(part)
    df["test_accuracy"] = 0.123  # a marker: a resumed run must reuse this file, not recompute
    df.to_parquet(part, index=False)
    res = run_orientation(cfg, out, progress=False)
    assert (res.tables["dynamics"].query("epoch == 2").test_accuracy == 0.123).all()
    # other settings never mix with old partial results: the folder is refused instead
    with pytest.raises(CortexmapError, match="not empty"):
        run_orientation(small_config(ablation=False, networks=[], n_shuffles=5, report=False), out,
                        progress=False)


def test_bad_inputs(zoo_env, tmp_path):
    with pytest.raises(CortexmapError, match="no epoch checkpoints"):
        checkpoint_epochs("zoo:other")
    with pytest.raises(CortexmapError, match="no epoch checkpoints"):
        run_orientation(small_config(model="zoo:other"), tmp_path / "a", progress=False)
    with pytest.raises(CortexmapError, match="no epoch checkpoints"):
        checkpoint_epochs("alexnet")
    with pytest.raises(CortexmapError, match="k=64 units .* has 32 units"):
        run_orientation(small_config(dynamics=False, networks=[], ks=[64], n_shuffles=0),
                        tmp_path / "b", progress=False)
    # both are caught before any output is written
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(CortexmapError, match="no spatial positions"):
        run_orientation(small_config(dynamics=False, networks=[], layers=["fc6"]),
                        tmp_path / "c", progress=False)


def test_cli_run_orientation(zoo_env, tmp_path):
    from typer.testing import CliRunner

    from cortexmap.cli import app

    cfg = small_config(dynamics=False, networks=[], n_shuffles=10, ks=[2], shifts=[2])
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(cfg.model_dump_json())
    out = tmp_path / "cli"
    r = CliRunner().invoke(app, ["run", "orientation", "--config", str(cfg_file), "--out",
                                 str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert (out / "report.html").exists() and "orientation" in r.output.lower()
    r = CliRunner().invoke(app, ["run", "orientation", "--help"])
    assert r.exit_code == 0 and "--no-dynamics" in r.output


@pytest.mark.slow
def test_network_sweep_on_a_dask_cluster_matches_serial(zoo_env, tmp_path):
    cfg = small_config(dynamics=False, ablation=False, report=False, n_shuffles=10,
                       networks=["zoo:toy", "zoo:other"])
    serial = run_orientation(cfg, tmp_path / "serial", progress=False)
    cfg_dask = cfg.model_copy(update={"scheduler": "local"})
    dask = run_orientation(cfg_dask, tmp_path / "dask", progress=False)
    cols = ["model", "layer", "fraction_selective", "osi_mean", "test_accuracy"]
    pd.testing.assert_frame_equal(serial.tables["networks"][cols], dask.tables["networks"][cols])


def test_overwrite_drops_partial_results_of_other_settings(zoo_env, tmp_path):
    out = tmp_path / "run"
    cfg = small_config(ablation=False, networks=[], n_shuffles=0, report=False)
    run_orientation(cfg, out, progress=False)
    part = out / "partial" / "zoo_toy@ep2.parquet"
    df = pd.read_parquet(part)
    df["test_accuracy"] = 0.123
    df.to_parquet(part, index=False)
    other = small_config(ablation=False, networks=[], n_shuffles=5, report=False)
    res = run_orientation(other, out, overwrite=True, progress=False)
    assert not (res.tables["dynamics"].test_accuracy == 0.123).any()


@pytest.mark.slow
def test_shipped_zoo_alexnet_grows_orientation_selectivity_with_training(tmp_path):
    """On the real zoo: lower-layer OSI rises over the epoch checkpoints with test accuracy."""
    from cortexmap.models.zoo import list_zoo

    try:
        names = {e.name for e in list_zoo()}
    except CortexmapError:
        pytest.skip("the zoo is not installed")
    if "alexnet_sup_s0" not in names:
        pytest.skip("zoo:alexnet_sup_s0 is not installed")
    cfg = OrientationConfig(layers=["conv1", "conv2"], orientation_step=15.0, n_shuffles=20,
                            networks=[], ablation=False, n_test=300, report=False)
    res = run_orientation(cfg, tmp_path / "zoo", progress=False)
    d = res.tables["dynamics"].groupby("epoch").agg(osi=("osi_mean", "mean"),
                                                    acc=("test_accuracy", "first"))
    assert d.osi.iloc[-1] > d.osi.iloc[0] + 0.2 and d.acc.iloc[-1] > 0.8
    assert res.findings[1].reproduced


def test_partial_spearman_controls_for_the_objective():
    from scipy.stats import spearmanr

    from cortexmap.analyses.orientation import partial_spearman

    # accuracy and OSI both set by the objective, unrelated within each objective
    rng = np.random.default_rng(0)
    groups = np.repeat(["supervised", "simclr"], 20)
    shift = (groups == "supervised").astype(float)
    osi, acc = shift + 0.1 * rng.normal(size=40), shift + 0.1 * rng.normal(size=40)
    assert spearmanr(osi, acc).statistic > 0.7  # pooled: carried by the objective
    rho, p = partial_spearman(osi, acc, groups)
    assert abs(rho) < 0.35 and p > 0.05
    # a real within-objective relation survives
    acc2 = shift + osi + 0.05 * rng.normal(size=40)
    rho2, p2 = partial_spearman(osi, acc2, groups)
    assert rho2 > 0.7 and p2 < 1e-4

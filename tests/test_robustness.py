"""Misuse, hostile files and interruptions: nothing runs from a user folder, nothing is lost,
no silent wrong answer, and Ctrl-C says how to resume.

Each test reproduces a case a user can hit with the CLI; they are kept small and fast.
"""

import os
import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cortexmap import pipeline
from cortexmap.analyses import Analysis
from cortexmap.cli import app
from cortexmap.cli import core as cli_core
from cortexmap.config import AnalysisConfig
from cortexmap.errors import CortexmapError
from cortexmap.report import Finding
from cortexmap.rsa import RDMs, compare, compute_rdms


class Evil:
    """Unpickling this touches ``flag``: proof that a file ran code."""

    def __init__(self, flag: Path) -> None:
        self.flag = str(flag)

    def __reduce__(self):
        return (os.system, (f"touch {self.flag}",))


def _plant_pickle(path: Path, flag: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"key": {}, "result": Evil(flag)}))


def _plant_torch(path: Path, flag: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "x", "payload": Evil(flag)}, path)


# ----------------------------------------------------------------------------------------------
# a stand-in analysis for the main job (the real ones are exercised in test_demo.py)
# ----------------------------------------------------------------------------------------------
class EchoConfig(AnalysisConfig):
    value: int = 1


@dataclass
class EchoResult:
    value: int
    table: pd.DataFrame
    findings: list = field(default_factory=list)

    def add_to_report(self, report):
        report.section(f"Echo {self.value}").table(self.table, "value")


CALLS = []


def run_echo(cfg, outdir, overwrite=False, progress=True):
    CALLS.append(cfg.value)
    outdir.mkdir(parents=True, exist_ok=True)
    return EchoResult(cfg.value, pd.DataFrame({"v": [cfg.value]}),
                      [Finding("echo works", cfg.value > 0, f"value={cfg.value}",
                               evidence="in-silico", criterion="The value is positive.")])


@pytest.fixture
def echo(monkeypatch):
    entry = Analysis("echo", "Echo", EchoConfig, run_echo)
    monkeypatch.setitem(pipeline.ANALYSES, "echo", entry)
    monkeypatch.setitem(pipeline.DEMO_SETTINGS, "echo", {"value": 2})
    CALLS.clear()


# ----------------------------------------------------------------------------------------------
# 1. no code runs from a user folder
# ----------------------------------------------------------------------------------------------
def test_report_command_never_unpickles(tmp_path):
    flag = tmp_path / "PWNED"
    _plant_pickle(tmp_path / "run" / "lesion" / "result.pkl", flag)
    res = CliRunner().invoke(app, ["report", str(tmp_path / "run")])
    assert isinstance(res.exception, CortexmapError)
    assert "not read" in str(res.exception) and not flag.exists()


def test_job_resume_never_unpickles_and_reports_from_data(tmp_path, echo):
    flag = tmp_path / "PWNED"
    out = tmp_path / "run"
    first = pipeline.run_job(out, ["echo"], progress=False)
    assert not list(out.rglob("*.pkl"))
    assert (out / "echo" / "result.json").exists()
    assert pd.read_parquet(out / "echo" / "tables" / "table.parquet")["v"].tolist() == [2]
    _plant_pickle(out / "echo" / "result.pkl", flag)  # an old-format file left in the folder
    again = pipeline.run_job(out, ["echo"], progress=False)
    assert bool(again.timings.resumed.iloc[0]) and CALLS == [2] and not flag.exists()
    assert again.findings[0].claim == first.findings[0].claim
    assert again.results["echo"].tables["table"]["v"].tolist() == [2]
    # `cortexmap report` rebuilds the same section from the stored data
    res = CliRunner().invoke(app, ["report", str(out), "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    assert "Echo 2" in (tmp_path / "r.html").read_text() and not flag.exists()


def test_stored_result_with_active_markup_is_refused(tmp_path, echo):
    import json

    out = tmp_path / "run"
    pipeline.run_job(out, ["echo"], progress=False)
    saved = out / "echo" / "result.json"
    data = json.loads(saved.read_text())
    data["sections"][0]["blocks"][0]["html"] += "<script>alert(1)</script>"
    saved.write_text(json.dumps(data))
    res = CliRunner().invoke(app, ["report", str(out)])
    assert isinstance(res.exception, CortexmapError) and "active markup" in str(res.exception)


def test_train_resume_point_is_loaded_without_code(tmp_path):
    from cortexmap.train import load_checkpoint

    flag = tmp_path / "PWNED"
    _plant_torch(tmp_path / "run" / "last.pt", flag)
    with pytest.raises(CortexmapError, match="corrupt or not a PyTorch file"):
        load_checkpoint(tmp_path / "run" / "last.pt")
    assert not flag.exists()


def test_train_cli_resume_never_unpickles(tmp_path):
    flag = tmp_path / "PWNED"
    _plant_torch(tmp_path / "run" / "last.pt", flag)
    res = CliRunner().invoke(app, ["train", "--arch", "alexnet", "--epochs", "1",
                                   "--out", str(tmp_path / "run")])
    assert isinstance(res.exception, CortexmapError) and not flag.exists()


def test_synthesis_checkpoint_is_loaded_without_code(tmp_path):
    from cortexmap.analyses.synthesis import SynthesisConfig, run_synthesis
    from tests.tiny_models import TinyConvNet

    flag = tmp_path / "PWNED"
    _plant_torch(tmp_path / "run" / "checkpoint.pt", flag)
    cfg = SynthesisConfig(model="tiny", layers=["conv1", "conv2"], n_images=4, image_size=16,
                          steps=2, mapping=False)
    with pytest.raises(CortexmapError, match="cannot be read"):
        run_synthesis(cfg, tmp_path / "run", progress=False, model=TinyConvNet())
    assert not flag.exists()


def test_checkpoints_written_by_cortexmap_load_weights_only(tmp_path):
    from cortexmap.analyses.synthesis import SynthesisConfig, run_synthesis
    from tests.tiny_models import TinyConvNet

    cfg = SynthesisConfig(model="tiny", layers=["conv1", "conv2"], n_images=4, image_size=16,
                          steps=2, mapping=False, checkpoint_every=1)
    run_synthesis(cfg, tmp_path / "run", progress=False, model=TinyConvNet())
    torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)


def test_no_unpickling_in_the_package():
    root = Path(__file__).resolve().parents[1] / "cortexmap"
    for py in root.rglob("*.py"):
        text = py.read_text()
        assert "pickle.load" not in text and "weights_only=False" not in text, py


# ----------------------------------------------------------------------------------------------
# 2. --overwrite only replaces what cortexmap wrote
# ----------------------------------------------------------------------------------------------
def _images(folder: Path, n: int = 4, seed: int = 0, size: int = 16) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k in range(n):
        arr = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"img{k}.png")
    return folder


def _extractor():
    from cortexmap.models import Extractor
    from cortexmap.models.preprocessing import Preprocessing
    from tests.tiny_models import TinyConvNet

    net = TinyConvNet()
    net.cortexmap_preprocessing = Preprocessing(size=16)
    net.cortexmap_name = "tiny"
    return Extractor(net, ["conv2"], pooling="mean", batch_size=2)


def test_extract_overwrite_never_deletes_inputs_or_foreign_folders(tmp_path):
    from cortexmap.stimuli import FolderImages

    imgs = _images(tmp_path / "imgs")
    stim = FolderImages(imgs, size=16)
    ex = _extractor()
    with pytest.raises(CortexmapError, match="overlaps the input"):
        ex.to_store(stim, imgs, overwrite=True, progress=False)
    assert len(list(imgs.glob("*.png"))) == 4
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("years of work")
    with pytest.raises(CortexmapError, match="did not write") as err:
        ex.to_store(stim, foreign, overwrite=True, progress=False)
    assert (foreign / "chapter1.tex").read_text() == "years of work"
    # without --overwrite the refusal does not suggest it for a foreign folder
    with pytest.raises(CortexmapError) as err:
        ex.to_store(stim, foreign, progress=False)
    assert "pass --overwrite" not in str(err.value) and "only replaces" in str(err.value)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep")
    with pytest.raises(CortexmapError, match="is a file"):
        ex.to_store(stim, a_file, overwrite=True, progress=False)
    assert a_file.read_text() == "keep"
    # a store cortexmap wrote is replaced
    ex.to_store(stim, tmp_path / "acts.zarr", progress=False)
    ex.to_store(stim, tmp_path / "acts.zarr", overwrite=True, progress=False)


def test_extract_cli_refuses_to_delete_its_image_folder(tmp_path):
    imgs = _images(tmp_path / "imgs")
    res = CliRunner().invoke(app, ["extract", "zoo:alexnet_sup_s0", "--layers", "conv1",
                                   "--images", str(imgs), "--out", str(imgs), "--overwrite",
                                   "--no-progress"])
    assert res.exit_code != 0
    assert len(list(imgs.glob("*.png"))) == 4


def test_searchlight_overwrite_replaces_the_whole_output_and_stays_inside(tmp_path):
    from cortexmap.brain.phantom import make_phantom, slab_mask

    rng = np.random.default_rng(0)
    models = compute_rdms([rng.standard_normal((8, 20)) for _ in range(2)], names=["a", "b"])
    ph = make_phantom({"V1": models[0], "fusiform": models[1]}, tmp_path / "ph", n_subjects=2,
                      n_runs=1, snr=1.0, seed=0, mask=slab_mask(3), compress=False,
                      progress=False)
    out = tmp_path / "deep" / "sl"
    vecs = np.vstack([models.vectors, models.vectors[:1]])

    def rdms_file(name, names):
        RDMs(vecs, models.n_conditions, names, models.metric).save(tmp_path / name)
        return str(tmp_path / name)

    args = ["searchlight", str(ph.root), "--out", str(out), "--scheduler", "serial",
            "--n-perm", "20", "--alpha", "0.3"]
    r = CliRunner().invoke(app, [*args, "--rdms", rdms_file("first.npz", ["a", "b", "old"])])
    assert r.exit_code == 0, r.output
    assert (out / "group" / "mean_old.nii.gz").exists()
    hostile = rdms_file("hostile.npz", ["a", "b", "x/../../../ESCAPED"])
    r = CliRunner().invoke(app, [*args, "--rdms", hostile, "--overwrite"])
    assert r.exit_code == 0, r.output
    assert not (out / "group" / "mean_old.nii.gz").exists()  # the old run's maps are gone
    assert not (out / "subjects" / "sub-01" / "r_old.nii.gz").exists()
    assert (out / "group" / "mean_a.nii.gz").exists()
    outside = [p for p in tmp_path.rglob("*ESCAPED*") if out not in p.parents]
    assert not outside and list(out.rglob("*ESCAPED*"))
    # a foreign folder is not emptied by --overwrite
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    r = CliRunner().invoke(app, [*args[:3], str(foreign), *args[4:], "--overwrite"])
    assert isinstance(r.exception, CortexmapError) and (foreign / "keep.txt").exists()


def test_safe_filenames():
    from cortexmap.utils.io import safe_filename, safe_filenames

    assert safe_filename("features.3") == "features.3"
    assert "/" not in safe_filename("x/../../../ESCAPED")
    assert safe_filename("..") == "_." and safe_filename("") == "_"
    with pytest.raises(CortexmapError, match="same file name"):
        safe_filenames(["a/b", "a_b"], "region")


# ----------------------------------------------------------------------------------------------
# 3. compare aligns by condition labels or refuses
# ----------------------------------------------------------------------------------------------
def test_compare_aligns_reversed_labels_and_refuses_foreign_ones(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 30))
    labels = [f"c{k}" for k in range(8)]
    a = compute_rdms([x], conditions=labels)
    a.save(tmp_path / "a.npz")
    # the same stimuli stored in reverse order: identical geometry
    b = compute_rdms([x[::-1]], conditions=labels[::-1])
    b.save(tmp_path / "b.npz")
    # the same numbers with the labels of other stimuli: must not compare as r = 1
    c = compute_rdms([x[::-1]], conditions=labels)
    c.save(tmp_path / "c.npz")
    d = compute_rdms([x], conditions=[f"z{k}" for k in range(8)])
    d.save(tmp_path / "d.npz")
    runner = CliRunner()
    r = runner.invoke(app, ["compare", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"),
                            "--out", str(tmp_path / "ab"), "--method", "pearson"])
    assert r.exit_code == 0, r.output
    sim = pd.read_csv(tmp_path / "ab" / "similarity.csv")["similarity"].item()
    assert sim == pytest.approx(1.0)
    r = runner.invoke(app, ["compare", str(tmp_path / "a.npz"), str(tmp_path / "c.npz"),
                            "--out", str(tmp_path / "ac"), "--method", "pearson"])
    assert r.exit_code == 0, r.output
    sim = pd.read_csv(tmp_path / "ac" / "similarity.csv")["similarity"].item()
    assert sim == pytest.approx(compare(a, RDMs(c.vectors, 8), "pearson").item()) and sim < 0.9
    r = runner.invoke(app, ["compare", str(tmp_path / "a.npz"), str(tmp_path / "d.npz"),
                            "--out", str(tmp_path / "ad")])
    assert isinstance(r.exception, CortexmapError) and "different conditions" in str(r.exception)
    assert not (tmp_path / "ad").exists()


def test_compare_and_roi_rsa_name_bad_rdm_files(tmp_path):
    np.save(tmp_path / "m.npy", np.eye(4))
    (tmp_path / "trunc.npz").write_bytes(b"PK\x03\x04garbage")
    compute_rdms([np.random.default_rng(0).standard_normal((4, 5))]).save(tmp_path / "ok.npz")
    runner = CliRunner()
    for bad, why in [("m.npy", "bare array"), ("trunc.npz", "truncated")]:
        r = runner.invoke(app, ["compare", str(tmp_path / "ok.npz"), str(tmp_path / bad),
                                "--out", str(tmp_path / f"o_{bad}")])
        assert isinstance(r.exception, CortexmapError) and why in str(r.exception), r.exception
    from cortexmap.brain.roi import as_model_rdms

    with pytest.raises(CortexmapError, match="bare .npy"):
        as_model_rdms(tmp_path / "m.npy")


# ----------------------------------------------------------------------------------------------
# 6. resume checks contents, not only names
# ----------------------------------------------------------------------------------------------
def test_store_resume_with_other_images_of_the_same_names_is_refused(tmp_path):
    from cortexmap.stimuli import FolderImages

    imgs = _images(tmp_path / "imgs", seed=0)
    ex = _extractor()
    ex.to_store(FolderImages(imgs, size=16), tmp_path / "acts.zarr", progress=False)
    _images(imgs, seed=1)  # same file names, other pixels
    with pytest.raises(CortexmapError, match="stimulus contents"):
        ex.to_store(FolderImages(imgs, size=16), tmp_path / "acts.zarr", progress=False)


# ----------------------------------------------------------------------------------------------
# 7. synthesize never replaces finished results made with other settings
# ----------------------------------------------------------------------------------------------
def test_synthesize_refuses_to_replace_results_of_other_settings(tmp_path):
    from cortexmap.analyses.synthesis import SynthesisConfig, run_synthesis
    from tests.tiny_models import TinyConvNet

    nat_a, nat_b = _images(tmp_path / "a", seed=0), _images(tmp_path / "b", seed=1)
    base = dict(model="tiny", layers=["conv1", "conv2"], n_images=4, image_size=16, steps=2,
                mapping=False)
    out = tmp_path / "run"
    run_synthesis(SynthesisConfig(**base, natural=str(nat_a)), out, progress=False,
                  model=TinyConvNet())
    before = (out / "report.html").read_bytes()
    with pytest.raises(CortexmapError, match="differs in: natural"):
        run_synthesis(SynthesisConfig(**base, natural=str(nat_b)), out, progress=False,
                      model=TinyConvNet())
    _images(nat_a, seed=2)  # same folder name, other images
    with pytest.raises(CortexmapError, match="differs in: natural"):
        run_synthesis(SynthesisConfig(**base, natural=str(nat_a)), out, progress=False,
                      model=TinyConvNet())
    assert (out / "report.html").read_bytes() == before
    # raising the steps extends the run on purpose
    run_synthesis(SynthesisConfig(**(base | {"steps": 3}), natural=str(nat_b)), out,
                  overwrite=True, progress=False, model=TinyConvNet())


# ----------------------------------------------------------------------------------------------
# 8. Ctrl-C exits 130 and says how to resume; a truncated input is named instead
# ----------------------------------------------------------------------------------------------
def _main(monkeypatch, argv):
    from cortexmap.cli import main

    monkeypatch.setattr(sys, "argv", ["cortexmap", *argv])
    with pytest.raises(SystemExit) as exc:
        main()
    return exc.value.code


def test_ctrl_c_exits_130_with_resume_hint(monkeypatch, tmp_path, capsys):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_core, "run_job", interrupted)
    assert _main(monkeypatch, ["demo", "--out", str(tmp_path / "d")]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "run the same command again to resume" in err


def test_truncated_input_is_an_error_not_an_interruption(monkeypatch, tmp_path, capsys):
    def truncated(*a, **k):
        raise EOFError(f"Ran out of input reading {tmp_path / 'x.pt'}")

    monkeypatch.setattr(cli_core, "run_job", truncated)
    assert _main(monkeypatch, ["demo", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "truncated or empty" in err and "x.pt" in err and "interrupted" not in err


def test_sigint_of_a_real_command_exits_130(tmp_path):
    import signal
    import subprocess
    import time

    code = ("import sys, time, cortexmap.cli as c\n"
            "@c.app.command('sleep-test')\n"
            "def _s():\n"
            "    print('ready', flush=True); time.sleep(30)\n"
            "sys.argv = ['cortexmap', 'sleep-test']\n"
            "c.main()\n")
    # a parent that ignores SIGINT (as some earlier test runners leave it) would hand the child
    # an ignored SIGINT, and Python then installs no KeyboardInterrupt handler
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "run the same command again to resume" in err


# ----------------------------------------------------------------------------------------------
# 13. output folders: a lock against concurrent runs, no empty folder after a failure
# ----------------------------------------------------------------------------------------------
def test_a_second_run_into_a_locked_folder_refuses(tmp_path, echo):
    from cortexmap.utils.io import LOCK

    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK).write_text(str(os.getppid()))  # a live process that is not us
    with pytest.raises(CortexmapError, match="in use by another cortexmap run"):
        pipeline.run_job(out, ["echo"], progress=False)
    (out / LOCK).write_text("999999999")  # a run that was killed: its lock is taken over
    pipeline.run_job(out, ["echo"], progress=False)


def test_a_second_extraction_into_a_locked_store_refuses(tmp_path):
    from cortexmap.stimuli import FolderImages

    imgs = _images(tmp_path / "imgs")
    (tmp_path / ".acts.zarr.cortexmap.lock").write_text(str(os.getppid()))
    with pytest.raises(CortexmapError, match="in use by another cortexmap run"):
        _extractor().to_store(FolderImages(imgs, size=16), tmp_path / "acts.zarr",
                              progress=False)
    assert not (tmp_path / "acts.zarr").exists()


def test_failed_run_leaves_no_empty_folder(tmp_path):
    from cortexmap.utils.io import prepare_output_dir, release_output_dirs

    out = tmp_path / "new" / "out"
    prepare_output_dir(out)
    release_output_dirs()  # what happens when the process ends (also after an error)
    assert not out.exists()
    kept = tmp_path / "kept"
    prepare_output_dir(kept)
    (kept / "table.csv").write_text("x\n1\n")
    release_output_dirs()
    assert (kept / "table.csv").exists()


# ----------------------------------------------------------------------------------------------
# 9-12. clear errors instead of tracebacks, validation before work, what cannot work
# ----------------------------------------------------------------------------------------------
def test_bad_options_are_refused_before_any_work(monkeypatch, tmp_path, capsys):
    out = tmp_path / "sl"
    for option in (["--n-perm", "-1"], ["--n-perm", "0"], ["--alpha", "1.5"],
                   ["--correction", "bonf"], ["--statistic", "median"]):
        code = _main(monkeypatch, ["searchlight", str(tmp_path / "missing"), "--out", str(out),
                                   *option])
        err = capsys.readouterr().err
        assert code == 2 and "Invalid" in err and "Traceback" not in err, err
    assert _main(monkeypatch, ["phantom", str(tmp_path / "ph"), "--n-subjects", "0"]) == 2
    assert "n_subjects" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "ph").exists()
    assert _main(monkeypatch, ["compare", "a.npz", "b.npz", "--out", str(out),
                               "--n-perm", "-5"]) == 2


def test_analysis_settings_are_validated_up_front():
    from cortexmap.analyses.contrast import ContrastConfig
    from cortexmap.analyses.lesion import LesionConfig

    with pytest.raises(CortexmapError, match="rsa_metric"):
        ContrastConfig(rsa_metric="euclidian")
    with pytest.raises(CortexmapError, match="norm_pool"):
        ContrastConfig(norm_pool=4)
    with pytest.raises(CortexmapError, match="n_random_sets"):
        LesionConfig(n_random_sets=-1)


def test_config_files_refuse_unknown_sections_and_repeated_keys(tmp_path, echo):
    from cortexmap.config import read_config_file

    bad = tmp_path / "job.toml"
    bad.write_text("[echo]\nvalue = 3\n[orientaton]\nn_shuffles = 5\n")
    with pytest.raises(CortexmapError, match=r"unknown section\(s\) \['orientaton'\]"):
        pipeline.run_job(tmp_path / "run", ["echo"], config_file=bad, progress=False)
    assert not (tmp_path / "run").exists()
    dup = tmp_path / "dup.yaml"
    dup.write_text("echo:\n  value: 1\n  value: 2\n")
    with pytest.raises(CortexmapError, match="'value' appears twice"):
        read_config_file(dup)
    dup_json = tmp_path / "dup.json"
    dup_json.write_text('{"echo": {"value": 1, "value": 2}}')
    with pytest.raises(CortexmapError, match="appears twice"):
        read_config_file(dup_json)


def test_relative_paths_in_a_config_are_read_beside_it(tmp_path, monkeypatch):
    from cortexmap.config import read_config_file

    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "weights.pt").write_bytes(b"x")
    cfg = tmp_path / "cfg" / "a.toml"
    cfg.write_text('[synthesis]\nweights = "weights.pt"\nmodel = "alexnet"\n')
    monkeypatch.chdir(tmp_path)
    got = read_config_file(cfg)["synthesis"]
    assert got["weights"] == str(tmp_path / "cfg" / "weights.pt") and got["model"] == "alexnet"


def test_empty_weight_file_is_named(tmp_path):
    from cortexmap.models import load

    (tmp_path / "w.pt").write_bytes(b"")
    with pytest.raises(CortexmapError, match="empty"):
        load(str(tmp_path / "w.pt"))


def test_unwritable_output_is_refused_before_work(tmp_path, monkeypatch):
    from cortexmap.utils import io

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(io.os, "open", denied)
    with pytest.raises(CortexmapError, match="not writable"):
        io.prepare_output_dir(tmp_path / "ro")


def test_output_path_that_is_a_file_or_broken_link(tmp_path):
    from cortexmap.utils.io import prepare_output_dir

    (tmp_path / "f").write_text("keep")
    with pytest.raises(CortexmapError, match="is a file"):
        prepare_output_dir(tmp_path / "f", overwrite=True)
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    with pytest.raises(CortexmapError, match="broken symbolic link"):
        prepare_output_dir(tmp_path / "link", overwrite=True)
    assert (tmp_path / "f").read_text() == "keep"


def test_header_only_csv_says_it_has_no_rows(tmp_path):
    from cortexmap.analyses.rdms import load_patterns

    (tmp_path / "p.csv").write_text("id,u1,u2\n")
    with pytest.raises(CortexmapError, match="no rows"):
        load_patterns(tmp_path / "p.csv")


def test_sign_flip_that_cannot_reach_alpha_is_reported():
    from cortexmap.analyses.brain import PhantomConfig
    from cortexmap.brain.group import min_sign_flip_p, warn_min_p

    assert min_sign_flip_p(3, 5000) == 1 / 8 and min_sign_flip_p(10, 99) == 1 / 100
    with pytest.warns(UserWarning, match=r"smallest possible sign-flip p is 0\.125"):
        warn_min_p(3, 5000, 0.05)
    assert min_sign_flip_p(PhantomConfig().n_subjects, 5000) < 0.05  # the default can pass


def test_small_and_elongated_images_are_warned_about(tmp_path):
    from cortexmap.stimuli import FolderImages

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "small.png")
    Image.fromarray(np.zeros((40, 200, 3), np.uint8)).save(folder / "wide.png")
    with pytest.warns(UserWarning) as record:
        FolderImages(folder, size=32)
    text = " ".join(str(w.message) for w in record)
    assert "px they are resized to" in text and "aspect ratio" in text


def test_run_table_problems_name_the_file(tmp_path):
    import nibabel as nib

    from cortexmap.brain.io import load_dataset

    root = tmp_path / "ds"
    (root / "sub-01").mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), np.eye(4)), root / "mask.nii.gz")
    vol = np.random.default_rng(0).standard_normal((4, 4, 4)).astype(np.float32)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), root / "sub-01" / "sub-01_run-01_responses.nii.gz")
    table = root / "sub-01" / "sub-01_run-01_conditions.tsv"
    table.write_text("conditon\na\nb\n")
    with pytest.raises(CortexmapError, match="sub-01_run-01_conditions.tsv has no 'condition'"):
        load_dataset(root)
    table.write_text("condition\na\nb\n")
    with pytest.raises(CortexmapError, match="is a 3-D image"):
        load_dataset(root)

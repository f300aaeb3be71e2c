"""Real-data fetchers: search order, checksums, download, and the content of both sets."""

import shutil

import numpy as np
import pytest
from scipy import stats
from scipy.io import loadmat

from cortexmap.datasets import fetch, fetch_algonauts78, fetch_kriegeskorte92
from cortexmap.errors import CortexmapError
from cortexmap.rsa import compare


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """No data anywhere: empty env folder, empty cache, no ../shared/data, no network source."""
    monkeypatch.setenv("CORTEXMAP_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv(fetch.URL_ENV, (tmp_path / "no-mirror").as_uri())
    monkeypatch.delenv(fetch.OFFLINE_ENV, raising=False)  # downloads go to local file:// URLs
    monkeypatch.setattr(fetch, "_SHARED_LEVELS", 0)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_absent_data_gives_clear_error(nowhere, monkeypatch):
    with pytest.raises(CortexmapError, match="kriegeskorte92 data set was not found") as err:
        fetch_kriegeskorte92(download=False)
    assert "CORTEXMAP_DATA" in str(err.value) and "data_dir" in str(err.value)
    with pytest.raises(CortexmapError, match="could not download"):  # "offline"
        fetch_algonauts78()
    with pytest.raises(CortexmapError, match="does not exist"):
        fetch_kriegeskorte92(data_dir=nowhere / "missing")
    monkeypatch.setenv(fetch.OFFLINE_ENV, "1")
    with pytest.raises(CortexmapError, match="CORTEXMAP_OFFLINE"):
        fetch_algonauts78()


def _copy(kriegeskorte92, target):
    shutil.copytree(kriegeskorte92.path, target)
    for p in target.rglob("*"):
        p.chmod(0o644)
    return target


def test_env_var_and_corrupt_file_named(kriegeskorte92, nowhere):
    folder = _copy(kriegeskorte92, nowhere / "env" / "kriegeskorte92")
    assert fetch_kriegeskorte92(download=False).path == folder
    bad = folder / "92_brainRDMs.mat"
    bad.write_bytes(bad.read_bytes()[:1000])  # truncated
    with pytest.raises(CortexmapError, match="corrupt or truncated .*92_brainRDMs.mat"):
        fetch_kriegeskorte92(download=False)


def test_explicit_dir_is_the_set_or_its_parent(kriegeskorte92):
    assert fetch_kriegeskorte92(kriegeskorte92.path, download=False).path == kriegeskorte92.path
    parent = kriegeskorte92.path.parent
    assert fetch_kriegeskorte92(parent, download=False).path == kriegeskorte92.path


def test_checksummed_download_into_cache(kriegeskorte92, nowhere, monkeypatch):
    mirror = nowhere / "mirror"
    _copy(kriegeskorte92, mirror / "kriegeskorte92")
    monkeypatch.setenv(fetch.URL_ENV, mirror.as_uri())
    got = fetch_kriegeskorte92()
    assert got.path == nowhere / "cache" / "cortexmap" / "data" / "kriegeskorte92"
    assert fetch.problems(got.path, fetch.Source("kriegeskorte92", "").checksums()) == []
    # a corrupt upstream file is named and never lands in the cache
    shutil.rmtree(got.path)
    (mirror / "kriegeskorte92" / "92_modelRDMs.mat").write_bytes(b"not the file")
    with pytest.raises(CortexmapError, match="92_modelRDMs.mat has SHA-256"):
        fetch_kriegeskorte92()
    assert not (got.path / "92_modelRDMs.mat").exists()


def test_kriegeskorte92_content(kriegeskorte92):
    k = kriegeskorte92
    s = k.stimuli
    assert len(s) == 92 and s.size == (175, 175) and s.ids[0] == "obj01"
    assert set(s.categories) == {"human bodypart", "human face", "nonhuman bodypart",
                                 "nonhuman face", "natural inanimate", "artificial inanimate"}
    grey = np.isclose(s.images, 128 / 255).all(-1)
    assert grey[~s.masks].all()  # everything outside the mask is background grey
    assert not grey[s.masks].all()  # and the mask holds the object
    assert 0.1 < s.masks.mean(axis=(1, 2)).min() and s.masks.mean(axis=(1, 2)).max() < 0.99
    hit = k.rdms.select(region="hIT", kind="brain")
    assert len(hit) == 8 and sorted(set(hit.descriptors["subject"])) == ["BE", "KO", "SN", "TI"]
    raw = loadmat(k.path / "92_brainRDMs.mat", squeeze_me=True, struct_as_record=False)["RDMs"]
    be2 = hit.select(subject="BE", session="2")
    np.testing.assert_array_equal(be2.matrices()[0], raw[0, 1].RDM)
    subj = k.subject_rdms("hIT")
    np.testing.assert_allclose(subj.select(subject="BE").vectors[0],
                               hit.select(subject="BE").vectors.mean(0))
    assert len(k.rdms.select(region="judgement")) == 16
    assert k.model_rdms.names[:2] == ["animacy", "FaceBodyManmadeNatobj"]
    mit, ghit = k.rdms.select(region="mIT"), k.rdms.select(region="hIT (group)")
    rho = compare(mit, ghit, "spearman")[0, 0]
    assert rho == pytest.approx(stats.spearmanr(mit.vectors[0], ghit.vectors[0])[0], abs=1e-12)
    assert rho == pytest.approx(0.439, abs=5e-4)  # as published with the data


def test_algonauts78_content(algonauts78):
    a = algonauts78
    assert len(a.stimuli) == 78 and a.stimuli.size == (399, 399) and a.stimuli.masks is None
    assert a.stimuli.ids[0] == "image_01" and a.stimuli.ids[-1] == "image_78"
    assert a.regions == ["EVC", "IT"]
    it = a.rdms.select(region="IT")
    assert len(it) == 15 and it.n_conditions == 78
    with np.load(a.path / "fmri_IT_RDMs.npz") as z:
        np.testing.assert_allclose(it.matrices(), z["arr_0"], atol=1e-12)
    small = fetch_algonauts78(a.path, download=False, size=64)
    assert small.stimuli.size == (64, 64)


def test_helper_skips_or_fails_when_required(nowhere, monkeypatch):
    from _pytest.outcomes import Failed, Skipped

    from tests.realdata import REQUIRE_ENV, real_data

    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(Skipped, match="not available here"):
        real_data("kriegeskorte92", size=31)  # a size no other test asks for: not cached
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(Failed, match="CORTEXMAP_REQUIRE_DATA=1"):
        real_data("kriegeskorte92", size=31)


def test_data_cli_where_and_fetch(kriegeskorte92):
    from typer.testing import CliRunner

    from cortexmap.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["data", "where", "--data-dir", str(kriegeskorte92.path.parent)])
    assert res.exit_code == 0 and f"{kriegeskorte92.path}: intact" in res.output
    res = runner.invoke(app, ["data", "fetch", "kriegeskorte92", "--data-dir",
                              str(kriegeskorte92.path.parent)])
    assert res.exit_code == 0 and "92 images, 26 RDMs" in res.output

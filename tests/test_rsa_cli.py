"""`cortexmap rdm` and `cortexmap compare` end to end on tiny inputs."""

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cortexmap.cli import app
from cortexmap.errors import CortexmapError
from cortexmap.rsa import RDMs, compare, compute_rdms

runner = CliRunner()


def _ok(args):
    res = runner.invoke(app, args)
    assert res.exit_code == 0, (res.output, res.exception)
    return res


def test_rdm_from_npy_and_compare(tmp_path, rng):
    x = rng.normal(size=(3, 8, 20))
    np.save(tmp_path / "acts.npy", x)
    _ok(["rdm", str(tmp_path / "acts.npy"), "--out", str(tmp_path / "r")])
    out = tmp_path / "r"
    for name in ("rdms.npz", "rdm_vectors.parquet", "rdm_vectors.csv", "rdms.png",
                 "report.html", "provenance.json"):
        assert (out / name).exists(), name
    rdms = RDMs.load(out / "rdms.npz")
    np.testing.assert_allclose(rdms.vectors, compute_rdms(x).vectors)
    assert len(pd.read_parquet(out / "rdm_vectors.parquet")) == 3 * 28

    _ok(["compare", str(out / "rdms.npz"), str(out / "rdms.npz"), "--out",
         str(tmp_path / "c"), "--method", "kendall_tau_a", "--n-perm", "50"])
    table = pd.read_parquet(tmp_path / "c" / "similarity.parquet")
    assert len(table) == 9 and {"similarity", "p", "q_fdr"} <= set(table.columns)
    np.testing.assert_allclose(table["similarity"].to_numpy().reshape(3, 3),
                               compare(rdms, rdms, "kendall_tau_a"))
    assert (tmp_path / "c" / "similarity.png").exists()
    wide = pd.read_csv(tmp_path / "c" / "similarity_matrix.csv", index_col=0)
    assert wide.shape == (3, 3)


def test_rdm_from_csv_with_labels_and_npz(tmp_path, rng):
    df = pd.DataFrame(rng.normal(size=(5, 4)), columns=list("abcd"))
    df.insert(0, "stimulus", [f"img{i}" for i in range(5)])
    df.to_csv(tmp_path / "p.csv", index=False)
    _ok(["rdm", str(tmp_path / "p.csv"), "--metric", "euclidean", "--out", str(tmp_path / "o")])
    rdms = RDMs.load(tmp_path / "o" / "rdms.npz")
    assert rdms.conditions == [f"img{i}" for i in range(5)] and rdms.metric == "euclidean"
    np.savez(tmp_path / "s.npz", v1=rng.normal(size=(5, 3)), v2=rng.normal(size=(5, 2, 2)))
    _ok(["rdm", str(tmp_path / "s.npz"), "--out", str(tmp_path / "o2"), "--layers", "v2"])
    assert RDMs.load(tmp_path / "o2" / "rdms.npz").names == ["v2"]


def test_rdm_from_activation_store(tmp_path, rng):
    from cortexmap.models import ActivationStore

    store = ActivationStore.create(tmp_path / "a.zarr", {"conv1": (2, 3, 3), "fc": (6,)},
                                   ids=[f"s{i}" for i in range(6)], chunk=6, attrs={})
    data = {"conv1": rng.normal(size=(6, 2, 3, 3)).astype(np.float32),
            "fc": rng.normal(size=(6, 6)).astype(np.float32)}
    store.write_batch(0, data)
    store.mark_complete()
    _ok(["rdm", str(tmp_path / "a.zarr"), "--layers", "conv1", "--out", str(tmp_path / "o")])
    rdms = RDMs.load(tmp_path / "o" / "rdms.npz")
    assert rdms.names == ["conv1"] and rdms.conditions == [f"s{i}" for i in range(6)]
    np.testing.assert_allclose(rdms.vectors,
                               compute_rdms(data["conv1"].reshape(6, -1)).vectors, atol=1e-6)


def test_crossnobis_cli(tmp_path, rng):
    np.save(tmp_path / "b.npy", rng.normal(size=(12, 10)))
    (tmp_path / "c.txt").write_text("\n".join(["a", "b", "c", "d"] * 3))
    (tmp_path / "r.txt").write_text("\n".join(str(r) for r in np.repeat([1, 2, 3], 4)))
    _ok(["rdm", str(tmp_path / "b.npy"), "--metric", "crossnobis", "--conditions",
         str(tmp_path / "c.txt"), "--runs", str(tmp_path / "r.txt"), "--out", str(tmp_path / "o")])
    assert RDMs.load(tmp_path / "o" / "rdms.npz").conditions == ["a", "b", "c", "d"]


def test_cli_refuses_existing_output_and_bad_input(tmp_path, rng):
    np.save(tmp_path / "x.npy", rng.normal(size=(5, 4)))
    _ok(["rdm", str(tmp_path / "x.npy"), "--out", str(tmp_path / "o")])
    res = runner.invoke(app, ["rdm", str(tmp_path / "x.npy"), "--out", str(tmp_path / "o")])
    assert isinstance(res.exception, CortexmapError) and "--overwrite" in str(res.exception)
    _ok(["rdm", str(tmp_path / "x.npy"), "--out", str(tmp_path / "o"), "--overwrite"])
    np.save(tmp_path / "y.npy", rng.normal(size=(6, 4)))
    _ok(["rdm", str(tmp_path / "y.npy"), "--out", str(tmp_path / "o6")])
    res = runner.invoke(app, ["compare", str(tmp_path / "o" / "rdms.npz"),
                              str(tmp_path / "o6" / "rdms.npz"), "--out", str(tmp_path / "c")])
    assert isinstance(res.exception, CortexmapError) and "5 conditions" in str(res.exception)
    assert not (tmp_path / "c").exists()
    bad = rng.normal(size=(5, 4))
    bad[1, 1] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    res = runner.invoke(app, ["rdm", str(tmp_path / "bad.npy"), "--out", str(tmp_path / "b")])
    assert isinstance(res.exception, CortexmapError) and "NaN" in str(res.exception)
    with pytest.raises(CortexmapError, match="does not exist"):
        RDMs.load(tmp_path / "missing.npz")


def test_help_has_examples():
    for cmd in ("rdm", "compare"):
        res = _ok([cmd, "--help"])
        assert "Examples" in res.output and "cortexmap " + cmd in res.output

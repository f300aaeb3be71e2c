"""The library behind `cortexmap rdm` / `cortexmap compare`: same numbers as the rsa core,
inputs checked before any output exists."""

import numpy as np
import pandas as pd
import pytest

from cortexmap.analyses.rdms import (
    compare_rdm_files,
    compare_rdms,
    layer_rdms,
    load_patterns,
    make_rdms,
    pattern_rdms,
)
from cortexmap.errors import CortexmapError
from cortexmap.rsa import RDMs, compare, compute_rdms, permutation_test


def test_make_rdms_writes_and_returns_the_rsa_rdms(tmp_path, rng):
    x = rng.normal(size=(2, 7, 9))
    np.save(tmp_path / "x.npy", x)
    rdms = make_rdms(tmp_path / "x.npy", tmp_path / "o", metric="euclidean", progress=False)
    ref = compute_rdms(list(x), metric="euclidean")
    np.testing.assert_allclose(rdms.vectors, ref.vectors, atol=1e-12)
    np.testing.assert_allclose(RDMs.load(tmp_path / "o" / "rdms.npz").vectors, ref.vectors)
    assert rdms.names == ["x0", "x1"]
    for name in ("rdm_vectors.parquet", "rdms.png", "report.html", "provenance.json"):
        assert (tmp_path / "o" / name).is_file(), name


def test_pattern_rdms_takes_label_lists_and_files(tmp_path, rng):
    x = rng.normal(size=(12, 6))
    np.save(tmp_path / "b.npy", x)
    conds, runs = ["a", "b", "c", "d"] * 3, [str(r) for r in np.repeat([1, 2, 3], 4)]
    (tmp_path / "c.txt").write_text("\n".join(conds))
    from_list = pattern_rdms(tmp_path / "b.npy", "crossnobis", conditions=conds, runs=runs)
    from_file = pattern_rdms(tmp_path / "b.npy", "crossnobis", conditions=tmp_path / "c.txt",
                             runs=runs)
    np.testing.assert_allclose(from_list.vectors, from_file.vectors)
    ref = compute_rdms([x], metric="crossnobis", conditions=conds, runs=runs)
    np.testing.assert_allclose(from_list.vectors, ref.vectors, atol=1e-10)
    with pytest.raises(CortexmapError, match="does not exist"):
        pattern_rdms(tmp_path / "b.npy", conditions=tmp_path / "missing.txt")


def test_compare_rdms_matches_rsa_compare_and_permutations(rng):
    a = compute_rdms([rng.normal(size=(8, 5)) for _ in range(3)], names=["p", "q", "r"])
    b = compute_rdms([rng.normal(size=(8, 4)) for _ in range(2)], names=["u", "v"])
    res = compare_rdms(a, b, "tau-a")  # an alias, canonicalised
    assert res.method == "kendall_tau_a"
    np.testing.assert_allclose(res.similarity, compare(a, b, "kendall_tau_a"))
    assert list(res.table["a"]) == ["p", "p", "q", "q", "r", "r"]
    assert res.matrix().shape == (3, 2)
    perm = compare_rdms(a, b, "spearman", n_perm=20, seed=3, progress=False)
    ref = permutation_test(a, b, "spearman", n_perm=20, seed=3, progress=False)
    np.testing.assert_allclose(perm.table["p"].to_numpy(), ref.to_frame()["p"].to_numpy())


def test_compare_rdm_files_checks_inputs_before_output(tmp_path, rng):
    a = compute_rdms([rng.normal(size=(6, 5))], names=["a"])
    b = compute_rdms([rng.normal(size=(5, 5))], names=["b"])
    b.save(tmp_path / "b.npz")
    with pytest.raises(CortexmapError, match="conditions"):
        compare_rdm_files(a, tmp_path / "b.npz", tmp_path / "never")
    with pytest.raises(CortexmapError, match="n_perm"):
        compare_rdm_files(a, a, tmp_path / "never", n_perm=-1)
    assert not (tmp_path / "never").exists()
    res = compare_rdm_files(a, a, tmp_path / "c", method="pearson")
    assert res.similarity[0, 0] == pytest.approx(1.0)
    assert pd.read_csv(tmp_path / "c" / "similarity.csv")["similarity"].iloc[0] == \
        pytest.approx(1.0)


def test_load_patterns_refuses_unknown_store_layer(tmp_path, rng):
    from cortexmap.models import ActivationStore

    store = ActivationStore.create(tmp_path / "a.zarr", {"fc": (4,)}, ids=["s0", "s1", "s2"],
                                   chunk=3, attrs={})
    store.write_batch(0, {"fc": rng.normal(size=(3, 4)).astype(np.float32)})
    store.mark_complete()
    sets, names, conds = load_patterns(tmp_path / "a.zarr")
    assert names == ["fc"] and conds == ["s0", "s1", "s2"] and sets[0].shape == (3, 4)
    with pytest.raises(CortexmapError, match="valid layers"):
        load_patterns(tmp_path / "a.zarr", ["conv9"])


def test_layer_rdms_of_a_network_on_the_bundled_images():
    rdms = layer_rdms("zoo:alexnet_sup_s0", ["conv1", "fc7"])
    assert rdms.names == ["conv1", "fc7"] and rdms.metric == "correlation"
    assert rdms.n_conditions == len(rdms.conditions) > 2

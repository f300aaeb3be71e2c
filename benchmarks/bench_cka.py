"""CKA of 50 x 50 layers of 1000 stimuli, against the per-pair reference implementation.

cortexmap (:func:`cortexmap.rsa.cka.cka`) builds each layer's centred kernel once and gets all
2500 pairs from one matrix product. The peer is the reference code of Kornblith et al. 2019
(``cka(gram_linear(x), gram_linear(y))``, re-implemented here line by line in numpy), which
computes and centres both Gram matrices for every pair, as a loop over pairs does; it is timed
on a 3 x 3 subset of the same layers (9 pairs) and its per-pair cost is scaled to 2500 pairs.
Layers are float32 with 256-2048 units (mean 960). Linear and RBF, biased and debiased.

Run alone: ``.venv/bin/python -m benchmarks.run_all bench_cka``.
"""

from __future__ import annotations

import numpy as np

from benchmarks.bench_rsa import _best_cpu

N_STIM, N_LAYERS = 1000, 50
WIDTHS = (256, 512, 1024, 2048)


def _layers(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((N_STIM, 64)).astype(np.float32)
    out = []
    for k in range(N_LAYERS):
        w = rng.standard_normal((64, WIDTHS[k % 4])).astype(np.float32)
        noise = rng.standard_normal((N_STIM, WIDTHS[k % 4]), dtype=np.float32)
        out.append(np.maximum(base @ w + (1 + k / 10) * noise, 0))
    return out


def _ref_gram_linear(x):
    return x @ x.T


def _ref_gram_rbf(x, threshold=1.0):
    dot = x @ x.T
    sq_norms = np.diag(dot)
    sq_distances = -2 * dot + sq_norms[:, None] + sq_norms[None, :]
    return np.exp(-sq_distances / (2 * threshold**2 * np.median(sq_distances)))


def _ref_center_gram(gram, unbiased=False):
    gram = gram.copy()
    if unbiased:
        n = gram.shape[0]
        np.fill_diagonal(gram, 0)
        means = np.sum(gram, 0, dtype=np.float64) / (n - 2)
        means -= np.sum(means) / (2 * (n - 1))
        gram -= means[:, None]
        gram -= means[None, :]
        np.fill_diagonal(gram, 0)
    else:
        means = np.mean(gram, 0, dtype=np.float64)
        means -= np.mean(means) / 2
        gram -= means[:, None]
        gram -= means[None, :]
    return gram


def _ref_cka(gx, gy, debiased=False):
    gx, gy = _ref_center_gram(gx, debiased), _ref_center_gram(gy, debiased)
    s = gx.ravel().dot(gy.ravel())
    return s / (np.linalg.norm(gx) * np.linalg.norm(gy))


def run() -> str:
    from cortexmap.rsa.cka import cka

    a = _layers(0)
    b = _layers(1)
    lines = [
        "## CKA (linear, RBF, debiased): 50 x 50 layers, 1000 stimuli",
        "",
        "Command: `.venv/bin/python -m benchmarks.run_all bench_cka`. Peer: the per-pair "
        "reference code of Kornblith et al. 2019 (Gram + centring for every pair), timed on a "
        "3 x 3 subset of the same float64 layers and scaled to 2500 pairs.",
        "",
        "| kernel | cortexmap 50 x 50 wall s (CPU s) | reference, per pair wall s (CPU s) | "
        "reference scaled to 2500 pairs wall s | speed-up wall (CPU) | max abs diff (3 x 3) |",
        "|---|---|---|---|---|---|",
    ]
    sub_a = [x.astype(np.float64) for x in a[:3]]
    sub_b = [x.astype(np.float64) for x in b[:3]]
    for kernel, debiased in (("linear", False), ("linear", True), ("rbf", False)):
        t, c = _best_cpu(lambda k=kernel, d=debiased: cka(a, b, kernel=k, debiased=d))
        gram = _ref_gram_linear if kernel == "linear" else _ref_gram_rbf
        tr, cr = _best_cpu(lambda g=gram, d=debiased: np.array(
            [[_ref_cka(g(x), g(y), d) for y in sub_b] for x in sub_a]))
        ref = _best_cpu.last
        ours = cka(sub_a, sub_b, kernel=kernel, debiased=debiased)
        per, per_c = tr / 9, cr / 9
        name = kernel + (" debiased" if debiased else "")
        lines.append(
            f"| {name} | {t:.1f} ({c:.1f}) | {per:.3f} ({per_c:.3f}) | {per * 2500:.0f} | "
            f"**{per * 2500 / t:.0f}x** ({per_c * 2500 / c:.0f}x) | "
            f"{np.abs(ours - ref).max():.1e} |")
    lines += ["", "Target: 50 x 50 layers of 1000 stimuli under 30 s on 2 cores."]
    return "\n".join(lines)

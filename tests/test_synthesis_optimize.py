"""Synthesis objective and optimization loop on a tiny network: the loss falls, checkpoints
resume exactly, and bad input (too few images, one layer, unknown layer, NaN loss, rejected
image size) stops with a clear error."""

import pytest
import torch
from torch import nn

from cortexmap.errors import CortexmapError
from cortexmap.rsa.torch_rdm import mean_abs_offdiagonal
from cortexmap.synthesis.objective import LayerRDMObjective
from cortexmap.synthesis.optimize import synthesize
from cortexmap.synthesis.parameterization import FourierImages, PixelImages
from cortexmap.synthesis.priors import PriorConfig, jitter, range_penalty, total_variation
from tests.tiny_models import TinyConvNet as Tiny

LAYERS = ["conv1", "conv2", "conv3"]


def _run(steps, ckpt=None, resume=True, seed=0, n=6):
    obj = LayerRDMObjective(Tiny(), LAYERS)
    param = FourierImages(n, 16, seed=seed)
    return synthesize(obj, param, steps=steps, lr=0.05, priors=PriorConfig(jitter=2),
                      seed=seed, checkpoint=ckpt, checkpoint_every=3, resume=resume,
                      fingerprint="f", progress=False)


def test_loss_falls_and_layers_decorrelate():
    obj = LayerRDMObjective(Tiny(), LAYERS)
    param = FourierImages(8, 16, seed=1)
    with torch.no_grad():
        before = float(mean_abs_offdiagonal(obj.correlation_matrix(param())))
    res = synthesize(obj, param, steps=40, lr=0.1, priors=PriorConfig(jitter=1), seed=1,
                     progress=False)
    after = float(mean_abs_offdiagonal(obj.correlation_matrix(res.images)))
    assert res.images.shape == (8, 3, 16, 16)
    assert 0.0 <= float(res.images.min()) and float(res.images.max()) <= 1.0
    assert list(res.history["step"]) == list(range(40))
    assert res.history["loss"].iloc[-5:].mean() < res.history["loss"].iloc[:5].mean()
    assert after < 0.5 * before


def test_checkpoint_resume_is_exact(tmp_path):
    straight = _run(8)
    ckpt = tmp_path / "ckpt.pt"
    first = _run(5, ckpt)
    assert ckpt.exists() and first.resumed_from == 0
    resumed = _run(8, ckpt)
    assert resumed.resumed_from == 5
    torch.testing.assert_close(resumed.images, straight.images, rtol=0, atol=0)
    assert resumed.history["loss"].tolist() == straight.history["loss"].tolist()
    # a finished run resumes to itself without further steps
    again = _run(8, ckpt)
    assert again.resumed_from == 8 and len(again.history) == 8


def test_checkpoint_from_other_settings_is_refused(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    _run(3, ckpt)
    obj = LayerRDMObjective(Tiny(), LAYERS)
    with pytest.raises(CortexmapError, match="different settings"):
        synthesize(obj, FourierImages(6, 16), steps=4, checkpoint=ckpt, fingerprint="other",
                   progress=False)
    ckpt.write_bytes(b"garbage")
    with pytest.raises(CortexmapError, match="cannot be read"):
        synthesize(obj, FourierImages(6, 16), steps=4, checkpoint=ckpt, progress=False)


def test_bad_input_errors():
    model = Tiny()
    with pytest.raises(CortexmapError, match="at least 2 layers"):
        LayerRDMObjective(model, ["conv1"])
    with pytest.raises(CortexmapError, match="Unknown layer.*conv9"):
        LayerRDMObjective(model, ["conv1", "conv9"])
    obj = LayerRDMObjective(model, LAYERS)
    with pytest.raises(CortexmapError, match="at least 3 images"):
        synthesize(obj, PixelImages(2, 16), steps=2, progress=False)
    with pytest.raises(CortexmapError, match=r"rejected images of size.*image_size=224"):
        obj.check_input(20)  # the Linear layer only fits 16x16
    obj.check_input(16)


class NaNAfter(nn.Module):
    """Returns NaN once the input mean exceeds a level: the model breaks mid-run."""

    def forward(self, x):
        return torch.where(x.mean() > -10, x * float("nan"), x)


def test_nan_loss_names_step_and_cause():
    model = Tiny()
    model.conv2.append(NaNAfter())
    obj = LayerRDMObjective(model, LAYERS)
    with pytest.raises(CortexmapError, match=r"NaN/inf at step 0.*layer 'conv2'.*NaN/inf"):
        synthesize(obj, PixelImages(4, 16), steps=3, progress=False)


def test_diverged_parameters_blame_learning_rate():
    obj = LayerRDMObjective(Tiny(), LAYERS)
    param = PixelImages(4, 16)
    with torch.no_grad():
        param.pixels[0, 0, 0, 0] = float("nan")
    with pytest.raises(CortexmapError, match=r"step 0.*learning rate"):
        synthesize(obj, param, steps=2, progress=False)


def test_priors():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 8, 8)
    assert jitter(x, 0, g) is x
    y = jitter(x, 2, g)
    assert y.shape == x.shape
    assert total_variation(torch.ones(1, 3, 4, 4)).item() == 0.0
    assert total_variation(x).item() > 0
    assert range_penalty(torch.tensor([-0.5, 0.5, 1.5])).item() == pytest.approx(0.5 / 3)
    p = PixelImages(2, 8, squash="none")
    assert torch.allclose(p(), p.pixels + 0.5)
    with pytest.raises(CortexmapError, match="squash"):
        PixelImages(2, 8, squash="tanh")
    f = FourierImages(3, 12, seed=0)
    assert f().shape == (3, 3, 12, 12) and torch.isfinite(f()).all()


def test_tv_and_range_priors_shape_the_images():
    obj = LayerRDMObjective(Tiny(), LAYERS)

    def final(**prior):
        res = synthesize(obj, PixelImages(4, 16, seed=2, squash="none", init_std=0.5),
                         steps=25, lr=0.1, priors=PriorConfig(jitter=0, **prior), progress=False)
        return res.history.iloc[-1]

    plain, smooth, bounded = final(), final(tv_weight=1.0), final(range_weight=10.0)
    assert smooth["tv"] < 0.8 * plain["tv"]
    assert bounded["range"] < 0.5 * plain["range"]
    assert smooth["loss"] > smooth["orthogonality_loss"]  # the prior is part of the loss

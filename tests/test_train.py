"""Training: architectures, objectives, checkpoints, resume, bad input, CLI (tiny data only)."""

import json

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from cortexmap.errors import CortexmapError
from cortexmap.models.architectures import fold_batchnorm
from cortexmap.stimuli.procedural import generate
from cortexmap.train import (
    TrainConfig,
    augment,
    build,
    evaluate,
    feature_dim,
    features,
    fit_linear_probe,
    load_checkpoint,
    model_from_checkpoint,
    normalize,
    nt_xent,
    train,
)

TINY = dict(images_per_epoch=48, batch_size=16, n_val=16, probe_images=32, num_threads=1)

NAMES = {
    "alexnet": ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "classifier"],
    "vgg": ["block1", "block2", "block3", "fc6", "classifier"],
    "resnet": ["stem", "layer1", "layer2", "layer3", "avgpool", "classifier"],
    "vit": ["patch_embed", "block1", "block2", "block3", "block4", "norm", "classifier"],
}


@pytest.mark.parametrize("arch", list(NAMES))
def test_architectures(arch):
    model = build(arch, seed=0).eval()
    assert [n for n, _ in model.named_children()] == NAMES[arch]
    n_params = sum(p.numel() for p in model.parameters())
    assert 1e5 <= n_params <= 1e6  # sized for CPU training
    x = torch.randn(2, 3, 64, 64)
    assert model(x).shape == (2, 10)
    assert features(model, x).shape == (2, feature_dim(model))
    again = build(arch, seed=0).eval()
    torch.testing.assert_close(model(x), again(x))  # seeded
    assert not torch.equal(build(arch, seed=1).eval()(x), model(x))


def test_alexnet_blocks_are_conv_relu_pool():
    model = build("alexnet", seed=0)
    for name in ["conv1", "conv2", "conv3", "conv4", "conv5"]:
        block = getattr(model, name)
        kinds = [type(m).__name__ for m in block]
        assert kinds[:2] == ["Conv2d", "ReLU"] and set(kinds[2:]) <= {"MaxPool2d"}


@pytest.mark.parametrize("arch", ["alexnet", "vgg"])
def test_batchnorm_folds_exactly(arch):
    model = build(arch, seed=0, train_norm=True)
    model.train()
    with torch.no_grad():
        for _ in range(3):  # give BN non-trivial running statistics
            model(torch.randn(8, 3, 64, 64) * 2 + 0.5)
    model.eval()
    plain = fold_batchnorm(model).eval()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    x = torch.randn(4, 3, 64, 64)
    torch.testing.assert_close(plain(x), model(x), atol=1e-4, rtol=1e-4)


def test_augment_and_nt_xent():
    x = torch.randn(6, 3, 64, 64)
    torch.manual_seed(1)
    a = augment(x)
    torch.manual_seed(1)
    assert torch.equal(a, augment(x)) and a.shape == x.shape and not torch.allclose(a, x)
    z = torch.randn(8, 16)
    loss_same, correct = nt_xent(z, z.clone(), temperature=0.1)
    assert correct == 16 and float(loss_same) < 0.5
    loss_rand, _ = nt_xent(z, torch.randn(8, 16))
    assert float(loss_rand) > float(loss_same)


def test_linear_probe_replaces_classifier():
    imgs, labels, _, _ = generate("train", 60, seed=0, size=32)  # resnet pools globally
    model = build("resnet", seed=0)
    old = model.classifier
    acc = fit_linear_probe(model, normalize(imgs), torch.from_numpy(labels), epochs=25)
    assert model.classifier is not old and acc > 0.3  # 60 points, 96 features: fits well
    assert evaluate(model, imgs, labels) == pytest.approx(acc, abs=0.05)


def test_train_writes_checkpoints_history_and_final(tmp_path):
    cfg = TrainConfig(arch="alexnet", epochs=2, checkpoint_epochs=[0, 2], **TINY)
    res = train(cfg, tmp_path / "run", progress=False)
    out = tmp_path / "run"
    for f in ["config.json", "provenance.json", "last.pt", "final.pt", "history.parquet",
              "history.csv", "checkpoints/ep0.pt", "checkpoints/ep2.pt"]:
        assert (out / f).is_file(), f
    assert not (out / "checkpoints/ep1.pt").exists()
    hist = pd.read_parquet(out / "history.parquet")
    assert hist["epoch"].tolist() == [0, 1, 2]
    assert hist["images_seen"].tolist() == [0, 48, 96]
    assert res.history["val_acc"].between(0, 1).all()
    ep2 = load_checkpoint(out / "checkpoints/ep2.pt")
    assert [h["epoch"] for h in ep2["history"]] == [0, 1, 2]  # accuracy history up to E
    # the shipped model has BatchNorm folded away and reproduces the trained one
    loaded = model_from_checkpoint(load_checkpoint(out / "final.pt"))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in loaded.modules())
    x = torch.randn(3, 3, 64, 64)
    torch.testing.assert_close(loaded(x), res.model(x), atol=1e-4, rtol=1e-4)
    assert res.model.cortexmap_preprocessing.size == 64
    assert json.loads((out / "config.json").read_text())["arch"] == "alexnet"


class Interrupt(Exception):
    pass


def test_interrupted_training_resumes_bit_identically(tmp_path):
    cfg = TrainConfig(arch="vgg", epochs=3, checkpoint_epochs=[1, 3], **TINY)
    full = train(cfg, tmp_path / "full", progress=False)

    def stop_after_2(epoch, row):
        if epoch == 2:
            raise Interrupt  # simulated Ctrl-C after epoch 2's checkpoint was written

    with pytest.raises(Interrupt):
        train(cfg, tmp_path / "cut", progress=False, callback=stop_after_2)
    assert load_checkpoint(tmp_path / "cut/last.pt")["epoch"] == 2
    seen = []
    resumed = train(cfg, tmp_path / "cut", progress=False, callback=lambda e, r: seen.append(e))
    assert seen == [3]  # only the missing epoch ran
    for (k, a), (_, b) in zip(full.model.state_dict().items(),
                              resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    pd.testing.assert_frame_equal(full.history.drop(columns="seconds"),
                                  resumed.history.drop(columns="seconds"))


def test_resume_refuses_a_different_config(tmp_path):
    train(TrainConfig(arch="alexnet", epochs=1, **TINY), tmp_path, progress=False)
    with pytest.raises(CortexmapError, match="different training config"):
        train(TrainConfig(arch="alexnet", epochs=1, lr=0.1, **TINY), tmp_path, progress=False)
    with pytest.raises(CortexmapError, match="planned for 1 epochs"):
        train(TrainConfig(arch="alexnet", epochs=2, **TINY), tmp_path, progress=False)
    # --no-resume starts afresh
    res = train(TrainConfig(arch="alexnet", epochs=1, lr=0.1, **TINY), tmp_path, resume=False,
                progress=False)
    assert len(res.history) == 1


def test_unwritable_checkpoint_folder(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(CortexmapError, match="not writable"):
        train(TrainConfig(epochs=1, **TINY), blocker / "run", progress=False)


def test_corrupt_checkpoint_is_named(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(CortexmapError, match="last.pt is corrupt"):
        train(TrainConfig(epochs=1, **TINY), tmp_path, progress=False)
    torch.save({"weights": 1}, tmp_path / "plain.pt")
    with pytest.raises(CortexmapError, match="not a cortexmap checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")


def test_simclr_and_untrained_get_a_linear_probe(tmp_path):
    ssl = train(TrainConfig(arch="resnet", objective="simclr", epochs=1, **TINY),
                tmp_path / "ssl", progress=False)
    assert ssl.history["probe"].iloc[-1] == 1 and 0 <= ssl.history["val_acc"].iloc[-1] <= 1
    ckpt = load_checkpoint(tmp_path / "ssl/final.pt")
    assert ckpt["linear_probe"] is True and "head" not in ckpt
    unt = train(TrainConfig(arch="alexnet", objective="untrained", epochs=0, **TINY),
                tmp_path / "unt", progress=False)
    init = build("alexnet", seed=0, train_norm=True).eval()
    x = torch.randn(2, 3, 64, 64)
    # untrained: the features are the seeded initial ones, only the read-out is fitted
    torch.testing.assert_close(features(unt.model, x), features(fold_batchnorm(init), x))


def test_bad_config():
    with pytest.raises(ValueError, match="unknown architecture"):
        TrainConfig(arch="lenet")
    with pytest.raises(CortexmapError, match="Unknown architecture"):
        build("lenet")


def test_cli_train(tmp_path):
    from cortexmap.cli import app

    out = tmp_path / "cli_run"
    args = ["train", "--out", str(out), "--arch", "alexnet", "--epochs", "1",
            "--images-per-epoch", "16", "--batch-size", "16", "--checkpoint-epochs", "0,1",
            "--threads", "1", "--no-progress"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (out / "checkpoints/ep1.pt").is_file() and "val accuracy" in res.output
    bad = CliRunner().invoke(app, args[:-1] + ["--checkpoint-epochs", "x,y"])
    assert isinstance(bad.exception, CortexmapError)


def test_stop_after_then_resume(tmp_path):
    cfg = TrainConfig(arch="alexnet", epochs=2, **TINY)
    early = train(cfg, tmp_path, progress=False, stop_after=1)
    assert early.history["epoch"].tolist() == [1]
    assert load_checkpoint(tmp_path / "final.pt")["epoch"] == 1
    with pytest.raises(CortexmapError, match="stop_after must be"):
        train(cfg, tmp_path, progress=False, stop_after=-1)
    seen = []
    train(cfg, tmp_path, progress=False, callback=lambda e, r: seen.append(e))
    assert seen == [2]
    with pytest.raises(CortexmapError, match="past stop_after"):
        train(cfg, tmp_path, progress=False, stop_after=1)


def test_contrast_augmentation_is_seeded_and_partial():
    from cortexmap.train.loop import epoch_data

    cfg = TrainConfig(images_per_epoch=40, contrast_range=(0.01, 0.2), contrast_fraction=0.5)
    x, y = epoch_data(cfg, 1)
    x2, _ = epoch_data(cfg, 1)
    plain, y_plain = epoch_data(TrainConfig(images_per_epoch=40), 1)
    assert torch.equal(x, x2) and torch.equal(y, y_plain)
    ratio = x.std(dim=(1, 2, 3)) / plain.std(dim=(1, 2, 3))
    low = ratio < 0.25
    assert 0.2 < low.float().mean() < 0.8  # about half the images at 1-20 % contrast
    torch.testing.assert_close(x[~low], plain[~low])
    with pytest.raises(ValueError, match="contrast_range"):
        TrainConfig(contrast_range=(0.5, 0.1))


def test_simclr_pairs_share_the_object_not_the_scene():
    from cortexmap.train.loop import epoch_data

    x, y = epoch_data(TrainConfig(objective="simclr", images_per_epoch=24), 2)
    plain, y_plain = epoch_data(TrainConfig(images_per_epoch=24), 2)
    assert x.shape == (24, 2, 3, 64, 64) and torch.equal(y, y_plain)
    torch.testing.assert_close(x[:, 0], plain)  # first view: the dataset's own image
    differs = (x[:, 0] - x[:, 1]).abs().mean(dim=(1, 2, 3))
    assert (differs > 0.05).all()  # the second view is another scene

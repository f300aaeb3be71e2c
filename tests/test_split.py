import pytest
import torch
import torchvision
from torch import nn

from cortexmap.errors import CortexmapError
from cortexmap.models.split import layer_output, split_at


def _small_alexnet():
    def block(i, o, pool):
        layers = [nn.Conv2d(i, o, 3, padding=1), nn.ReLU()]
        return nn.Sequential(*(layers + ([nn.MaxPool2d(2)] if pool else [])))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = block(3, 8, True), block(8, 8, True)
            self.fc6 = nn.Sequential(nn.Flatten(), nn.Linear(8 * 4 * 4, 10))

        def forward(self, x):
            return self.fc6(self.conv2(self.conv1(x)))

    return Net().eval()


@pytest.mark.parametrize("layer", ["conv1", "conv2", "conv1.0"])
def test_tail_of_head_equals_model(layer):
    model = _small_alexnet()
    x = torch.randn(4, 3, 16, 16)
    head, tail = split_at(model, layer)
    with torch.no_grad():
        torch.testing.assert_close(tail(head(x)), model(x))


def test_branching_model_googlenet_cut_at_inception_block():
    model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False).eval()
    x = torch.randn(2, 3, 64, 64)
    head, tail = split_at(model, "inception4a")
    with torch.no_grad():
        act = layer_output(head, x, batch_size=1)
        assert act.shape[1] == 512
        torch.testing.assert_close(tail(act), model(x), rtol=1e-4, atol=1e-4)


def test_resnet_inside_block_is_not_a_cut_point():
    model = torchvision.models.resnet18(weights=None).eval()
    with pytest.raises(CortexmapError, match="not a cut point"):
        split_at(model, "layer2.0.conv1")
    head, tail = split_at(model, "layer2")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(tail(head(x)), model(x), rtol=1e-4, atol=1e-4)


def test_unknown_layer_lists_valid_names():
    with pytest.raises(CortexmapError, match="valid top-level names include: conv1, conv2"):
        split_at(_small_alexnet(), "conv9")


@pytest.mark.parametrize("layer", ["conv1", "conv2", "conv1.0"])
def test_tail_at_one_trace_equals_split_at(layer):
    from cortexmap.models.split import tail_at, trace_model

    model = _small_alexnet()
    x = torch.randn(4, 3, 16, 16)
    traced = trace_model(model)
    head, tail = split_at(model, layer)
    with torch.no_grad():
        for _ in range(2):  # the traced graph is copied, not consumed
            torch.testing.assert_close(tail_at(model, layer, traced)(head(x)), tail(head(x)))

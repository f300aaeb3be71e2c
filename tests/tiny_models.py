"""Small networks shared by tests: fast, seeded, with the readable layer names users see."""

import torch
from torch import nn


class TinyConvNet(nn.Module):
    """conv1..conv3 + fc; the classifier only accepts 16x16 inputs (fixed Linear size)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
        self.conv3 = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        return self.fc(self.conv3(self.conv2(self.conv1(x))).flatten(1))

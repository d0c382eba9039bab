"""The smallest workloads: the lab's straight line, and a nonlinear regression from scikit-learn."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lrlab.data.loaders import DataLoaders
from lrlab.data.workloads import Workload, mean_mse

LINE_A, LINE_B, LINE_NOISE = 2.0, 30.0, 0.1  # the lab's workbook fits y = 2x + 30


def line_data(seed: int, batch_size: int) -> DataLoaders:
    """2,000 points of y = 2x + 30 + N(0, 0.1^2), x uniform in [0, 1); 1,600 to train. The targets are
    standardized by the training set's mean and spread (MSE 1.0 is the mean predictor, about 0.03 the noise),
    so the workload asks for the line's shape, not for a long walk of the bias to 30 (the lab shows that one)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2000, 1, generator=g)
    y = LINE_A * x + LINE_B + LINE_NOISE * torch.randn(2000, 1, generator=g)
    y = (y - y[:1600].mean()) / y[:1600].std()
    return DataLoaders.from_tensors(x[:1600], y[:1600], x[1600:], y[1600:], batch_size, seed=seed)


def friedman_data(seed: int, batch_size: int) -> DataLoaders:
    """Friedman #1 (scikit-learn, generated): 10 features, 5 of them used nonlinearly, noise 1; targets
    standardized by the training set's mean and spread, so MSE 1.0 is the mean predictor."""
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(n_samples=5000, n_features=10, noise=1.0, random_state=0)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32).unsqueeze(1)
    mean, std = y[:4000].mean(), y[:4000].std()
    y = (y - mean) / std
    x = (x - 0.5) / (1 / 12) ** 0.5  # uniform [0, 1) features to mean 0, std 1
    return DataLoaders.from_tensors(x[:4000], y[:4000], x[4000:], y[4000:], batch_size, seed=seed)


def mlp(sizes: tuple[int, ...]) -> nn.Sequential:
    """Linear layers with ReLU between them, no normalization."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


WORKLOADS = [
    Workload("linear", "the lab's y = a*x + b by minibatch SGD: Linear(1, 1), MSE", line_data,
             lambda: nn.Linear(1, 1), F.mse_loss, "mse", epochs=10, batch_size=32, target=0.05, baseline=mean_mse),
    Workload("regression", "Friedman #1 (scikit-learn), MLP 10-64-64-1, MSE on standardized targets", friedman_data,
             lambda: mlp((10, 64, 64, 1)), F.mse_loss, "mse", epochs=20, batch_size=64, target=0.1,
             baseline=mean_mse),
]  # fmt: skip

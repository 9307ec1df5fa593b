"""The conditional source entropy regularizer (--reg cse)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lic_cli import train
from models.core.cse import ConditionalSourceModel, discretized_gaussian_likelihood


@pytest.mark.parametrize(("mean", "scale"), [(0.3, 0.05), (0.999, 0.0005), (0.0, 2.0), (0.5, 1e-4)])
def test_discretized_gaussian_sums_to_one_over_the_256_levels(mean, scale):
    levels = torch.arange(256, dtype=torch.float32) / 255
    probabilities = discretized_gaussian_likelihood(levels, torch.full_like(levels, mean),
                                                    torch.full_like(levels, scale))
    assert float(probabilities.sum()) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("kind", ["factorized", "context"])
def test_source_model_learns_and_its_penalty_reaches_only_the_reconstruction(kind):
    torch.manual_seed(0)
    x = torch.randint(0, 256, (2, 3, 32, 32)).float() / 255
    x_hat = (x + 0.03 * torch.randn_like(x)).requires_grad_()
    options = train.TrainOptions(model="hyper", data=Path("."), out=Path("."), regularizer="cse", alpha=0.1)
    regularizer = train.SourceEntropyRegularizer(kind, 0.1, options, torch.device("cpu"))
    penalty, before = regularizer.penalty(x, x_hat)
    penalty.backward()
    assert x_hat.grad is not None and float(x_hat.grad.abs().sum()) > 0
    assert all(p.grad is None for p in regularizer.model.parameters())
    assert all(p.requires_grad for p in regularizer.model.parameters())
    for _ in range(30):
        regularizer.fit(x, x_hat)
    assert regularizer.penalty(x, x_hat)[1] < before  # maximum likelihood lowers the estimate of H(X | X^)


def test_context_model_reads_only_earlier_pixels():
    model = ConditionalSourceModel("context")
    torch.nn.init.normal_(model.head.weight)
    x, x_hat = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    changed = x.clone()
    changed[..., 4, 4] += 0.5  # the centre pixel itself and everything after it must not matter
    changed[..., 6:, :] = 0
    before, after = model.mean_and_scale(x, x_hat), model.mean_and_scale(changed, x_hat)
    assert torch.equal(before[0][..., :4, :], after[0][..., :4, :])
    assert torch.equal(before[0][..., 4, :5], after[0][..., 4, :5])


def test_the_regularizer_leaves_the_training_random_stream_alone():
    options = train.TrainOptions(model="hyper", data=Path("."), out=Path("."), regularizer="cse", seed=3)
    torch.manual_seed(11)
    train.make_regularizer(options, torch.device("cpu"))
    with_regularizer = torch.rand(4)
    torch.manual_seed(11)
    assert torch.equal(torch.rand(4), with_regularizer)

"""adapt_batchnorm (AdaBN): batch-norm statistics re-estimated on the target images, nothing else changed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from marsunits.inference.adaptation import adapt_batchnorm
from marsunits.task import SegmentationTask


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.Dropout(0.9),
        nn.Conv2d(4, 2, 1),
        nn.BatchNorm2d(2),
    ).eval()


def test_statistics_become_those_of_the_target_images_and_nothing_else_moves() -> None:
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    gen = torch.Generator().manual_seed(1)
    batches = [0.5 + 2.0 * torch.rand(4, 3, 8, 8, generator=gen) for _ in range(3)]  # a shifted "domain"
    adapted, seen = adapt_batchnorm(net, batches)
    assert seen == 12 and not adapted.training
    # The input model is untouched.
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    # First BatchNorm: running mean = mean of its input over every pixel of every image (equal batches).
    with torch.no_grad():
        features = net[0](torch.cat(batches))
    torch.testing.assert_close(adapted[1].running_mean, features.mean(dim=(0, 2, 3)))
    # Weights and affine parameters are the model's own.
    for key, value in net.state_dict().items():
        if "running" not in key and "num_batches" not in key:
            assert torch.equal(adapted.state_dict()[key], value), key
    # Dropout stayed off during the pass: the second BatchNorm saw the first's eval-mode output.
    with torch.no_grad():
        second_in = adapted[3](adapted[2](adapted[1](adapted[0](torch.cat(batches)))))
    torch.testing.assert_close(adapted[4].running_mean, second_in.mean(dim=(0, 2, 3)))


def test_task_adapts_and_predicts_at_the_same_size() -> None:
    task = SegmentationTask(
        encoder="mobilenetv3_small_050", encoder_weights=None, encoder_depth=3, decoder_channels=[32, 16, 8]
    ).eval()
    images = [torch.rand(2, 3, 32, 32) * 0.3 for _ in range(2)]
    adapted, _ = adapt_batchnorm(task, images)
    with torch.no_grad():
        out, ref = adapted(images[0]), task(images[0])
    assert out.shape == ref.shape == (2, 3, 32, 32)
    assert not torch.allclose(out, ref)


def test_nothing_to_adapt_or_nothing_to_adapt_on_is_an_error() -> None:
    with pytest.raises(ValueError, match="no images"):
        adapt_batchnorm(_net(), [])
    with pytest.raises(ValueError, match="no BatchNorm layer"):
        adapt_batchnorm(nn.Conv2d(3, 3, 1), [torch.rand(1, 3, 4, 4)])

"""Batch norm folded into convolutions for prediction: same outputs, no batch norm left, training intact."""

from __future__ import annotations

import pytest
import torch

from marsunits.inference.fusion import count_batchnorm, fold_batchnorm
from marsunits.inference.runtime import TorchForward
from marsunits.task import SegmentationTask


def _task(arch: str, encoder: str, depth: int, decoder: list[int] | None) -> SegmentationTask:
    torch.manual_seed(0)
    task = SegmentationTask(
        arch=arch, encoder=encoder, encoder_weights=None, encoder_depth=depth, decoder_channels=decoder
    )
    # Non-trivial running statistics, as after training (fresh ones are 0 / 1 and would hide mistakes).
    for m in task.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            if m.affine:
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.2, 0.2)
    return task.eval()


@pytest.mark.parametrize(
    ("arch", "encoder", "depth", "decoder"),
    [
        ("unet", "efficientnet_lite0", 5, [32, 16, 16, 8, 8]),  # the default encoder (timm BatchNormAct2d)
        ("unet", "mobilenetv3_small_050", 3, [32, 16, 8]),
        ("fpn", "mobilenetv3_small_050", 5, None),
        ("deeplabv3plus", "mobilenetv3_small_050", 5, None),
    ],
)
def test_folded_network_computes_the_same_logits_without_batchnorm(
    arch: str, encoder: str, depth: int, decoder: list[int] | None
) -> None:
    task = _task(arch, encoder, depth, decoder)
    before = count_batchnorm(task.model)
    assert before > 0
    folded = fold_batchnorm(task.model)
    assert count_batchnorm(folded) == 0
    assert count_batchnorm(task.model) == before  # the original is not modified
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        reference = task.model(x)
        got = folded(x)
    torch.testing.assert_close(got, reference, atol=1e-4 * float(reference.abs().max()), rtol=1e-4)


def test_prediction_forward_with_folding_matches_and_leaves_training_model_alone() -> None:
    task = _task("unet", "efficientnet_lite0", 5, [32, 16, 16, 8, 8])
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    plain = TorchForward(task, torch.device("cpu"), fold_bn=False)(x)
    folded = TorchForward(task, torch.device("cpu"), fold_bn=True)(x)
    torch.testing.assert_close(folded, plain, atol=1e-5, rtol=0)
    assert torch.allclose(folded.sum(1), torch.ones(2, 64, 64), atol=1e-5)
    assert count_batchnorm(task.model) > 0  # the task itself still trains with batch norm


def test_untraceable_network_is_returned_unfolded_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    class DataDependent(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.bn(self.conv(x))
            return y if float(y.mean()) > -1e9 else -y  # control flow on a value: fx cannot trace it

    net = DataDependent().eval()
    with caplog.at_level("WARNING"):
        out = fold_batchnorm(net)
    said = (
        "could not fold 1 batch norm layer into convolutions (untraceable code, or no convolution before it)"
    )
    assert f"{said}; it runs as it is" in caplog.text, caplog.text
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(out(x), net(x))


def _randomise_batchnorm(net: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial statistics and affine parameters, so that a batch norm left out or folded twice shows."""
    gen = torch.Generator().manual_seed(3)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) * 0.05 + 0.01)  # eps matters
            if m.affine:
                m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.data.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
    return net.eval()


def _assert_same_function(folded: torch.nn.Module, net: torch.nn.Module, shape: tuple[int, ...]) -> None:
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), net.eval()(x), atol=1e-5, rtol=1e-5)


class _ConvOutputUsedTwice(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y  # folding would change the residual's y too


class _ConvCalledTwice(_ConvOutputUsedTwice):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)) + self.conv(x)  # one shared convolution, two calls


class _BatchNormCalledTwice(_ConvOutputUsedTwice):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)) + self.bn(x)  # one shared batch norm, the second after no convolution


@pytest.mark.parametrize("net_type", [_ConvOutputUsedTwice, _ConvCalledTwice, _BatchNormCalledTwice])
def test_shared_convolutions_and_batch_norms_are_left_unfolded(net_type: type[torch.nn.Module]) -> None:
    """Folding a layer whose output or module has another use would change that use as well."""
    net = _randomise_batchnorm(net_type())
    folded = fold_batchnorm(net)
    assert count_batchnorm(folded) == 1
    _assert_same_function(folded, net, (2, 4, 8, 8))


def test_batch_norm_after_no_convolution_is_kept_and_runs_in_evaluation_mode() -> None:
    """A timm BatchNormAct2d after pooling cannot be folded: it is split, and must still use its running
    statistics (a training-mode batch norm normalises each batch by its own statistics instead)."""
    from timm.layers import BatchNormAct2d

    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.AvgPool2d(2), BatchNormAct2d(4, act_layer=torch.nn.ReLU)
    )
    net = _randomise_batchnorm(net)
    folded = fold_batchnorm(net)
    assert count_batchnorm(folded) == 1
    _assert_same_function(folded, net, (2, 3, 8, 8))


@pytest.mark.parametrize(("eps", "affine"), [(0.1, True), (1e-5, False)])
def test_timm_batchnorm_act_is_folded_with_its_own_eps_and_affinity(eps: float, affine: bool) -> None:
    from timm.layers import BatchNormAct2d

    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        BatchNormAct2d(4, eps=eps, affine=affine, act_layer=torch.nn.ReLU),
    )
    net = _randomise_batchnorm(net)
    folded = fold_batchnorm(net)
    assert count_batchnorm(folded) == 0
    _assert_same_function(folded, net, (2, 3, 8, 8))


def test_network_in_training_mode_is_folded_as_in_evaluation_and_left_training() -> None:
    net = _randomise_batchnorm(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)))
    net.train()
    folded = fold_batchnorm(net)
    assert net.training and net[1].training  # the caller's network keeps its mode
    assert not folded.training and count_batchnorm(folded) == 0
    _assert_same_function(folded, net, (2, 3, 8, 8))


def test_pairs_inside_nested_untraceable_modules_are_found_by_their_full_names() -> None:
    class Untraceable(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x) if float(x.mean()) > -1e9 else x  # control flow on a value

    block = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.BatchNorm2d(3))
    net = _randomise_batchnorm(Untraceable(Untraceable(block)))
    folded = fold_batchnorm(net)
    assert count_batchnorm(folded) == 0
    _assert_same_function(folded, net, (2, 3, 8, 8))

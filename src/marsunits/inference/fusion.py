"""Fold batch normalisation into the convolutions before it, for inference on CPU.

In evaluation mode a batch-norm layer is a fixed per-channel affine map, so it can be folded into the
weights and bias of the convolution that feeds it: the network computes the same function with one
memory-bound pass per layer fewer. In float32 the outputs agree to rounding; in bfloat16 the folded weights
round otherwise, and about 2 % of a window's classes change (as many as between bfloat16 and float32), so
``predict.py`` records ``fold_batchnorm`` with bf16 in ``prediction_settings.json``. On this project's
CPUs the 58 batch-norm layers of Unet + EfficientNet-Lite0 took about a quarter of the prediction time;
folded, prediction in bfloat16 runs about 1.5x faster (``benchmarks/bench_predict.py``).

The arithmetic is PyTorch's (:func:`torch.nn.utils.fusion.fuse_conv_bn_eval`) and the pairs are found on
``torch.fx`` graphs. Written here, because :func:`torch.fx.experimental.optimization.fuse` does not fit:
it needs the whole network to be traceable (smp's FPN and DeepLabV3+ are not) and returns a
``GraphModule`` that drops the attributes smp's models read (``encoder.output_stride``); and timm's
``BatchNormAct2d`` (batch norm, dropout and activation in one module, as EfficientNet uses) calls the
functional batch norm inside its own ``forward``, where a tracer sees no ``BatchNorm2d`` module, so it is
replaced by the equivalent ``Sequential(BatchNorm2d, drop, act)`` first.

Training is never affected: the folded copy is made for the prediction engine only.
"""

from __future__ import annotations

import copy
import logging

from torch import nn

from marsunits.errors import counted

__all__ = ["fold_batchnorm", "count_batchnorm"]

log = logging.getLogger(__name__)


def count_batchnorm(module: nn.Module) -> int:
    """Number of batch-norm modules (``nn.BatchNorm2d`` and subclasses such as timm's) in ``module``."""
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def _split_batchnorm_act(module: nn.Module) -> None:
    """Replace timm ``BatchNormAct2d`` children (recursively, in place) by ``Sequential(bn, drop, act)``."""
    try:
        from timm.layers import BatchNormAct2d
    except ImportError:  # timm absent: nothing of its kind to split
        return
    for name, child in list(module.named_children()):
        if isinstance(child, BatchNormAct2d):
            bn = nn.BatchNorm2d(
                child.num_features,
                eps=child.eps,
                momentum=child.momentum,
                affine=child.affine,
                track_running_stats=child.track_running_stats,
            )
            bn.load_state_dict(child.state_dict(), strict=True)
            bn.train(child.training)
            setattr(module, name, nn.Sequential(bn, child.drop, child.act))
        else:
            _split_batchnorm_act(child)


def conv_bn_pairs(module: nn.Module, prefix: str = "") -> list[tuple[str, str]]:
    """Qualified names of ``(Conv2d, BatchNorm2d)`` pairs where the batch norm takes the convolution's output
    and nothing else does.

    Found on the ``torch.fx`` graph of ``module``; a module that cannot be traced (Python control flow on
    values or shapes, as smp's FPN and DeepLabV3+ have in ``forward``) is searched child by child. Modules
    called more than once are left out (folding a shared layer would change its other uses).
    """
    from torch import fx

    try:
        graph = fx.symbolic_trace(module)
    except Exception:  # noqa: BLE001 - untraceable: search the parts
        pairs: list[tuple[str, str]] = []
        for name, child in module.named_children():
            pairs += conv_bn_pairs(child, f"{prefix}{name}.")
        return pairs
    modules = dict(graph.named_modules())
    calls: dict[str, int] = {}
    for node in graph.graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    found = []
    for node in graph.graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        source = node.args[0] if node.args else None
        if (
            isinstance(source, fx.Node)
            and source.op == "call_module"
            and isinstance(modules.get(source.target), nn.Conv2d)
            and len(source.users) == 1
            and calls[str(source.target)] == 1
            and calls[str(node.target)] == 1
        ):
            found.append((prefix + str(source.target), prefix + str(node.target)))
    return found


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, leaf, new)


def fold_batchnorm(network: nn.Module) -> nn.Module:
    """A copy of ``network`` (evaluation mode) with batch norm folded into the preceding convolutions.

    The pairs are found with ``torch.fx`` (:func:`conv_bn_pairs`) and folded in place in the copy with
    :func:`torch.nn.utils.fusion.fuse_conv_bn_eval`, the batch norm becoming ``nn.Identity``: the
    network keeps its structure and attributes, whatever parts of it could be traced.

    Args:
        network: A logits network, e.g. the ``model`` of a :class:`~marsunits.task.SegmentationTask`
            (an smp model). It is not modified.

    Returns:
        A module computing the same function in evaluation mode (float32 outputs agree to about 1e-5
        relative; bfloat16 ones do not: see the module docstring). Batch norms that follow no convolution,
        or sit in parts that cannot be traced, stay as they are (slower, never wrong); a warning says how
        many.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    work = copy.deepcopy(network).eval()
    _split_batchnorm_act(work)
    for conv_name, bn_name in conv_bn_pairs(work):
        conv = work.get_submodule(conv_name)
        bn = work.get_submodule(bn_name)
        assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
        _replace(work, conv_name, fuse_conv_bn_eval(conv, bn))
        _replace(work, bn_name, nn.Identity())
    left = count_batchnorm(work)
    if left:
        log.warning(
            "could not fold %s into convolutions (untraceable code, or no convolution before %s); %s as %s",
            counted(left, "batch norm layer"),
            *(("it", "it runs", "it is") if left == 1 else ("them", "they run", "they are")),
        )
    return work

"""``trainer.sync_batchnorm=true`` (``trainer=ddp``) for timm encoders, without losing their activations.

Lightning converts the network with ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``, which knows only
PyTorch's batch-norm classes. timm's encoders (EfficientNet-Lite, MobileNetV3, ...) normalise with
``BatchNormAct2d``: batch norm, then its activation (ReLU6, Hardswish) in the same module. Converted, each
became a plain ``SyncBatchNorm`` that keeps the activation as an unused child and never calls it: a DDP run
trained (and validated, and picked ``best.ckpt`` with) an encoder without its activations, the pretrained
EfficientNet-Lite0 one's logits grew about 10^5-fold, and ``predict.py``, ``train=false`` and the exported
model, which rebuild the network with them, ran another network than the one trained. After ``fit``,
Lightning's revert turned them into batch norms without activations too.

:class:`TimmSyncBatchNorm` converts with timm's ``convert_sync_batchnorm`` (``BatchNormAct2d`` ->
``SyncBatchNormAct``, activation kept) and reverts to ``BatchNormAct2d``. Being a ``TorchSyncBatchNorm``,
Lightning takes it as the layer-sync plugin with ``sync_batchnorm=True`` (:func:`layer_sync_plugins`).
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.plugins import TorchSyncBatchNorm
from timm.layers import BatchNormAct2d, SyncBatchNormAct
from timm.layers import convert_sync_batchnorm as timm_convert_sync_batchnorm
from torch.nn import Module

__all__ = ["TimmSyncBatchNorm", "layer_sync_plugins"]


class TimmSyncBatchNorm(TorchSyncBatchNorm):
    """Lightning's SyncBatchNorm plugin, keeping the activation of timm's ``BatchNormAct2d`` layers."""

    def apply(self, model: Module) -> Module:
        """Every batch norm synchronised across the processes, timm's with their activation and dropout."""
        return timm_convert_sync_batchnorm(model)

    def revert(self, model: Module) -> Module:
        """Back to per-process batch norms: ``SyncBatchNormAct`` -> timm's ``BatchNormAct2d`` (activation
        kept), other ``SyncBatchNorm`` layers as Lightning reverts them."""
        if not isinstance(model, SyncBatchNormAct):
            return super().revert(model)  # recurses into the children through this method
        reverted = BatchNormAct2d(
            model.num_features,
            model.eps,
            0.1,  # replaced below: None (a cumulative average) is a momentum timm's signature does not take
            model.affine,
            model.track_running_stats,
            apply_act=False,  # the converted layer's own act and drop are put back below
        )
        reverted.momentum = model.momentum
        if model.affine:
            with torch.no_grad():
                reverted.weight = model.weight
                reverted.bias = model.bias
        reverted.running_mean = model.running_mean
        reverted.running_var = model.running_var
        reverted.num_batches_tracked = model.num_batches_tracked
        reverted.train(model.training)
        for name, child in model.named_children():  # act, drop
            reverted.add_module(name, self.revert(child))
        return reverted


def layer_sync_plugins(trainer_cfg: Any) -> dict[str, Any]:
    """Trainer arguments that make ``sync_batchnorm: true`` use :class:`TimmSyncBatchNorm`: the config's
    ``plugins`` (instantiated) plus the plugin; ``{}`` when the config does not synchronise batch norms."""
    if not bool(trainer_cfg.get("sync_batchnorm", False)):
        return {}
    from hydra.utils import instantiate
    from omegaconf import DictConfig

    plugins = trainer_cfg.get("plugins") or []
    if isinstance(plugins, DictConfig | dict | str):  # one plugin given alone, not in a list
        plugins = [plugins]
    plugins = [instantiate(p) if isinstance(p, DictConfig | dict) else p for p in plugins]
    return {"plugins": [*plugins, TimmSyncBatchNorm()]}

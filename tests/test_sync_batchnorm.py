"""``trainer.sync_batchnorm=true`` (``trainer=ddp``) keeps the activations of timm's ``BatchNormAct2d``."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from lightning.pytorch.plugins import TorchSyncBatchNorm
from timm.layers import BatchNormAct2d, SyncBatchNormAct

try:  # tests/ as a package (rootdir import) or as a plain folder on sys.path (pytest's prepend mode)
    from .conftest import compose_config, small_task
except ImportError:
    from conftest import compose_config, small_task  # type: ignore[no-redef]

from marsunits.models.sync_batchnorm import TimmSyncBatchNorm


def test_synchronised_batch_norms_keep_their_activations_and_revert_to_the_same_network() -> None:
    """Lightning's own conversion turned each BatchNormAct2d into a SyncBatchNorm that never calls its
    activation: the network trained under DDP was not the one predict.py rebuilds."""
    task = small_task()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = task(x)
        dropped = TorchSyncBatchNorm().apply(copy.deepcopy(task)).eval()(x)
    assert not torch.allclose(dropped, expected, atol=1e-3)  # what sync_batchnorm=true trained before

    plugin = TimmSyncBatchNorm()
    synced = plugin.apply(copy.deepcopy(task)).eval()
    assert any(isinstance(m, SyncBatchNormAct) for m in synced.modules())
    with torch.no_grad():
        torch.testing.assert_close(synced(x), expected)
    reverted = plugin.revert(synced).eval()
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in reverted.modules())
    kinds = [type(m) for m in task.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    back = [type(m) for m in reverted.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert back.count(BatchNormAct2d) == kinds.count(BatchNormAct2d) > 0
    assert reverted.state_dict().keys() == task.state_dict().keys()
    with torch.no_grad():
        torch.testing.assert_close(reverted(x), expected)


def test_trainer_ddp_synchronises_batch_norms_with_the_timm_plugin(tmp_path: Path) -> None:
    from marsunits.training import build_trainer

    common = ["model=tiny", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "logger=none"]
    cfg = compose_config("train", tmp_path, common)
    trainer = build_trainer(cfg.trainer, [], [])
    assert isinstance(getattr(trainer.strategy, "_layer_sync", None), TimmSyncBatchNorm)
    # The configured plugins are still there (atomic checkpoint writes).
    assert type(trainer.strategy.checkpoint_io).__name__ == "AtomicCheckpointIO"
    off = compose_config("train", tmp_path / "off", [*common, "trainer.sync_batchnorm=false"])
    assert getattr(build_trainer(off.trainer, [], []).strategy, "_layer_sync", None) is None


def test_one_plugin_given_alone_is_kept_beside_the_sync_plugin() -> None:
    """trainer.plugins given as one mapping (not a list) was iterated key by key."""
    from omegaconf import OmegaConf

    from marsunits.models.sync_batchnorm import layer_sync_plugins

    cfg = OmegaConf.create(
        {"sync_batchnorm": True, "plugins": {"_target_": "marsunits.checkpoint_io.AtomicCheckpointIO"}}
    )
    atomic, sync = layer_sync_plugins(cfg)["plugins"]
    assert type(atomic).__name__ == "AtomicCheckpointIO" and isinstance(sync, TimmSyncBatchNorm)
    assert layer_sync_plugins(OmegaConf.create({"sync_batchnorm": False})) == {}

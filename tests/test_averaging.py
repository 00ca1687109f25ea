"""EMA of the weights (callbacks=[...,ema]): what is validated is what is saved, tested and predicted with."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from conftest import compose_config
from marsunits.averaging import EMAWeights
from marsunits.task import load_task
from marsunits.training import run
from test_train import TINY


def test_ema_checkpoint_holds_the_average_and_test_scores_it(tmp_path: Path) -> None:
    overrides = [*TINY, "callbacks=[default,ema]", "trainer.max_epochs=2", "callbacks.ema.decay=0.5"]
    cfg = compose_config("train", tmp_path, overrides)
    metrics = run(cfg)

    ckpt = torch.load(metrics["best_ckpt"], map_location="cpu", weights_only=True)
    averaged, raw = ckpt["state_dict"], ckpt["current_model_state"]
    assert averaged.keys() == raw.keys()
    assert any(not torch.equal(averaged[k], raw[k]) for k in averaged if averaged[k].is_floating_point())

    # The checkpoint alone (as predict.py loads it) carries the averaged weights ...
    task = load_task(metrics["best_ckpt"])
    for name, value in task.state_dict().items():
        torch.testing.assert_close(value, averaged[name], rtol=0, atol=0)
    # ... and those are the weights train.py's test stage scored.
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    tested = trainer.test(task, datamodule=instantiate(cfg.data), verbose=False)[0]
    assert tested["test/miou"] == pytest.approx(metrics["test/miou"], abs=1e-6)


def test_ema_decay_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="decay must be in"):
        EMAWeights(decay=1.0)

"""A callback the DDP tests add to ``train.py`` (``+callbacks.probe._target_=ddp_probe.RankRandomness``) to
see what each rank's process does; ``tests/`` is on the subprocess's ``PYTHONPATH``."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch


class RankRandomness(pl.Callback):
    """At the first training batch, writes ``<out_dir>/rank<k>.txt``: a digest of torch's global random
    state on that rank (what the main process's crops and augmentations draw from), and
    ``rank<k>.indices``: the training samples the rank's sampler gives it this epoch."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.done = False

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, i: int
    ) -> None:
        if self.done:
            return
        self.done = True
        self.out_dir.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(torch.get_rng_state().numpy().tobytes()).hexdigest()
        (self.out_dir / f"rank{trainer.global_rank}.txt").write_text(digest)
        sampler = trainer.train_dataloader.sampler  # Lightning's DistributedSampler
        indices = ",".join(str(i) for i in sampler)
        (self.out_dir / f"rank{trainer.global_rank}.indices").write_text(indices)

"""Lightning callbacks that put what a team needs to see on the W&B dashboard.

* :class:`WandbRunInfo`: the W&B run id goes on the task (``task.wandb_run_id``) and into every checkpoint,
  so ``ckpt_path=last`` continues the same run and ``predict.py`` can link back to it.
* :class:`WandbValidationImages`: every ``every_n_epochs`` epochs, a fixed set of validation images with the
  predicted and true masks as W&B mask layers and the predicted contact drawn on the image.
* :class:`WandbConfusionMatrix`: the validation confusion matrix as a table and a row-normalised heatmap.

Each callback does nothing unless the trainer has a :class:`~lightning.pytorch.loggers.WandbLogger`, so the
task stays logger-agnostic and the same callback list works with CSV or TensorBoard only. Media are made and
logged on global rank zero only (one run per experiment under DDP).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_warn

from marsunits.boundary.extract import extract_contacts
from marsunits.constants import CLASS_NAMES, IGNORE_INDEX
from marsunits.errors import readable
from marsunits.tracking.media import confusion_heatmap, confusion_rows, draw_contacts, image_to_rgb_uint8

#: W&B mask legend: class id -> name, plus the ignore label shown as its own class.
MASK_LABELS: dict[int, str] = {**dict(enumerate(CLASS_NAMES)), IGNORE_INDEX: "ignore"}


def find_wandb_logger(trainer: pl.Trainer) -> WandbLogger | None:
    """The trainer's first :class:`WandbLogger`, or None."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            return logger
    return None


def lightning_log_step(trainer: pl.Trainer) -> int:
    """The ``trainer/global_step`` that Lightning gives the metrics logged now (``self.log`` values).

    Lightning's logger connector logs them at ``fit_loop.epoch_loop._batches_that_stepped``, which a
    validation at the end of an epoch runs before counting the epoch's last batch: one less than
    ``trainer.global_step`` there. Media logged at ``trainer.global_step`` sat one step to the right of their
    validation's ``val/miou``, on the step of the next epoch's first training batch.
    """
    loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    step = getattr(loop, "_batches_that_stepped", None)
    return int(step) if isinstance(step, int) else int(trainer.global_step)


def _due(epoch: int, every_n_epochs: int, first_validation: bool) -> bool:
    """Log at a fit's first validation (a broken pipeline shows at once), then after the epochs that close
    each stretch of ``every_n_epochs`` (epoch indices n - 1, 2n - 1, ...), counted as Lightning counts
    ``check_val_every_n_epoch``. Counted from epoch 0 instead, ``every_n_epochs=2`` with validation every
    2 epochs (on epochs 1, 3, 5: the real-data experiments) never logged anything."""
    return every_n_epochs > 0 and (first_validation or (epoch + 1) % every_n_epochs == 0)


class WandbRunInfo(pl.Callback):
    """Store the W&B run id on the task and in each checkpoint (``checkpoint["marsunits"]["wandb_run_id"]``),
    and the run's name and group on the task (its checkpoint metadata keeps them).

    The task reads ``self.wandb_run_id`` into its checkpoint metadata; writing the id into the checkpoint
    here as well keeps resuming working for any LightningModule. They are put on the task at ``setup`` and
    again at ``on_fit_start``, after Lightning restored a resumed checkpoint: its metadata put the earlier
    part's values back (the task's ``on_load_checkpoint``), so a run resumed with ``logger.wandb.name=`` or
    ``group=`` went back to the old name and group at the next resume, and one whose earlier part had no W&B
    run stored none, so each resume started a new one.
    """

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.run_name: str | None = None
        self.run_group: str | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        logger = find_wandb_logger(trainer)
        if logger is None or not trainer.is_global_zero:
            return
        run = logger.experiment
        self.run_id = str(run.id)
        # Kept so that a resumed run keeps them (wandb_setup.prepare_loggers).
        self.run_name = getattr(run, "name", None) or None
        self.run_group = getattr(run, "group", None) or None
        self._put_on(pl_module)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.run_id:
            self._put_on(pl_module)

    def _put_on(self, pl_module: pl.LightningModule) -> None:
        pl_module.wandb_run_id = self.run_id  # type: ignore[assignment]  # SegmentationTask attributes
        pl_module.wandb_run_name = self.run_name  # type: ignore[assignment]
        pl_module.wandb_run_group = self.run_group  # type: ignore[assignment]

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self.run_id:
            meta = checkpoint.setdefault("marsunits", {})
            if isinstance(meta, dict):
                meta["wandb_run_id"] = self.run_id


class WandbValidationImages(pl.Callback):
    """Log a fixed set of validation images with predicted/true masks and the predicted contact.

    The set is the first ``n_images`` samples of the first validation batches seen (the validation
    loader is not shuffled, and the set is kept for the whole fit, so epochs are comparable). At the end of
    the fit's first validation and of validations after epochs ``n - 1, 2n - 1, ...`` (``_due``; and on
    every ``trainer.validate`` call) the model predicts them again; the logged ``wandb.Image`` carries two
    mask layers, ``prediction`` and ``ground_truth`` (ignore pixels, 255, as the label "ignore"), and the
    contact lines from
    :func:`marsunits.boundary.extract.extract_contacts` on the softmax probabilities are drawn on the image.

    The pictures are logged uncommitted, so they join the W&B history row of the validation's metrics that
    Lightning logs right after (same ``_step`` and ``trainer/global_step``); a module that logs no metric
    at the end of validation leaves them to the next logged row (or to the run's end).

    Args:
        every_n_epochs: Log every this many epochs (0 disables), as ``_due`` counts them.
        n_images: How many validation images to follow.
        key: W&B key of the image list.
    """

    def __init__(self, every_n_epochs: int = 1, n_images: int = 4, key: str = "val/examples") -> None:
        if every_n_epochs < 0 or n_images < 1:
            raise ValueError(
                f"WandbValidationImages needs every_n_epochs >= 0 and n_images >= 1, "
                f"got every_n_epochs={every_n_epochs}, n_images={n_images}."
            )
        self.every_n_epochs = every_n_epochs
        self.n_images = n_images
        self.key = key
        self._images: list[torch.Tensor] = []
        self._masks: list[torch.Tensor] = []
        self._paths: list[str] = []
        #: Set after the first validation of a fit: the set is then fixed, even with fewer than n_images
        #: (it filled up with the same images again, a, b, a, b, from the following epochs).
        self._collected = False
        self._validations = 0

    def _active(self, trainer: pl.Trainer) -> bool:
        return (
            self.every_n_epochs > 0
            and trainer.is_global_zero
            and not trainer.sanity_checking
            and find_wandb_logger(trainer) is not None
        )

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._collected or len(self._images) >= self.n_images or dataloader_idx != 0:
            return
        if not self._active(trainer):
            return
        if not isinstance(batch, dict) or "image" not in batch or "mask" not in batch:
            rank_zero_warn(
                "WandbValidationImages: validation batches are not dicts with image/mask; no images."
            )
            self.every_n_epochs = 0
            return
        paths = batch.get("path") or [f"val[{batch_idx}][{i}]" for i in range(len(batch["image"]))]
        for image, mask, path in zip(batch["image"], batch["mask"], paths, strict=False):
            if len(self._images) >= self.n_images:
                break
            self._images.append(image.detach().to("cpu", torch.float32).clone())
            self._masks.append(mask.detach().to("cpu").clone())
            self._paths.append(str(path))

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Here, not in on_validation_end: a weight-averaging callback listed after this one (``ema``) puts
        # the raw weights back in its own on_validation_epoch_end, and the images showed those instead of
        # the averaged weights that val/miou, the checkpoint and predict.py use.
        if not self._active(trainer):
            return
        self._collected = True
        fitting = trainer.state.fn == "fit"
        if fitting:
            self._validations += 1
            if not _due(trainer.current_epoch, self.every_n_epochs, self._validations == 1):
                return
        if not self._images:
            return
        import wandb

        logger = find_wandb_logger(trainer)
        assert logger is not None
        probs = self._predict(trainer, pl_module)
        pictures = []
        for k, (image, mask, path) in enumerate(zip(self._images, self._masks, self._paths, strict=True)):
            p = probs[k]
            pred = p.argmax(axis=0).astype(np.uint8)
            lines = extract_contacts(p)
            rgb = draw_contacts(image_to_rgb_uint8(image.numpy()), lines)
            truth = mask.numpy().astype(np.uint8)
            scored = truth != IGNORE_INDEX
            acc = float((pred[scored] == truth[scored]).mean()) if scored.any() else float("nan")
            length = sum(line.length_px for line in lines)
            caption = (
                f"{readable(Path(path).name)} | epoch {trainer.current_epoch} | pixel acc {acc:.3f} "
                f"| contact {length:.0f} px"
            )
            if lines:
                caption += f" (confidence {max(line.confidence for line in lines):.2f})"
            pictures.append(
                wandb.Image(
                    rgb,
                    caption=caption,
                    masks={
                        "prediction": {"mask_data": pred, "class_labels": MASK_LABELS},
                        "ground_truth": {"mask_data": truth, "class_labels": MASK_LABELS},
                    },
                )
            )
        # Not committed: Lightning logs this validation's metrics (val/miou, ...) right after the module's
        # epoch-end hook, and that log call commits the pictures in the same W&B history row, so they share
        # its step (``_step``, which the media panels' step slider follows) and its trainer/global_step.
        logger.experiment.log(
            {self.key: pictures, "trainer/global_step": lightning_log_step(trainer)}, commit=False
        )

    def _predict(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> np.ndarray:
        """Softmax probabilities ``(N, 3, H, W)`` float32 of the followed images (model mode restored)."""
        was_training = pl_module.training
        pl_module.eval()
        try:
            probs = []
            with torch.no_grad(), trainer.precision_plugin.val_step_context():
                for image in self._images:
                    x = trainer.precision_plugin.convert_input(image.unsqueeze(0).to(pl_module.device))
                    probs.append(torch.softmax(pl_module(x).float(), dim=1)[0].cpu().numpy())
        finally:
            pl_module.train(was_training)
        return np.stack(probs)


class WandbConfusionMatrix(pl.Callback):
    """Log a confusion matrix as a ``wandb.Table`` and a row-normalised heatmap image.

    Reads the task's ``last_confusion[stage]`` (a ``(3, 3)`` array of pixel counts, rows = true class,
    columns = predicted) at the end of validation (``stage="val"``) or of testing (``stage="test"``). W&B's
    own ``wandb.plot.confusion_matrix`` would need every pixel's label, far too much data for segmentation.

    Args:
        every_n_epochs: During fit, log every this many epochs (0 disables), as ``_due`` counts them; a
            ``trainer.validate`` or ``trainer.test`` call always logs.
        stage: ``val`` or ``test``: the key of ``last_confusion`` to read and the prefix of the logged keys.
    """

    def __init__(self, every_n_epochs: int = 1, stage: str = "val") -> None:
        if every_n_epochs < 0:
            raise ValueError(f"WandbConfusionMatrix needs every_n_epochs >= 0, got {every_n_epochs}.")
        if stage not in ("val", "test"):
            raise ValueError(f"WandbConfusionMatrix stage must be 'val' or 'test', got {stage!r}.")
        self.every_n_epochs = every_n_epochs
        self.stage = stage
        self._warned = False
        self._validations = 0

    # The *_end hooks run after the module's *_epoch_end hooks, where the task computes the matrix.
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.stage == "val":
            self._log(trainer, pl_module)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.stage == "test":
            self._log(trainer, pl_module)

    def _log(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_n_epochs == 0 or trainer.sanity_checking or not trainer.is_global_zero:
            return
        logger = find_wandb_logger(trainer)
        if logger is None:
            return
        if trainer.state.fn == "fit":
            self._validations += 1
            if not _due(trainer.current_epoch, self.every_n_epochs, self._validations == 1):
                return
        matrix = (getattr(pl_module, "last_confusion", None) or {}).get(self.stage)
        if matrix is None:
            if not self._warned:
                rank_zero_warn(
                    f"WandbConfusionMatrix: {type(pl_module).__name__} has no "
                    f"last_confusion[{self.stage!r}]; the confusion matrix is not logged."
                )
                self._warned = True
            return
        import wandb

        counts = np.asarray(matrix.detach().cpu() if isinstance(matrix, torch.Tensor) else matrix)
        names = list(CLASS_NAMES)
        table = wandb.Table(columns=["true", "predicted", "pixels", "fraction_of_true"])
        for row in confusion_rows(counts, names):
            table.add_data(*row)
        heatmap = confusion_heatmap(counts, names, title=f"{self.stage}, epoch {trainer.current_epoch}")
        logger.experiment.log(
            {
                f"{self.stage}/confusion_table": table,
                f"{self.stage}/confusion_matrix": wandb.Image(
                    heatmap, caption="rows: true class, normalised"
                ),
                "trainer/global_step": lightning_log_step(trainer),
            }
        )

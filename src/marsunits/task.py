"""The LightningModule that trains and evaluates the unit segmenter, and its self-describing checkpoints.

:class:`SegmentationTask` is built from primitive hyper-parameters only (torchgeo's way), so a checkpoint
rebuilds the network by itself. Each checkpoint also carries ``checkpoint["marsunits"]`` (see
:attr:`SegmentationTask.metadata`): class names, palette, normalisation, channels, tile size, architecture,
the training data's class map and the W&B run id, so that ``predict.py`` needs nothing else.
Reading a checkpoint file and rebuilding a task from it (:func:`~marsunits.checkpoint_loading.load_task`,
the one way inference code loads a checkpoint) is :mod:`marsunits.checkpoint_loading`'s job.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

import lightning as L
import numpy as np
import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassJaccardIndex,
)

from marsunits.boundary.metrics import BOUNDARY_TOLERANCE_PX, crack_scores, scored_cracks
from marsunits.checkpoint_files import CheckpointError as CheckpointError  # also the name the docs give
from marsunits.constants import CLASS_NAMES, IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, PALETTE
from marsunits.data.class_map import subclass_groups
from marsunits.data.splits import merge_sols
from marsunits.errors import ConfigError, DivergedError
from marsunits.file_digest import merge_image_keys
from marsunits.model_settings import OPTIMIZERS as OPTIMIZERS  # these three: defined without torch, there
from marsunits.model_settings import SCHEDULERS as SCHEDULERS
from marsunits.model_settings import check_numbers as check_numbers
from marsunits.models import SegmentationLoss, build_model, size_divisor
from marsunits.training_extent import BEST_SCORE_MONITOR, training_record
from marsunits.training_images import METADATA_KEY as IMAGES_KEY
from marsunits.training_images import UNKNOWN, images_record

log = logging.getLogger(__name__)

#: Version of the ``checkpoint["marsunits"]`` block; bump when its keys change meaning.
FORMAT_VERSION = 1
#: Key of the metadata block in a checkpoint.
METADATA_KEY = "marsunits"
#: Checkpoint key of the wall-clock seconds the run had taken when the checkpoint was saved, all its parts
#: (a run resumed with ``ckpt_path`` adds its own to those of the parts before).
RUN_SECONDS_KEY = "marsunits_run_seconds"

STAGES: tuple[str, ...] = ("val", "test")


def _plain(value: Any) -> Any:
    """Turn OmegaConf containers (what Hydra passes) and tuples into plain dicts/lists, recursively.

    Why: hyper-parameters are pickled into checkpoints; plain Python types keep them loadable with
    ``torch.load(weights_only=True)`` and without omegaconf.
    """
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, DictConfig | ListConfig):
            value = OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf comes with hydra-core
        pass
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _id(key: Any) -> int | str:
    """A class-map key as int when it is one (YAML may give "3"), else unchanged (e.g. a colour name)."""
    try:
        return int(key)
    except (TypeError, ValueError):
        return str(key)


def _normalise_class_map(class_map: Any) -> dict[Any, Any] | None:
    """Plain-typed class map: ``{native: project}``, or ``{source: {native: project} or None}`` (several;
    ``None``: that source's masks already hold project ids)."""
    if class_map is None:
        return None
    plain = _plain(class_map)
    if plain and all(isinstance(v, Mapping) or v is None for v in plain.values()):
        return {
            str(src): None if sub is None else {_id(k): int(v) for k, v in sub.items()}
            for src, sub in plain.items()
        }
    return {_id(k): int(v) for k, v in plain.items()}


def default_normalisation(in_channels: int) -> tuple[list[float], list[float]]:
    """ImageNet mean/std for 3 channels; their average for 1 channel (grey input, RGB-trained stem)."""
    if in_channels == 3:
        return list(IMAGENET_MEAN), list(IMAGENET_STD)
    if in_channels == 1:
        return [sum(IMAGENET_MEAN) / 3], [sum(IMAGENET_STD) / 3]
    raise ValueError(f"No default mean/std for in_channels={in_channels}; give `mean` and `std` explicitly.")


def seed_rank(seed: int, rank: int, step: int = 0) -> None:
    """Seed torch, NumPy and Python's ``random`` with ``seed + rank``: a DDP rank's own random streams; a
    run resumed at optimiser ``step`` > 0 seeds from ``(seed, rank, step)`` instead, or every resume drew
    the crops and augmentations of the run's first epoch again (as the datamodule's loader seed does).

    Lightning seeds every rank alike (``seed_everything``, and again from ``PL_GLOBAL_SEED`` when the
    processes join), so the ranks drew the very same crops and augmentations in the main process
    (``num_workers=0``): N GPUs trained on 1/N of the data with an N times smaller batch. Called once
    training starts: after the network is built (DDP copies rank zero's weights to all) and the samplers
    are made. ``PL_GLOBAL_SEED`` itself must stay the same on every rank: Lightning's ``DistributedSampler``
    shuffles with it, and ranks shuffling differently get overlapping shares of the data (seeding through
    ``seed_everything`` did that: a quarter of the scenes unseen each epoch with two ranks). Loader workers
    are seeded by Lightning from that seed and the rank.
    """
    import random

    derived = seed + rank
    if step:
        # shifted as a Python int: numpy 1.x refuses uint64 >> int (no safe common type)
        derived = int(np.random.SeedSequence([seed, rank, step]).generate_state(1, dtype=np.uint64)[0]) >> 1
    torch.manual_seed(derived)
    np.random.seed(derived % 2**32)
    random.seed(derived)


class SegmentationTask(L.LightningModule):
    """Semantic segmentation of rover images into the project's classes (see ``marsunits.constants``).

    Batches are dicts with ``image`` float ``(N, C, H, W)`` in [0, 1] (not normalised), ``mask`` int64
    ``(N, H, W)`` in {0, 1, 2, 255} and ``path`` (list of str); other keys (``camera``) are ignored.

    Logged metrics (names ``stage/name``): ``train/loss`` (per step); for ``stage`` in ``val``/``test``:
    ``loss``, ``miou``, ``pixel_acc`` and ``iou_<class name>`` per class, from torchmetrics accumulated over
    the epoch (DDP-synchronised by torchmetrics). With one evaluation loader per data source (datamodule
    ``val_names``), the same again under ``stage/<source>/``, plus ``stage/<source>/miou_labelled_classes``
    (the mean over the classes that source's labels hold) and ``stage/miou_source_mean``, their mean over the
    sources, each source counting once (what ``experiment=marsscapes_ai4mars`` keeps its best checkpoint by).
    The learning rate is not logged here: add Lightning's ``LearningRateMonitor`` callback. The epoch's
    confusion matrix (rows = target, columns = prediction, pixel counts, int64 numpy
    ``(num_classes, num_classes)``) is kept in ``self.last_confusion[stage]`` for callbacks.

    Absent classes: a class with no pixel in either the targets or the predictions of an epoch has an
    undefined IoU. It is logged as NaN in ``iou_<name>`` and left out of ``miou`` (the mean over the classes
    that do occur), instead of counting as 0 (torchmetrics' default ``zero_division``, set to NaN here), which
    would make ``miou`` depend on which classes a validation split happens to contain. ``miou`` is NaN only if
    no pixel at all was scored.

    Args:
        arch: smp architecture (``unet``, ``fpn``, ``deeplabv3plus``...).
        encoder: timm encoder name (``efficientnet_lite0``).
        encoder_weights: ``None``, ``"imagenet"`` (download) or ``"lite0_offline"`` / ``"lite1_offline"`` /
            ``"lite2_offline"`` (installed package; for ``efficientnet_lite0/1/2``).
        in_channels: input channels (1 or 3).
        num_classes: output classes; must equal ``len(class_names)``.
        class_names: one name per class id, in id order.
        palette: one RGB triple (0..255) per class id.
        mean: per-channel mean applied in ``forward`` (on [0, 1] inputs); ``None``: see
            :func:`default_normalisation`.
        std: per-channel std, as ``mean``.
        loss: ``"ce"`` or ``"ce+dice"``.
        dice_weight: weight of the Dice term.
        class_weights: per-class cross-entropy weights or ``None``.
        optimizer: ``"adamw"``, ``"adam"`` or ``"sgd"`` (momentum 0.9, Nesterov).
        lr: peak learning rate.
        weight_decay: weight decay (all parameters).
        scheduler: ``"cosine"`` (to 0 over the run), ``"onecycle"`` or ``"none"``; stepped every optimiser
            step, the run length taken from ``trainer.estimated_stepping_batches``.
        warmup_steps: linear warm-up steps (``cosine``: prepended; ``onecycle``: its rising phase; ``None`` or
            0: none for cosine, 30 % for onecycle).
        tile_size: training crop size in pixels, recorded for inference tiling.
        class_map: training data's native id -> project id mapping, or ``{source: mapping}`` when several
            sources were trained on together (recorded for provenance, not used here).
        dataset: training data set name (recorded).
        channels_last: run the network in ``torch.channels_last`` memory format (faster on recent GPUs).
        encoder_depth: encoder stages; inputs must be multiples of ``2**encoder_depth``.
        decoder_channels: Unet decoder widths (one per stage) or ``None`` for smp's default.
        encoder_lr_mult: the encoder's learning rate is ``lr * encoder_lr_mult`` (decoder and head: ``lr``);
            below 1 keeps pretrained features closer to ImageNet's (a common remedy when labelled data
            are few; measured on MarsScapes in the README).
        contact_weight: extra cross-entropy weight of pixels within ``contact_radius_px`` of a contact
            between the units (see :class:`~marsunits.models.losses.SegmentationLoss`); 0 = none.
        contact_radius_px: half-width in pixels of that band.
        drop_path_rate: stochastic depth of the encoder (see :func:`~marsunits.models.build_model`); 0 = none.
        freeze_encoder_bn: keep the encoder's BatchNorm layers in evaluation mode while training, so their
            running statistics stay the pretrained (ImageNet) ones and batches of crops from a few images do
            not re-estimate them; their scale and shift still learn. For small labelled sets.
        subclasses: ``None`` (default): the network has one output per project class. A list: the network
            has one output per training sub-class, ``subclasses[k]`` being the project class of sub-class
            ``k`` (e.g. MarsScapes' soil, sand -> smooth; bedrock, gravel, big rock -> rough), the training
            masks hold sub-class ids (``data.subclass_map``) and the loss is computed over the sub-classes;
            :meth:`forward` returns project-class logits, the log of each class's summed sub-class
            probabilities (``logsumexp`` over its sub-class logits), so validation, metrics, checkpoints
            and inference see ``num_classes`` classes as without it. ``class_weights`` are then one per
            sub-class; ``contact_weight`` must be 0 (contacts are between project classes).
    """

    # Buffers registered in __init__, declared for type checkers.
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        arch: str = "unet",
        encoder: str = "efficientnet_lite0",
        encoder_weights: str | None = "lite0_offline",
        in_channels: int = 3,
        num_classes: int = 3,
        class_names: Sequence[str] = CLASS_NAMES,
        palette: Sequence[Sequence[int]] = PALETTE,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        loss: str = "ce",
        dice_weight: float = 0.5,
        class_weights: Sequence[float] | None = None,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        scheduler: str = "cosine",
        warmup_steps: int | None = None,
        tile_size: int = 256,
        class_map: Mapping[Any, Any] | None = None,
        dataset: str = "synthetic",
        channels_last: bool = False,
        encoder_depth: int = 5,
        decoder_channels: Sequence[int] | None = None,
        encoder_lr_mult: float = 1.0,
        contact_weight: float = 0.0,
        contact_radius_px: int = 3,
        drop_path_rate: float = 0.0,
        freeze_encoder_bn: bool = False,
        subclasses: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        # Plain Python types before save_hyperparameters() reads these locals (see _plain).
        class_names = [str(n) for n in _plain(class_names)]
        palette = [[int(c) for c in rgb] for rgb in _plain(palette)]
        mean, std = _plain(mean), _plain(std)
        class_weights = _plain(class_weights)
        decoder_channels = _plain(decoder_channels)
        subclasses = None if subclasses is None else [int(c) for c in _plain(subclasses)]
        class_map = _normalise_class_map(class_map)
        tile_size = _whole_pixels("tile_size", tile_size)
        if mean is None or std is None:
            default_mean, default_std = default_normalisation(in_channels)
            mean = default_mean if mean is None else mean
            std = default_std if std is None else std
        mean, std = [float(m) for m in mean], [float(s) for s in std]
        self._check_arguments(in_channels, num_classes, class_names, palette, mean, std, optimizer, scheduler)
        check_numbers(
            {"lr": lr, "encoder_lr_mult": encoder_lr_mult},
            {"weight_decay": weight_decay, "dice_weight": dice_weight, "contact_weight": contact_weight},
        )
        #: Network output channels of each project class, in class order (``None``: one each, no sub-classes).
        self._groups = self._check_subclasses(subclasses, num_classes, contact_weight)
        self.save_hyperparameters()
        outputs = num_classes if subclasses is None else len(subclasses)

        self.model = build_model(
            arch,
            encoder,
            encoder_weights,
            in_channels,
            outputs,
            encoder_depth=encoder_depth,
            decoder_channels=decoder_channels,
            drop_path_rate=drop_path_rate,
        )
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # Not persistent: they are hyper-parameters (and metadata), rebuilt from those on load.
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        #: Training loss, over the network's outputs (sub-classes when ``subclasses`` is set).
        self.criterion = SegmentationLoss(
            outputs,
            loss,
            dice_weight,
            class_weights,
            IGNORE_INDEX,
            contact_weight=contact_weight,
            contact_radius_px=contact_radius_px,
        )
        #: With sub-classes, the validation/test loss over the project classes (else ``criterion`` serves).
        self.eval_criterion: SegmentationLoss | None = None
        if subclasses is not None:
            self.eval_criterion = SegmentationLoss(num_classes, loss, dice_weight, None, IGNORE_INDEX)
        self.metrics = nn.ModuleDict({stage: self._make_metrics(num_classes) for stage in STAGES})
        self.last_confusion: dict[str, np.ndarray] = {}
        # Per-image boundary scores of the running epoch, per metric prefix (see _eval_step).
        self._boundary: dict[str, list[tuple[float, float]]] = {}
        # [sum of the batches' loss x images, images] of the running epoch, per metric prefix (_eval_step).
        self._loss: dict[str, list[float]] = {}
        #: W&B run id of the run that trained this model; set by the tracking callback, kept in checkpoints.
        self.wandb_run_id: str | None = None
        #: That W&B run's name and group, so that a resumed run keeps them (a resumed sweep trial was renamed
        #: and moved out of its sweep's group).
        self.wandb_run_name: str | None = None
        self.wandb_run_group: str | None = None
        #: ``{source: sorted sols}`` the network has trained on, this run's and those of the checkpoint it
        #: was fine-tuned from (None: unknown, or data without sols); kept in checkpoints and packages, so
        #: a run that validates on those sols can tell (``MarsDataModule.sols_seen_by``).
        self.trained_sols: dict[str, list[int]] | None = None
        #: Sorted content keys (:func:`~marsunits.file_digest.image_content_key`) of the image files the
        #: network has trained on, this run's and those of the checkpoint it was fine-tuned from (None:
        #: unknown, or synthetic scenes only); kept in checkpoints and packages, so that a run validating,
        #: or a prediction scoring, on one of them can tell whatever its name (``images_seen_by``).
        self.trained_image_keys: list[str] | None = None
        #: ``time.perf_counter()`` when this part of the run started (set by ``training.run``; None: not
        #: timed) and the seconds of the parts before it (read from a resumed checkpoint).
        self.part_started: float | None = None
        self.seconds_before = 0.0
        #: Optimiser steps behind the weights this run started from (``init_ckpt_path``: that model's steps
        #: in all; 0 from ImageNet or random weights, None when unknown); kept in checkpoints and packages.
        self.steps_before: int | None = 0
        #: How far the training of these weights went (:func:`marsunits.training_extent.training_record`):
        #: set at each save from the trainer, read back from a checkpoint or package (None: unknown).
        self.training_record: dict[str, Any] | None = None
        #: How many of the training images were greyscale and colour, this run's and, under ``parent``, those
        #: of the model it was fine-tuned from (:func:`marsunits.training_images.images_record`): set at the
        #: start of fit from the datamodule, read back from a checkpoint or package (None: unknown).
        self.training_images: dict[str, Any] | None = None
        #: The record of the model this run's network started from (``init_ckpt_path``;
        #: :data:`~marsunits.training_images.UNKNOWN` when it has none), None from ImageNet or random weights.
        self.images_before: dict[str, Any] | None = None

    @staticmethod
    def _check_arguments(
        in_channels: int,
        num_classes: int,
        class_names: Sequence[str],
        palette: Sequence[Sequence[int]],
        mean: Sequence[float],
        std: Sequence[float],
        optimizer: str,
        scheduler: str,
    ) -> None:
        if len(class_names) != num_classes or len(palette) != num_classes:
            raise ValueError(
                f"num_classes={num_classes} but {len(class_names)} class_names and {len(palette)} palette "
                "colours were given; give one name and one RGB colour per class."
            )
        if any(len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb) for rgb in palette):
            # The overlays are blended into uint8: a value above 255 wraps round to another colour.
            raise ValueError(
                f"palette={palette}: each class colour must be 3 values (red, green, blue) from 0 to 255."
            )
        # Finite: a NaN mean (JSON readers take NaN) made every output NaN, mapped as class 0 everywhere.
        finite = all(math.isfinite(v) for v in (*mean, *std))
        if len(mean) != in_channels or len(std) != in_channels or not finite or min(std) <= 0:
            raise ValueError(
                f"mean and std need {in_channels} values each (finite, std > 0) for "
                f"in_channels={in_channels}, got mean={mean}, std={std}."
            )
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"Unknown optimizer {optimizer!r}. Valid choices: {list(OPTIMIZERS)}.")
        if scheduler not in SCHEDULERS:
            raise ValueError(f"Unknown scheduler {scheduler!r}. Valid choices: {list(SCHEDULERS)}.")

    @staticmethod
    def _check_subclasses(
        subclasses: list[int] | None, num_classes: int, contact_weight: float
    ) -> list[list[int]] | None:
        """Each project class's output channels (:func:`subclass_groups`), or ``None`` without sub-classes."""
        if subclasses is None:
            return None
        try:
            groups = subclass_groups(subclasses, num_classes)
        except ValueError as err:
            raise ValueError(f"{err} (model.subclasses comes from data.subclasses)") from None
        if contact_weight:
            raise ValueError(
                f"contact_weight={contact_weight} weighs contacts between project classes, which training "
                "masks of sub-class ids do not show; set model.contact_weight=0 or train without subclasses."
            )
        return groups

    @staticmethod
    def _make_metrics(num_classes: int) -> nn.ModuleDict:
        return nn.ModuleDict(
            {
                # zero_division=NaN: a class with no pixel in targets nor predictions has no IoU (class
                # docstring), rather than torchmetrics' default 0.
                "iou": MulticlassJaccardIndex(
                    num_classes, average=None, ignore_index=IGNORE_INDEX, zero_division=float("nan")
                ),
                "pixel_acc": MulticlassAccuracy(num_classes, average="micro", ignore_index=IGNORE_INDEX),
                "confusion": MulticlassConfusionMatrix(num_classes, ignore_index=IGNORE_INDEX),
            }
        )

    # ------------------------------------------------------------------ model
    @property
    def _hp(self) -> Any:
        """``self.hparams`` with attribute access typed loosely (it is an ``AttributeDict``)."""
        return self.hparams

    @property
    def size_divisor(self) -> int:
        """Input height and width must be multiples of this (32 for the default encoder depth)."""
        return size_divisor(self.model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images ``(N, C, H, W)`` float in [0, 1] to logits ``(N, num_classes, H, W)``.

        ``H`` and ``W`` must be multiples of :attr:`size_divisor` (pad first; the tiling code does). With
        ``subclasses``, a class's logit is the ``logsumexp`` of its sub-classes' logits, so the softmax of
        these logits is each class's summed sub-class probability.
        """
        return self.group_subclasses(self.network_logits(x))

    def group_subclasses(self, logits: torch.Tensor) -> torch.Tensor:
        """Network outputs ``(N, K, H, W)`` -> project-class logits ``(N, num_classes, H, W)`` (identity
        without ``subclasses``)."""
        if self._groups is None:
            return logits
        return torch.stack([torch.logsumexp(logits[:, group], dim=1) for group in self._groups], dim=1)

    def network_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The network's raw outputs ``(N, K, H, W)`` for images as in :meth:`forward`: ``K`` is
        ``num_classes``, or ``len(subclasses)`` when training on sub-classes."""
        if x.ndim != 4 or x.shape[1] != self._hp.in_channels:
            raise ValueError(
                f"Expected images (N, {self._hp.in_channels}, H, W), got shape {tuple(x.shape)}; convert "
                "images to the model's channel count first (marsunits.data.io.to_channels)."
            )
        x = (x - self.mean) / self.std
        if self._hp.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    # --------------------------------------------------------------- training
    def train(self, mode: bool = True) -> SegmentationTask:
        """Set training mode; with ``freeze_encoder_bn`` the encoder's BatchNorm layers stay in eval mode."""
        super().train(mode)
        if mode:
            self._freeze_encoder_bn()
        return self

    def on_train_epoch_start(self) -> None:
        # Lightning trains a module in whatever mode it holds (a new module is in training mode without
        # train() having been called), so the freeze is also applied here.
        self._freeze_encoder_bn()

    def _freeze_encoder_bn(self) -> None:
        if self._hp.get("freeze_encoder_bn", False):
            encoder: nn.Module = self.model.encoder  # type: ignore[assignment]  # smp models hold one
            for module in encoder.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        logits = self.network_logits(batch["image"])
        loss = self.criterion(logits, batch["mask"])
        self._check_finite(loss, "training")
        # Per step only: with on_epoch too, loggers would see `train/loss_step`/`_epoch`, not `train/loss`.
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def _check_finite(self, loss: torch.Tensor, stage: str) -> None:
        """Stop with :class:`~marsunits.errors.DivergedError` when ``loss`` is NaN or infinite.

        Going on would train NaN weights to the end and keep them as the "best" checkpoint, with
        ``metrics.json`` reporting success. One device sync per step buys this.
        """
        if torch.isfinite(loss):
            return
        lr = float(self._hp.get("lr") or 1e-3)
        raise DivergedError(
            f"the {stage} loss is {loss.item()} at epoch {self.current_epoch}, optimiser step "
            f"{self.global_step}: training diverged (model.lr={lr:g}). Lower the learning rate, e.g. "
            f"model.lr={lr / 10:g}, or set trainer.gradient_clip_val=1.0; if it happens before any training "
            "step, look for NaN values in the images or the checkpoint"
        )

    def _prefixes(self, stage: str, dataloader_idx: int) -> list[str]:
        """Metric prefixes a batch contributes to: always ``stage``; with several evaluation loaders (one per
        data source) also ``stage/<source>`` so each dataset's numbers can be read apart."""
        trainer = self._trainer  # None outside a Trainer (self.trainer would raise)
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        names = list(getattr(datamodule, "val_names", None) or [])
        if len(names) > 1 and dataloader_idx < len(names):
            return [stage, f"{stage}/{names[dataloader_idx]}"]
        return [stage]

    def _eval_step(self, stage: str, batch: dict[str, Any], dataloader_idx: int = 0) -> torch.Tensor:
        logits = self(batch["image"])
        target = batch["mask"]
        criterion = self.criterion if self.eval_criterion is None else self.eval_criterion
        loss = criterion(logits, target)
        self._check_finite(loss, "validation" if stage == "val" else stage)
        prefixes = self._prefixes(stage, dataloader_idx)
        # The loss is logged per source with several sources (`val/<source>/loss`), as Lightning, which
        # allowed a key from one dataloader only, logged it; its mean over the images is summed here and
        # logged in _log_prefix with the ranks' sums added. Lightning's own `sync_dist` mean divided the
        # ranks' summed image counts by the world size in an integer tensor, which rounds down: 5 validation
        # images on 2 ranks were counted as 4 and the loss came out 1.25 times too high.
        pooled = self._loss.setdefault(prefixes[-1], [0.0, 0.0])
        pooled[0] += float(loss.detach()) * target.shape[0]
        pooled[1] += target.shape[0]
        preds = logits.argmax(dim=1)
        scores = self._boundary_scores(preds, target)
        for prefix in prefixes:
            for metric in self._stage_metrics(prefix).values():
                metric.update(preds, target)
            self._boundary.setdefault(prefix, []).extend(scores)
        return loss

    @staticmethod
    def _boundary_scores(preds: torch.Tensor, target: torch.Tensor) -> list[tuple[float, float]]:
        """(boundary F1 at 3 px, mean contact distance px) per batch item that has a scored contact in the
        prediction or the truth; items where both agree there is none say nothing about contacts and are
        left out. An item is a whole scene for synthetic data and one validation tile of a real panorama
        (its window's context is 255 in ``target``), so real data's figures are means over tiles, not over
        ``predict.py``'s whole images. Scored as ``predict.py``'s evaluation scores (:func:`scored_cracks`):
        a predicted contact that lies only inside the label's ignore regions counts as no contact."""
        out = []
        p_np = preds.detach().cpu().numpy().astype(np.uint8)
        t_np = target.detach().cpu().numpy().astype(np.uint8)
        for p, t in zip(p_np, t_np, strict=True):
            pred_cracks, true_cracks = scored_cracks(p, t)
            if len(pred_cracks) == 0 and len(true_cracks) == 0:
                continue
            s = crack_scores(pred_cracks, true_cracks, tolerance_px=BOUNDARY_TOLERANCE_PX)
            out.append((float(s["f1"]), float(s["mean_distance_px"])))
        return out

    def _stage_metrics(self, prefix: str) -> dict[str, Metric]:
        if prefix not in self.metrics:
            # A per-source prefix, first seen now: metric states hold no parameters, so late creation is safe.
            self.metrics[prefix] = self._make_metrics(self._hp.num_classes).to(self.device)
        return {name: cast(Metric, m) for name, m in cast(nn.ModuleDict, self.metrics[prefix]).items()}

    def _eval_epoch_end(self, stage: str) -> None:
        per_source: list[torch.Tensor] = []
        for prefix in [k for k in self.metrics if k == stage or k.startswith(stage + "/")]:
            labelled_miou = self._log_prefix(prefix)
            if prefix != stage and labelled_miou is not None:
                per_source.append(labelled_miou)
        if len(per_source) > 1:
            # Each source counts once, whatever its pixel count: the pooled `miou` of MarsScapes + AI4Mars is
            # about three quarters AI4Mars, so a checkpoint chosen by it is chosen for AI4Mars.
            value = torch.stack(per_source).nanmean()
            self.log(f"{stage}/miou_source_mean", value, add_dataloader_idx=False, sync_dist=True)

    def _log_prefix(self, prefix: str) -> torch.Tensor | None:
        """Log one prefix's epoch metrics and reset them.

        Returns:
            The mean IoU over the classes that the epoch's labels hold (confusion rows with pixels), NaN if
            none; for a source whose class map never gives a class (AI4Mars has no ``other``) this leaves out
            that class's IoU, which is 0 whenever the model predicts it there. None if nothing was scored.
        """
        metrics = self._stage_metrics(prefix)
        if not metrics["confusion"].update_called:
            return None
        # compute() all-gathers the states under DDP, so every rank logs the same values (no sync_dist).
        confusion = metrics["confusion"].compute()
        iou = metrics["iou"].compute()  # NaN for the classes absent from the epoch
        miou = iou.nanmean()  # NaN when no pixel was scored at all
        labelled = confusion.sum(dim=1) > 0
        labelled_miou = iou[labelled].mean() if bool(labelled.any()) else iou.new_tensor(float("nan"))
        log = {f"{prefix}/miou": miou, f"{prefix}/pixel_acc": metrics["pixel_acc"].compute()}
        if "/" in prefix:  # one source of several
            log[f"{prefix}/miou_labelled_classes"] = labelled_miou
        for name, value in zip(self._hp.class_names, iou, strict=True):
            log[f"{prefix}/iou_{name}"] = value
        f1, dist, loss = self._pooled_image_scores(prefix)
        log[f"{prefix}/boundary_f1"] = torch.tensor(f1)
        log[f"{prefix}/contact_distance_px"] = torch.tensor(dist)
        if loss is not None:
            log[f"{prefix}/loss"] = torch.tensor(loss)
        for key, value in log.items():
            # Every value is the same on every rank already; sync_dist averages equal values (one small
            # all-reduce each) and keeps Lightning from warning about each of them at every epoch.
            shown = key.endswith(("/miou", "/loss"))
            self.log(key, value, prog_bar=shown, add_dataloader_idx=False, sync_dist=True)
        self.last_confusion[prefix] = confusion.detach().cpu().numpy().astype(np.int64)
        for metric in metrics.values():
            metric.reset()
        return labelled_miou

    def _pooled_image_scores(self, prefix: str) -> tuple[float, float, float | None]:
        """Mean boundary F1, mean contact distance (px) and the loss (mean over the batches, each weighed by
        its images) over the images of every rank.

        Under DDP each rank scores its share of the images; the sums and counts are added over the ranks
        (the per-rank means used to be logged as rank zero's, half the images with two processes). NaN where
        no image has a contact, or no distance is finite; the loss is None where ``prefix`` logs none (the
        pooled prefix of several sources).
        """
        scores = np.array(self._boundary.pop(prefix, []), dtype=np.float64).reshape(-1, 2)
        finite = np.isfinite(scores[:, 1])
        loss_sum, images = self._loss.pop(prefix, [0.0, 0.0])
        sums = torch.tensor(
            [len(scores), scores[:, 0].sum(), finite.sum(), scores[finite, 1].sum(), loss_sum, images],
            dtype=torch.float64,
        )
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            sums = trainer.strategy.reduce(sums.to(self.device), reduce_op="sum").cpu()
        n, f1_sum, n_finite, dist_sum, loss_sum, images = sums.tolist()
        return (
            f1_sum / n if n else float("nan"),
            dist_sum / n_finite if n_finite else float("nan"),
            loss_sum / images if images else None,
        )

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self._eval_step("val", batch, dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_validation_end(self) -> None:
        """One log line per validation while training (rank zero; not the sanity check): the epoch, the
        optimiser step and the scores of that validation. The run's ``train.log`` held nothing from the
        set-up to the end of training, and a console that is not a terminal (``nohup``, ``sbatch``, output
        piped to a file) none either: Rich's progress bar draws only on a terminal, so a 10-minute
        ``data=folder`` run printed nothing between its model summary and its last epoch."""
        trainer = self._trainer
        if trainer is None or trainer.sanity_checking or not trainer.is_global_zero:
            return
        if trainer.state.fn != "fit":  # train=false scores a model: its metrics.json says them
            return
        metrics = trainer.callback_metrics
        said = [
            f"{name} {float(metrics[name]):.3f}"
            for name in ("val/miou", "val/loss", "val/boundary_f1", "train/loss")
            if name in metrics and math.isfinite(float(metrics[name]))
        ]
        if said:
            # Epochs counted from 0, as Lightning's bar ("Epoch 0/1") and the stop's line ("interrupted at
            # epoch 0") count them.
            last = trainer.max_epochs
            of = f" (epochs 0-{last - 1})" if isinstance(last, int) and last > 0 else ""
            log.info(
                "validation after epoch %d%s, step %d: %s",
                trainer.current_epoch,
                of,
                trainer.global_step,
                ", ".join(said),
            )

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self._eval_step("test", batch, dataloader_idx)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Return ``{"probs": (N, num_classes, H, W) softmax, "path": batch["path"]}``."""
        return {"probs": self(batch["image"]).softmax(dim=1), "path": batch.get("path")}

    # ------------------------------------------------------------- optimiser
    def configure_optimizers(self) -> Any:
        hp = self._hp
        mult = float(hp.get("encoder_lr_mult", 1.0))
        if mult <= 0:
            raise ValueError(f"encoder_lr_mult must be > 0, got {mult}; use 1.0 for one learning rate.")
        encoder: nn.Module = self.model.encoder  # type: ignore[assignment]  # smp models hold one
        encoder_ids = {id(p) for p in encoder.parameters()}
        trainable = [p for p in self.parameters() if p.requires_grad]
        params: list[dict[str, Any]] = [
            {"params": [p for p in trainable if id(p) in encoder_ids], "lr": hp.lr * mult},
            {"params": [p for p in trainable if id(p) not in encoder_ids], "lr": hp.lr},
        ]
        params = [g for g in params if g["params"]]
        max_lrs = [g["lr"] for g in params]
        optimizer: torch.optim.Optimizer
        if hp.optimizer == "adamw":
            optimizer = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        elif hp.optimizer == "adam":
            optimizer = torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)
        else:
            optimizer = torch.optim.SGD(
                params, lr=hp.lr, weight_decay=hp.weight_decay, momentum=0.9, nesterov=True
            )
        if hp.scheduler == "none":
            return optimizer

        total = self.trainer.estimated_stepping_batches
        if self.trainer.limit_train_batches == 0:  # Lightning estimates -1 steps, and max_epochs is set
            raise ValueError(
                f"scheduler={hp.scheduler!r} needs training batches, but trainer.limit_train_batches=0 "
                "trains none; give trainer.limit_train_batches=1.0 (every batch) or a fraction, or "
                "model.scheduler=none."
            )
        if not math.isfinite(total) or total < 1:
            raise ValueError(
                f"scheduler={hp.scheduler!r} needs a finite run length, but the trainer estimates {total} "
                "optimiser steps; set trainer.max_epochs or trainer.max_steps, or model.scheduler=none."
            )
        total = int(total)
        warmup = int(hp.warmup_steps or 0)
        if warmup >= total:
            raise ValueError(f"warmup_steps={warmup} must be smaller than the run's {total} optimiser steps.")
        if hp.scheduler == "onecycle":
            pct = warmup / total if warmup > 0 else 0.3
            scheduler: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=max_lrs, total_steps=total, pct_start=pct
            )
        else:
            cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total - warmup)
            if warmup > 0:
                ramp = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1e-3, total_iters=warmup)
                scheduler = torch.optim.lr_scheduler.SequentialLR(
                    optimizer, [ramp, cosine], milestones=[warmup]
                )
            else:
                scheduler = cosine
        self._planned_schedule = ("onecycle" if hp.scheduler == "onecycle" else "cosine", total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_fit_start(self) -> None:
        """Add the training sols and image keys of the datamodule (``trained_sols()`` and
        ``trained_image_keys()``, after its setup) to :attr:`trained_sols` and :attr:`trained_image_keys`,
        and record its training images' grey and colour counts in :attr:`training_images`."""
        datamodule = getattr(self._trainer, "datamodule", None)
        reader = getattr(datamodule, "trained_sols", None)
        if callable(reader):
            self.trained_sols = merge_sols(self.trained_sols, reader())
        keys = getattr(datamodule, "trained_image_keys", None)
        if callable(keys):
            self.trained_image_keys = merge_image_keys(self.trained_image_keys, keys())
        colours = getattr(datamodule, "training_image_colours", None)
        if callable(colours):  # this run's images replace a resumed part's (the same data), the parent's kept
            grey, colour = colours()
            self.training_images = images_record(grey, colour, self.images_before)

    def on_train_start(self) -> None:
        """Give each DDP rank random streams of its own (:func:`seed_rank`), then fit the schedule to the run.

        Fit the schedule restored from a checkpoint to this run's length when they differ.

        Lightning restores the scheduler's state after ``configure_optimizers``, so a resume with another
        ``trainer.max_epochs`` (or crops per epoch, or batch size) would keep the old schedule's length: past
        it a cosine schedule climbs back to the peak learning rate, silently. The cosine schedule is stretched
        (or shrunk) to the new length from the step reached, with one warning line; a one-cycle schedule has
        its phases fixed at construction, so that resume is refused.

        Raises:
            ConfigError: A one-cycle run resumed with another length, or one already past its new end.
        """
        trainer = getattr(self, "_trainer", None)  # None outside a Trainer
        if trainer is not None and trainer.world_size > 1:
            seed_rank(
                int(os.environ.get("PL_GLOBAL_SEED", "0")), trainer.global_rank, int(trainer.global_step)
            )
        planned = getattr(self, "_planned_schedule", None)
        schedulers = self.lr_schedulers()
        if planned is None or schedulers is None:
            return
        first = schedulers[0] if isinstance(schedulers, list) else schedulers
        restored = _schedule_length(first)  # type: ignore[arg-type]
        if restored == planned:
            return
        ckpt = getattr(self.trainer, "ckpt_path", None) or "the checkpoint"
        if restored is None:
            log.warning(
                "resumed %s: this torch %s keeps its %s's state under other names than marsunits reads, "
                "so a resume with another run length (trainer.max_epochs, trainer.max_steps, "
                "data.samples_per_epoch, batch size) is not fitted: resume with the original settings",
                ckpt,
                torch.__version__,
                type(first).__name__,
            )
            return
        step = int(self.trainer.global_step)
        if planned[0] != "cosine" or step >= planned[1]:
            raise ConfigError(
                f"{ckpt} was trained with a {restored[0]} learning-rate schedule of {restored[1]} optimiser "
                f"steps (at step {step}), but this run's settings (trainer.max_epochs, trainer.max_steps, "
                f"data.samples_per_epoch, batch size) make {planned[1]}. Resume with the original settings, "
                f"or train further as a new run from its weights: init_ckpt_path={ckpt} without ckpt_path"
            )
        # The scheduler is changed through its state dict (the form Lightning restored it from), not its
        # private attributes: SequentialLR has no public accessor for its parts or milestones.
        state = first.state_dict()  # type: ignore[union-attr]
        sequential = isinstance(first, torch.optim.lr_scheduler.SequentialLR)
        cosine: dict[str, Any] = state["_schedulers"][-1] if sequential else state
        cosine["T_max"] = int(cosine["T_max"]) + planned[1] - restored[1]
        if sequential and step < int(state["_milestones"][0]):
            # Still warming up: the ramp sets the rates; the cosine part starts later, already stretched.
            first.load_state_dict(state)  # type: ignore[union-attr]
            log.warning(
                "resumed %s with another run length: the cosine schedule now ends at step %d",
                ckpt,
                planned[1],
            )
            return
        # The scheduler's update is chainable (it scales the current rate), so a finished schedule, at its
        # minimum of 0, would stay at 0: set each rate to the stretched curve's value at the step reached.
        done, length = max(int(cosine["last_epoch"]), 0), int(cosine["T_max"])
        eta_min = float(cosine["eta_min"])
        rates = [
            eta_min + (base - eta_min) * (1.0 + math.cos(math.pi * done / length)) / 2.0
            for base in cosine["base_lrs"]
        ]
        for group, rate in zip(first.optimizer.param_groups, rates, strict=True):  # type: ignore[union-attr]
            group["lr"] = rate
        for part in (cosine, state):  # what get_last_lr() reports until the next step, where it is kept
            if "_last_lr" in part:
                part["_last_lr"] = list(rates)
        first.load_state_dict(state)  # type: ignore[union-attr]
        log.warning(
            "resumed %s with another run length: its cosine learning-rate schedule, planned for %d optimiser "
            "steps, now ends at step %d (from step %d on)",
            ckpt,
            restored[1],
            planned[1],
            step,
        )

    # -------------------------------------------------------------- metadata
    @property
    def metadata(self) -> dict[str, Any]:
        """The self-description stored as ``checkpoint["marsunits"]`` (plain Python types only).

        Keys: ``format_version`` (int), ``class_names`` (list[str], by class id), ``palette`` (list of RGB
        lists), ``mean``/``std`` (lists, one per input channel, for [0, 1] inputs), ``in_channels``,
        ``tile_size`` (px), ``arch``, ``encoder``, ``num_classes``, ``class_map`` (training data's native
        id -> project id, or None), ``dataset``, ``wandb_run_id``, ``wandb_run_name`` and
        ``wandb_run_group`` (str or None; the last two absent before 2026-12-05); plus ``encoder_depth``,
        ``decoder_channels`` and ``size_divisor`` (inputs must be multiples of it) for inference code; and
        ``trained_sols`` (``{source: sorted sols}`` or None, :attr:`trained_sols`; absent before 2026-12-04)
        and ``trained_image_keys`` (sorted content keys of the training image files or None,
        :attr:`trained_image_keys`; absent from earlier versions); and ``training`` (how far the training of
        the weights went: optimiser steps, epoch, fast_dev_run, best validation mIoU, ...; or None:
        :func:`marsunits.training_extent.training_record`, :attr:`training_record`; absent before
        2026-12-07); and ``training_images`` (how many training images were greyscale and colour, with
        the record of a model it was fine-tuned from under ``parent``; or None: unknown;
        :func:`marsunits.training_images.images_record`, :attr:`training_images`; absent before
        2026-12-07).
        """
        hp = self._hp
        return {
            "format_version": FORMAT_VERSION,
            "class_names": list(hp.class_names),
            "palette": [list(rgb) for rgb in hp.palette],
            "mean": list(hp.mean),
            "std": list(hp.std),
            "in_channels": int(hp.in_channels),
            "tile_size": int(hp.tile_size),
            "arch": hp.arch,
            "encoder": hp.encoder,
            "num_classes": int(hp.num_classes),
            "class_map": _normalise_class_map(hp.class_map),
            "dataset": hp.dataset,
            "wandb_run_id": self.wandb_run_id,
            "wandb_run_name": self.wandb_run_name,
            "wandb_run_group": self.wandb_run_group,
            "encoder_depth": int(hp.encoder_depth),
            "decoder_channels": None if hp.decoder_channels is None else list(hp.decoder_channels),
            "size_divisor": self.size_divisor,
            "trained_sols": self.trained_sols,
            "trained_image_keys": self.trained_image_keys,
            "training": self.training_record,
            IMAGES_KEY: self.training_images,
        }

    def restore_metadata(self, metadata: Mapping[str, Any], training: Mapping[str, Any] | None) -> None:
        """Set what a checkpoint's or package's :attr:`metadata` keeps of its run beside the weights, on a
        task built from its hyper-parameters: its W&B run (id, name, group), the sols and image files it
        trained on, how far its training went (``training``, as the file's kind gives it: its metadata's
        record, or for a file from before that record the one its other keys give) and its training images.
        A key absent from an older file is unknown (None). The one restore of Lightning's resume and test
        (:meth:`on_load_checkpoint`), :func:`~marsunits.checkpoint_loading.load_task` and a package's
        loader alike."""
        self.wandb_run_id = metadata.get("wandb_run_id")
        self.wandb_run_name = metadata.get("wandb_run_name")  # absent before 2026-12-05
        self.wandb_run_group = metadata.get("wandb_run_group")
        self.trained_sols = metadata.get("trained_sols")  # absent before 2026-12-04
        self.trained_image_keys = metadata.get("trained_image_keys")  # absent from earlier versions
        self._restore_training(training)
        self._restore_images(metadata)  # absent before 2026-12-07: unknown

    def _restore_training(self, record: Mapping[str, Any] | None) -> None:
        """Set :attr:`training_record` and :attr:`steps_before` from a checkpoint's or package's record."""
        self.training_record = dict(record) if record else None
        self.steps_before = record.get("steps_before") if record else None

    def _restore_images(self, metadata: Mapping[str, Any]) -> None:
        """Set :attr:`training_images` and :attr:`images_before` from a checkpoint's or package's metadata
        (after :meth:`_restore_training`). A resumed run counts its images again and keeps the parent's. A
        checkpoint without the record (before 2026-12-07) had no parent if its training record says it
        started from no model's steps (``steps_before`` 0), else one of unknown images, which its resume
        keeps as such."""
        record = metadata.get(IMAGES_KEY)
        self.training_images = dict(record) if isinstance(record, Mapping) else None
        if self.training_images is not None:
            self.images_before = self.training_images.get("parent")
        else:
            self.images_before = None if self.steps_before == 0 else dict(UNKNOWN)

    def run_seconds(self) -> float:
        """Wall-clock seconds of the run so far, every part of it (see :data:`RUN_SECONDS_KEY`)."""
        part = time.perf_counter() - self.part_started if self.part_started is not None else 0.0
        return self.seconds_before + part

    def _record_training(self) -> dict[str, Any]:
        """:attr:`training_record` of the weights as the trainer has them now (at a checkpoint's save)."""
        trainer = self.trainer
        best = None
        callback = trainer.checkpoint_callback  # train.py's RunModelCheckpoint (best.ckpt); None without
        if callback is not None and getattr(callback, "monitor", None) == BEST_SCORE_MONITOR:
            score = getattr(callback, "best_model_score", None)
            best = None if score is None else float(score)
        return training_record(
            int(trainer.global_step),
            int(trainer.current_epoch),
            steps_before=self.steps_before,
            fast_dev_run=bool(getattr(trainer, "fast_dev_run", False)),  # an attribute set in __init__
            max_steps=int(trainer.max_steps),
            best_val_miou=best if best is None or math.isfinite(best) else None,
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.training_record = self._record_training()
        checkpoint[METADATA_KEY] = self.metadata
        checkpoint[RUN_SECONDS_KEY] = round(self.run_seconds(), 2)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if METADATA_KEY not in checkpoint:
            raise CheckpointError(
                f"This checkpoint has no {METADATA_KEY!r} metadata, so it was not written by "
                "marsunits.task.SegmentationTask; missing metadata is an error, never a silent default. "
                "Train with marsunits (train.py) to get a usable checkpoint."
            )
        # Imported here: checkpoint_loading imports this module (SegmentationTask, METADATA_KEY).
        from marsunits.checkpoint_loading import checkpoint_training_record

        self.restore_metadata(checkpoint[METADATA_KEY], checkpoint_training_record(checkpoint))
        self.seconds_before = float(checkpoint.get(RUN_SECONDS_KEY, 0.0))  # 0: a checkpoint from before


def _schedule_length(scheduler: torch.optim.lr_scheduler.LRScheduler) -> tuple[str, int] | None:
    """``(kind, optimiser steps)`` a scheduler of :meth:`SegmentationTask.configure_optimizers` plans for.

    A warm-up's milestone and its cosine part's length are read from the scheduler's state dict, the form a
    checkpoint keeps them in (SequentialLR has no public accessor for them); ``None`` where this torch's
    state dict names them otherwise.
    """
    if isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR):
        return "onecycle", int(scheduler.total_steps)
    if isinstance(scheduler, torch.optim.lr_scheduler.SequentialLR):
        state = scheduler.state_dict()
        try:
            return "cosine", int(state["_milestones"][0]) + int(state["_schedulers"][-1]["T_max"])
        except (KeyError, IndexError, TypeError, ValueError):
            return None
    if isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
        return "cosine", int(scheduler.T_max)
    return type(scheduler).__name__, 0


def _whole_pixels(name: str, value: Any) -> int:
    """``value`` as a positive whole number of pixels (``64``, ``64.0`` or ``"64"``).

    Raises:
        ValueError: naming ``name`` and the value (``null``, ``0``, ``64.5``, ``true``): a model package's
            ``tile_size`` edited to ``null`` was accepted and failed later in a ``TypeError`` traceback.
    """
    try:
        number = None if isinstance(value, bool) else int(value)
    except (TypeError, ValueError, OverflowError):
        number = None
    if number is None or number <= 0 or (isinstance(value, float) and value != number):
        raise ValueError(f"{name} must be a positive whole number of pixels, got {value!r}.")
    return number

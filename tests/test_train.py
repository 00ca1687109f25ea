"""train.py through the real composed configs, shrunk: wiring, metrics.json, checkpoints, resume, overfit."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import CONFIG_DIR, REPO_ROOT, SHARED_DATA, compose_config, train_py_checks
from marsunits.checkpoint_loading import load_task
from marsunits.data.split_guards import validation_sols
from marsunits.errors import ConfigError, DataError, DivergedError, TerminatedError, report_user_errors
from marsunits.model_settings import input_divisor
from marsunits.run_resume import resolve_ckpt_path
from marsunits.training import _check_monitor_is_logged, run

#: Tiny networks on tiny crops: intra-op threads only oversubscribe a shared 2-core machine (conftest).
pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Shrinks the default synthetic experiment to seconds: tiny network, tiny scenes, few batches.
TINY = [
    "model=tiny",
    "data.num_workers=0",
    "data.batch_size=4",
    "data.crop_size=64",
    "data.train_length=8",
    "data.val_length=4",
    "data.test_length=4",
    "data.scene.width=64",
    "data.scene.height=64",
    "trainer.enable_progress_bar=false",
    "logger=none",
]


def _experiments() -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", _experiments())
def test_every_experiment_composes_and_instantiates(experiment: str, tmp_path: Path) -> None:
    """Every ``configs/experiment/*.yaml`` composes, its model builds and its crops fit the network. The crop
    was held to a multiple of 32, the five-stage networks' divisor: an experiment on a shallower network
    (``model=tiny``, 3 stages: multiples of 8; the default ``unet_lite0_d4``: 16) with a crop that network
    and ``train.py`` take (40 px on ``model=tiny``) failed here."""
    cfg = compose_config("train", tmp_path, [f"experiment={experiment}"])
    model = instantiate(cfg.model, encoder_weights=None)
    assert model.hparams.num_classes == 3
    assert cfg.model.in_channels == cfg.data.in_channels
    assert cfg.data.crop_size % input_divisor(cfg.model.arch, cfg.model.encoder_depth) == 0
    assert cfg.data.crop_size % model.size_divisor == 0  # the built network's own divisor, the same
    trainer = instantiate(cfg.trainer, logger=False)
    assert trainer.max_epochs >= 1


@pytest.mark.parametrize("experiment", _experiments())
def test_model_chosen_on_the_command_line_replaces_the_experiments_model(
    experiment: str, tmp_path: Path
) -> None:
    # An experiment that set model keys itself (not through its model config) would leak them into the model
    # a user or a test chooses: the slim decoder widths once broke `model=tiny` (3 stages, 5 widths).
    tiny = compose_config("train", tmp_path, ["model=tiny"])
    cfg = compose_config("train", tmp_path, [f"experiment={experiment}", "model=tiny"])
    for key in ("arch", "encoder", "encoder_depth", "decoder_channels"):
        assert cfg.model[key] == tiny.model[key], key
    assert len(cfg.model.decoder_channels) == cfg.model.encoder_depth


def _model_configs() -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))


@pytest.mark.parametrize("model_config", _model_configs())
def test_every_model_config_builds_a_network_with_logits_at_the_input_size(
    model_config: str, tmp_path: Path
) -> None:
    """Every ``configs/model/*.yaml`` builds its network (random weights: the offline ones are
    ``test_models.py``'s) and maps inputs of its divisor's multiples to logits of the same size. Only the
    checks before the run folder read the model configs no experiment chooses (their names and numbers): a
    model config whose encoder timm has but smp's decoders cannot take (a plain ViT,
    ``vit_tiny_patch16_224``) passed the suite and failed in the run."""
    cfg = compose_config("train", tmp_path, [f"model={model_config}"])
    task = instantiate(cfg.model, encoder_weights=None).eval()
    side = 2 * input_divisor(cfg.model.arch, cfg.model.encoder_depth)
    with torch.no_grad():
        logits = task(torch.rand(2, cfg.model.in_channels, side, side))
    assert logits.shape == (2, cfg.model.num_classes, side, side)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("model_config", [m for m in _model_configs() if m != "unet_lite0"])
def test_every_model_config_inherits_the_default_and_sets_only_what_differs(model_config: str) -> None:
    """A model config other than ``unet_lite0`` takes its keys from it (``defaults: [unet_lite0, _self_]``,
    DEVELOPERS.md) and sets only those that differ: ``unet_lite1.yaml`` and ``unet_lite2.yaml`` repeated every
    key of ``unet_lite0.yaml``, so a key added to the task's config or a default changed there would have
    left them behind without a word."""
    own = OmegaConf.load(CONFIG_DIR / "model" / f"{model_config}.yaml")
    assert list(own.get("defaults") or []) == ["unet_lite0", "_self_"], own.get("defaults")
    default = OmegaConf.load(CONFIG_DIR / "model" / "unet_lite0.yaml")
    same = [k for k in own if k != "defaults" and k in default and own._get_node(k) == default._get_node(k)]
    assert not same, f"{model_config}.yaml repeats unet_lite0's {same}"


@pytest.mark.parametrize("lite", ["lite1", "lite2"])
def test_the_larger_lite_encoders_configs_are_the_default_with_their_encoder(
    lite: str, tmp_path: Path
) -> None:
    """``model=unet_lite1`` and ``model=unet_lite2`` compose to ``unet_lite0``'s config but for the encoder
    and its offline weights (their files inherit it: the composed configs are those they were when each
    repeated every key), key for key, interpolations unresolved."""
    default = compose_config("train", tmp_path, ["model=unet_lite0"]).model
    composed = compose_config("train", tmp_path, [f"model=unet_{lite}"]).model
    expected = OmegaConf.to_container(default, resolve=False)
    assert isinstance(expected, dict)
    expected.update(encoder=f"efficientnet_{lite}", encoder_weights=f"{lite}_offline")
    assert OmegaConf.to_container(composed, resolve=False) == expected


def test_data_chosen_on_the_command_line_gets_no_synthetic_only_settings(tmp_path: Path) -> None:
    """`python train.py data=folder ...` (the default experiment) inherited the synthetic experiment's
    train_length and scene sizes, which the folder data silently ignored (data.train_length=8 was accepted
    and did nothing), and its 128 px crops."""
    folder = OmegaConf.load(CONFIG_DIR / "data" / "folder.yaml")
    cfg = compose_config("train", tmp_path, ["data=folder", "data.root=/x"])
    assert set(cfg.data) == set(folder), set(cfg.data) ^ set(folder)
    assert cfg.data.crop_size == folder.crop_size
    default = compose_config("train", tmp_path, [])  # the default run keeps its sizes
    assert (default.data.crop_size, default.data.train_length) == (128, 1792)
    assert (default.data.scene.width, default.data.scene.height) == (160, 128)


@pytest.mark.parametrize("debug", ["fdr", "overfit"])
def test_debug_configs_compose(debug: str, tmp_path: Path) -> None:
    cfg = compose_config("train", tmp_path, [f"debug={debug}", *TINY])
    trainer = instantiate(cfg.trainer, logger=False)
    assert trainer.fast_dev_run or trainer.overfit_batches


def test_fast_dev_run_through_real_config(tmp_path: Path) -> None:
    cfg = compose_config("train", tmp_path, ["debug=fdr", *TINY])
    metrics = run(cfg)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["seconds"] > 0 and "val/miou" in saved and "test/miou" in saved
    assert 0.0 <= saved["test/miou"] <= 1.0
    assert metrics["best_ckpt"] is None  # fast_dev_run saves no checkpoint
    # ... but last.ckpt, which Lightning does not mark as a fast_dev_run's: the task records it, and
    # predict.py warns of it (training_extent.barely_trained).
    record = torch.load(metrics["last_ckpt"], map_location="cpu", weights_only=True)["marsunits"]["training"]
    assert record["fast_dev_run"] is True and record["optimizer_steps"] == 1


def test_a_run_does_not_print_lightnings_adverts_for_its_cloud_packages(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``train.py debug=fdr logger=csv`` printed Lightning's "💡 Tip: For seamless cloud logging and
    experiment tracking, try installing [litlogger](...)" among its lines, read as something to install.
    It is not logged by a run; Lightning's other info lines (devices, fast_dev_run) still are."""
    cfg = compose_config("train", tmp_path, ["debug=fdr", "logger=csv", *TINY])
    with caplog.at_level(logging.INFO, logger="lightning.pytorch"):
        run(cfg)
    said = [r.getMessage() for r in caplog.records if r.name.startswith("lightning.pytorch")]
    assert any(m.startswith("GPU available:") for m in said)
    assert any("fast_dev_run" in m for m in said)
    assert not [m for m in said if "💡" in m or "litlogger" in m or "litmodels" in m]


def test_the_advert_filter_silences_the_litmodels_tip_too_and_only_while_it_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The other advert ("💡 Tip: ... try installing [litmodels](...)"), logged at a fit with Lightning's
    default ``ModelCheckpoint``, is dropped by the same filter, which is removed when the run ends (a
    notebook's own Trainer afterwards logs as Lightning does)."""
    from lightning.pytorch.demos.boring_classes import BoringModel

    from marsunits.lightning_logging import _quiet_lightning_adverts

    def fit(folder: str) -> list[str]:
        caplog.clear()
        trainer = pl.Trainer(
            max_steps=1,
            limit_val_batches=0,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=tmp_path / folder,
        )
        with caplog.at_level(logging.INFO, logger="lightning.pytorch"):
            trainer.fit(BoringModel())
        return [r.getMessage() for r in caplog.records if r.name.startswith("lightning.pytorch")]

    with _quiet_lightning_adverts():
        quiet = fit("quiet")
    loud = fit("loud")
    if not any("litmodels" in m for m in loud):
        pytest.skip("this Lightning version does not advertise litmodels")
    assert any("litlogger" in m for m in loud)  # the filter is gone after the block
    assert not [m for m in quiet if "💡" in m]
    assert any("`Trainer.fit` stopped" in m for m in quiet)  # other lines kept


def test_fast_dev_run_starts_no_logger_even_when_one_is_chosen(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Lightning logs nothing in fast_dev_run (configs/debug/fdr.yaml chooses logger=none), but a logger
    chosen on the command line (debug=fdr logger=wandb) was started: an empty W&B run in the project (its
    config and console output only) for each wiring check. None is started, and one line says why."""
    cfg = compose_config(
        "train", tmp_path, ["debug=fdr", *TINY, "logger=wandb_csv", "logger.wandb.mode=offline"]
    )
    with caplog.at_level(logging.INFO, logger="marsunits.training"):
        run(cfg)
    assert not (tmp_path / "wandb").exists() and not (tmp_path / "csv").exists()
    assert any("fast_dev_run" in r.message and "logger" in r.message for r in caplog.records)


def test_short_run_writes_checkpoints_and_metrics_then_resumes(tmp_path: Path) -> None:
    first = compose_config("train", tmp_path / "run1", [*TINY, "trainer.max_epochs=1"])
    m1 = run(first)
    ckpt_dir = tmp_path / "run1" / "checkpoints"
    assert (ckpt_dir / "best.ckpt").is_file() and (ckpt_dir / "last.ckpt").is_file()
    assert m1["best_ckpt"] == str(ckpt_dir / "best.ckpt")
    for key in ("val/miou", "val/pixel_acc", "val/iou_smooth_volcanic", "test/miou", "seconds"):
        assert key in m1, key
    assert m1["test_is_validation"] is False  # synthetic scenes have test seeds of their own
    assert (tmp_path / "run1" / "config.yaml").is_file()

    # The checkpoint alone rebuilds the model.
    task = load_task(ckpt_dir / "last.ckpt")
    assert task.metadata["class_names"] == ["smooth_volcanic", "rough_olivine", "other"]
    x = torch.rand(1, task.metadata["in_channels"], 64, 64)
    with torch.no_grad():
        assert task(x).shape == (1, 3, 64, 64)

    # Resume: the epoch count continues from the checkpoint instead of restarting.
    second = compose_config(
        "train", tmp_path / "run2", [*TINY, "trainer.max_epochs=2", f"ckpt_path={ckpt_dir / 'last.ckpt'}"]
    )
    m2 = run(second)
    # best.ckpt is the best over the whole run, the first folder's epoch included (it used to be the resumed
    # part's first validation, whatever it scored, since Lightning forgets the score in a new folder).
    assert m2["best_ckpt"] == str(tmp_path / "run2" / "checkpoints" / "best.ckpt")
    assert m2["val/miou"] >= m1["val/miou"] - 1e-6
    resumed = torch.load(
        tmp_path / "run2" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )
    first_ckpt = torch.load(ckpt_dir / "last.ckpt", map_location="cpu", weights_only=False)
    assert resumed["epoch"] == first_ckpt["epoch"] + 1
    assert resumed["global_step"] == 2 * first_ckpt["global_step"]
    # The cosine schedule was stretched to the longer run: it ends at its minimum, not back at the peak
    # (the restored schedule, planned for one epoch, used to climb again through the second).
    (schedule,) = resumed["lr_schedulers"]
    assert schedule["T_max"] == resumed["global_step"]
    assert max(schedule["_last_lr"]) < 0.01 * second.model.lr
    # ... and the second epoch trained: the first run ended at rate 0, and a stretch that kept scaling that
    # rate (the scheduler's chainable update) would have left every weight as it was.
    before, after = first_ckpt["state_dict"], resumed["state_dict"]
    moved = [k for k in before if before[k].is_floating_point() and not torch.equal(before[k], after[k])]
    assert any(k.endswith("weight") and "model." in k for k in moved)


def test_debug_overfit_renders_and_keeps_only_the_scenes_its_batches_draw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``debug=overfit`` trains on 2 batches (the loader's first, in order), and rendered every training
    scene before them: all 1,792 of the default (89 s on the 2-core development CPU) for 32 it drew."""
    from marsunits.data.datasets import SceneDataset

    renders: list[tuple[int, int]] = []
    sets: list[SceneDataset] = []
    fill_cache = SceneDataset.fill_cache

    def counted(self: SceneDataset, processes: int, first: int | None = None) -> int:
        sets.append(self)
        # Rendered here (no process pool in a test); all the scenes where no first is given.
        rendered = fill_cache(self, 1) if first is None else fill_cache(self, 1, first)
        renders.append((processes, rendered))
        return rendered

    monkeypatch.setattr(SceneDataset, "fill_cache", counted)
    options = ["trainer.max_epochs=1", "test=false", "data.render_processes=2", "data.train_length=24"]
    metrics = run(compose_config("train", tmp_path, [*TINY, "debug=overfit", "data.batch_size=2", *options]))
    assert math.isfinite(metrics["train/loss"])
    # 2 batches of 2: the first 4 scenes rendered, in the 2 processes asked for, and no other scene kept.
    assert renders == [(2, 4)], renders
    assert sorted(sets[0]._items) == [0, 1, 2, 3]


def test_debug_overfit_draws_the_batches_lightning_chose_without_its_shuffling_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Lightning overfits on the training loader's first batches in order: given a shuffling loader it put a
    SequentialSampler in its place, saying "You requested to overfit but enabled train dataloader
    shuffling" on every ``debug=overfit`` run. The loader is made in order for it: the very batches it
    drew (the scenes, their augmentation), and no warning."""
    from marsunits.data.datamodule import MarsDataModule
    from marsunits.task import SegmentationTask

    drawn: list[tuple[torch.Tensor, torch.Tensor]] = []
    training_step = SegmentationTask.training_step

    def recorded(self: SegmentationTask, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        drawn.append((batch["image"].clone(), batch["mask"].clone()))
        return training_step(self, batch, batch_idx)

    monkeypatch.setattr(SegmentationTask, "training_step", recorded)
    options = [*TINY, "debug=overfit", "data.batch_size=2", "trainer.max_epochs=2", "test=false"]

    def batches_and_warnings(folder: str) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[str]]:
        drawn.clear()
        caplog.clear()
        with warnings.catch_warnings(record=True) as said, caplog.at_level(logging.INFO):
            warnings.simplefilter("always")
            run(compose_config("train", tmp_path / folder, options))
        return list(drawn), [str(w.message) for w in said] + [r.getMessage() for r in caplog.records]

    ours, told = batches_and_warnings("ours")
    assert not [m for m in told if "overfit" in m and "shuffling" in m], told
    # The loader as it was made before (shuffling, Lightning's sampler put in its place) draws the same.
    loader = MarsDataModule._loader

    def shuffled(self: MarsDataModule, dataset: Any, *args: Any, **kwargs: Any) -> Any:
        made = loader(self, dataset, *args, **kwargs)
        if kwargs.get("generator") is None:  # a validation or test loader
            return made
        return loader(self, dataset, made.batch_size, True, made.drop_last, generator=kwargs["generator"])

    monkeypatch.setattr(MarsDataModule, "_loader", shuffled)
    before, told = batches_and_warnings("before")
    assert [m for m in told if "requested to overfit but enabled train dataloader shuffling" in m], told
    assert len(ours) == len(before) == 4  # 2 batches in each of 2 epochs
    for (image, mask), (image_before, mask_before) in zip(ours, before, strict=True):
        assert torch.equal(image, image_before) and torch.equal(mask, mask_before)
    # The two epochs drew the same two batches (fixed_crops: the same augmentation every epoch).
    assert all(torch.equal(a[0], b[0]) for a, b in zip(ours[:2], ours[2:], strict=True))


def test_resuming_a_finished_run_says_so_and_keeps_its_training_loss(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same command again with ``ckpt_path=last`` takes no step: metrics.json used to lose train/loss,
    and it rendered every training scene first (20 s for the default's 1,792) for a loop that never ran."""
    from marsunits.data.datasets import SceneDataset

    renders: list[int] = []
    fill_cache = SceneDataset.fill_cache

    def counted(self: SceneDataset, processes: int, first: int | None = None) -> int:
        renders.append(processes)
        return fill_cache(self, 1, first)  # rendered here: no process pool for 8 scenes

    monkeypatch.setattr(SceneDataset, "fill_cache", counted)
    overrides = [*TINY, "trainer.max_epochs=1", "test=false", "data.render_processes=2"]
    first = run(compose_config("train", tmp_path, overrides))
    assert math.isfinite(first["train/loss"]) and renders == [2]
    with caplog.at_level("WARNING", logger="marsunits.training"):
        again = run(compose_config("train", tmp_path, [*overrides, "ckpt_path=last"]))
    assert renders == [2]  # nothing rendered for the finished run
    assert again["train/loss"] == first["train/loss"]
    assert json.loads((tmp_path / "metrics.json").read_text())["train/loss"] == first["train/loss"]
    (warning,) = [r.getMessage() for r in caplog.records if "nothing trained" in r.getMessage()]
    assert "trainer.max_epochs=1" in warning and "higher trainer.max_epochs" in warning
    # seconds is this command's; seconds_total adds the parts before it, up to their last checkpoint.
    from marsunits.task import RUN_SECONDS_KEY

    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert 0 < saved[RUN_SECONDS_KEY] <= first["seconds"] == first["seconds_total"]
    assert again["seconds_total"] == pytest.approx(saved[RUN_SECONDS_KEY] + again["seconds"], abs=0.02)


def test_a_resume_with_fewer_epochs_than_its_checkpoint_trained_names_the_epochs_to_give(
    tmp_path: Path,
) -> None:
    """A run of ``trainer.max_epochs=2`` resumed with ``ckpt_path=last`` and the default's fewer epochs (the
    override left out) ended in Lightning's "You restored a checkpoint with current_epoch=2, but you have set
    Trainer(max_epochs=1)", naming no option, after the new run folder had been given a copy of the run's
    best.ckpt. It is one line naming the epochs the run trained and the value to give, before any
    checkpoint is written."""
    short = [*TINY, "test=false"]
    run(compose_config("train", tmp_path / "run", [*short, "trainer.max_epochs=2"]))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    for where, resume in (("run", "ckpt_path=last"), ("new", f"ckpt_path={last}")):
        cfg = compose_config("train", tmp_path / where, [*short, "trainer.max_epochs=1", resume])
        with pytest.raises(
            ConfigError,
            match=r"trained 2 epochs, more than this command's trainer\.max_epochs=1: give "
            r"trainer\.max_epochs=2 .* or more",
        ):
            run(cfg)
    assert not (tmp_path / "new" / "checkpoints").exists() or not list(
        (tmp_path / "new" / "checkpoints").iterdir()
    )


def test_a_resume_in_its_own_folder_is_not_warned_that_its_checkpoints_folder_is_not_empty(
    tmp_path: Path,
) -> None:
    """``run_name=<run> ckpt_path=last``, the README's resume, printed Lightning's "Checkpoint directory
    .../checkpoints exists and is not empty.": the folder holds the checkpoints the resume continues, on
    purpose. A new run, or a resume from another run's folder, into a checkpoints/ folder holding other files
    is still warned. Lightning's deprecation noise is not printed either."""
    short = [*TINY, "trainer.max_epochs=1", "test=false"]
    run(compose_config("train", tmp_path / "run", short))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = run(
            compose_config("train", tmp_path / "run", [*short, "trainer.max_epochs=2", "ckpt_path=last"])
        )
    assert resumed["best_ckpt"] == str(tmp_path / "run" / "checkpoints" / "best.ckpt")
    assert not [w.message for w in caught if "exists and is not empty" in str(w.message)]
    # Nor Lightning's own use of a torch API torch deprecates (2.14: "`isinstance(treespec, LeafSpec)`
    # is deprecated", from lightning.pytorch.utilities._pytree), printed into the output of every train.py
    # run at each fit, validation and test: nothing the user can do about it.
    assert not [w.message for w in caught if "LeafSpec" in str(w.message)]
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    for name, more in (("new", []), ("elsewhere", ["trainer.max_epochs=2", f"ckpt_path={last}"])):
        (tmp_path / name / "checkpoints").mkdir(parents=True)
        (tmp_path / name / "checkpoints" / "notes.txt").write_text("not a checkpoint\n")
        with pytest.warns(UserWarning, match=r"Checkpoint directory .*checkpoints exists and is not empty"):
            run(compose_config("train", tmp_path / name, [*short, *more]))


def test_a_run_ended_before_its_first_validation_is_not_told_to_log_its_monitored_metric(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A geologist's tiny first run (``+trainer.max_steps=5``, ended before the first validation; as the
    README's quick check of real data, which validates every 2nd epoch) printed Lightning's
    "`ModelCheckpoint(monitor='val/miou')` could not find the monitored key in the returned metrics ...
    HINT: Did you call `log('val/miou', value)` in the `LightningModule`?", which reads as a bug in the
    tool: the metric is logged at every validation, and none had run yet. The run's own warning says why
    there is no best checkpoint and what to change. A monitored name that validation never logs is still
    refused (before the run, by the run's checks; Lightning raised once validation had run)."""
    short = [*TINY, "test=false", "+trainer.max_steps=1"]
    with warnings.catch_warnings(record=True) as caught, caplog.at_level("WARNING", logger="marsunits"):
        warnings.simplefilter("always")
        run(compose_config("train", tmp_path / "run", short))
    assert not [w.message for w in caught if "could not find the monitored key" in str(w.message)]
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("no best checkpoint")]
    assert len(said) == 1 and "before the first validation" in said[0], said
    misspelt = [*TINY, "test=false", "trainer.max_epochs=1", "callbacks.model_checkpoint.monitor=val/mIoU"]
    with pytest.raises(ConfigError, match=r"monitor=val/mIoU is not a metric this run logs"):
        run(compose_config("train", tmp_path / "misspelt", misspelt))


def test_a_finished_run_says_how_to_map_images_with_its_best_model(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A geologist's first run ended on "metrics written to .../metrics.json", with nothing on what to do
    with the model: the predict.py command, with the best checkpoint's path, is now its last line. A run
    that kept no best checkpoint, or that only scored a model (train=false), is not told it; nor is a run
    whose best.ckpt is barely trained (a one-epoch run of 2 steps, as the README's quick check of real
    data), which predict.py warns is close to noise: its last line is that warning, with how to train
    longer. Judged without reading best.ckpt again (as large as the network and its optimiser's state): the
    run's validation of it loaded it into the task, whose record is the file's."""
    import marsunits.checkpoint_loading

    read = marsunits.checkpoint_loading.read_checkpoint
    reads: list[Path] = []

    def counted(path: str | Path, *args: Any, **kwargs: Any) -> dict[str, Any]:
        reads.append(Path(path).resolve())
        return read(path, *args, **kwargs)

    monkeypatch.setattr(marsunits.checkpoint_loading, "read_checkpoint", counted)
    short = [*TINY, "test=false"]
    with caplog.at_level("INFO", logger="marsunits.training"):
        # Trained to the trainer.max_steps it was set to: a chosen length, not a barely trained model.
        chosen = [*short, "trainer.max_epochs=1", "+trainer.max_steps=2"]
        result = run(compose_config("train", tmp_path / "run", chosen))
    said = [r.getMessage() for r in caplog.records if r.name == "marsunits.training"]
    assert said[-1] == (
        f"to map images with this model: python predict.py ckpt_path={result['best_ckpt']} "
        "input_dir=<folder of images> output_dir=<new folder for the maps> (docs/prediction.md)"
    ), said[-1]
    caplog.clear()
    with caplog.at_level("INFO", logger="marsunits.training"):
        barely = run(compose_config("train", tmp_path / "barely", [*short, "trainer.max_epochs=1"]))
    said = [r for r in caplog.records if r.name == "marsunits.training"]
    assert said[-1].levelname == "WARNING"
    last = said[-1].getMessage()
    assert last.startswith(
        f"{barely['best_ckpt']} is barely trained: it took 2 optimiser steps in all (fewer than 100; the "
        "default run takes 448)"
    ), last
    assert last.endswith(
        "; its maps will be close to noise. Train longer (python train.py, the README's default: 448 steps, "
        "about 5 minutes on a laptop CPU) and predict with that run's checkpoints/best.ckpt"
    ), last
    assert not [r for r in caplog.records if "to map images with this model" in r.getMessage()]
    kept = {Path(r["best_ckpt"]).resolve() for r in (result, barely)}
    assert len(kept) == 2 and not kept & set(reads), reads
    caplog.clear()
    with caplog.at_level("INFO", logger="marsunits.training"):
        run(compose_config("train", tmp_path / "short", [*short, "+trainer.max_steps=1"]))
        run(
            compose_config(
                "train", tmp_path / "scored", [*short, "train=false", f"ckpt_path={result['best_ckpt']}"]
            )
        )
    assert not [r for r in caplog.records if "to map images with this model" in r.getMessage()]
    assert not [r for r in caplog.records if "barely trained" in r.getMessage()]


def test_a_run_folder_is_never_overwritten_or_resumed_with_another_job(tmp_path: Path) -> None:
    """A fixed run_name reused for a new run, or resumed with another model or data, used to overwrite the
    run's config.yaml and then die on state-dict size mismatches (or go on with the other data)."""
    r1, r2 = tmp_path / "r1", tmp_path / "r2"
    run(compose_config("train", r1, [*TINY, "trainer.max_epochs=1"]))
    saved = (r1 / "config.yaml").read_text()
    last = r1 / "checkpoints" / "last.ckpt"

    def attempt(folder: Path, *overrides: str) -> None:
        run(compose_config("train", folder, [*TINY, "trainer.max_epochs=1", *overrides]))

    with pytest.raises(ConfigError, match=r"already holds a run .*ckpt_path=last.*run_name"):
        attempt(r1)
    # Another network: its weights cannot start a new run either, so init_ckpt_path is not offered.
    with pytest.raises(
        ConfigError, match=r"other model or data settings .*model\.encoder_depth: 3 -> 2"
    ) as net:
        attempt(r1, "model.encoder_depth=2", "model.decoder_channels=[16,8]", "ckpt_path=last")
    assert "init_ckpt_path" not in str(net.value)
    assert (
        "without ckpt_path (its weights do not fit another model.decoder_channels, model.encoder_depth)"
        in (str(net.value))
    )
    with pytest.raises(
        ConfigError, match=r"other model or data settings .*data\.train_length: 8 -> 12"
    ) as data:
        attempt(r2, "data.train_length=12", f"ckpt_path={last}")
    assert f"init_ckpt_path={last} and no ckpt_path" in str(data.value)
    assert (r1 / "config.yaml").read_text() == saved  # the record is kept
    assert not r2.exists() or not any(r2.iterdir())


def test_train_false_scores_the_given_checkpoint(tmp_path: Path) -> None:
    """``train=false ckpt_path=<file>`` scored a freshly initialised network (Lightning's "best" checkpoint
    of a run that trained nothing) and ignored the file; now it validates and tests that checkpoint's
    network, on other data too, and says when no model is given."""
    trained = run(compose_config("train", tmp_path / "t", [*TINY, "trainer.max_epochs=2"]))
    best = trained["best_ckpt"]
    scored = run(compose_config("train", tmp_path / "e", [*TINY, "train=false", f"ckpt_path={best}"]))
    for key in ("val/miou", "val/loss", "test/miou", "test/loss"):
        assert scored[key] == pytest.approx(trained[key], abs=1e-6), key
    assert scored["evaluated_ckpt"] == best and scored["best_ckpt"] is None
    assert not (tmp_path / "e" / "checkpoints").exists()  # nothing trained, nothing saved
    # Other data (here other validation scenes) is what evaluating is for: not refused as a resume would be.
    other = run(
        compose_config(
            "train", tmp_path / "o", [*TINY, "train=false", f"ckpt_path={best}", "data.val_length=6"]
        )
    )
    assert other["val/miou"] != pytest.approx(trained["val/miou"], abs=1e-6)
    for overrides, message in (
        ([], r"train=false validates and tests a trained model.*ckpt_path=<run dir>/checkpoints/best\.ckpt"),
        (["ckpt_path=last"], r"train=false with ckpt_path=last: name the checkpoint"),
        (
            ["data.in_channels=1", f"ckpt_path={best}"],
            r"^ckpt_path=.*does not fit this run's model.*\(data\.in_channels=3\)\.$",
        ),
    ):
        with pytest.raises((ConfigError, ValueError), match=message):
            run(compose_config("train", tmp_path / "x", [*TINY, "train=false", *overrides]))


def test_train_false_builds_the_checkpoints_network(tmp_path: Path) -> None:
    """``train=false`` with a model config other than the checkpoint's (the default model, while the
    checkpoint was trained with ``model=tiny``) stopped and asked for every network setting to be repeated;
    the checkpoint holds them, so the run now builds its network and scores it as trained."""
    trained = run(compose_config("train", tmp_path / "t", [*TINY, "trainer.max_epochs=1", "test=false"]))
    default_model = [o for o in TINY if o != "model=tiny"] + ["model.std=[1,1,1]"]
    evaluate = ["train=false", "test=false", f"ckpt_path={trained['best_ckpt']}"]
    scored = run(compose_config("train", tmp_path / "e", [*default_model, *evaluate]))
    assert scored["val/miou"] == pytest.approx(trained["val/miou"], abs=1e-6)
    recorded = OmegaConf.load(tmp_path / "e" / "config.yaml").model
    assert recorded.encoder == "mobilenetv3_small_050" and recorded.encoder_depth == 3
    assert list(recorded.decoder_channels) == [32, 16, 8] and recorded.encoder_weights is None
    assert list(recorded.std) == pytest.approx([0.229, 0.224, 0.225])  # the checkpoint's, not the command's
    # Sizes are the checkpoint's network's to judge (model=tiny: multiples of 8), not the model config's
    # (the default, encoder_depth 4: 16): scenes of 72 px were refused before the run, naming depth 4.
    from marsunits.run_checks import refusal_before_hydra

    sizes = ["data.scene.width=72", "data.scene.height=72", "data.crop_size=56"]
    cfg = compose_config("train", tmp_path / "e72", [*default_model, *evaluate, *sizes])
    assert refusal_before_hydra(cfg, tmp_path / "e72") is None
    assert 0 <= run(cfg)["val/miou"] <= 1
    bad = compose_config("train", tmp_path / "e68", [*default_model, *evaluate, "data.scene.width=68"])
    early = refusal_before_hydra(bad, tmp_path / "e68")  # before the run folder, against the checkpoint's
    assert (early or "").startswith("data.scene.width=68: expected a multiple of 8 ("), early
    assert f"ckpt_path={trained['best_ckpt']}" in (early or "")
    with pytest.raises(ConfigError, match=r"data\.scene\.width=68: expected a multiple of 8 \("):
        run(bad)  # still refused, against the network built


def test_a_run_whose_data_moved_resumes_with_data_moved(tmp_path: Path) -> None:
    """A dataset moved (another disk, another cluster node) could not be resumed at all: data.root differs,
    and the only way offered, init_ckpt_path, loses the optimiser and schedule."""
    import shutil

    from marsunits.data.fake import write_fake_folder

    old = write_fake_folder(tmp_path / "old", n_images=4, height=64, width=64)
    folder = [o for o in TINY if not o.startswith("data.")] + [
        "data=folder",
        "data.crop_size=64",
        "data.batch_size=4",
        "data.samples_per_epoch=8",
        "data.num_workers=0",
    ]
    run(compose_config("train", tmp_path / "r", [*folder, f"data.root={old}", "trainer.max_epochs=1"]))
    last = tmp_path / "r" / "checkpoints" / "last.ckpt"
    first = torch.load(last, map_location="cpu", weights_only=False)
    new = tmp_path / "new"
    shutil.move(old, new)
    longer = [*folder, f"data.root={new}", "trainer.max_epochs=2", "ckpt_path=last"]
    with pytest.raises(
        ConfigError, match=r"data\.root: .*; if the same data has only moved .*data_moved=true"
    ):
        run(compose_config("train", tmp_path / "r", longer))
    run(compose_config("train", tmp_path / "r", [*longer, "data_moved=true"]))
    saved = torch.load(last, map_location="cpu", weights_only=False)
    assert saved["epoch"] == first["epoch"] + 1  # the second epoch ran: resumed, not restarted
    assert saved["global_step"] == 2 * first["global_step"]
    # Only the location may differ: another data setting is still refused.
    with pytest.raises(ConfigError, match=r"data\.samples_per_epoch: 8 -> 12"):
        run(
            compose_config("train", tmp_path / "r", [*longer, "data_moved=true", "data.samples_per_epoch=12"])
        )


def test_ckpt_path_last_finds_the_newest_run(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    for name in ("a", "b"):
        (logs / "train" / name / "checkpoints").mkdir(parents=True)
        (logs / "train" / name / "checkpoints" / "last.ckpt").write_bytes(b"x")
    found = resolve_ckpt_path("last", tmp_path / "new", logs, "train")
    assert found is not None and Path(found).parent.parent.name in {"a", "b"}
    with pytest.raises(ConfigError, match="no last.ckpt"):
        resolve_ckpt_path("last", tmp_path / "new", tmp_path / "empty", "train")
    with pytest.raises(ConfigError, match="no such file"):
        resolve_ckpt_path(str(tmp_path / "missing.ckpt"), tmp_path, logs, "train")
    assert resolve_ckpt_path(None, tmp_path, logs, "train") is None


def test_ckpt_path_last_with_a_run_name_never_resumes_another_run(tmp_path: Path) -> None:
    """``run_name=k1 ckpt_path=last`` after k1 was killed before its first checkpoint resumed the newest
    other run of the same job (its weights, best.ckpt and W&B run) under k1's name, exit 0."""
    from marsunits.run_resume import _named_run

    logs = tmp_path / "logs"
    (logs / "train" / "other" / "checkpoints").mkdir(parents=True)
    (logs / "train" / "other" / "checkpoints" / "last.ckpt").write_bytes(b"x")
    killed = logs / "train" / "k1"
    killed.mkdir()
    (killed / "config.yaml").write_text("seed: 0\n")
    with pytest.raises(
        ConfigError, match=r"run_name=k1: .*k1/checkpoints/last\.ckpt does not exist \(the run "
    ):
        resolve_ckpt_path("last", killed, logs, "train", run_name="k1")
    with pytest.raises(
        ConfigError, match=r"run_name=new: .*no run of that name has started.*without ckpt_path"
    ):
        resolve_ckpt_path("last", logs / "train" / "new", logs, "train", run_name="new")
    assert resolve_ckpt_path("last", killed, logs, "train") is not None  # unnamed: the newest run, as before
    (killed / "checkpoints").mkdir()
    (killed / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert resolve_ckpt_path("last", killed, logs, "train", run_name="k1") == str(
        killed / "checkpoints" / "last.ckpt"
    )
    # Only a name the user gave counts as one, not the default time stamp.
    assert _named_run(compose_config("train", tmp_path / "a", [*TINY, "run_name=k1"])) == "k1"
    assert _named_run(compose_config("train", tmp_path / "b", TINY)) is None


class BatchFingerprints(pl.Callback):
    """Records ``(epoch, sum of the batch's images)`` of every training batch in ``SEEN``."""

    SEEN: ClassVar[list[tuple[int, float]]] = []

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, *args: Any):
        BatchFingerprints.SEEN.append((trainer.current_epoch, float(batch["image"].double().sum())))


def test_a_resumed_run_draws_new_crops_not_those_of_its_first_epochs(tmp_path: Path) -> None:
    """Neither the loader's generator nor torch's global one is in a checkpoint: a run resumed after epoch 1
    trained epoch 2 on exactly the crops and augmentations of epoch 1 (and a fresh run keeps its seed)."""
    fingerprints = ["+callbacks.fp._target_=test_train.BatchFingerprints", "run_name=r"]
    for workers in ("0", "1"):
        common = [*TINY, *fingerprints, f"data.num_workers={workers}", "data.persistent_workers=false"]
        BatchFingerprints.SEEN.clear()
        run(compose_config("train", tmp_path / workers / "whole", [*common, "trainer.max_epochs=2"]))
        whole = list(BatchFingerprints.SEEN)
        BatchFingerprints.SEEN.clear()
        run(compose_config("train", tmp_path / workers / "part", [*common, "trainer.max_epochs=1"]))
        first = list(BatchFingerprints.SEEN)
        assert first == [seen for seen in whole if seen[0] == 0]  # a fresh run: the same crops as before
        BatchFingerprints.SEEN.clear()
        resumed = [*common, "trainer.max_epochs=2", "ckpt_path=last"]
        run(compose_config("train", tmp_path / workers / "part", resumed))
        again = [value for epoch, value in BatchFingerprints.SEEN if epoch == 1]
        assert again and not set(again) & {value for _, value in first}, workers


def test_ckpt_path_last_resumes_only_a_run_of_the_same_job(tmp_path: Path) -> None:
    """``experiment=ai4mars ckpt_path=last`` used to resume the newest run of any experiment (a synthetic
    one) and die on a wall of state-dict size mismatches."""
    from omegaconf import OmegaConf

    from marsunits.run_resume import job_identity

    logs = tmp_path / "logs"
    cfgs = {}
    for name, overrides in (("ai4mars-old", ["experiment=ai4mars"]), ("synthetic-new", [])):
        cfg = compose_config("train", tmp_path / name, overrides)
        cfgs[name] = cfg
        run_dir = logs / "train" / name
        (run_dir / "checkpoints").mkdir(parents=True)
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)  # as run() writes it
        (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"x")
    newest = logs / "train" / "synthetic-new" / "checkpoints" / "last.ckpt"
    os.utime(newest, (newest.stat().st_atime + 60, newest.stat().st_mtime + 60))
    found = resolve_ckpt_path("last", tmp_path / "new", logs, "train", job_identity(cfgs["ai4mars-old"]))
    assert found == str(logs / "train" / "ai4mars-old" / "checkpoints" / "last.ckpt")
    assert resolve_ckpt_path(
        "last", tmp_path / "new", logs, "train", job_identity(cfgs["synthetic-new"])
    ) == str(newest)
    for overrides in (["model=unet_lite0_slim"], ["experiment=ai4mars", "data.root=/another/copy"]):
        other = compose_config("train", tmp_path / "x", overrides)
        with pytest.raises(
            ConfigError, match=r"none of the 2 runs .*\(newest: synthetic-new\).*ckpt_path=<pa"
        ):
            resolve_ckpt_path("last", tmp_path / "new", logs, "train", job_identity(other))
    faster = compose_config("train", tmp_path / "y", ["experiment=ai4mars", "data.num_workers=2"])
    assert resolve_ckpt_path("last", tmp_path / "new", logs, "train", job_identity(faster)) == found
    # Out of memory: the same run goes on reading the images instead of holding them (it was refused).
    leaner = compose_config("train", tmp_path / "z", ["experiment=ai4mars", "data.cache=true"])
    assert resolve_ckpt_path("last", tmp_path / "new", logs, "train", job_identity(leaner)) == found


@pytest.mark.parametrize("runs", [1, 2])
def test_ckpt_path_last_of_a_run_with_other_settings_names_them_and_the_values_that_resume_it(
    tmp_path: Path, runs: int
) -> None:
    """A quick run (``data.train_length=64 ...``) stopped and resumed with the README's ``ckpt_path=last``
    alone, its overrides left out, was told only that the run "did not train this model on this data" and to
    pass ``ckpt_path=<path to its last.ckpt>``, which is refused in turn for the same settings: neither said
    which settings differ. The refusal names them and gives the values that resume the newest run."""
    import re
    import shlex

    from marsunits.run_resume import job_identity

    logs = tmp_path / "logs"
    quick = ["data.train_length=64", "data.val_length=8", "model.lr=1e-3", "data.scene.mode=grey"]
    for n in range(runs):  # the newest is the last one
        cfg = compose_config("train", tmp_path / f"c{n}", quick if n == runs - 1 else ["data.seed=3"])
        run_dir = logs / "train" / f"quick{n}"
        (run_dir / "checkpoints").mkdir(parents=True)
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)  # as run() writes it
        (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"x")
        os.utime(run_dir / "checkpoints" / "last.ckpt", (1000.0 * (n + 1), 1000.0 * (n + 1)))
    newest = logs / "train" / f"quick{runs - 1}"
    job = job_identity(compose_config("train", tmp_path / "default", []))
    with pytest.raises(ConfigError) as told:
        resolve_ckpt_path("last", tmp_path / "new", logs, "train", job)
    said = str(told.value)
    assert f"{newest / 'config.yaml'}" in said, said
    for change in ("data.train_length: 64 -> 1792", "data.val_length: 8 -> 64", "model.lr: 0.001 -> 0.002"):
        assert change in said, said
    given = re.search(r"add (.*) to the command", said)
    assert given is not None, said
    values = shlex.split(given.group(1))
    assert sorted(v.split("=")[0] for v in values) == sorted(o.split("=")[0] for o in quick), said
    # Those values resume it: the same job as the run's.
    again = job_identity(compose_config("train", tmp_path / "again", values))
    assert resolve_ckpt_path("last", tmp_path / "new", logs, "train", again) == str(
        newest / "checkpoints" / "last.ckpt"
    )


@pytest.mark.parametrize(
    "value",
    [
        "1e-3",
        "true",
        "a b",
        "it's",
        "sol 12, left",
        "~/data",
        "C:\\x",
        "end\\",
        "x/y.z",
        3,
        1e-05,
        None,
        True,
        [1, 2],
        ["a", "b c"],
    ],
)
def test_the_values_given_to_resume_a_run_read_back_as_they_were(value: Any) -> None:
    """The overrides the refusal above gives are read by Hydra's command line as the values the run's
    ``config.yaml`` holds: a text that reads as a number or a word (``'1e-3'``, ``'true'``), or that holds a
    space, a comma or a quote, is quoted."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from marsunits.run_resume import _override

    given = _override("data.root", value)
    assert given is not None
    assert OverridesParser.create().parse_override(given).value() == value, given


def test_ckpt_path_last_resumes_the_run_of_its_own_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seeds run side by side and stopped together (a job array) were each told to run the same command with
    ckpt_path=last, and each resumed the newest of them: two resumes in one run folder and W&B run, the
    other runs left behind."""
    from omegaconf import OmegaConf

    from marsunits.interrupt_checkpoint import _resume_overrides
    from marsunits.run_resume import PINNED_RUN_NAME_ENV, job_identity

    logs = tmp_path / "logs"
    for seed in (1, 2):
        cfg = compose_config("train", tmp_path / f"s{seed}", [f"seed={seed}"])
        run_dir = logs / "train" / f"seed{seed}"
        (run_dir / "checkpoints").mkdir(parents=True)
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)  # as run() writes it
        (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"x")
        os.utime(run_dir / "checkpoints" / "last.ckpt", (1000.0 * seed, 1000.0 * seed))  # seed 2 is newer
    job = job_identity(cfg)  # the same model and data for both
    for seed in (1, 2):
        found = resolve_ckpt_path("last", tmp_path / "new", logs, "train", job, seed=seed)
        assert found == str(logs / "train" / f"seed{seed}" / "checkpoints" / "last.ckpt")
    with pytest.raises(ConfigError, match=r"were trained with seed 1, 2 \(newest: seed2\), not seed=3"):
        resolve_ckpt_path("last", tmp_path / "new", logs, "train", job, seed=3)
    # One such run: it read "the 1 run(s) of this model and data under ... were trained with seed 1".
    one = tmp_path / "one"
    shutil.copytree(logs / "train" / "seed1", one / "train" / "seed1")
    with pytest.raises(
        ConfigError,
        match=r"the run of this model and data under .* was trained with seed 1 \(newest: seed1\)",
    ):
        resolve_ckpt_path("last", tmp_path / "new", one, "train", job, seed=3)
    # Nor of another model: it read "none of the 1 runs under ... trained this model on this data".
    other = job_identity(compose_config("train", tmp_path / "tiny", ["model=tiny"]))
    with pytest.raises(
        ConfigError,
        match=r"ckpt_path=last: the only run under .*/, seed1, did not train this model on this data;",
    ):
        resolve_ckpt_path("last", tmp_path / "new", one, "train", other, seed=1)
    # The interrupted run's advice names its folder when its name was the clock's (pinned by the command
    # line), so that it resumes itself, whatever runs of the same settings were stopped with it.
    monkeypatch.setenv(PINNED_RUN_NAME_ENV, "synthetic-2026-12-05_01-03-02")
    assert _resume_overrides(logs / "train" / "synthetic-2026-12-05_01-03-02") == (
        "run_name=synthetic-2026-12-05_01-03-02 ckpt_path=last"
    )
    assert _resume_overrides(logs / "train" / "my-run") == "ckpt_path=last"  # a name the user gave


@pytest.mark.slow
def test_overfit_a_few_synthetic_scenes(tmp_path: Path) -> None:
    """A run on four synthetic scenes, augmentation off, fits them: mIoU > 0.95 on those same scenes."""
    from torchmetrics.classification import MulticlassJaccardIndex

    from marsunits.data.datasets import SceneDataset
    from marsunits.data.synthetic import SceneConfig, SyntheticScenes

    cfg = compose_config(
        "train",
        tmp_path,
        [
            *TINY,
            "data.train_length=4",
            "data.batch_size=4",
            "data.min_scale=1.0",
            "data.hflip_p=0.0",
            "data.max_rotation_deg=0.0",
            "data.brightness=0.0",
            "data.contrast=0.0",
            "data.saturation=0.0",
            "trainer.max_epochs=200",
            "trainer.check_val_every_n_epoch=200",
            "model.lr=0.01",
            "model.scheduler=none",
            "test=false",
        ],
    )
    metrics = run(cfg)
    task = load_task(metrics["last_ckpt"])
    scenes = SceneDataset(SyntheticScenes(4, cfg.data.seed, SceneConfig(width=64, height=64)), 3)
    iou = MulticlassJaccardIndex(3, average="macro", ignore_index=255)
    with torch.no_grad():
        for item in scenes:
            pred = task(item["image"][None]).argmax(1)
            iou.update(pred, item["mask"][None])
    assert float(iou.compute()) > 0.95


def test_two_sources_train_and_report_each_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """experiment=marsscapes_ai4mars on fake data in both layouts: pooled val/* plus val/<source>/* each.
    Real data has no test split: the kept checkpoint is scored once on the validation images (it was
    validated, then tested on the same images, each pass as long as a validation)."""
    from marsunits import training
    from marsunits.data.fake import write_fake_ai4mars, write_fake_marsscapes

    def second_pass(*args: object, **kwargs: object) -> None:
        raise AssertionError("the validation images were scored again before the test pass")

    monkeypatch.setattr(training, "_validate_unlogged", second_pass)

    write_fake_marsscapes(tmp_path / "data" / "marsscapes", height=64, width=192)
    write_fake_ai4mars(tmp_path / "data" / "ai4mars_msl256", size=64)
    overrides = [
        "experiment=marsscapes_ai4mars",
        "model=tiny",
        "logger=none",
        f"data.root={tmp_path / 'data'}",
        "data.num_workers=0",
        "data.batch_size=4",
        "data.val_batch_size=4",
        "data.crop_size=64",
        "data.samples_per_epoch=8",
        "trainer.max_epochs=1",
        "trainer.check_val_every_n_epoch=1",
        "trainer.enable_progress_bar=false",
    ]
    metrics = run(compose_config("train", tmp_path / "run", overrides))
    for prefix in ("val", "val/marsscapes", "val/ai4mars", "test/marsscapes", "test/ai4mars"):
        assert 0.0 <= metrics[f"{prefix}/miou"] <= 1.0, prefix
    assert metrics["test_is_validation"] is True
    assert {k[4:]: v for k, v in metrics.items() if k.startswith("val/")} == {
        k[5:]: v for k, v in metrics.items() if k.startswith("test/")
    }
    assert "val/marsscapes/loss" in metrics and "val/ai4mars/loss" in metrics
    # AI4Mars labels no `other`: its labelled-classes mIoU is over the two units alone.
    units = [metrics[f"val/ai4mars/iou_{name}"] for name in ("smooth_volcanic", "rough_olivine")]
    assert metrics["val/ai4mars/miou_labelled_classes"] == pytest.approx(np.nanmean(units), abs=1e-6)
    # Each dataset counts once in what best.ckpt is chosen by, not by its pixel count.
    parts = [metrics[f"val/{source}/miou_labelled_classes"] for source in ("marsscapes", "ai4mars")]
    assert metrics["val/miou_source_mean"] == pytest.approx(np.mean(parts), abs=1e-6)
    state = torch.load(metrics["best_ckpt"], map_location="cpu", weights_only=False)
    (checkpoint_state,) = [v for k, v in state["callbacks"].items() if k.startswith("RunModelCheckpoint")]
    assert checkpoint_state["monitor"] == "val/miou_source_mean"
    best_score = float(checkpoint_state["best_model_score"])
    assert best_score == pytest.approx(metrics["val/miou_source_mean"], abs=1e-6)
    # Every metric this run logged is one a best-checkpoint monitor may name (and no other val/ name is).
    logged = [k for k in metrics if k.startswith("val/")]
    for name in [*logged, "val/loss"]:
        cfg = OmegaConf.create({"callbacks": {"model_checkpoint": {"monitor": name}}})
        task = type("Task", (), {"hparams": {"class_names": ["smooth_volcanic", "rough_olivine", "other"]}})
        data = type("Data", (), {"val_names": ["marsscapes", "ai4mars"]})
        if name in logged:
            _check_monitor_is_logged(cfg, data, task)
        else:
            with pytest.raises(ConfigError, match="is not a metric this run logs"):
                _check_monitor_is_logged(cfg, data, task)
    # One pooled loader never logs the per-source mean: refused before training (it stopped at the first
    # validation, epochs later).
    pooled = compose_config("train", tmp_path / "pooled", [*overrides, "data.separate_val=false"])
    with pytest.raises(ConfigError, match=r"monitor=val/miou_source_mean averages .* validates on 1 loader"):
        run(pooled)
    assert not (tmp_path / "pooled" / "checkpoints").exists()
    # Resumed with the data unchanged: the sols the network trained on (both sources, one rover) are not
    # among those it validates on, so the check against the resumed checkpoint lets it go on.
    longer = [o for o in overrides if o != "trainer.max_epochs=1"]
    resumed = run(
        compose_config("train", tmp_path / "run", [*longer, "trainer.max_epochs=2", "ckpt_path=last"])
    )
    assert 0.0 <= resumed["val/miou"] <= 1.0


def _fake_marsscapes_run(tmp_path: Path) -> list[str]:
    """Overrides of a tiny run (``model=tiny``, 64 px crops, 8 a epoch) on a fake MarsScapes folder written
    in ``tmp_path / "marsscapes"``: real-data behaviour (sol-grouped split, test on the validation images)."""
    from marsunits.data.fake import write_fake_marsscapes

    root = write_fake_marsscapes(tmp_path / "marsscapes", height=64, width=128)
    return [
        "model=tiny",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "data=marsscapes",
        f"data.root={root}",
        "data.crop_size=64",
        "data.samples_per_epoch=8",
        "data.batch_size=4",
    ]


def test_a_validation_subset_keeps_its_scores_when_test_scores_every_image(tmp_path: Path) -> None:
    """Real data tests on its validation images, so the kept checkpoint's test pass was copied to val/*.
    With trainer.limit_val_batches (a cheaper, fixed subset of the validation tiles) and the test pass on
    every tile, metrics.json's val/miou was then the score of other tiles than the ones best.ckpt was chosen
    on and the training curves show; it is now the validation subset's, and test/* keeps every tile's."""
    overrides = [
        *_fake_marsscapes_run(tmp_path),
        "data.val_batch_size=1",
        "trainer.max_epochs=1",
        "trainer.limit_val_batches=1",  # an int: one batch, one tile (a float 1.0 is every batch)
    ]
    metrics = run(compose_config("train", tmp_path / "run", overrides))
    state = torch.load(metrics["best_ckpt"], map_location="cpu", weights_only=False)
    (checkpoint_state,) = [v for k, v in state["callbacks"].items() if k.startswith("RunModelCheckpoint")]
    assert checkpoint_state["monitor"] == "val/miou"
    assert metrics["val/miou"] == pytest.approx(float(checkpoint_state["best_model_score"]), abs=1e-6)
    assert metrics["test_is_validation"] is False
    assert metrics["test/miou"] != pytest.approx(metrics["val/miou"], abs=1e-6)  # every tile, not one


def test_real_data_without_validation_during_training_keeps_its_val_scores(tmp_path: Path) -> None:
    """trainer.limit_val_batches=0 (no validation while training) differs from the test limit, so the
    test pass on the validation images was no longer copied to val/*, and metrics.json lost val/* (a sweep's
    val/miou included) while the run's warning said val/* were of the last weights."""
    overrides = [
        *_fake_marsscapes_run(tmp_path),
        "trainer.max_epochs=1",
        "trainer.limit_val_batches=0",
    ]
    metrics = run(compose_config("train", tmp_path / "run", overrides))
    assert metrics["best_ckpt"] is None and metrics["test_is_validation"] is True
    assert metrics["val/miou"] == pytest.approx(metrics["test/miou"], abs=1e-9)


def folder_run(root: Path | None) -> list[str]:
    """Overrides of a tiny one-source data=folder run without a test pass (root None: no data.root)."""
    return [
        "model=tiny",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "data=folder",
        *([f"data.root={root}"] if root is not None else []),
        "data.batch_size=4",
        "data.crop_size=64",
        "data.samples_per_epoch=8",
        "test=false",
    ]


def test_unusable_pairs_are_refused_before_the_run_folder_and_the_loggers(tmp_path: Path) -> None:
    """A data=folder run with a mask of another size than its image (or ids outside the classes, an RGB
    mask) was refused in the trainer's set-up, after the run folder's config.yaml, the CSV log and a W&B run
    were started: the refused run left a failed W&B run that the console said to upload with `wandb sync`,
    and a config.yaml that a later resume compares with. Every pair is now read where the split is checked,
    before any of them; the error is the same one listing each file."""
    from PIL import Image

    from marsunits.data.fake import write_fake_folder

    root = write_fake_folder(tmp_path / "my labels", height=64, width=64)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "masks" / "img_1.png")  # half the image's size
    run_dir = tmp_path / "run"
    overrides = [*folder_run(root), "logger=csv", "trainer.max_epochs=1"]
    with pytest.raises(ValueError, match=r"img_1\.png is 32x32\. Masks must have the image's exact size"):
        run(compose_config("train", run_dir, overrides))
    assert not (run_dir / "config.yaml").exists()
    assert not (run_dir / "csv").exists()  # the logger never started
    assert not (run_dir / "checkpoints").exists()


def test_training_masks_of_one_class_are_refused_before_the_run_folder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Masks in black and white (0 and 255) trained a network that calls everything smooth_volcanic, and the
    run said nothing; they are now refused before the run folder's config.yaml and the loggers, naming the
    class map to give. Scoring a model on such masks (train=false) is not training, and is not refused."""
    from PIL import Image

    from marsunits.data.fake import write_fake_folder

    root = write_fake_folder(tmp_path / "labels", height=64, width=64)
    for path in sorted((root / "masks").glob("*.png")):
        Image.fromarray(np.where(np.array(Image.open(path)) == 1, 255, 0).astype(np.uint8)).save(path)
    run_dir = tmp_path / "run"
    overrides = [*folder_run(root), "logger=csv", "trainer.max_epochs=1"]
    with pytest.raises(DataError, match=r"hold only 0 and 255: .* data.class_map='\{0: 0, 255: 1\}'"):
        run(compose_config("train", run_dir, overrides))
    assert not (run_dir / "config.yaml").exists()
    assert not (run_dir / "csv").exists()
    trained = run(compose_config("train", run_dir, [*overrides, "data.class_map={0: 0, 255: 1}"]))
    scored = [*overrides, "train=false", "test=false", f"ckpt_path={trained['best_ckpt']}"]
    assert run(compose_config("train", tmp_path / "scored", scored))["val/miou"] is not None
    # Fine-tuning a trained network on masks of one class (corrections of the unit it misses) had no way on;
    # it goes on, with the refusal's words as a warning.
    tuned = [*overrides, f"init_ckpt_path={trained['best_ckpt']}"]
    with caplog.at_level("WARNING", logger="marsunits.training"):
        assert run(compose_config("train", tmp_path / "tuned", tuned))["best_ckpt"]
    (said,) = [r.getMessage() for r in caplog.records if "hold only 0 and 255" in r.getMessage()]
    goes_on = f"This run goes on, as it fine-tunes a trained network (init_ckpt_path={trained['best_ckpt']})"
    assert goes_on in said, said
    # Resumed before its metrics.json was written (a Ctrl-C), it is the same fine-tuning: not refused either.
    (tmp_path / "tuned" / "metrics.json").unlink()
    caplog.clear()
    with caplog.at_level("WARNING", logger="marsunits.training"):
        run(compose_config("train", tmp_path / "tuned", [*tuned, "trainer.max_epochs=2", "ckpt_path=last"]))
    assert [r for r in caplog.records if goes_on in r.getMessage()]


def test_a_model_trained_on_this_runs_validation_sols_is_refused(tmp_path: Path) -> None:
    """A checkpoint records the sols it trained on; evaluating it (or fine-tuning from it) on a split that
    validates on them gave optimistic scores silently. The same split is accepted, another refused."""
    from marsunits.data.fake import write_fake_marsscapes
    from marsunits.export import export_checkpoint

    sols = (9, 10, 19, 20, 29, 30, 39, 40, 49, 50, 59, 60, 69, 70)
    root = write_fake_marsscapes(tmp_path / "marsscapes", sols=sols, height=64, width=128)
    data = ["data=marsscapes", f"data.root={root}", "data.crop_size=64", "data.samples_per_epoch=8"]
    common = ["model=tiny", "logger=none", "trainer.enable_progress_bar=false", "data.batch_size=4", *data]
    trained = run(compose_config("train", tmp_path / "t", [*common, "trainer.max_epochs=1", "test=false"]))
    task = load_task(trained["best_ckpt"])
    config = OmegaConf.load(tmp_path / "t" / "config.yaml")
    dm = instantiate(config.data)
    dm.setup("fit")
    assert task.trained_sols == dm.trained_sols() and task.trained_sols["marsscapes"]
    package = tmp_path / "package"
    export_checkpoint(trained["best_ckpt"], package)
    evaluate = [*common, "train=false", "test=false"]
    for model in (trained["best_ckpt"], package):  # a package carries the sols too
        same = run(compose_config("train", tmp_path / "same", [*evaluate, f"ckpt_path={model}"]))
        assert same["val/miou"] == pytest.approx(trained["val/miou"], abs=1e-6)
        other = [*evaluate, f"ckpt_path={model}", "data.seed=3"]  # another split: validates on trained sols
        with pytest.raises(DataError, match=rf"ckpt_path={model} was trained on \d+ sols? of 'marsscapes'"):
            run(compose_config("train", tmp_path / "other", other))
        # Refused before the run folder is made (it held config.yaml and an empty log of the refused run).
        assert not (tmp_path / "other" / "config.yaml").exists()
        run(compose_config("train", tmp_path / "allowed", [*other, "data.allow_seen_val_sols=true"]))
    with pytest.raises(DataError, match=r"init_ckpt_path=.* was trained on .*data\.allow_seen_val_sols=true"):
        run(
            compose_config(
                "train",
                tmp_path / "fine",
                [*common, "data.seed=3", f"init_ckpt_path={trained['best_ckpt']}", "trainer.max_epochs=1"],
            )
        )
    assert not (tmp_path / "fine" / "config.yaml").exists()


def _one_epoch_of_fake_marsscapes(tmp_path: Path) -> tuple[list[str], Path]:
    """Train one epoch on a fake MarsScapes folder in ``tmp_path / "old"``; returns the command's overrides
    (without ``trainer.max_epochs``) and the run's ``config.yaml``, for tests that edit the record as an
    older version wrote it and then resume."""
    common = [*_fake_marsscapes_run(tmp_path), "test=false", "run_name=old"]
    run(compose_config("train", tmp_path / "old", [*common, "trainer.max_epochs=1"]))
    return common, tmp_path / "old" / "config.yaml"


def test_a_run_recorded_before_new_data_settings_still_resumes(tmp_path: Path) -> None:
    """A run folder whose config.yaml predates data.sol_margin and data.allow_seen_val_sols could not be
    resumed at all ("None -> 2"); it is now compared as trained with the earlier behaviour (sol_margin 0),
    which the message names, and the check switch does not count."""
    common, config = _one_epoch_of_fake_marsscapes(tmp_path)
    recorded = OmegaConf.load(config)
    del recorded.data["sol_margin"], recorded.data["allow_seen_val_sols"]  # as written before they existed
    config.write_text(OmegaConf.to_yaml(recorded))
    again = [*common, "trainer.max_epochs=2", "ckpt_path=last"]
    with pytest.raises(ConfigError, match=r"data\.sol_margin: 0 -> 2"):
        run(compose_config("train", tmp_path / "old", again))
    resumed = run(compose_config("train", tmp_path / "old", [*again, "data.sol_margin=0"]))
    assert torch.load(resumed["last_ckpt"], map_location="cpu", weights_only=True)["epoch"] == 2


@pytest.mark.parametrize("experiment", ["ai4mars", "marsscapes"])
def test_a_run_recorded_before_class_mix_and_validation_context_is_the_same_job(
    tmp_path: Path, experiment: str
) -> None:
    """data.class_mix_prob and data.val_context_px came to configs after runs were recorded without them
    (ai4mars.yaml and folder.yaml on 2026-12-05): such a run is the job it was, with both at their off
    value, so `ckpt_path=last` still finds and resumes it; a run that did use context still differs."""
    from marsunits.run_resume import _same_job, _saved_job, job_identity

    cfg = compose_config("train", tmp_path / "run", [f"experiment={experiment}"])
    job = job_identity(cfg)
    recorded = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    del recorded.data["class_mix_prob"], recorded.data["val_context_px"]  # as written before they existed
    (tmp_path / "run" / "config.yaml").write_text(OmegaConf.to_yaml(recorded))
    if cfg.data.val_context_px == 0:  # ai4mars: both at the value the run trained with
        assert _same_job(_saved_job(tmp_path / "run", job), job, data_moved=False)
    else:  # marsscapes: 64 px of context now, none in the recorded run: another validation, said as such
        assert not _same_job(_saved_job(tmp_path / "run", job), job, data_moved=False)
        cfg.data.val_context_px = 0
        assert _same_job(_saved_job(tmp_path / "run", job_identity(cfg)), job_identity(cfg), data_moved=False)


def test_a_run_recorded_with_a_fold_but_no_n_folds_still_resumes(tmp_path: Path) -> None:
    """data.fold without data.n_folds was ignored (the run trained on the single held-out split) and is now
    refused; a run folder that recorded it could be resumed neither with it (refused) nor without it
    ("data.fold: 2 -> 0"). It trained on the single split, and resumes as such without data.fold."""
    common, config = _one_epoch_of_fake_marsscapes(tmp_path)
    recorded = OmegaConf.load(config)
    recorded.data.fold = 2  # as a run given data.fold=2 alone recorded it before the refusal
    config.write_text(OmegaConf.to_yaml(recorded))
    again = [*common, "trainer.max_epochs=2", "ckpt_path=last"]
    resumed = run(compose_config("train", tmp_path / "old", again))
    assert torch.load(resumed["last_ckpt"], map_location="cpu", weights_only=True)["epoch"] == 2
    # Another split is still another job: with n_folds the fold counts.
    with pytest.raises(ConfigError, match=r"data\.n_folds: None -> 2"):
        run(compose_config("train", tmp_path / "old", [*again, "trainer.max_epochs=3", "data.n_folds=2"]))


def test_a_missing_value_and_a_bad_learning_rate_stop_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = compose_config("train", tmp_path, ["data=folder"])  # data.root is ??? in data/folder.yaml
    with pytest.raises(
        ConfigError, match=r"data\.root not set .*add data\.root=<folder> to the command"
    ) as info:
        run(cfg)
    # What the folder must hold, which the config's /path/to/folder placeholder did not say.
    assert "images/<stem>" in str(info.value) and "masks/<stem>.png" in str(info.value), info.value
    assert "project ids" in str(info.value), info.value
    assert not (tmp_path / "config.yaml").exists()
    # Hydra wraps what the task raises; train.py reports the cause in one line with status 2.
    for override, message in (
        ("model.lr=abc", "model.lr must be a number > 0, got 'abc'"),
        ("model.weight_decay=-1", "model.weight_decay must be a number >= 0, got -1"),
        ("model.encoder=nope", "model.encoder='nope': Unknown encoder 'nope'"),
    ):
        cfg = compose_config("train", tmp_path, [*TINY, override])
        with pytest.raises(SystemExit) as info:
            report_user_errors(lambda: run(cfg), prog="train.py")  # noqa: B023 - called at once
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(f"train.py: error: {message}"), err
        assert "Error in call to target" not in err
        assert not (tmp_path / "config.yaml").exists()  # README: before anything is written
    # README: both before the run folder is made (the command line's check, before Hydra writes .hydra/).
    from hydra import compose, initialize_config_dir

    from marsunits.run_checks import refusal_before_hydra

    for overrides, said in ((["data=folder"], "data.root not set"), (["model.lr=abc"], "model.lr must be")):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            composed = compose("train", overrides=overrides, return_hydra_config=True)
        assert (refusal_before_hydra(composed, tmp_path / "run") or "").startswith(said), overrides


def test_a_fold_without_n_folds_is_refused_before_the_run_folder(tmp_path: Path) -> None:
    """README: a refused config value makes no run folder. ``data.fold=1`` without ``data.n_folds`` was
    refused by the data module, inside the run: its folder (``.hydra/``, ``train.log``) was left behind."""
    from hydra import compose, initialize_config_dir

    from marsunits.run_checks import refusal_before_hydra

    cases = (
        (["experiment=marsscapes", "data.fold=1"], "configs/data/marsscapes.yaml: fold=1 needs n_folds"),
        (["experiment=marsscapes", "data.fold=1", "data.n_folds=5"], None),
        (["experiment=marsscapes", "data.fold=0"], None),  # the default: the single held-out split
    )
    for overrides, said in cases:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            composed = compose("train", overrides=overrides, return_hydra_config=True)
        refused = refusal_before_hydra(composed, tmp_path / "run")
        if said is None:  # no fold setting refused (a missing data root, "root folder ...", may be)
            assert refused is None or not re.search(r"\bn?_?folds?\b", refused), (overrides, refused)
        else:
            assert (refused or "").startswith(said), (overrides, refused)
            assert "data.n_folds=5" in (refused or ""), refused  # the way on


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["data=marsscapes", "data.focus_class=7"],
            "configs/data/marsscapes.yaml: focus_class=7 is not a project class id; use one of {0: "
            "'smooth_volcanic', 1: 'rough_olivine', 2: 'other'} or null.",
        ),
        (
            ["data=marsscapes", "data.focus_class=1", "data.focus_fraction=1.5"],
            "configs/data/marsscapes.yaml: focus_fraction is the share of training crops placed on "
            "focus_class, in [0, 1], got 1.5; e.g. data.focus_fraction=0.33.",
        ),
        (
            ["data=marsscapes", "data.focus_fraction=0.33"],
            "configs/data/marsscapes.yaml: focus_fraction=0.33 places crops on focus_class, which is null",
        ),
        (
            ["+data.focus_fraction=0.33"],  # synthetic.yaml has no such key: added
            "configs/data/synthetic.yaml: focus_class/focus_fraction over-sample crops of real images; "
            "synthetic scenes are drawn whole. Set data.focus_fraction=0.",
        ),
        (
            ["data=marsscapes", "data.min_labelled_fraction=1.5"],
            "configs/data/marsscapes.yaml: min_labelled_fraction is the share of labelled pixels a training "
            "crop needs, in [0, 1], got 1.5; e.g. data.min_labelled_fraction=0.05.",
        ),
        (
            ["data=marsscapes_ai4mars", "data.samples_per_epoch=1"],
            "configs/data/marsscapes_ai4mars.yaml: samples_per_epoch must be at least one crop per source "
            "(2), got 1; e.g. data.samples_per_epoch=512.",
        ),
        (
            ["data=marsscapes_pseudo", "data.train_only=[marsscapes,folder]"],
            "configs/data/marsscapes_pseudo.yaml: train_only must list real sources among ['marsscapes', "
            "'folder'] and leave at least one for validation, got ['marsscapes', 'folder'].",
        ),
        (
            ["data=marsscapes_pseudo", "data.train_only=[ai4mars]"],
            "configs/data/marsscapes_pseudo.yaml: train_only must list real sources among ['marsscapes', "
            "'folder'] and leave at least one for validation, got ['ai4mars'].",
        ),
    ],
)
def test_the_crop_sampling_values_the_data_module_checks_are_refused_before_the_run_folder(
    args: list[str],
    said: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """README: a refused config value makes no run folder. The values the data module checks itself
    (``data.focus_class``, ``data.focus_fraction``, ``data.min_labelled_fraction``,
    ``data.samples_per_epoch``, ``data.train_only``) were refused only inside the run, after Hydra had made
    its folder (``.hydra/``, ``train.log``). train.py refuses them before Hydra, in the data module's own
    words (one rule, one wording): one line naming the value and what is taken, status 2."""
    logs = tmp_path / "logs"
    argv = ["model=tiny", "logger=none", *args, f"paths.log_dir={logs}"]  # TINY's keys are synthetic's
    status, err = train_py_checks(tmp_path, monkeypatch, capsys, *argv)
    assert status == 2 and err.startswith(f"train.py: error: {said}") and err.count("\n") == 1, err[-2000:]
    assert not logs.exists() and not (tmp_path / "outputs").exists(), sorted(tmp_path.rglob("*"))


def test_the_crop_sampling_values_the_data_module_takes_are_not_refused_before_hydra(tmp_path: Path) -> None:
    """The other side of the test above: the values the data module takes, at the ends of their ranges too,
    pass the check before Hydra (``check_config_values``), so train.py refuses nothing the run accepts."""
    from marsunits.run_checks import check_config_values

    for overrides in (
        ["data=marsscapes", "data.focus_class=1", "data.focus_fraction=0.33"],
        ["data=marsscapes", "data.focus_class=null", "data.focus_fraction=0"],
        ["data=marsscapes", "data.min_labelled_fraction=1.0", "data.focus_class=0", "data.focus_fraction=1"],
        ["data=marsscapes_ai4mars", "data.samples_per_epoch=2"],
        ["data=marsscapes_pseudo", "data.train_only=[folder]"],
        ["data=marsscapes_pseudo", "data.train_only=[]"],
        ["+data.focus_fraction=0", "+data.min_labelled_fraction=0"],
        ["experiment=marsscapes_subclasses"],  # its sub-classes, checked before Hydra too
        ["experiment=marsscapes_subclasses", "data.subclass_map={2: 2}", "data.class_map={2: 1}"],
    ):
        cfg = compose_config("train", tmp_path, ["model=tiny", "logger=none", *overrides])
        check_config_values(cfg)  # raises nothing
        instantiate(cfg.data)  # nor does the data module itself


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["data=marsscapes", "data.class_mix_prob=1.5"],
            "configs/data/marsscapes.yaml: class_mix_prob must be a probability in [0, 1], got 1.5; e.g. "
            "data.class_mix_prob=0.5 (0 turns ClassMix off).",
        ),
        (
            ["data.class_mix_prob=-0.1"],
            "configs/data/synthetic.yaml: class_mix_prob must be a probability in [0, 1], got -0.1",
        ),
        (
            ["data=marsscapes", "data.sol_margin=-1"],
            "configs/data/marsscapes.yaml: sol_margin must be a whole number of sols >= 0, got -1; e.g. "
            "data.sol_margin=2",
        ),
        (
            ["data=marsscapes", "data.sol_margin=1.5"],
            "configs/data/marsscapes.yaml: sol_margin must be a whole number of sols >= 0, got 1.5",
        ),
        (
            ["data.render_processes=-1"],
            "configs/data/synthetic.yaml: render_processes must be null (automatic) or an integer >= 0, got "
            "-1.",
        ),
        (
            ["data=ai4mars", "data.exclude_sols=[[28,14]]"],
            "configs/data/ai4mars.yaml: each entry of data.exclude_sols must be [first_sol, last_sol] (whole "
            "numbers, first <= last), got [28, 14]; e.g. data.exclude_sols=[[100,550]]",
        ),
        (
            ["data=ai4mars", "data.exclude_sols=[100,550]"],  # one range, its brackets forgotten
            "configs/data/ai4mars.yaml: each entry of data.exclude_sols must be [first_sol, last_sol]",
        ),
        (
            ["data=ai4mars", "data.exclude_sols=120"],
            "configs/data/ai4mars.yaml: data.exclude_sols must be a list of [first_sol, last_sol] pairs, got "
            "120; e.g. data.exclude_sols=[[100,550]]",
        ),
        (
            ["data=marsscapes", "data.sources=[mars]"],
            "configs/data/marsscapes.yaml: unknown sources ['mars']; choose from ['synthetic', 'marsscapes', "
            "'ai4mars', 'folder'].",
        ),
        (
            # Text, not a list: the data module read its letters ("unknown sources ['m', 'a', 'r', 's']").
            ["data=marsscapes_ai4mars", "data.sources=mars"],
            "configs/data/marsscapes_ai4mars.yaml: sources must be a list of source names from ['synthetic', "
            "'marsscapes', 'ai4mars', 'folder'], got 'mars'; e.g. data.sources=[mars], or "
            "'data.sources=[marsscapes,ai4mars]' (quoted for the shell) for several.",
        ),
        (
            ["data=marsscapes", "data.sources=null"],
            "configs/data/marsscapes.yaml: sources must be a list of source names from ['synthetic', "
            "'marsscapes', 'ai4mars', 'folder'], got None; e.g. data.sources=[marsscapes], or",
        ),
        (
            ["data=marsscapes", "data.sources=[marsscapes,synthetic]"],
            "configs/data/marsscapes.yaml: 'synthetic' cannot be combined with other sources",
        ),
        (
            ["data=marsscapes", "data.sources=[marsscapes,marsscapes]"],
            "configs/data/marsscapes.yaml: sources are listed twice: ['marsscapes', 'marsscapes'].",
        ),
        (
            ["data=marsscapes", "data.val_fraction=1.5"],
            "configs/data/marsscapes.yaml: val_fraction must be in (0, 1), got 1.5",
        ),
        (
            # A map typed without its braces and quotes is text: the network's set-up stopped on it in
            # Hydra's words, AttributeError("'str' object has no attribute 'values'"), in a run folder.
            ["data=folder", "data.root=/nowhere", "data.class_map=3:1"],
            "configs/data/folder.yaml: class_map must be a map {<native id>: <project id>, ...} or null, got "
            "'3:1' (str); on the command line write it in braces and single quotes, "
            "data.class_map='{<native id>: <project id>, ...}' (data/README.md).",
        ),
        (
            ["data=marsscapes", "data.subclass_map=2:3"],
            "configs/data/marsscapes.yaml: subclass_map must be a map {<native id>: <sub-class id>, ...} or "
            "null, got '2:3' (str)",
        ),
        (
            # Text or a fraction inside the map (Hydra merges {2: a} into the recipe's): int()'s "invalid
            # literal for int() with base 10: 'a'", naming no key, in the run folder; 1.5 was read as 1.
            ["experiment=marsscapes_subclasses", "data.root=/nowhere", "data.subclass_map={2: a}"],
            "configs/data/marsscapes.yaml: subclass_map maps native id 2 to 'a' (str): it takes a sub-class "
            "id (its position in data.subclasses, from 0) or 255 (ignore), a whole number; on the command "
            "line ++data.subclass_map.2=<id>.",
        ),
        (
            ["experiment=marsscapes_subclasses", "data.root=/nowhere", "data.subclass_map={2: 1.5}"],
            "configs/data/marsscapes.yaml: subclass_map maps native id 2 to 1.5 (float): it takes a sub",
        ),
        (
            # A native id added to subclass_map alone ('++data.subclass_map={99: 1}', as the refusal of
            # data.subclass_map={99: 1} advises): refused in the data module, in the run folder.
            ["experiment=marsscapes_subclasses", "data.root=/nowhere", "++data.subclass_map={99: 1}"],
            "configs/data/marsscapes.yaml: subclass_map and class_map must list the same native ids; only in "
            "subclass_map: [99], only in class_map: [].",
        ),
        (
            ["experiment=marsscapes_subclasses", "data.root=/nowhere", "data.focus_class=1"],
            "configs/data/marsscapes.yaml: focus_class names a project class, but with subclass_map the "
            "training masks hold sub-class ids",
        ),
        (
            ["data=marsscapes", "data.subclass_map={soil: 0}"],
            "configs/data/marsscapes.yaml: subclass_map has the key 'soil' (str): its keys are native ids, "
            "whole numbers 0..255, each mapped to a sub-class id",
        ),
        (
            # Text inside a class map (Hydra merges {1: a} into the recipe's): ClassMap refused it in the
            # run folder. One source's map is flat; several sources' nest one map per source.
            ["data=marsscapes", "data.root=/nowhere", "data.class_map={1: a}"],
            "configs/data/marsscapes.yaml: class_map maps native id 1 to 'a' (str): it takes a project id (0 "
            "smooth_volcanic, 1 rough_olivine, 2 other, 255 ignore), a whole number; on the command line "
            "++data.class_map.1=<id>.",
        ),
        (
            # An id out of range (7 is no project id): refused by ClassMap in the run, after the run folder.
            ["data=marsscapes", "data.root=/nowhere", "data.class_map={1: 7}"],
            "class_map of dataset 'marsscapes': native id 1 maps to 7, which is not a project id ([0, 1, 2, "
            "255]). Fix class_map in configs/data/marsscapes.yaml, or on the command line as "
            "++data.class_map.<native id>=<project id>, one entry each.",
        ),
        (
            ["data=marsscapes_ai4mars", "data.root=/nowhere", "++data.class_map.ai4mars={300: 1}"],
            "class_map.ai4mars of dataset 'marsscapes_ai4mars': native id 300 is outside 0..255 (masks are "
            "uint8). Fix class_map.ai4mars in configs/data/marsscapes_ai4mars.yaml",
        ),
        (
            ["data=marsscapes_ai4mars", "data.root=/nowhere", "data.class_map.ai4mars={3: 0.5}"],
            "configs/data/marsscapes_ai4mars.yaml: class_map.ai4mars maps native id 3 to 0.5 (float): it "
            "takes a project id (0 smooth_volcanic, 1 rough_olivine, 2 other, 255 ignore), a whole number; "
            "on the command line ++data.class_map.ai4mars.3=<id>.",
        ),
        (
            ["data=marsscapes_ai4mars", "data.root=/nowhere", "data.class_map.marsscapes=3:1"],
            "configs/data/marsscapes_ai4mars.yaml: class_map.marsscapes must be a map {<native id>: <project "
            "id>, ...} or null, got '3:1' (str)",
        ),
        (
            # A flat entry added beside the sources' maps was read by no source, silently.
            ["data=marsscapes_ai4mars", "data.root=/nowhere", "++data.class_map.1=2"],
            "configs/data/marsscapes_ai4mars.yaml: class_map holds one map per source (marsscapes, ai4mars), "
            "but also the key 1, which is no source and is read by none; map a native id in its "
            "source's map, ++data.class_map.<source>.1=<project id> (++data.class_map.marsscapes.1=<project "
            "id>).",
        ),
        (
            # A source's map beside the sources that reads none of them: refused by the data module in the
            # run, in other words; a source's map deleted, which read its native ids as project ids, too.
            ["data=marsscapes_ai4mars", "data.root=/nowhere", "++data.class_map.folder=null"],
            "configs/data/marsscapes_ai4mars.yaml: class_map holds one map per source (marsscapes, ai4mars), "
            "but also the key folder, which is not one of its sources and is read by none; name a source "
            "(marsscapes, ai4mars).",
        ),
        (
            ["data=marsscapes_ai4mars", "data.root=/nowhere", "~data.class_map.ai4mars"],
            "configs/data/marsscapes_ai4mars.yaml: class_map has no entry for ['ai4mars']: give each "
            "source's map, or class_map.ai4mars: null where its masks hold project ids (0, 1, 2, 255).",
        ),
        (
            ["data=marsscapes_ai4mars", "data.val_fraction=0"],  # the ends are not taken: no split
            "configs/data/marsscapes_ai4mars.yaml: val_fraction must be in (0, 1), got 0",
        ),
    ],
)
def test_the_data_module_s_other_values_are_refused_before_the_run_folder(
    args: list[str],
    said: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """README: a refused config value makes no run folder. ``data.class_mix_prob``, ``data.sol_margin``,
    ``data.render_processes``, ``data.exclude_sols`` and ``data.sources`` were refused only when the data
    module was built, ``data.val_fraction`` only when it split the data (``split_by_group``), inside the run:
    Hydra had made its folder (``.hydra/``, ``train.log``). train.py refuses them before Hydra, in the data
    module's words (one rule each): one line naming the config, the value and what is taken, status 2."""
    logs = tmp_path / "logs"
    argv = ["model=tiny", "logger=none", *args, f"paths.log_dir={logs}"]
    status, err = train_py_checks(tmp_path, monkeypatch, capsys, *argv)
    assert status == 2 and err.startswith(f"train.py: error: {said}") and err.count("\n") == 1, err[-2000:]
    assert not logs.exists() and not (tmp_path / "outputs").exists(), sorted(tmp_path.rglob("*"))


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["data.render_processes=${oc.env:MARSUNITS_TEST_NPROC}"], "data.render_processes"),
        (["data=marsscapes", "data.sol_margin=${oc.env:MARSUNITS_TEST_NPROC}"], "data.sol_margin"),
    ],
)
def test_a_data_module_value_read_from_the_environment_is_refused_with_how_to_read_it_as_one(
    args: list[str],
    key: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``${oc.env:NPROC}`` always gives text, which the data module's rule refuses (``render_processes must
    be null (automatic) or an integer >= 0, got '2'.``) without the oc.decode that the integer checks name
    (:func:`test_a_number_read_from_the_environment_is_refused_with_how_to_read_it_as_one`): one line, status
    2, naming the key, the interpolation and the oc.decode that reads it as a number, which is then taken."""
    from marsunits.run_checks import check_config_values

    monkeypatch.setenv("MARSUNITS_TEST_NPROC", "2")
    written = args[-1].split("=", 1)[1]
    argv = ["model=tiny", "logger=none", f"paths.log_dir={tmp_path / 'logs'}"]
    status, err = train_py_checks(tmp_path, monkeypatch, capsys, *argv, *args)
    leaf = key.split(".", 1)[1]
    assert status == 2 and err.startswith("train.py: error: configs/data/") and err.count("\n") == 1, err
    assert f": {leaf} must be" in err and "got '2'" in err, err
    assert f"{written} gives text" in err and f"{key}='${{oc.decode:{written}}}'" in err, err
    decoded = [*args[:-1], f"{key}='${{oc.decode:{written}}}'"]  # the tip's words, quotes and all
    check_config_values(compose_config("train", tmp_path, [*argv, *decoded]))  # as advised: taken


def test_the_data_module_s_other_values_it_takes_are_not_refused_before_hydra(tmp_path: Path) -> None:
    """The other side of the test above: the values the data module and its split take, at the ends of their
    ranges too, pass the check before Hydra, so train.py refuses nothing the run accepts. A
    ``val_fraction`` the run never reads (synthetic scenes, ``n_folds``' folds) is not refused either."""
    from marsunits.data.splits import split_by_group
    from marsunits.run_checks import check_config_values

    for overrides in (
        ["data=marsscapes", "data.class_mix_prob=0", "data.sol_margin=0"],
        ["data=marsscapes", "data.class_mix_prob=1.0", "data.sol_margin=30"],
        ["data.render_processes=0", "data.class_mix_prob=1"],
        ["data.render_processes=null", "+data.val_fraction=1.5"],  # synthetic: no split
        ["data=ai4mars", "data.exclude_sols=[[14,28],[70,70]]"],
        ["data=ai4mars", "data.exclude_sols=[]"],
        ["data=ai4mars", "data.exclude_sols=null", "data.val_fraction=0.01"],
        ["data=marsscapes_ai4mars", "data.sources=[ai4mars,marsscapes]", "data.val_fraction=0.99"],
        ["data=marsscapes", "data.n_folds=5", "data.val_fraction=1.5"],  # folds, not val_fraction
    ):
        cfg = compose_config("train", tmp_path, ["model=tiny", "logger=none", *overrides])
        check_config_values(cfg)  # raises nothing
        instantiate(cfg.data)  # nor does the data module itself
    sols = list(range(200))
    for fraction in (0.01, 0.5, 0.99):  # and the split takes the ends check_config_values lets through
        train, val = split_by_group(sols, fraction, seed=0)
        assert len(train) and len(val)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_epochs=abc", r"trainer\.max_epochs='abc': expected a whole number >= -1"),
        ("trainer.max_epochs=-5", r"trainer\.max_epochs=-5: expected a whole number >= -1"),
        ("trainer.max_epochs=2.5", r"trainer\.max_epochs=2\.5: expected a whole number"),
        ("data.batch_size=abc", r"data\.batch_size='abc': expected a whole number >= 1"),
        ("data.batch_size=0", r"data\.batch_size=0: expected a whole number >= 1"),
        ("seed=abc", r"seed='abc': expected a whole number >= 0"),
        ("trainer.limit_train_batches=abc", r"trainer\.limit_train_batches='abc': expected a fraction"),
        ("trainer.limit_val_batches=1.5", r"trainer\.limit_val_batches=1\.5: expected a fraction"),
        # Text is true to bool(): train=no trained, data_moved=no would have accepted moved data.
        ("train=no", r"train='no': give train=true or train=false"),
        ("data_moved=no", r"data_moved='no': give data_moved=true"),
        ("test=abc", r"test='abc': give test=true"),
        ("model.channels_last=off", r"model\.channels_last='off': give .*\(yes/no/on/off are read as text\)"),
        # Numbers of the data config: a traceback from Hydra's instantiation or the first transform, or
        # "could not convert string to float" without the key; data.seed=1.5 was read as 1.
        ("data.crop_size=abc", r"data\.crop_size='abc': expected a whole number >= 1 .*data\.crop_size=256"),
        ("data.seed=1.5", r"data\.seed=1\.5: expected a whole number >= 0"),
        ("data.train_length=abc", r"data\.train_length='abc': expected a whole number >= 1"),
        ("data.hflip_p=abc", r"data\.hflip_p='abc': expected a number in \[0, 1\]"),
        ("data.brightness=-0.2", r"data\.brightness=-0\.2: expected a number >= 0"),
        # Model and trainer values that named no key (`invalid literal for int()`), failed once the optimiser
        # was built after the set-up (warmup_steps), or in Hydra's instantiation with status 1.
        ("model.warmup_steps=abc", r"model\.warmup_steps='abc': expected a whole number >= 0"),
        ("model.encoder_depth=abc", r"model\.encoder_depth='abc': expected a whole number >= 1"),
        ("model.contact_radius_px=1.5", r"model\.contact_radius_px=1\.5: expected a whole number >= 1"),
        ("model.drop_path_rate=abc", r"model\.drop_path_rate='abc': expected a number in \[0, 1\]"),
        ("trainer.gradient_clip_val=abc", r"trainer\.gradient_clip_val='abc': expected a number >= 0"),
        ("model.channels_last=abc", r"model\.channels_last='abc': give model\.channels_last=true or"),
        ("model.freeze_encoder_bn=fasle", r"model\.freeze_encoder_bn='fasle': give .*=false"),
        ("data.pin_memory=maybe", r"data\.pin_memory='maybe': give data\.pin_memory=true"),
        ("trainer.benchmark=abc", r"trainer\.benchmark='abc': give trainer\.benchmark=true"),
    ],
)
def test_mistyped_run_values_stop_before_anything_is_rendered(
    tmp_path: Path, override: str, message: str
) -> None:
    """These used to fail in Lightning's loop or the data module after the scenes were rendered and the
    network built (25 s for the default), with a TypeError that named no key."""
    with pytest.raises(ConfigError, match=message):
        run(compose_config("train", tmp_path, [*TINY, override]))
    assert not (tmp_path / "config.yaml").exists()


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        (["trainer.enable_progress_bar=off"], "trainer.enable_progress_bar='off'"),
        (["trainer.deterministic=yes"], "trainer.deterministic='yes'"),
        (
            ["trainer=ddp", "trainer.strategy.static_graph=no"],
            "trainer.strategy.static_graph='no'",
        ),  # torch's
        (["callbacks.model_checkpoint.save_last=no"], "callbacks.model_checkpoint.save_last='no'"),
        (["logger=tensorboard", "logger.tensorboard.log_graph=on"], "logger.tensorboard.log_graph='on'"),
        (["data.pin_memory=yes"], "data.pin_memory='yes'"),
        (["+data.scene.distortion=yes"], "data.scene.distortion='yes'"),  # a synthetic scene's switch
        (["experiment=marsscapes_ai4mars", "data.cache.ai4mars=no"], "data.cache.ai4mars='no'"),
        # Not switches: a run folder's name, a scene option's word, a data module of one's own and its keys.
        (["run_name=no"], None),
        (["task_name=on"], None),
        (["data.scene.mode=off"], None),
        (["data._target_=mypkg.MyDataModule", "+data.mode=on", "data.cache_scenes=no"], None),
        (["data._target_=test_train.OwnDataModule", "+data.mode=on", "+data.shuffle=yes"], None),
    ],
)
def test_yes_no_on_off_are_refused_only_for_switches(overrides: list[str], refused: str | None) -> None:
    """yes/no/on/off (read by the config as text, which a switch reads as true) were refused for every key:
    ``run_name=no`` could not name a run, and a data module of one's own could not take ``data.mode=on``.
    They are refused where a class the config builds reads the key as true or false (a parameter that takes
    a bool, a synthetic scene's field, the sources of data.cache), naming the key;
    elsewhere they are values."""
    from hydra import compose, initialize_config_dir

    from marsunits.run_checks import check_run_values

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["model=tiny", *overrides])
    if refused is None:
        check_run_values(cfg)
        return
    key = refused.split("=", 1)[0]
    with pytest.raises(ConfigError) as said:
        check_run_values(cfg)
    assert str(said.value) == f"{refused}: give {key}=true or {key}=false (yes/no/on/off are read as text)"


class OwnDataModule(pl.LightningDataModule):
    """A data module of one's own whose ``mode`` and ``shuffle`` are words, not switches."""

    def __init__(self, mode: str = "full", shuffle: str = "epoch", **unused: Any) -> None:
        super().__init__()
        self.mode, self.shuffle = mode, shuffle


def test_a_checkpoint_monitor_the_run_never_logs_stops_before_training(tmp_path: Path) -> None:
    """``callbacks.model_checkpoint.monitor=val/mIoU`` trained a whole epoch, then Lightning's checkpoint
    stopped the run at the first validation: no best.ckpt, the epoch lost."""
    with pytest.raises(
        ConfigError, match=r"monitor=val/mIoU is not a metric .*did you mean .*monitor=val/miou\?"
    ):
        run(compose_config("train", tmp_path, [*TINY, "callbacks.model_checkpoint.monitor=val/mIoU"]))
    assert not (tmp_path / "checkpoints").exists()
    # A sweep's metric the same: each trial trained to its end, then failed with no value to optimise.
    with pytest.raises(
        ConfigError, match=r"optimized_metric=test/mIoU is not .*optimized_metric=test/miou\?"
    ):
        run(compose_config("train", tmp_path, [*TINY, "optimized_metric=test/mIoU"]))
    assert not (tmp_path / "checkpoints").exists()
    # Every metric the run logs is accepted: those of a real run's metrics.json (one source) included.
    metrics = run(
        compose_config(
            "train", tmp_path / "ok", [*TINY, "callbacks.model_checkpoint.monitor=val/boundary_f1"]
        )
    )
    assert metrics["best_ckpt"] is not None
    for name in [k for k in metrics if k.startswith("val/")]:
        cfg = OmegaConf.create({"callbacks": {"model_checkpoint": {"monitor": name}}})
        task = type("Task", (), {"hparams": {"class_names": ["smooth_volcanic", "rough_olivine", "other"]}})
        _check_monitor_is_logged(cfg, type("Data", (), {"val_names": ["synthetic"]}), task)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.val_fraction=abc", r"data\.val_fraction='abc': expected a number \(the share"),
        ("data.samples_per_epoch=abc", r"data\.samples_per_epoch='abc': expected a whole number >= 1"),
        ("data.min_labelled_fraction=abc", r"data\.min_labelled_fraction='abc': expected a number"),
    ],
)
def test_mistyped_numbers_of_a_folder_config_name_the_key(
    tmp_path: Path, override: str, message: str
) -> None:
    """data=folder: the data module's float()/int() said only "could not convert string to float: 'abc'"."""
    overrides = ["model=tiny", "logger=none", "data=folder", f"data.root={tmp_path / 'absent'}", override]
    with pytest.raises(ConfigError, match=message):
        run(compose_config("train", tmp_path, overrides))
    assert not (tmp_path / "config.yaml").exists()


def test_trainer_gpu_without_a_gpu_says_to_use_the_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU-only machine, on any machine
    with pytest.raises(
        ConfigError, match=r"trainer\.accelerator=gpu but this machine has no CUDA GPU.*trainer=cpu"
    ):
        run(compose_config("train", tmp_path, [*TINY, "trainer=gpu"]))


@pytest.mark.parametrize(
    ("cuda_build", "fix"),
    [
        ("13.0", r"or run on a machine with a CUDA GPU \(this torch is a CUDA build.*nvidia-smi"),
        (None, r"CUDA build: none\).*or install a CUDA build of PyTorch on a GPU machine"),
    ],
)
def test_trainer_gpu_without_a_gpu_gives_the_fix_of_this_torch_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cuda_build: str | None, fix: str
) -> None:
    """A CUDA build of torch on a machine with no working GPU was told to install a CUDA build, which it
    is: the way on there is a machine with a GPU (or its driver); installing is a CPU-only wheel's fix."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", cuda_build)
    with pytest.raises(ConfigError, match=fix) as refused:
        run(compose_config("train", tmp_path, [*TINY, "trainer=gpu"]))
    assert "trainer=cpu" in str(refused.value)
    if cuda_build:
        assert "install a CUDA build" not in str(refused.value)


def test_a_diverging_run_stops_with_the_reason_instead_of_reporting_success(tmp_path: Path) -> None:
    """model.lr=1e5 trained NaN weights to the end, kept them as best.ckpt and wrote metrics.json (val/loss
    null, everything predicted as one class) with exit status 0."""
    cfg = compose_config("train", tmp_path, [*TINY, "trainer.max_epochs=2", "model.lr=1e5"])
    with pytest.raises(DivergedError, match=r"loss is nan at epoch 0.*diverged \(model\.lr=100000\)"):
        run(cfg)
    assert not (tmp_path / "metrics.json").exists()
    assert not (tmp_path / "checkpoints" / "best.ckpt").exists()


def test_model_subclasses_without_the_datas_are_refused(tmp_path: Path) -> None:
    # Sub-class outputs trained on project-id masks would silently learn the wrong classes.
    cfg = compose_config("train", tmp_path, ["debug=fdr", *TINY, "model.subclasses=[0,0,1,2]"])
    with pytest.raises(ConfigError, match=r"model\.subclasses=\[0, 0, 1, 2\] but data\.subclasses=None"):
        run(cfg)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of ``model=tiny`` (no sub-classes) after one optimiser step on two random crops."""
    from torch.utils.data import DataLoader

    from conftest import one_step_trainer
    from marsunits.data.datamodule import collate_samples

    folder = tmp_path_factory.mktemp("tiny-ckpt")
    task = instantiate(compose_config("train", folder, ["model=tiny", "model.scheduler=none"]).model)
    g = torch.Generator().manual_seed(0)
    crops = [
        {"image": torch.rand(3, 32, 32, generator=g), "mask": torch.randint(0, 3, (32, 32))} for _ in "ab"
    ]
    trainer = one_step_trainer(limit_val_batches=0, default_root_dir=folder)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "You defined a `validation_step` but have no `val_dataloader`")
        trainer.fit(task, DataLoader(crops, batch_size=2, collate_fn=collate_samples))  # type: ignore[arg-type]
    trainer.save_checkpoint(folder / "tiny.ckpt")
    return folder / "tiny.ckpt"


def test_train_false_with_model_subclasses_alone_is_refused_before_the_run_folder(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """``train=false`` builds the checkpoint's architecture but ``model.subclasses``' outputs: set on the
    model alone, they were refused only in the run, once Hydra had made the run folder (some 15 s). Refused
    before it now, in the run's own line."""
    from marsunits.cli_overrides import claim_run_folder
    from marsunits.run_folder_claim import release_held_claims

    logs = tmp_path / "logs"
    evaluate = ["model=tiny", f"paths.log_dir={logs}", "train=false", f"ckpt_path={tiny_checkpoint}"]
    said = (
        "model.subclasses=[0, 0, 1, 2] but data.subclasses=None: the network's outputs must be the classes "
        "the training masks hold."
    )
    try:
        refused, _ = claim_run_folder([*evaluate, "model.subclasses=[0,0,1,2]"], CONFIG_DIR)
        assert claim_run_folder(evaluate, CONFIG_DIR)[0] is None  # the checkpoint's own classes: scored
    finally:
        release_held_claims()
    assert (refused or "").startswith(said), refused
    assert not logs.exists() or not any(logs.rglob("*")), sorted(logs.rglob("*"))


def test_train_false_on_a_checkpoint_of_other_sub_classes_is_refused_before_the_run_folder(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """A checkpoint of the project classes scored with ``experiment=marsscapes_subclasses`` (or the
    reverse): the run refused it only as it loaded the weights, after Hydra had made the run folder, as a
    network of other tensor shapes. Refused before the folder now, from the checkpoint's hyper-parameters,
    and in the run before the load, in the same words."""
    from marsunits.cli_overrides import claim_run_folder
    from marsunits.data.fake import write_fake_marsscapes
    from marsunits.run_folder_claim import release_held_claims

    root = write_fake_marsscapes(tmp_path / "marsscapes")
    logs = tmp_path / "logs"
    evaluate = [
        "model=tiny",
        "logger=none",
        "experiment=marsscapes_subclasses",
        f"data.root={root}",
        "train=false",
        f"ckpt_path={tiny_checkpoint}",
    ]
    said = (
        f"ckpt_path={tiny_checkpoint} was trained with model.subclasses=None, this run's are [0, 0, 1, 1, 1, "
        "2, 2, 2] (they follow data.subclasses): train=false builds the run's outputs and loads the "
        "checkpoint's weights into them; score it without sub-classes, data.subclass_map=null "
        "data.subclasses=null."
    )
    try:
        refused, _ = claim_run_folder([*evaluate, f"paths.log_dir={logs}"], CONFIG_DIR)
        plain = ["data.subclass_map=null", "data.subclasses=null", f"paths.log_dir={logs}"]
        assert claim_run_folder([*evaluate, *plain], CONFIG_DIR)[0] is None  # the fix it gives
    finally:
        release_held_claims()
    assert refused == said
    assert not logs.exists() or not any(logs.rglob("*")), sorted(logs.rglob("*"))
    with pytest.raises(ConfigError) as in_the_run:  # a config composed otherwise (a notebook)
        run(compose_config("train", tmp_path / "run", [*evaluate, "data.num_workers=0"]))
    assert str(in_the_run.value) == said


def test_fine_tuning_a_checkpoint_of_other_sub_classes_is_refused_before_the_run_folder(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """``init_ckpt_path=`` a checkpoint of the project classes with ``experiment=marsscapes_subclasses`` (or
    the reverse): the run refused it only as it loaded the weights, after Hydra had made the run folder.
    Refused before the folder now, from the checkpoint's hyper-parameters, and in the run before the load,
    in the same words (those of ``train=false``'s refusal, told to fine-tune)."""
    from marsunits.checkpoint_loading import load_task
    from marsunits.cli_overrides import claim_run_folder
    from marsunits.data.fake import write_fake_marsscapes
    from marsunits.model_package import write_package
    from marsunits.run_folder_claim import release_held_claims

    root = write_fake_marsscapes(tmp_path / "marsscapes")
    logs = tmp_path / "logs"
    fine_tune = [
        "model=tiny",
        "logger=none",
        "experiment=marsscapes_subclasses",
        f"data.root={root}",
        f"init_ckpt_path={tiny_checkpoint}",
    ]
    said = (
        f"init_ckpt_path={tiny_checkpoint} was trained with model.subclasses=None, this run's are [0, 0, "
        "1, 1, 1, 2, 2, 2] (they follow data.subclasses): fine-tuning builds the run's outputs and loads the "
        "checkpoint's weights into them; fine-tune it without sub-classes, data.subclass_map=null "
        "data.subclasses=null, or train from ImageNet weights (no init_ckpt_path)."
    )
    try:
        refused, _ = claim_run_folder([*fine_tune, f"paths.log_dir={logs}"], CONFIG_DIR)
        plain = ["data.subclass_map=null", "data.subclasses=null", f"paths.log_dir={logs}"]
        assert claim_run_folder([*fine_tune, *plain], CONFIG_DIR)[0] is None  # the fix it gives
        package = tmp_path / "shared_model"  # a model package: its model.json's hyper-parameters
        write_package(load_task(tiny_checkpoint), package)
        shared = [*fine_tune[:-1], f"init_ckpt_path={package}", f"paths.log_dir={logs}"]
        refused_package, _ = claim_run_folder(shared, CONFIG_DIR)
    finally:
        release_held_claims()
    assert refused == said
    assert refused_package == said.replace(str(tiny_checkpoint), str(package))
    assert not logs.exists() or not any(logs.rglob("*")), sorted(logs.rglob("*"))
    with pytest.raises(ConfigError) as in_the_run:  # a config composed otherwise (a notebook)
        run(compose_config("train", tmp_path / "run", [*fine_tune, "data.num_workers=0"]))
    assert str(in_the_run.value) == said


def test_model_subclasses_a_users_data_module_does_not_hold_are_refused_before_the_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a data module of one's own (``data._target_``) the network's sub-classes were checked against
    it only in the run, once Hydra had made the run folder: marsunits' own data module is checked before.
    Where its sub-classes are known before it is built (a subclass of marsunits' data module, or a class
    that names ``subclasses``), they are refused before the folder too, in the run's line; a class that
    takes any keyword is left to the run, which reads what it holds."""
    import sys

    from marsunits.cli_overrides import claim_run_folder
    from marsunits.run_folder_claim import release_held_claims

    name = f"own_data_{tmp_path.name}".replace("-", "_")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / f"{name}.py").write_text(
        textwrap.dedent(
            """
            import lightning.pytorch as pl

            from marsunits.data.datamodule import MarsDataModule


            class Extended(MarsDataModule):
                def __init__(self, *args, note="", **kwargs):
                    super().__init__(*args, **kwargs)


            class Named(pl.LightningDataModule):
                def __init__(self, subclasses=None, **settings):
                    super().__init__()
                    self.subclasses = subclasses


            class Opaque(pl.LightningDataModule):
                def __init__(self, **settings):
                    super().__init__()
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    logs = tmp_path / "logs"
    said = "model.subclasses=[0, 0, 1, 2] but data.subclasses=None: the network's outputs must be the classes"
    alone = "model.subclasses=[0,0,1,2]"

    def refusal(*overrides: str) -> str | None:
        try:
            return claim_run_folder(["model=tiny", f"paths.log_dir={logs}", *overrides], CONFIG_DIR)[0]
        finally:
            release_held_claims()

    try:
        for target in ("Extended", "Named"):
            refused = refusal(f"data._target_={name}.{target}", alone)
            assert (refused or "").startswith(said), (target, refused)
            assert refusal(f"data._target_={name}.{target}") is None  # the model follows the data
        assert refusal(f"data._target_={name}.Opaque", alone) is None  # what it holds: the run's to read
    finally:
        sys.modules.pop(name, None)
    assert not logs.exists() or not any(logs.rglob("*")), sorted(logs.rglob("*"))


@pytest.mark.parametrize(
    ("args", "cause", "advice"),
    [
        (["trainer.check_val_every_n_epoch=2"], "check_val_every_n_epoch=2", "lower check_val_every_n_epoch"),
        # Each of these was told to lower check_val_every_n_epoch, which was 1 already.
        (["trainer.max_epochs=0"], "trainer.max_epochs=0", "train=false ckpt_path="),
        (["+trainer.max_steps=1"], "trainer.max_steps=1", "raise trainer.max_steps"),
        (["trainer.limit_val_batches=0"], "trainer.limit_val_batches=0", "raise trainer.limit_val_batches"),
        # No training batch: nothing trained, and it too was told to lower check_val_every_n_epoch.
        # Validation ran every epoch; the checkpoint was told to keep none.
        (
            ["callbacks.model_checkpoint.save_top_k=0"],
            "callbacks.model_checkpoint.save_top_k=0",
            "save_top_k=1",
        ),
        (
            ["trainer.limit_train_batches=0", "model.scheduler=none"],
            "trainer.limit_train_batches=0",
            "train=false ckpt_path=",
        ),
    ],
)
def test_a_run_without_validation_says_its_scores_are_of_the_last_weights_and_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, args: list[str], cause: str, advice: str
) -> None:
    cfg = compose_config("train", tmp_path, [*TINY, "trainer.max_epochs=1", *args])
    with caplog.at_level("WARNING", logger="marsunits.training"):
        metrics = run(cfg)
    assert metrics["best_ckpt"] is None
    assert ("val/miou" in metrics) is ("limit_val" not in cause)  # no validation batch asked for: no val/*
    (warning,) = [r.getMessage() for r in caplog.records if "no best checkpoint" in r.getMessage()]
    assert cause in warning and advice in warning, warning
    if "check_val" not in cause:
        assert "check_val_every_n_epoch" not in warning, warning


@pytest.mark.parametrize(
    ("steps", "schedule", "when", "first"),
    [
        (1, ["trainer.check_val_every_n_epoch=1"], "after epoch 1", 2),
        (2, ["trainer.check_val_every_n_epoch=2"], "after epoch 2", 4),
        # Epochs of one batch: the first validation comes after two of them.
        (1, ["trainer.check_val_every_n_epoch=2", "trainer.limit_train_batches=1"], "after epoch 2", 2),
        # Every 3 batches across epochs: it said "after epoch None" and "past the end of epoch None".
        (
            2,
            ["trainer.check_val_every_n_epoch=null", "+trainer.val_check_interval=3"],
            "every 3 training batches: trainer.val_check_interval=3",
            3,
        ),
        # Half-way through an epoch of four batches: "after epoch 1", though it comes at step 2.
        (
            1,
            ["data.train_length=16", "+trainer.val_check_interval=0.5"],
            "trainer.val_check_interval=0.5 into epoch 1",
            2,
        ),
    ],
)
def test_a_run_stopped_by_max_steps_names_the_epoch_it_stopped_in_and_the_first_validation(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    steps: int,
    schedule: list[str],
    when: str,
    first: int,
) -> None:
    """Epoch 1 has two steps (four with ``data.train_length=16``). ``+trainer.max_steps`` stops before the
    first validation. The warning said "in epoch 2" for a run that never left epoch 1 (Lightning counts the
    epoch that max_steps ended as finished), and "after epoch N" whatever ``trainer.val_check_interval`` set
    (``after epoch None`` with ``check_val_every_n_epoch=null``). It now says when validation comes and the
    max_steps that reaches it, which, given, keeps a best checkpoint."""
    over = [*TINY, "trainer.max_epochs=3", *schedule, "test=false"]
    with caplog.at_level("WARNING", logger="marsunits.training"):
        run(compose_config("train", tmp_path / "a", [*over, f"+trainer.max_steps={steps}"]))
    (warning,) = [r.getMessage() for r in caplog.records if "no best checkpoint" in r.getMessage()]
    said = f"at step {steps}, in epoch 1, before the first validation ({when}, at step {first})"
    assert said in warning and f"raise trainer.max_steps to {first} or more" in warning, warning
    caplog.clear()
    with caplog.at_level("WARNING", logger="marsunits.training"):  # the advice, followed
        run(compose_config("train", tmp_path / "b", [*over, f"+trainer.max_steps={first}"]))
    assert not [r for r in caplog.records if "no best checkpoint" in r.getMessage()]
    assert (tmp_path / "b" / "checkpoints" / "best.ckpt").is_file()


class InterruptAtStep(pl.Callback):
    """Raises KeyboardInterrupt (what Ctrl-C does), or with ``sigterm`` Lightning's SIGTERMException (what
    its SIGTERM handler raises), after optimiser step ``step``."""

    def __init__(
        self,
        step: int,
        sigterm: bool = False,
        data_error: bool = False,
        in_validation: bool = False,
        full_disk_at_last: bool = False,
        before_step: bool = False,
        batches_passed: int = 0,
    ) -> None:
        self.step = step
        self.before_step = before_step  # stop before the step after ``step`` (a resume: before it trains)
        # With gradient accumulation, the batches at ``step`` let through before the stop (1: the second)
        self.batches_passed = batches_passed
        self.sigterm = sigterm
        self.data_error = data_error
        self.in_validation = in_validation
        self.full_disk_at_last = full_disk_at_last  # last.ckpt's write then fails as on a full disk

    def on_validation_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if self.in_validation and not trainer.sanity_checking and trainer.global_step == self.step:
            raise KeyboardInterrupt

    def _let_through(self) -> bool:
        """Whether this batch at ``step`` passes (one of the first ``batches_passed``)."""
        self.batches_passed -= 1
        return self.batches_passed >= 0

    def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
        if self.before_step and trainer.global_step == self.step and not self._let_through():
            from lightning.pytorch.utilities.exceptions import SIGTERMException

            raise SIGTERMException if self.sigterm else KeyboardInterrupt

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if (
            trainer.global_step == self.step
            and not self.in_validation
            and not self.before_step
            and not self._let_through()
        ):
            from lightning.pytorch.utilities.exceptions import SIGTERMException

            if self.data_error:  # what the loader raises when a training image vanished mid-run
                from marsunits.data.io import read_image

                read_image(Path("images/a.png"))  # ImageReadError: it was faked with a DataError
            if self.full_disk_at_last:
                from marsunits import checkpoint_io

                real_save = checkpoint_io.torch.save

                def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
                    if "last.ckpt" in str(getattr(f, "name", f)):
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    real_save(obj, f, *args, **kwargs)

                checkpoint_io.torch.save = save  # type: ignore[assignment]  # this process ends with the stop
            raise SIGTERMException if self.sigterm else KeyboardInterrupt


def _train_py(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``train.py <args>`` in a subprocess (real signals reach only it), with tests/ on its path for the
    test callbacks, no rank variables of an outer launcher, and one torch thread as this module's tests
    (``one_torch_thread``: the tiny network only loses time to intra-op threads on a 2-core machine)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "SLURM_PROCID")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "tests"), env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")  # torch's default thread count, unless this shell sets one
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "train.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=cwd,
    )


def _train_py_status(
    own_start: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *argv: str,
) -> tuple[int, str]:
    """train.py's exit status and stderr for ``argv``: through train.py itself for ``own_start`` (its start,
    wiring and status), else through its checks before Hydra in this process (:func:`train_py_checks`)."""
    if own_start:
        proc = _train_py(tmp_path, *argv)
        return proc.returncode, proc.stderr
    return train_py_checks(tmp_path, monkeypatch, capsys, *argv)


def _train_py_in_process(
    cwd: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str]:
    """``train.py <args>`` (one run, not a sweep) in this process: its checks before Hydra
    (:func:`train_py_checks`), then the run in the folder Hydra's config names (``hydra.run.dir`` as
    composed from the command line those checks hand on, relative to ``cwd``), its errors reported as
    train.py's ``main()`` reports them. Returns the exit status (0: finished) and what was said on stderr.
    Hydra's own steps (its .hydra/ record, train.log) are not taken: tests of those use :func:`_train_py`."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from marsunits.sweep_trials import run_trial

    status, said = train_py_checks(cwd, monkeypatch, capsys, *args)
    if status:
        return status, said
    argv = sys.argv[1:]  # as the checks hand it on to Hydra (a default run_name pinned)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=argv, return_hydra_config=True)
        folder = cwd / str(cfg.hydra.run.dir)  # an absolute folder stays as it is
        cfg = compose("train", overrides=[*argv, f"hydra.run.dir={folder}"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(folder)  # ${hydra:runtime.output_dir}, which only a Hydra job sets
        del cfg.hydra
    try:
        run_trial(lambda: run(cfg), cfg, prog="train.py")  # train.py's main(), as Hydra calls it
    except SystemExit as stopped:
        status = stopped.code if isinstance(stopped.code, int) else 1
    return status, said + capsys.readouterr().err


def test_an_image_named_in_latin1_bytes_without_a_mask_is_named_on_the_console_and_in_train_log(
    tmp_path: Path,
) -> None:
    """train.py on a folder whose image ``caf<0xe9>.png`` (Latin-1 bytes) has no mask: the refusal naming it
    was lost from train.log ("--- Logging error ---", a UnicodeEncodeError) and printed ``caf\\udce9`` on the
    console. Both now name it ``caf\\xe9`` as manifest.csv does, in valid UTF-8, under a strict console."""
    from marsunits.data.fake import write_fake_folder

    root = write_fake_folder(tmp_path / "data", height=64, width=64, stems=["plain_1", "plain_2"])
    write_fake_folder(root, height=64, width=64, stems=[os.fsdecode(b"caf\xe9")])
    (root / "masks" / os.fsdecode(b"caf\xe9.png")).unlink()
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "SLURM_PROCID")}
    env["PYTHONIOENCODING"] = "utf-8:strict"  # a terminal in en_US.UTF-8 (C.UTF-8 would be lenient)
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "train.py"), *folder_run(root), "logger=csv"]
        + [f"hydra.run.dir={run_dir}"],
        capture_output=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    err = proc.stderr.decode("utf-8")  # valid UTF-8, or this raises
    assert proc.returncode == 2, err[-3000:]
    assert "Logging error" not in err, err[-3000:]
    said = "1 image in " + str(root / "images") + " has no mask in " + str(root / "masks") + ": caf\\xe9."
    assert f"train.py: error: Dataset 'folder': {said}" in err, err[-3000:]
    logged = (run_dir / "train.log").read_bytes().decode("utf-8")
    assert said in logged, logged


def test_metrics_json_of_a_run_folder_named_in_latin1_bytes_is_valid_utf8_and_names_its_files(
    tmp_path: Path,
) -> None:
    """A run folder under a Latin-1 name (``lat<0xe9>n``, an old archive's folder): metrics.json wrote its
    checkpoint paths as ``"lat\\udce9n"``, lone surrogates that strict JSON readers refuse or turn into
    U+FFFD, so no tool but Python found best.ckpt from it. Now the file is valid UTF-8, such a path is
    written ``lat\\xe9n`` as manifest.csv writes names, its key listed in ``escaped_paths``, and
    :func:`read_metrics` (and a resume, which reads ``init_ckpt`` back) gets the real paths again."""
    folder = tmp_path / os.fsdecode(b"lat\xe9n")

    def in_folder(name: str) -> Any:  # Hydra's override grammar cannot spell the folder: set after composing
        cfg = compose_config("train", tmp_path / name, [*TINY, "trainer.max_epochs=1", "test=false"])
        cfg.paths.output_dir = str(folder / name)
        return cfg

    first = run(in_folder("first"))
    assert first["best_ckpt"] == str(folder / "first" / "checkpoints" / "best.ckpt")
    cfg = in_folder("second")
    cfg.init_ckpt_path = first["best_ckpt"]
    second = run(cfg)
    written = (folder / "second" / "metrics.json").read_bytes().decode("utf-8")  # strict: raises if not
    assert "\\udc" not in written, written
    from marsunits.training import read_metrics  # where docs/training.md names it

    raw = json.loads(written)
    assert sorted(raw["escaped_paths"]) == ["best_ckpt", "init_ckpt", "last_ckpt"]
    assert raw["best_ckpt"] == str(folder / "second" / "checkpoints" / "best.ckpt").replace("\udce9", "\\xe9")
    recorded = read_metrics(folder / "second")
    assert "escaped_paths" not in recorded
    for key in ("best_ckpt", "last_ckpt", "init_ckpt"):
        assert recorded[key] == second[key] and Path(recorded[key]).is_file(), key
    assert recorded["init_ckpt"] == first["best_ckpt"]
    assert read_metrics(folder / "second" / "metrics.json") == recorded  # the file, or its run folder

    # A resume of the fine-tuned run reads init_ckpt back from that metrics.json (the ignored one is not it).
    again = in_folder("second")
    again.ckpt_path = str(folder / "second" / "checkpoints" / "last.ckpt")
    again.init_ckpt_path = str(folder / "first" / "checkpoints" / "last.ckpt")
    assert run(again)["init_ckpt"] == first["best_ckpt"]
    assert read_metrics(folder / "second")["init_ckpt"] == first["best_ckpt"]


def _real_sigterm_config(run_dir: Path, callback: str, *overrides: str):
    """The shrunk training config (:data:`TINY`, a CSV logger) of a test of a real SIGTERM, rooted at
    ``run_dir``, with ``test_train.<callback>`` as the callback ``stop`` that sends it; ``overrides`` come
    after (``+callbacks.stop.<option>=...`` among them)."""
    return compose_config(
        "train",
        run_dir,
        [*TINY, "logger=csv", f"+callbacks.stop._target_=test_train.{callback}", *overrides],
    )


@contextlib.contextmanager
def _as_train_py_meets_a_real_sigterm(run_dir: Path) -> Iterator[None]:
    """For the ``with`` block, this process as train.py's run meets a real SIGTERM: the SIGTERM handler in
    place (train.py adds none) fails the test if the run installed none of its own (SIGTERM's default would
    end pytest), and the root logger writes ``run_dir/train.log``, as Hydra's, which train.py has. Both are
    undone when the block ends, however it ends."""

    def not_handled(signum: int, frame: object) -> None:
        raise AssertionError("SIGTERM reached the handler in place before the run: the run installed none")

    previous = signal.signal(signal.SIGTERM, not_handled)
    log_file = logging.FileHandler(run_dir / "train.log")
    logging.getLogger().addHandler(log_file)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        logging.getLogger().removeHandler(log_file)
        log_file.close()


class SigtermAt(pl.Callback):
    """Sends this process a real SIGTERM (what ``kill`` or a scheduler's time limit does) in the callback's
    ``setup`` (inside ``fit``, before Lightning installs its SIGTERM handler), or after optimiser step
    ``step``."""

    def __init__(self, step: int | None = None) -> None:
        self.step = step

    def setup(self, trainer: pl.Trainer, *args: object, **kwargs: object) -> None:
        if self.step is None:
            os.kill(os.getpid(), signal.SIGTERM)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_real_sigterm_is_reported_in_the_set_up_and_saves_last_ckpt_in_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGTERM before Lightning's handler was installed (the set-up: rendering scenes, reading the data)
    ended train.py with no word on the screen or in train.log. Now it is reported as in training; and in
    training Lightning's own handler still stops at a step boundary and last.ckpt is saved there.

    A real SIGTERM to this process, as train.py's run meets it (its handlers are the run's own: train.py
    adds none); that train.py's process ends with status 143 on a stop in training is checked through
    train.py itself by :func:`test_an_interrupted_sweep_trial_is_told_how_to_go_on_alone`."""
    for name, extra in (("setup", []), ("step", ["+callbacks.stop.step=3"])):
        run_dir = tmp_path / name
        cfg = _real_sigterm_config(run_dir, "SigtermAt", "trainer.max_epochs=2", "test=false", *extra)
        with _as_train_py_meets_a_real_sigterm(run_dir), pytest.raises(SystemExit) as stopped:
            report_user_errors(lambda: run(cfg), prog="train.py")  # noqa: B023 - called at once
        said = capsys.readouterr().err
        assert stopped.value.code == 143, said[-3000:]
        assert "train.py: terminated (SIGTERM)" in said
        assert "terminated (SIGTERM)" in (run_dir / "train.log").read_text()
        last = run_dir / "checkpoints" / "last.ckpt"
        if name == "setup":
            assert not last.exists()
        else:
            assert "terminated (SIGTERM) at epoch 1, optimiser step 3" in said
            assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 3


class SigtermInTest(pl.Callback):
    """Sends this process a real SIGTERM after the first test batch (Lightning stops before the next)."""

    def on_test_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.test_loop.batch_progress.current.completed == 0:  # counted after this hook
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_real_sigterm_while_testing_the_kept_checkpoint_is_reported_not_a_success(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Lightning stops its test (and validation) loop on SIGTERM with its SIGTERMException, a SystemExit
    without a code: train.py ended with status 0, wrote no metrics.json and said nothing, as if finished.

    A real SIGTERM to this process, as train.py's run meets it, with train.py's report of it (a train.py
    start costs seconds of imports; that train.py's process ends with the status of that report, 143, is
    :func:`test_an_interrupted_sweep_trial_is_told_how_to_go_on_alone`'s, through train.py itself)."""
    from marsunits.sweep_trials import run_trial

    run_dir = tmp_path / "run"
    cfg = _real_sigterm_config(
        run_dir,
        "SigtermInTest",
        "data.val_batch_size=1",  # several test batches: Lightning does not stop after the last one
        "trainer.max_epochs=1",
    )
    with _as_train_py_meets_a_real_sigterm(run_dir):
        capsys.readouterr()
        with pytest.raises(SystemExit) as stopped:
            run_trial(lambda: run(cfg), cfg, prog="train.py")  # train.py's main(), as Hydra calls it
    said = capsys.readouterr().err
    assert stopped.value.code == 143, said[-3000:]
    assert "train.py: terminated (SIGTERM)" in said
    assert "terminated (SIGTERM)" in (run_dir / "train.log").read_text()
    assert not (run_dir / "metrics.json").exists()


class CtrlCAfterTraining(pl.Callback):
    """Raises KeyboardInterrupt (what Ctrl-C does) while the kept checkpoint is validated or tested."""

    def __init__(self, stage: str) -> None:
        self.stage = stage

    def on_validation_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if self.stage == "validate" and trainer.state.fn == "validate":
            raise KeyboardInterrupt

    def on_test_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if self.stage == "test":
            raise KeyboardInterrupt


@pytest.mark.parametrize("stage", ["validate", "test"])
def test_ctrl_c_while_the_kept_checkpoint_is_validated_or_tested_is_an_interrupt(
    stage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Lightning ends validate and test on Ctrl-C with a plain SystemExit(1), turned into an interrupt in
    fit only: train.py exited with status 1, without its one line or the reason in train.log."""
    import signal

    stop = ["+callbacks.stop._target_=test_train.CtrlCAfterTraining", f"+callbacks.stop.stage={stage}"]
    cfg = compose_config("train", tmp_path, [*TINY, "trainer.max_epochs=1", *stop])
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit) as stopped:
            report_user_errors(lambda: run(cfg), prog="train.py")
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C while it shuts down
    assert stopped.value.code == 130
    assert "train.py: interrupted (Ctrl-C)" in capsys.readouterr().err
    assert not (tmp_path / "metrics.json").exists()


def test_an_interrupted_sweep_trial_is_told_how_to_go_on_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sweep stopped in a trial said "run the same command with ckpt_path=last", which refused every trial
    (it looks for runs of the job under logs/train/*/, not in the sweep's folders). The advice now is the
    trial's own command in its own folder, and it resumes there (the sweep through train.py; the advice
    followed in this process, train.py's checks before Hydra included)."""
    import shlex

    logs = tmp_path / "logs"
    stop = ["+callbacks.stop._target_=test_train.InterruptAtStep", "+callbacks.stop.step=3"]
    common = [*TINY, "trainer.max_epochs=2", "test=false", "logger=csv", f"paths.log_dir={logs}"]
    sweep = _train_py(tmp_path, "-m", *common, *stop, "+callbacks.stop.sigterm=true", "seed=1,2")
    assert sweep.returncode == 143, sweep.stderr[-3000:]
    (said,) = [ln for ln in sweep.stderr.splitlines() if "this trial alone to go on" in ln]
    # The trial's line and the sweep's, which says what became of each trial; not a third, "terminated
    # (SIGTERM); finished outputs are kept", between them.
    (sweep_dir,) = (logs / "train").glob("multirun-*")
    assert [ln for ln in sweep.stderr.splitlines() if ln.startswith("train.py:")] == [
        said,
        "train.py: terminated (SIGTERM) in trial 0 of the sweep; no trial finished; stopped: trial 0 "
        f"(folder 0 in {sweep_dir}); not started: the sweep's trials after trial 0, if any",
    ], sweep.stderr[-3000:]
    command = said.split("to go on: python train.py ", 1)[1].split(" (the sweep's own command", 1)[0]
    args = shlex.split(command)
    (trial_dir,) = [a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir=")]
    assert Path(trial_dir).parent.parent == logs / "train" and "seed=1" in args and "ckpt_path=last" in args
    status, err = _train_py_in_process(tmp_path, monkeypatch, capsys, *args)  # the advice followed
    assert status == 0, err[-3000:]
    metrics = json.loads((Path(trial_dir) / "metrics.json").read_text())
    assert metrics["seconds_total"] > metrics["seconds"]  # a run in two parts: resumed in the trial folder


class SignalAtJobEnd(Callback):
    """A Hydra callback (``+hydra.callbacks.stop._target_=test_train.SignalAtJobEnd``) that sends this process
    the signal ``sig`` once Hydra has ended job ``after`` of a sweep, before the next job starts."""

    def __init__(self, sig: str, after: int) -> None:
        self.sig, self.after = getattr(signal, sig), after

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        if config.hydra.job.num == self.after:
            os.kill(os.getpid(), self.sig)


@pytest.mark.slow
def test_a_sigterm_between_two_trials_of_a_sweep_ends_it_in_one_line(tmp_path: Path) -> None:
    """A SIGTERM after a trial of a sweep ended and before the next began (a scheduler's time limit) found no
    handler in train.py (training installs its own around a run only): the process ended at once, status
    143 without a word on the trials run. One line now names them and says the rest did not start.

    ``slow`` (8 s: real trials of the tiny network): the default suite has the same stop, grid and Optuna,
    Ctrl-C and SIGTERM, through an app that ends as train.py does (its ``quiet_interrupt_at_start``,
    ``stopped_sweep`` and ``end_sweep``) without Lightning's imports,
    ``test_tracking.py::test_a_sweep_stopped_between_two_trials_says_which_finished``."""
    logs = tmp_path / "logs"
    stop = ["+hydra.callbacks.stop._target_=test_train.SignalAtJobEnd", "+hydra.callbacks.stop.sig=SIGTERM"]
    common = [*TINY, "logger=csv", f"paths.log_dir={logs}", *stop, "+hydra.callbacks.stop.after=0"]
    sweep = _train_py(tmp_path, "-m", *common, "data.crop_size=100,64")  # trial 0 fails at once
    assert sweep.returncode == 143, sweep.stderr[-3000:]
    assert "Warning" not in sweep.stderr and "Traceback" not in sweep.stderr, sweep.stderr[-3000:]
    last = sweep.stderr.rstrip().splitlines()[-1]
    assert last.startswith(
        "train.py: terminated (SIGTERM) between two trials of the sweep, after trial 0; no trial finished; "
        "failed, with its error above: trial 0 ("
    ), sweep.stderr[-3000:]
    assert (
        last.endswith("); not started: the sweep's trials after trial 0, if any")
        and "data.crop_size=100" in last
    )
    (sweep_dir,) = (logs / "train").glob("multirun-*")
    assert [p.name for p in sweep_dir.iterdir() if p.is_dir()] == ["0"]  # trial 1 never started


def test_a_sweep_trial_stopped_without_last_ckpt_is_told_to_go_on_alone_from_best_ckpt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sweep trial stopped where no last.ckpt could be written (a full disk; save_last=false) said "run the
    same command with ckpt_path=<the trial's best.ckpt>": the sweep's command, which would resume every
    trial from that one trial's checkpoint. The advice is the trial's own command, and it finishes there.
    Trial 0 of ``-m ... seed=1,2`` runs in this process under its job's Hydra config as Hydra's launcher
    sets it (multirun, job 0, the trial's overrides, its folder <sweep dir>/0): a sweep started through
    train.py costs seconds of imports, and a real sweep's trial stopped through train.py, told the same
    advice in its ckpt_path=last form, is :func:`test_an_interrupted_sweep_trial_is_told_how_to_go_on_alone`.
    The advice is followed in this process, train.py's checks included."""
    import shlex

    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict

    from marsunits import checkpoint_io

    logs = tmp_path / "logs"
    stop = ["+callbacks.stop._target_=test_train.InterruptAtStep", "+callbacks.stop.step=3"]
    common = [*TINY, "trainer.max_epochs=2", "test=false", "logger=csv", f"paths.log_dir={logs}"]
    no_last = ["callbacks.model_checkpoint.save_last=false", "+callbacks.stop.full_disk_at_last=true"]
    job = [*common, *stop, *no_last, "+callbacks.stop.sigterm=true", "seed=1"]  # trial 0 of seed=1,2
    folder = logs / "train" / "multirun-2026-12-06_12-00-00" / "0"
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*job, f"hydra.sweep.dir={folder.parent}"], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.mode, cfg.hydra.job.num = RunMode.MULTIRUN, 0
        cfg.hydra.runtime.output_dir = str(folder)
    assert list(cfg.hydra.overrides.task) == job  # the job's overrides, as the launcher gives them
    hydra = HydraConfig.instance()
    before = hydra.cfg
    hydra.set_config(cfg)
    folder.mkdir(parents=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(folder)  # ${hydra:runtime.output_dir}, which only a Hydra job sets
        del cfg.hydra
    real_save = checkpoint_io.torch.save
    capsys.readouterr()
    try:
        with pytest.raises(SystemExit) as stopped:
            report_user_errors(lambda: run(cfg), prog="train.py")  # the trial, as run_trial runs it
    finally:
        checkpoint_io.torch.save = real_save  # the stop's full disk, which a train.py process ends with
        hydra.cfg = before  # no sweep for the tests after this one
    err = capsys.readouterr().err
    assert stopped.value.code == 143, err[-3000:]
    (said,) = [ln for ln in err.splitlines() if "optimiser step 3" in ln]
    assert "the same command with" not in said, said
    command = said.split("to go on: python train.py ", 1)[1].split(" (the sweep's own command", 1)[0]
    args = shlex.split(command)
    (trial_dir,) = [a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir=")]
    assert Path(trial_dir) == folder, args
    assert f"ckpt_path={Path(trial_dir) / 'checkpoints' / 'best.ckpt'}" in args and "seed=1" in args, args
    resumed = [a for a in args if not a.startswith("+callbacks.stop")]
    status, err = _train_py_in_process(tmp_path, monkeypatch, capsys, *resumed)
    assert status == 0, err[-3000:]
    metrics = json.loads((Path(trial_dir) / "metrics.json").read_text())
    assert metrics["seconds_total"] > metrics["seconds"]  # a run in two parts: resumed in the trial folder


def test_a_time_named_run_stopped_without_last_ckpt_goes_on_from_best_ckpt_in_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run under the time-made name stopped where no last.ckpt could be written was told "the same command
    with ckpt_path=<its best.ckpt>": a new time-named folder, the stopped run's left unfinished beside it.
    As for last.ckpt, the advice pins the run's name, and followed literally it finishes the run there.
    Stopped and gone on in this process, through train.py's checks before Hydra, which pin the time-made
    name (a train.py start costs seconds of imports; a stop in training through train.py itself, status
    143 and its advice: :func:`test_an_interrupted_sweep_trial_is_told_how_to_go_on_alone`)."""
    import shlex

    from marsunits import checkpoint_io

    logs = tmp_path / "logs"
    common = [*TINY, "trainer.max_epochs=2", "test=false", "logger=csv", f"paths.log_dir={logs}"]
    common.append("callbacks.model_checkpoint.save_last=false")
    stop = ["+callbacks.stop._target_=test_train.InterruptAtStep", "+callbacks.stop.step=3"]
    real_save = checkpoint_io.torch.save
    try:
        status, err = _train_py_in_process(
            tmp_path,
            monkeypatch,
            capsys,
            *common,
            *stop,
            "+callbacks.stop.sigterm=true",
            "+callbacks.stop.full_disk_at_last=true",
        )
    finally:
        checkpoint_io.torch.save = real_save  # the stop's full disk, which a train.py process ends with
    assert status == 143, err[-3000:]
    assert "train.py: terminated (SIGTERM)" in err, err[-3000:]
    (said,) = [ln for ln in err.splitlines() if "optimiser step 3" in ln]
    (folder,) = (logs / "train").iterdir()
    given = said.split("run the same command with ", 1)[1].split(" to go on from it", 1)[0]
    assert shlex.split(given) == [
        f"run_name={folder.name}",
        f"ckpt_path={folder / 'checkpoints' / 'best.ckpt'}",
    ]
    status, err = _train_py_in_process(tmp_path, monkeypatch, capsys, *common, *shlex.split(given))
    assert status == 0, err[-3000:]
    assert [folder] == list((logs / "train").iterdir())  # in the run's own folder
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["seconds_total"] > metrics["seconds"]  # a run in two parts


#: Gradients accumulated over 2 batches, 4 batches an epoch (2 optimiser steps).
ACCUMULATE_2 = ["+trainer.accumulate_grad_batches=2", "data.train_length=16"]


@pytest.mark.parametrize(
    "where",
    [
        ["+callbacks.stop.before_step=true"],  # in a batch before its step (loading it, the forward pass)
        ["+callbacks.stop.before_step=false"],  # at a batch's end
        ["+callbacks.stop.in_validation=true", "callbacks.stop.step=2"],  # in the epoch-end validation
        # Two batches a step (4 an epoch): in the batch that steps, before its step; in the one before it.
        [*ACCUMULATE_2, "+callbacks.stop.before_step=true", "+callbacks.stop.batches_passed=1"],
        [*ACCUMULATE_2, "+callbacks.stop.before_step=true"],
    ],
)
def test_a_run_resumed_after_ctrl_c_logs_its_metrics_at_the_steps_of_a_run_never_stopped(
    tmp_path: Path, where: list[str]
) -> None:
    """A run stopped by Ctrl-C and resumed with ``ckpt_path=last`` logged every later metric one step to the
    right of an uninterrupted run's (the CSV's and W&B's ``step``: validations at 8, 12, 16 for 7, 11, 15),
    one more step for each stop: Lightning adds one to its logging counter on a restart, as for its own
    checkpoints, saved before a batch is counted, while the checkpoint written at the stop had counted it.
    With gradient accumulation Lightning adds it only when the batch cut short is one that steps: a stop
    there logged one step to the right, as before."""
    import csv
    import signal

    accumulating = [o for o in where if o in ACCUMULATE_2]
    where = [o for o in where if o not in ACCUMULATE_2]
    common = [
        *TINY,
        *accumulating,
        "trainer.max_epochs=3",
        "test=false",
        "logger=csv",
        "trainer.log_every_n_steps=1",
    ]

    def logged(folder: Path) -> list[tuple[str, str, str]]:
        rows = []
        for table in sorted(folder.glob("csv/version_*/metrics.csv")):
            with table.open() as fh:
                for row in csv.DictReader(fh):
                    for key in ("val/miou", "train/loss"):
                        if row.get(key):
                            rows.append((key, row["epoch"], row["step"]))
        return sorted(set(rows))

    run(compose_config("train", tmp_path / "whole", common))
    stop = ["+callbacks.stop._target_=test_train.InterruptAtStep", "+callbacks.stop.step=3", *where]
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(KeyboardInterrupt):
            run(compose_config("train", tmp_path / "parts", [*common, *stop]))
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C while it shuts down
    run(compose_config("train", tmp_path / "parts", [*common, "ckpt_path=last"]))
    whole, parts = logged(tmp_path / "whole"), logged(tmp_path / "parts")
    assert [r for r in parts if r[0] == "val/miou"] == [r for r in whole if r[0] == "val/miou"]
    assert set(parts) <= set(whole), sorted(set(parts) - set(whole))


def test_ctrl_c_saves_last_ckpt_where_lightning_renamed_the_private_names_of_its_logging_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The logging step saved at a Ctrl-C reads Lightning's private ``_should_accumulate()`` (2.6). Where a
    Lightning release has it no more, its ``AttributeError`` was taken for a failed write: no last.ckpt at
    step 3, only the epoch-end one at step 2 and a line blaming the save. Now the step is saved as it stands,
    with a warning naming the name and the Lightning version."""
    import signal

    from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop

    from marsunits.interrupt_checkpoint import InterruptCheckpoint

    real = InterruptCheckpoint.on_exception

    def renamed_then(self: InterruptCheckpoint, trainer: pl.Trainer, *args: Any) -> None:
        # Training has stopped: from here the loop is one of a Lightning without the name.
        monkeypatch.delattr(_TrainingEpochLoop, "_should_accumulate")
        real(self, trainer, *args)

    monkeypatch.setattr(InterruptCheckpoint, "on_exception", renamed_then)
    stop = ["+callbacks.stop._target_=test_train.InterruptAtStep", "+callbacks.stop.step=3"]
    # In a batch before its step: the case whose logging step is saved one lower.
    cfg = compose_config(
        "train", tmp_path, [*TINY, "trainer.max_epochs=2", *stop, "+callbacks.stop.before_step=true"]
    )
    handler = signal.getsignal(signal.SIGINT)
    try:
        with (
            caplog.at_level("WARNING", logger="marsunits.interrupt_checkpoint"),
            pytest.raises(KeyboardInterrupt),
        ):
            run(cfg)
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C while it shuts down
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == 3  # the epoch-end last.ckpt held step 2
    (warning,) = [r.getMessage() for r in caplog.records if "_should_accumulate()" in r.getMessage()]
    assert f"Lightning {pl.__version__}'s training loop has no _should_accumulate()" in warning
    assert "last.ckpt keeps its logging step as it stands" in warning


def test_the_logging_step_saved_at_a_stop_falls_back_on_each_private_name_lightning_lacks(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Stopped in a batch before its step, the logging step is saved one lower and put back after; with
    either private name gone from Lightning's loop it is saved as it stands, with a warning naming it."""
    from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop

    from marsunits.interrupt_checkpoint import _logging_step_as_lightning_restores_it

    def warnings_said() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "marsunits.interrupt_checkpoint"]

    def stopped_in_a_batch() -> tuple[pl.Trainer, Any]:
        trainer = pl.Trainer(
            accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_checkpointing=False
        )
        loop = trainer.fit_loop.epoch_loop
        for counter in (loop.batch_progress.total, loop.batch_progress.current):
            counter.ready, counter.started, counter.processed, counter.completed = 4, 4, 3, 3
        loop._batches_that_stepped = 3
        return trainer, loop

    trainer, loop = stopped_in_a_batch()
    with caplog.at_level("WARNING", logger="marsunits.interrupt_checkpoint"):
        with _logging_step_as_lightning_restores_it(trainer):
            assert loop._batches_that_stepped == 2
        assert loop._batches_that_stepped == 3
        assert not warnings_said()

        trainer, loop = stopped_in_a_batch()
        del loop._batches_that_stepped  # (a Lightning that renamed it would not read it either)
        with _logging_step_as_lightning_restores_it(trainer):
            assert not hasattr(loop, "_batches_that_stepped")
        monkeypatch.delattr(_TrainingEpochLoop, "_should_accumulate")
        trainer, loop = stopped_in_a_batch()
        with _logging_step_as_lightning_restores_it(trainer):
            assert loop._batches_that_stepped == 3
        assert loop._batches_that_stepped == 3
    said = warnings_said()
    assert len(said) == 2 and all("last.ckpt keeps its logging step as it stands" in w for w in said), said
    assert "training loop has no _batches_that_stepped (" in said[0]
    assert "training loop has no _should_accumulate() (" in said[1]


def test_ctrl_c_during_training_saves_last_ckpt_and_says_how_to_go_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Lightning exits with status 1 after Ctrl-C and keeps only the checkpoints written so far (up to 49
    optimiser steps back); the run now saves last.ckpt where it stopped and reports an interrupt."""
    import signal

    stop = ["+callbacks.stop._target_=test_train.InterruptAtStep", "+callbacks.stop.step=3"]
    cfg = compose_config("train", tmp_path, [*TINY, "trainer.max_epochs=2", *stop])  # 2 steps per epoch
    handler = signal.getsignal(signal.SIGINT)
    log_file = logging.FileHandler(tmp_path / "train.log")  # as Hydra's, which train.py has
    logging.getLogger().addHandler(log_file)
    try:
        with pytest.raises(KeyboardInterrupt):
            run(cfg)
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C while it shuts down
        logging.getLogger().removeHandler(log_file)
        log_file.close()
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == 3  # the epoch-end last.ckpt held step 2
    said = capsys.readouterr().err
    assert "interrupted (Ctrl-C) at epoch 1, optimiser step 3" in said and "ckpt_path=last to go on" in said
    # train.log says how to go on too (it held only the console's second line).
    assert "optimiser step 3; saved" in (tmp_path / "train.log").read_text()

    # SIGTERM (kill, a scheduler's pre-emption or time limit) exited with status 0, as if the run had
    # finished, and kept only the recovery checkpoint; a training image that became unreadable mid-run lost
    # the same steps, and nothing said that the run can go on once the data is fixed. Now both save where
    # they stopped and say so.
    for option, status, said_first, said_last in (
        (
            "sigterm",
            143,
            "terminated (SIGTERM) at epoch 1, optimiser step 3",
            "train.py: terminated (SIGTERM)",
        ),
        (
            "data_error",
            2,
            "stopped by the error below at epoch 1, optimiser step 3",
            "train.py: error: images/a.png",
        ),
    ):
        folder = tmp_path / option
        cfg = compose_config(
            "train", folder, [*TINY, "trainer.max_epochs=2", *stop, f"+callbacks.stop.{option}=true"]
        )
        with pytest.raises(SystemExit) as stopped:
            report_user_errors(lambda: run(cfg), prog="train.py")  # noqa: B023 - called at once
        assert stopped.value.code == status
        saved = torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
        assert saved["global_step"] == 3
        said = capsys.readouterr().err
        assert said_first in said and said_last in said and "ckpt_path=last to go on" in said
        assert "interrupted (Ctrl-C)" not in said
    assert "train.py: error: images/a.png: file not found" in said


@pytest.mark.parametrize(
    ("option", "status", "how"),
    [("false", 130, "interrupted (Ctrl-C)"), ("true", 143, "terminated (SIGTERM)")],
)
def test_a_stop_in_training_is_said_in_one_line(
    option: str,
    status: int,
    how: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Ctrl-C or SIGTERM in training printed two lines: the step reached, last.ckpt saved and how to go on,
    then ``train.py: interrupted (Ctrl-C); finished outputs are kept``, which said less and came last. The
    README promises one line: the first alone, status 130 or 143 as before. A stop before the first step (no
    last.ckpt saved, so nothing said on it) still gets its one line."""
    logs = tmp_path / "logs"
    common = [*TINY, "trainer.max_epochs=2", "test=false", f"paths.log_dir={logs}"]
    stop = ["+callbacks.stop._target_=test_train.InterruptAtStep", f"+callbacks.stop.sigterm={option}"]
    handler = signal.getsignal(signal.SIGINT)
    log_file = logging.FileHandler(tmp_path / "train.log")  # as Hydra's, which train.py has
    logging.getLogger().addHandler(log_file)
    try:
        got, err = _train_py_in_process(
            tmp_path, monkeypatch, capsys, *common, *stop, "+callbacks.stop.step=3", "run_name=mid"
        )
        said = [ln for ln in err.splitlines() if ln.startswith("train.py:")]
        assert got == status, err[-3000:]
        assert len(said) == 1, said
        assert said[0].startswith(f"train.py: {how} at epoch 1, optimiser step 3; saved "), said
        assert said[0].endswith("ckpt_path=last to go on."), said
        logged = (tmp_path / "train.log").read_text()
        assert "optimiser step 3; saved" in logged and "finished outputs are kept" not in logged

        # Stopped before its first step: no last.ckpt, and the command's own line is the one.
        first = [*stop, "+callbacks.stop.step=0", "+callbacks.stop.before_step=true", "run_name=start"]
        got, err = _train_py_in_process(tmp_path, monkeypatch, capsys, *common, *first)
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C while it shuts down
        logging.getLogger().removeHandler(log_file)
        log_file.close()
    said = [ln for ln in err.splitlines() if ln.startswith("train.py:")]
    assert got == status, err[-3000:]
    assert said == [f"train.py: {how}; finished outputs are kept"], said
    assert not (logs / "train" / "start" / "checkpoints" / "last.ckpt").exists()


def test_a_stop_while_the_training_scenes_render_says_how_the_run_goes_on(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """train.py's default run pre-renders its 1,792 synthetic training scenes after Lightning's "Loading
    `train_dataloader`" (measured: 45 s on 2 idle cores, 163 s on busy ones), with no log line all that
    time, and a Ctrl-C there said only "interrupted (Ctrl-C); finished outputs are kept". The render is
    logged before it starts, and a stop there says so in one line with how the run goes on: the same
    command again for a run that had not trained, the resume for one with a last.ckpt of an earlier part.
    (The stop is raised where the render's wait is; the render itself runs in this process.)"""
    from marsunits.data import datasets

    real_fill = datasets.SceneDataset.fill_cache

    def stopped_by(stop: BaseException) -> Any:
        def fill_cache(self: Any, processes: int, first: int | None = None) -> int:
            raise stop

        return fill_cache

    logs = tmp_path / "logs"
    common = [*TINY, "data.render_processes=2", "test=false", f"paths.log_dir={logs}", "run_name=r"]
    handler = signal.getsignal(signal.SIGINT)
    try:
        with monkeypatch.context() as patch, caplog.at_level(logging.INFO, "marsunits.data.datamodule"):
            patch.setattr(datasets.SceneDataset, "fill_cache", stopped_by(KeyboardInterrupt()))
            status, err = _train_py_in_process(tmp_path, monkeypatch, capsys, *common, "trainer.max_epochs=1")
        assert "rendering 8 training scenes in 2 processes before the first epoch" in caplog.text
        said = [ln for ln in err.splitlines() if ln.startswith("train.py:")]
        assert status == 130, err[-3000:]
        assert said == [
            "train.py: interrupted (Ctrl-C) while rendering the 8 training scenes, before the first step; "
            "nothing was trained yet: run the same command again to start the run."
        ], said

        with monkeypatch.context() as patch:  # as it says: the same command trains the run
            patch.setattr(
                datasets.SceneDataset,
                "fill_cache",
                lambda self, processes, first=None: real_fill(self, 1, first),
            )
            status, err = _train_py_in_process(tmp_path, monkeypatch, capsys, *common, "trainer.max_epochs=1")
        assert status == 0, err[-3000:]

        with monkeypatch.context() as patch:  # its continuation, stopped in the render by SIGTERM
            patch.setattr(datasets.SceneDataset, "fill_cache", stopped_by(TerminatedError()))
            status, err = _train_py_in_process(
                tmp_path, monkeypatch, capsys, *common, "trainer.max_epochs=2", "ckpt_path=last"
            )
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C while it shuts down
    last = logs / "train" / "r" / "checkpoints" / "last.ckpt"
    said = [ln for ln in err.splitlines() if ln.startswith("train.py:")]
    assert status == 143, err[-3000:]
    assert said == [
        "train.py: terminated (SIGTERM) while rendering the 8 training scenes, before the first step; "
        f"{last}, saved earlier in the run, is kept. Run the same command with ckpt_path=last to go on "
        "from it."
    ], said


def test_a_stop_while_one_training_scene_renders_says_it_in_the_singular(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Of one scene to render, the log read "rendering 1 training scenes in 2 processes" and the stop's line
    "while rendering the 1 training scenes"."""
    from marsunits.data import datasets

    def fill_cache(self: Any, processes: int, first: int | None = None) -> int:
        raise KeyboardInterrupt

    common = [*TINY, "data.train_length=1", "data.render_processes=2", "test=false", "trainer.max_epochs=1"]
    handler = signal.getsignal(signal.SIGINT)
    try:
        with monkeypatch.context() as patch, caplog.at_level(logging.INFO, "marsunits.data.datamodule"):
            patch.setattr(datasets.SceneDataset, "fill_cache", fill_cache)
            status, err = _train_py_in_process(tmp_path, monkeypatch, capsys, *common)
    finally:
        signal.signal(signal.SIGINT, handler)
    assert status == 130, err[-3000:]
    assert "rendering 1 training scene in 2 processes before the first epoch" in caplog.text
    said = [ln for ln in err.splitlines() if ln.startswith("train.py:")]
    assert said == [
        "train.py: interrupted (Ctrl-C) while rendering a training scene, before the first step; nothing was "
        "trained yet: run the same command again to start the run."
    ], said


@pytest.mark.parametrize(
    ("sigterm", "then", "status", "how"),
    [
        (False, TerminatedError, 130, "interrupted (Ctrl-C)"),
        (True, KeyboardInterrupt, 143, "terminated (SIGTERM)"),
    ],
)
def test_a_second_stop_while_the_run_closes_keeps_the_status_its_line_says(
    sigterm: bool,
    then: type[BaseException],
    status: int,
    how: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A Ctrl-C said in train.py's line (the step, last.ckpt, ckpt_path=last), then a SIGTERM while the
    loggers closed (``wandb.finish`` uploading; a scheduler's time limit), exited with 143 under the line
    saying Ctrl-C; a SIGTERM then a Ctrl-C, with 130 under the line saying SIGTERM. The status is the one
    of the stop the line says, and that line is still train.py's only one."""
    import marsunits.training as training

    closing = training.finish_loggers

    def stopped_while_closing(loggers: Any, status: str) -> None:
        closing(loggers, status)
        if status != "success":
            raise then

    monkeypatch.setattr(training, "finish_loggers", stopped_while_closing)
    stop = ["+callbacks.stop._target_=test_train.InterruptAtStep", "+callbacks.stop.step=1"]
    cfg = compose_config(
        "train", tmp_path, [*TINY, "trainer.max_epochs=1", *stop, f"+callbacks.stop.sigterm={sigterm}"]
    )
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit) as ended:
            report_user_errors(lambda: run(cfg), prog="train.py")
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C while it shuts down
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("train.py:")]
    assert len(said) == 1 and said[0].startswith(f"train.py: {how} at epoch 0, optimiser step 1"), said
    assert ended.value.code == status


def test_a_sigterm_while_the_loggers_close_still_marks_the_finished_part_s_metrics_outdated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The stop of a continued run whose loggers were closing when SIGTERM came (a scheduler's signal
    after a Ctrl-C, ``wandb.finish`` uploading): TerminatedError, a ``BaseException``, passed out of the
    loggers' closing and the finished part's metrics.json was left unmarked, its scores of a best.ckpt since
    replaced reading as current."""
    import marsunits.training as training

    by_step = ["callbacks.model_checkpoint.monitor=step", "callbacks.model_checkpoint.mode=max"]
    run(compose_config("train", tmp_path, [*TINY, *by_step, "trainer.max_epochs=1"]))
    closing = training.finish_loggers

    def terminated_while_closing(loggers: Any, status: str) -> None:
        closing(loggers, status)
        if status != "success":
            raise TerminatedError

    monkeypatch.setattr(training, "finish_loggers", terminated_while_closing)
    stop = ["+callbacks.stop._target_=test_train.InterruptAtStep", "+callbacks.stop.step=5"]
    last = tmp_path / "checkpoints" / "last.ckpt"
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(TerminatedError):
            run(
                compose_config(
                    "train", tmp_path, [*TINY, *by_step, "trainer.max_epochs=3", f"ckpt_path={last}", *stop]
                )
            )
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C while it shuts down
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert "terminated (SIGTERM)" in record.get("outdated", ""), record
    capsys.readouterr()


def test_an_interrupted_continuation_marks_the_finished_part_s_metrics_outdated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A finished run continued in place (trainer.max_epochs raised, ckpt_path=last) and stopped by Ctrl-C
    after it replaced best.ckpt kept the first part's metrics.json as it was: scores of a best.ckpt since
    replaced, beside a config.yaml of the longer run, with nothing saying that the run had gone on. The file
    now says so until a part of the run finishes and rewrites it."""
    # The best checkpoint ranked by the step: each validation replaces it (val/miou may not improve).
    by_step = ["callbacks.model_checkpoint.monitor=step", "callbacks.model_checkpoint.mode=max"]
    first = compose_config("train", tmp_path, [*TINY, *by_step, "trainer.max_epochs=1"])  # 2 steps per epoch
    finished = run(first)
    last = tmp_path / "checkpoints" / "last.ckpt"
    best = tmp_path / "checkpoints" / "best.ckpt"
    # Stopped in the third epoch, after the second's validation saved best.ckpt at step 4.
    stop = ["+callbacks.stop._target_=test_train.InterruptAtStep", "+callbacks.stop.step=5"]
    longer = [*TINY, *by_step, "trainer.max_epochs=3", f"ckpt_path={last}"]
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(KeyboardInterrupt):
            run(compose_config("train", tmp_path, [*longer, *stop]))
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C while it shuts down
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 5
    assert torch.load(best, map_location="cpu", weights_only=False)["global_step"] == 4
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert {k: v for k, v in record.items() if k != "outdated"} == json.loads(json.dumps(finished))
    assert "interrupted (Ctrl-C)" in record["outdated"] and "ckpt_path=last" in record["outdated"]
    assert "replaced best.ckpt" in record["outdated"]

    assert "outdated" not in run(compose_config("train", tmp_path, longer))  # the run finished
    assert "outdated" not in json.loads((tmp_path / "metrics.json").read_text())
    capsys.readouterr()


def test_a_stopped_continuation_that_replaced_no_scored_checkpoint_leaves_metrics_json_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A resume (ckpt_path=last) stopped by Ctrl-C or SIGTERM before its first training step, or after steps
    but before a validation saved a new best, marked metrics.json ``outdated`` ("may have replaced
    best.ckpt") although best.ckpt, the checkpoint it scores, was the same file: the run's scores read as
    stale when they were not. Only a replaced scored checkpoint marks the file."""
    first = compose_config("train", tmp_path, [*TINY, "trainer.max_epochs=1"])  # 2 steps per epoch
    finished = json.loads(json.dumps(run(first)))
    last = tmp_path / "checkpoints" / "last.ckpt"
    best = tmp_path / "checkpoints" / "best.ckpt"
    best_bytes = best.read_bytes()
    longer = [
        *TINY,
        "trainer.max_epochs=2",
        f"ckpt_path={last}",
        "+callbacks.stop._target_=test_train.InterruptAtStep",
    ]
    handler = signal.getsignal(signal.SIGINT)
    for stop, status in (
        (["+callbacks.stop.step=2", "+callbacks.stop.before_step=true"], 130),  # Ctrl-C before a step
        (["+callbacks.stop.step=2", "+callbacks.stop.before_step=true", "+callbacks.stop.sigterm=true"], 143),
        (["+callbacks.stop.step=3"], 130),  # Ctrl-C after a step, before the epoch's validation
    ):
        cfg = compose_config("train", tmp_path, [*longer, *stop])
        try:
            with pytest.raises(SystemExit) as stopped:
                report_user_errors(lambda: run(cfg), prog="train.py")  # noqa: B023 - called at once
        finally:
            signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C while it shuts down
        assert stopped.value.code == status, stop
        assert best.read_bytes() == best_bytes
        assert json.loads((tmp_path / "metrics.json").read_text()) == finished, stop
    capsys.readouterr()


def test_a_run_without_best_ckpt_stopped_before_its_first_step_leaves_metrics_json_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without validation (``trainer.limit_val_batches=0``) metrics.json scores the last weights, last.ckpt. A
    resume stopped by Ctrl-C before its first step rewrites last.ckpt (the interrupt's checkpoint), with the
    weights it was resumed from: the file was marked ``outdated`` ("replaced last.ckpt") though its scores
    were still those of last.ckpt's weights. A stop after a step marks it."""
    no_val = [*TINY, "trainer.limit_val_batches=0"]
    finished = json.loads(
        json.dumps(run(compose_config("train", tmp_path, [*no_val, "trainer.max_epochs=1"])))
    )
    assert finished["best_ckpt"] is None and finished["last_ckpt"]
    last = tmp_path / "checkpoints" / "last.ckpt"
    longer = [*no_val, "trainer.max_epochs=2", f"ckpt_path={last}"]
    stop = ["+callbacks.stop._target_=test_train.InterruptAtStep", "+callbacks.stop.step=2"]
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(KeyboardInterrupt):
            run(compose_config("train", tmp_path, [*longer, *stop, "+callbacks.stop.before_step=true"]))
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C while it shuts down
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 2
    assert json.loads((tmp_path / "metrics.json").read_text()) == finished
    stop = ["+callbacks.stop._target_=test_train.InterruptAtStep", "+callbacks.stop.step=3"]
    try:
        with pytest.raises(KeyboardInterrupt):
            run(compose_config("train", tmp_path, [*longer, *stop]))
    finally:
        signal.signal(signal.SIGINT, handler)
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 3
    assert "replaced last.ckpt" in json.loads((tmp_path / "metrics.json").read_text())["outdated"]
    capsys.readouterr()


def test_a_moved_run_folder_stopped_after_replacing_best_ckpt_marks_metrics_json_outdated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """metrics.json names its checkpoints by absolute path. A run folder moved (another disk, a cluster node)
    and resumed in place from there had the scored best.ckpt under the old path, which no longer exists:
    "not there" before and after the part, so a stop after it replaced best.ckpt left the file unmarked
    (before 2026-12-06 any stop marked it). The scored checkpoint is found in the run folder by its name."""
    by_step = ["callbacks.model_checkpoint.monitor=step", "callbacks.model_checkpoint.mode=max"]
    before = tmp_path / "before"
    finished = run(compose_config("train", before, [*TINY, *by_step, "trainer.max_epochs=1"]))
    moved = tmp_path / "moved"
    before.rename(moved)
    assert not Path(finished["best_ckpt"]).exists()
    last = moved / "checkpoints" / "last.ckpt"
    stop = ["+callbacks.stop._target_=test_train.InterruptAtStep", "+callbacks.stop.step=5"]
    longer = [*TINY, *by_step, "trainer.max_epochs=3", f"ckpt_path={last}", *stop]
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(KeyboardInterrupt):
            run(compose_config("train", moved, longer))
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C while it shuts down
    best = moved / "checkpoints" / "best.ckpt"
    assert torch.load(best, map_location="cpu", weights_only=False)["global_step"] == 4
    assert "replaced best.ckpt" in json.loads((moved / "metrics.json").read_text())["outdated"]
    capsys.readouterr()


def test_ctrl_c_on_a_full_disk_says_what_is_kept_in_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Ctrl-C when the disk is too full for last.ckpt: a warning with two chained tracebacks (torch's
    zip writer's), then "interrupted (Ctrl-C); finished outputs are kept", and not a word on how to go on.
    Now one line: the step reached, why nothing was saved (the file, the full disk), what is kept and how to
    go on from it."""
    from marsunits import checkpoint_io

    real_save = torch.save

    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(obj, dict) and obj.get("global_step") == 3:  # the save at the interrupt
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint_io.torch, "save", save)
    stop = ["+callbacks.stop._target_=test_train.InterruptAtStep", "+callbacks.stop.step=3"]
    cfg = compose_config("train", tmp_path, [*TINY, "trainer.max_epochs=2", *stop])  # 2 steps per epoch
    handler = signal.getsignal(signal.SIGINT)
    try:
        with caplog.at_level(logging.WARNING), pytest.raises(SystemExit) as stopped:
            report_user_errors(lambda: run(cfg), prog="train.py")
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C while it shuts down
    assert stopped.value.code == 130
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 2  # kept as it was
    said = capsys.readouterr().err
    assert "Traceback" not in said and "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info]
    line = next(ln for ln in said.splitlines() if "optimiser step 3" in ln)
    assert "interrupted (Ctrl-C) at epoch 1, optimiser step 3" in line
    assert f"could not write the checkpoint {last}: the disk is full" in line
    assert f"{last}, saved earlier in the run, is kept" in line and "ckpt_path=last to go on" in line


def test_a_run_stopped_at_its_first_last_ckpt_says_that_best_ckpt_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A disk that filled at the run's first last.ckpt (the epoch's end: best.ckpt was written just before)
    left only best.ckpt. ``run_name=r1 ckpt_path=last`` then said "nothing of it to resume, run without
    ckpt_path", which is refused ("already holds a run ... resume it with ckpt_path=last"): a loop. It now
    names best.ckpt, and that advice, followed literally, finishes the run."""
    from marsunits import checkpoint_io
    from marsunits.checkpoint_io import CheckpointWriteError

    real_save = torch.save

    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        if "last.ckpt" in str(getattr(f, "name", f)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(obj, f, *args, **kwargs)

    folder = tmp_path / "logs" / "train" / "r1"
    argv = [*TINY, "trainer.max_epochs=2", "test=false", "run_name=r1"]  # 2 steps per epoch
    with monkeypatch.context() as patch:
        patch.setattr(checkpoint_io.torch, "save", save)
        with pytest.raises(CheckpointWriteError, match="last.ckpt: the disk is full"):
            run(compose_config("train", folder, argv))
    best = folder / "checkpoints" / "best.ckpt"
    assert best.is_file() and not (folder / "checkpoints" / "last.ckpt").exists()
    # The stop says it too (a run with the time-made name: ckpt_path=last resumed another run of the job).
    said = capsys.readouterr().err
    assert f"{best}, of the best epoch so far, is kept" in said and f"ckpt_path={best}" in said, said
    with pytest.raises(ConfigError) as refused:
        run(compose_config("train", folder, [*argv, "ckpt_path=last"]))
    said = str(refused.value)
    assert f"ckpt_path={best}" in said, said
    assert "without ckpt_path" not in said  # refused in a folder that holds a checkpoint
    assert run(compose_config("train", folder, [*argv, f"ckpt_path={best}"]))["last_ckpt"]
    assert torch.load(folder / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 4


def test_ctrl_c_on_a_full_disk_without_last_ckpt_names_what_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C on a disk too full for the run's first last.ckpt said "run it again without ckpt_path to start
    it anew": refused where best.ckpt was kept ("already holds a run"), and the loss of the earlier parts of
    a run resumed into a new folder. It now names the checkpoint that goes on, and that works."""
    from marsunits import checkpoint_io

    real_save = torch.save

    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        if "last.ckpt" in str(getattr(f, "name", f)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(obj, f, *args, **kwargs)

    handler = signal.getsignal(signal.SIGINT)

    def stopped(folder: Path, argv: list[str], step: int = 3) -> str:
        stop = ["+callbacks.stop._target_=test_train.InterruptAtStep", f"+callbacks.stop.step={step}"]
        capsys.readouterr()
        try:
            with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
                patch.setattr(checkpoint_io.torch, "save", save)
                run(compose_config("train", folder, [*argv, *stop]))
        finally:
            signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C while it shuts down
        return next(ln for ln in capsys.readouterr().err.splitlines() if f"optimiser step {step}" in ln)

    # best.ckpt of the first epoch is kept (no last.ckpt: save_last=false, or a disk full at the first one).
    first = tmp_path / "r1"
    argv = [*TINY, "trainer.max_epochs=2", "test=false", "run_name=r1"]  # 2 steps per epoch
    line = stopped(first, [*argv, "callbacks.model_checkpoint.save_last=false"])
    best = first / "checkpoints" / "best.ckpt"
    assert f"{best}, of the best epoch so far, is kept" in line and f"ckpt_path={best} to go on" in line, line
    assert "without ckpt_path" not in line
    assert run(compose_config("train", first, [*argv, f"ckpt_path={best}"]))["best_ckpt"]  # as it says

    # A run resumed into a new folder: the same command starts from the same checkpoint again.
    resumed = f"ckpt_path={first / 'checkpoints' / 'last.ckpt'}"  # step 4, of the run finished above
    line = stopped(tmp_path / "r2", [*TINY, "trainer.max_epochs=3", resumed], step=5)
    assert "Nothing of this part was saved" in line and "run the same command again" in line, line
    assert "without ckpt_path" not in line


def test_ctrl_c_during_validation_saves_last_ckpt_and_the_run_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C inside an epoch's validation saved nothing (no checkpoints/ at all for a run stopped in its
    first validation), and the message did not say whether the run could go on."""
    import signal

    stop = ["+callbacks.stop._target_=test_train.InterruptAtStep", "+callbacks.stop.step=2"]
    overrides = [*TINY, "trainer.max_epochs=2", "test=false"]  # 2 steps per epoch: validation after step 2
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(KeyboardInterrupt):
            run(compose_config("train", tmp_path, [*overrides, *stop, "+callbacks.stop.in_validation=true"]))
    finally:
        signal.signal(signal.SIGINT, handler)
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == 2
    assert "interrupted (Ctrl-C) at epoch 0, optimiser step 2" in capsys.readouterr().err
    resumed = run(compose_config("train", tmp_path, [*overrides, "ckpt_path=last", "logger=csv"]))
    assert math.isfinite(resumed["val/miou"])
    # The interrupted epoch is validated again on resume, so it can still become best.ckpt.
    import csv

    (csv_file,) = (tmp_path / "csv").glob("version_*/metrics.csv")
    with open(csv_file, newline="") as fh:
        validated = [r["epoch"] for r in csv.DictReader(fh) if r.get("val/miou")]
    assert validated == ["0", "1"]
    final = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    # As an uninterrupted run ends: 4 steps, 2 epochs completed; no step repeated or lost.
    assert final["global_step"] == 4 and final["epoch"] == 2
    assert final["loops"]["fit_loop"]["epoch_progress"]["total"]["completed"] == 2
    # The rewound validation counters are back in line once it has run again: a checkpoint saved later in
    # the epoch must not read as saved mid-validation (a resume from it ran a 1-batch validation).
    val_total = final["loops"]["fit_loop"]["epoch_loop.val_loop.batch_progress"]["total"]
    assert val_total["ready"] == val_total["started"] == val_total["processed"] == val_total["completed"]
    # In the last epoch: its validation was skipped and the resume said "nothing trained", so the run's final
    # weights were never scored.
    last = tmp_path / "last-epoch"
    stop_last = ["+callbacks.stop._target_=test_train.InterruptAtStep", "+callbacks.stop.step=4"]
    try:
        with pytest.raises(KeyboardInterrupt):
            run(compose_config("train", last, [*overrides, *stop_last, "+callbacks.stop.in_validation=true"]))
    finally:
        signal.signal(signal.SIGINT, handler)
    run(compose_config("train", last, [*overrides, "ckpt_path=last", "logger=csv"]))
    (csv_file,) = (last / "csv").glob("version_*/metrics.csv")
    with open(csv_file, newline="") as fh:
        assert [r["epoch"] for r in csv.DictReader(fh) if r.get("val/miou")] == ["1"]
    assert "nothing trained" not in capsys.readouterr().err
    final = torch.load(last / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert final["global_step"] == 4 and final["epoch"] == 2


def test_the_progress_bar_shows_metrics_but_not_the_logger_version(tmp_path: Path) -> None:
    """Lightning's ``v_num`` (the CSV logger's version "0", drawn as ``v_num: 0.000``) read as a metric."""
    from lightning.pytorch.callbacks import ProgressBar
    from lightning.pytorch.loggers import CSVLogger

    from marsunits.progress_bar import run_progress_bar

    assert run_progress_bar([], enabled=False) == []  # Lightning refuses a bar with enable_progress_bar=false
    (bar,) = run_progress_bar([], enabled=True)
    assert isinstance(bar, ProgressBar) and run_progress_bar([bar], enabled=True) == [bar]
    trainer = pl.Trainer(logger=CSVLogger(tmp_path), callbacks=[bar], accelerator="cpu", max_epochs=1)
    shown = bar.get_metrics(trainer, pl.LightningModule())
    assert "v_num" not in shown
    assert "v_num" in ProgressBar.get_metrics(bar, trainer, pl.LightningModule())  # what it removes


def test_the_progress_bar_is_tqdm_where_lightning_s_rich_bar_finds_no_rich(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without ``rich`` Lightning's Rich bar refuses to be made: the run's bar is then the tqdm one, found
    without Lightning's private ``_RICH_AVAILABLE`` (which moved to another module in 2.6)."""
    from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar

    from marsunits.progress_bar import RichRunProgressBar, TQDMRunProgressBar, run_progress_bar

    (bar,) = run_progress_bar([], enabled=True)
    assert isinstance(bar, RichRunProgressBar)  # rich is a dependency

    def without_rich(self: RichProgressBar, *args: Any, **kwargs: Any) -> None:
        raise ModuleNotFoundError("`RichProgressBar` requires `rich` >= 10.2.2.")  # Lightning's words

    monkeypatch.setattr(RichProgressBar, "__init__", without_rich)
    (bar,) = run_progress_bar([], enabled=True)
    assert isinstance(bar, TQDMRunProgressBar) and isinstance(bar, TQDMProgressBar)


def test_the_training_curves_end_at_the_last_epoch(tmp_path: Path) -> None:
    """Scoring best.ckpt after fit was logged as one more validation at epoch max_epochs, so every val/*
    curve ended with a copy of the best value."""
    import csv

    metrics = run(compose_config("train", tmp_path, [*TINY, "trainer.max_epochs=2", "logger=csv"]))
    (csv_file,) = (tmp_path / "csv").glob("version_*/metrics.csv")
    with open(csv_file, newline="") as fh:
        rows = list(csv.DictReader(fh))
    val = [(r["epoch"], float(r["val/miou"])) for r in rows if r.get("val/miou")]
    assert [epoch for epoch, _ in val] == ["0", "1"]  # one point per trained epoch, nothing after
    assert metrics["val/miou"] == pytest.approx(max(v for _, v in val), abs=1e-6)  # best.ckpt's score
    assert any(r.get("test/miou") for r in rows)  # the test of best.ckpt is still logged


def test_without_the_default_callbacks_no_last_epoch_is_called_best(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With ``callbacks=[]`` Lightning adds a checkpoint of its own that ranks nothing; metrics.json called
    its last-epoch file best_ckpt. The run says before training that it keeps no best.ckpt or last.ckpt
    (``callbacks=ema`` for ``[default,wandb,ema]`` ended with both null, without a word)."""
    with caplog.at_level(logging.WARNING, logger="marsunits.training"):
        metrics = run(compose_config("train", tmp_path, [*TINY, "callbacks=[]", "trainer.max_epochs=1"]))
    assert metrics["best_ckpt"] is None and math.isfinite(metrics["val/miou"])
    said = [r.getMessage() for r in caplog.records if "no model_checkpoint" in r.getMessage()]
    assert len(said) == 1 and "'callbacks=[default,wandb,ema]'" in said[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="marsunits.training"):
        run(compose_config("train", tmp_path / "default", [*TINY, "trainer.max_epochs=1"]))
    assert not [r for r in caplog.records if "no model_checkpoint" in r.getMessage()]


@pytest.mark.parametrize(
    ("callbacks", "keeps_last"),
    [("callbacks=[wandb,recovery]", True), ("callbacks=recovery", True), ("callbacks=ema", False)],
)
def test_the_warning_without_model_checkpoint_says_what_is_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, callbacks: str, keeps_last: bool
) -> None:
    """The recovery callbacks keep last.ckpt (every 50 steps and on Ctrl-C) without the defaults' best.ckpt:
    the warning said that nothing could be resumed, for a run that ckpt_path=last resumes."""
    from marsunits.training import _warn_without_checkpoints

    with caplog.at_level(logging.WARNING, logger="marsunits.training"):
        _warn_without_checkpoints(compose_config("train", tmp_path, [callbacks]))
    said = [r.getMessage() for r in caplog.records if "no model_checkpoint" in r.getMessage()]
    assert len(said) == 1 and "keeps no best.ckpt" in said[0]
    assert ("nothing for ckpt_path=last to resume" in said[0]) is not keeps_last


def test_lightning_lines_are_printed_once_under_a_configured_root_logger() -> None:
    """Lightning adds its own console handler ("INFO: ...") to the `lightning` logger, which also
    propagates to the root logger Hydra configures: train.py printed every Lightning line twice."""
    import logging

    from marsunits.lightning_logging import log_lightning_once

    root, package = logging.getLogger(), logging.getLogger("lightning")
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    console = logging.StreamHandler()  # as `import lightning` installs it
    package.addHandler(console)
    collect = Collect()
    root.addHandler(collect)
    try:
        log_lightning_once()
        assert console not in package.handlers
        logging.getLogger("lightning.pytorch.utilities.rank_zero").warning("once")
        assert seen.count("once") == 1  # through the root logger's handler, which train.log shares
    finally:
        root.removeHandler(collect)
        package.removeHandler(console)


def test_lightning_lines_reach_train_log_when_lightning_was_imported_before_hydra() -> None:
    """The command line imports Lightning (claiming the run folder) before Hydra configures the root
    logger; `lightning.pytorch` and `lightning.fabric` then log through consoles of their own and stop
    propagating: train.log lacked every Lightning line (`Trainer.fit` stopped, the DDP ranks joining)."""
    import logging

    from marsunits.lightning_logging import log_lightning_once

    root = logging.getLogger()
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    packages = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    before = [(p.propagate, list(p.handlers)) for p in packages]
    consoles = [logging.StreamHandler() for _ in packages]
    for package, console in zip(packages, consoles, strict=True):  # as Lightning sets them up then
        package.addHandler(console)
        package.propagate = False
    collect = Collect()
    root.addHandler(collect)
    try:
        log_lightning_once()
        assert all(c not in p.handlers and p.propagate for p, c in zip(packages, consoles, strict=True))
        logging.getLogger("lightning.pytorch.loops.fit_loop").info("fit stopped")
        logging.getLogger("lightning.fabric.utilities.distributed").info("ranks joined")
        assert seen.count("fit stopped") == 1 and seen.count("ranks joined") == 1
    finally:
        root.removeHandler(collect)
        for package, (propagate, handlers) in zip(packages, before, strict=True):
            package.propagate = propagate
            for handler in list(package.handlers):
                package.removeHandler(handler)
            for handler in handlers:
                package.addHandler(handler)


def test_train_py_checks_takes_train_py_s_own_steps() -> None:
    """:func:`conftest.train_py_checks`, through which tests check train.py's refusals before Hydra in this
    process, takes the steps of train.py's ``__main__`` before ``main()``, in train.py's order."""
    import inspect

    import conftest

    source = (REPO_ROOT / "train.py").read_text(encoding="utf-8")
    helper = inspect.getsource(conftest.train_py_checks)
    steps = (
        "note_another_copy_of_the_package(",
        'warn_sweeps_taken_as_one_value(sys.argv[1:], prog="train.py")',
        "quoted_path_overrides(",
        "home_expanded_overrides(sys.argv[1:])",
        "exit_on_unknown_option(",
    )
    main = source.index('if __name__ == "__main__":')
    at_main = [source.index(step, main) for step in steps]
    assert at_main == sorted(at_main) and source.index("main()", at_main[-1]) > at_main[-1]
    at_helper = [helper.index(step) for step in steps]
    assert at_helper == sorted(at_helper), helper
    assert '"train", prog="train.py")' in source[at_main[-1] :].split("\n", 1)[0]


def test_the_checks_before_hydra_import_neither_torch_nor_lightning_until_needed(tmp_path: Path) -> None:
    """train.py's checks before Hydra starts lived in ``marsunits.training``, which imports torch and
    Lightning (some 5 s on 2 cores): a refusal that needs neither (``data=folder`` without ``data.root``)
    paid them all the same. Their module imports neither; the checks that read a class or build the data
    module import what they read when they read it."""
    code = (
        "import sys, marsunits.run_checks, marsunits.run_resume, marsunits.target_parameters; "
        "from pathlib import Path; "
        "from marsunits.cli_overrides import claim_run_folder; "
        "print(sorted(m for m in ('torch', 'lightning') if m in sys.modules)); "
        "refused, _ = claim_run_folder(['model=tiny', 'data=folder', 'run_name=r'], "
        f"Path({str(CONFIG_DIR)!r})); "
        "print(refused); print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and len(lines) == 3, proc.stdout + proc.stderr[-2000:]
    assert lines[0] == "[]" and lines[2] == "[]", lines
    assert lines[1].startswith("data.root not set (??? in the config); add data.root=<folder>"), lines
    assert not (tmp_path / "logs").exists()


def _claim_seen_by_another_process(check: str, folder: Path) -> str:
    """What another process is told of ``folder``'s claim: ``marsunits.run_folder_claim.<check>(folder)``
    (``run_folder_holder`` or ``sweep_folder_holder``: the refusal, or ``None``) in a new process that imports
    only that module (a fraction of a second, where a train.py start costs seconds of imports). POSIX locks
    belong to the process: this one takes its own claims again, so only another process sees them held."""
    code = (
        f"from pathlib import Path; from marsunits.run_folder_claim import {check}; "
        f"print({check}(Path({str(folder)!r})))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


@contextlib.contextmanager
def _sweep_folder_held_by_another_process(folder: Path) -> Iterator[int]:
    """``folder`` held as a sweep's folder (:func:`marsunits.run_folder_claim.hold_sweep_folder_for_process`,
    what train.py's command line takes for a sweep) by another process, for the ``with`` block; yields its
    pid."""
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from marsunits.run_folder_claim import hold_sweep_folder_for_process
        print(hold_sweep_folder_for_process(Path({str(folder)!r})), flush=True)
        sys.stdin.readline()  # held until told; ending, it releases the claim as a sweep's process does
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "SLURM_PROCID")}
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "None"  # taken
        yield holder.pid
    finally:
        holder.stdin.close()
        try:
            holder.wait(timeout=60)
        finally:
            holder.kill()
            holder.wait()


def test_the_command_line_claims_the_run_folder_before_hydra_and_pins_its_name(tmp_path: Path) -> None:
    """Two commands started in the same second (a job array: seed=1, seed=2) both passed the command-line
    check, since neither had claimed the folder yet; the second was refused by the run's claim only after
    Hydra had written its .hydra/ record over the first's and a line in its train.log. The command line now
    takes the claim itself, and pins the time-made run_name so that Hydra's folder is the one claimed.
    Another process sees the claim (:func:`_claim_seen_by_another_process`); that train.py refuses a folder
    another process holds, before Hydra writes there, is
    :func:`test_a_second_run_in_a_run_folder_in_use_is_refused`'s (through train.py itself)."""
    from marsunits import run_folder_claim
    from marsunits.cli_overrides import claim_run_folder

    logs = tmp_path / "logs"
    argv = [*TINY, "trainer.max_epochs=1", "test=false", f"paths.log_dir={logs}"]
    refused, pinned = claim_run_folder(argv, CONFIG_DIR)
    try:
        assert refused is None and pinned[:-1] == argv and pinned[-1].startswith("run_name='")
        name = pinned[-1].split("=", 1)[1].strip("'")
        folder = logs / "train" / name
        assert sorted(p.name for p in folder.iterdir()) == [".train.claim"]
        seen = _claim_seen_by_another_process("run_folder_holder", folder)
        assert seen.startswith(f"run folder {folder} is in use by train.py (pid {os.getpid()}"), seen
        assert sorted(p.name for p in folder.iterdir()) == [".train.claim"]  # the check took nothing
        # The run of the process that claimed the folder takes the claim again, and frees it when it ends.
        run(compose_config("train", folder, argv[:-1]))
        assert (folder / "config.yaml").is_file() and not (folder / ".train.claim").exists()
        assert run_folder_claim.run_folder_holder(folder) is None
        # Another run's claim made since at that path (its inode number may be the one freed) stays.
        (folder / ".train.claim").write_text("{}")
        run_folder_claim.release_held_claims()
        assert (folder / ".train.claim").read_text() == "{}"
    finally:
        run_folder_claim.release_held_claims()
    # A claim the run never took (Hydra or the config failed first) is removed when the process ends.
    other = logs / "train" / "never-run"
    assert claim_run_folder([*argv, "run_name=never-run"], CONFIG_DIR)[0] is None
    assert (other / ".train.claim").is_file()
    run_folder_claim.release_held_claims()
    assert not (other / ".train.claim").exists() and run_folder_claim.run_folder_holder(other) is None
    # Left to the run: a folder named by the clock through a value given here (Hydra's may be a second
    # later: a stray claimed folder), another primary config (the check composes train.yaml), and a run
    # folder that is not Hydra's.
    for extra in (
        ["run_name=x-${now:%H-%M-%S}"],
        ["--config-name", "my_train"],
        [f"paths.output_dir={tmp_path / 'elsewhere'}"],
        ["--version"],  # made an empty run folder before Hydra printed its version
        ["--experimental-rerun", str(tmp_path / "config.pickle")],
    ):
        assert claim_run_folder([*argv, *extra], CONFIG_DIR) == (None, [*argv, *extra])
    # The folder made for that claim went with it (nothing in it); the named run's is kept.
    assert sorted(p.name for p in (logs / "train").iterdir()) == [name]
    assert not run_folder_claim._HELD_FOR_PROCESS


def test_a_sweep_claims_its_folder_before_hydra_and_pins_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two sweeps started in the same second (a job array of sweeps), or a sweep given an earlier sweep's
    hydra.sweep.dir, ran their trials in the same <n>/ folders: Hydra rewrote each trial's .hydra/ record
    before the trial's run refused the folder, advising a run_name= that does not move a sweep's trials.
    The second sweep's command goes through train.py's checks before Hydra in this process, the folder held
    by another (POSIX locks belong to the process: this one takes its own claims again); that train.py
    refuses a folder in use before Hydra writes there is
    :func:`test_a_second_run_in_a_run_folder_in_use_is_refused`'s, through train.py itself."""
    from marsunits import run_folder_claim
    from marsunits.cli_overrides import claim_run_folder

    logs = tmp_path / "logs"
    argv = ["-m", *TINY, "trainer.max_epochs=1", "seed=1,2", f"paths.log_dir={logs}"]
    try:
        refused, pinned = claim_run_folder(argv, CONFIG_DIR)
        assert refused is None and pinned[:-1] == argv and pinned[-1].startswith("hydra.sweep.dir='")
        folder = Path(pinned[-1].split("=", 1)[1].strip("'"))
        assert folder.parent == logs / "train" and folder.name.startswith("multirun-")
        assert sorted(p.name for p in folder.iterdir()) == [".train.claim"]
        seen = _claim_seen_by_another_process("sweep_folder_holder", folder)  # the claim is held
        assert seen.startswith(
            f"sweep folder {folder} is in use by the sweep of train.py (pid {os.getpid()}, "
        )
    finally:
        run_folder_claim.release_held_claims()
    assert not folder.exists() or not any(folder.iterdir())
    # The second sweep given that folder, while the first (another process) holds it.
    other = [*argv[:-2], "seed=3,4", argv[-1], f"hydra.sweep.dir={folder}"]
    with _sweep_folder_held_by_another_process(folder) as first:
        status, err = train_py_checks(tmp_path, monkeypatch, capsys, *other)
        assert status == 2, err[-2000:]
        said = err.strip()
        assert said.startswith(
            f"train.py: error: sweep folder {folder} is in use by the sweep of train.py (pid {first}, "
        ), said
        assert said.endswith("give it its own, hydra.sweep.dir=<new folder>") and "\n" not in said
        assert sorted(p.name for p in folder.iterdir()) == [".train.claim"]  # no trial folder made
    assert not folder.exists() or not any(folder.iterdir())  # the holder's claim went with it
    # An earlier sweep's trials in a folder given again: refused, naming what is there.
    (folder / "0").mkdir(parents=True)
    (folder / "multirun.yaml").write_text("{}")
    refused, _ = claim_run_folder([*argv, f"hydra.sweep.dir={folder}"], CONFIG_DIR)
    assert refused == (
        f"sweep folder {folder} already holds another sweep's 0, multirun.yaml: this sweep's trials would be "
        "written in the same folders. Give it another folder, hydra.sweep.dir=<new folder>"
    )
    # A swept folder option names no one folder: left to the sweep.
    swept = [*argv, f"paths.log_dir={tmp_path / 'a'},{tmp_path / 'b'}"]
    assert claim_run_folder(swept, CONFIG_DIR) == (None, swept)
    assert not run_folder_claim._HELD_FOR_PROCESS
    try:
        # Swept choices whose options agree on the folder: claimed where the trials go (debug=...: the
        # debug task's folder; a glob over experiments, whose own iterator needs Hydra's config loader).
        for extra, task in (["debug=fdr,overfit"], "debug"), (["experiment=glob(synth*)"], "train"):
            refused, pinned = claim_run_folder(
                [*argv[:-1], f"paths.log_dir={tmp_path / task}", *extra], CONFIG_DIR
            )
            (pin,) = [a for a in pinned if a.startswith("hydra.sweep.dir=")]
            assert refused is None and Path(pin.split("=", 1)[1].strip("'")).parent == tmp_path / task / task
    finally:
        run_folder_claim.release_held_claims()
    try:
        # -m after the overrides: the pin goes with the overrides (after the flag, Hydra refused it).
        flag_last = [*argv[1:-1], f"paths.log_dir={tmp_path / 'logs2'}", "-m"]  # the first folder is used
        refused, pinned = claim_run_folder(flag_last, CONFIG_DIR)
        assert refused is None and pinned[-1] == "-m" and pinned[-2].startswith("hydra.sweep.dir="), pinned
        # A folder given with the clock in it, or a value made of it, is pinned as composed (Hydra's would be
        # a moment later).
        for clock in ("${now:%H-%M-%S-%f}", "${run_name}"):
            clocked = [*argv, f"hydra.sweep.dir={tmp_path}/sw/{clock}"]
            refused, pinned = claim_run_folder(clocked, CONFIG_DIR)
            (given,) = [a for a in pinned if a.startswith("hydra.sweep.dir=")]
            assert refused is None and "${" not in given and (tmp_path / "sw").is_dir()
            made = Path(given.split("=", 1)[1].strip("'"))
            assert sorted(p.name for p in made.iterdir()) == [".train.claim"]
        # A study's trial resumed alone (hydra.mode=RUN, as its interrupt line advises) is one run, not a
        # sweep: its own folder is claimed, no sweep folder is made.
        trial = tmp_path / "study" / "0"
        before = sorted((logs / "train").glob("multirun-*"))
        alone = [
            *TINY,
            "hparams_search=optuna",
            "hydra.mode=RUN",
            f"hydra.run.dir={trial}",
            f"paths.log_dir={logs}",
        ]
        assert claim_run_folder(alone, CONFIG_DIR) == (None, alone)
        assert (trial / ".train.claim").is_file() and sorted((logs / "train").glob("multirun-*")) == before
    finally:
        run_folder_claim.release_held_claims()


def test_a_sweep_refused_before_its_first_trial_leaves_no_empty_folder(tmp_path: Path) -> None:
    """train.py claims a sweep's folder before Hydra starts; a study its sweeper refused before its first
    trial (-m hydra/sweeper=optuna without optimized_metric: one line, exit 2) left an empty
    logs/train/multirun-<time>/ behind. Emptied of its claim, a folder the command made goes with it (and the
    parents made for it); a folder holding anything (a sweep's trials) is kept."""
    from marsunits import run_folder_claim
    from marsunits.cli_overrides import claim_run_folder

    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "SLURM_PROCID")}
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "train.py"),
            "-m",
            "hydra/sweeper=optuna",
            "model.lr=interval(1e-4,1e-2)",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=tmp_path,  # paths.log_dir: <launch folder>/logs
    )
    assert proc.returncode == 2 and "optimized_metric is null" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "logs").exists(), sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    # In this process: the claimed folder and the parents made for it go; a folder there before, or holding
    # anything, stays.
    logs = tmp_path / "runs"
    (logs / "train" / "kept").mkdir(parents=True)
    argv = ["-m", *TINY, "seed=1,2", f"paths.log_dir={logs}"]
    for trials in (False, True):
        try:
            refused, pinned = claim_run_folder(argv, CONFIG_DIR)
            folder = Path(pinned[-1].split("=", 1)[1].strip("'"))
            assert refused is None and sorted(p.name for p in folder.iterdir()) == [".train.claim"]
            if trials:
                (folder / "0").mkdir()
        finally:
            run_folder_claim.release_held_claims()
        assert sorted(p.name for p in (logs / "train").iterdir()) == (
            sorted(["kept", folder.name]) if trials else ["kept"]
        )
    assert sorted(p.name for p in folder.iterdir()) == ["0"]  # the trials' folders kept, the claim gone
    fresh = tmp_path / "new" / "logs"
    try:
        assert claim_run_folder([*argv[:-1], f"paths.log_dir={fresh}"], CONFIG_DIR)[0] is None
    finally:
        run_folder_claim.release_held_claims()
    assert not (tmp_path / "new").exists()  # logs/train/ and logs/ made for the folder go with it


def test_a_command_refused_by_a_finished_runs_folder_leaves_its_record_alone(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A new run given a finished run's run_name, or a resume with other settings, was refused only after
    Hydra had rewritten that run's .hydra/ record with the refused command's settings (and added to its
    train.log): whoever rebuilt the run from .hydra/overrides.yaml got the wrong one. The command line
    pins a default run_name to the folder it claims, which must not make ckpt_path=last look for it.
    All in this process, through train.py's checks before Hydra (a train.py start costs seconds of imports;
    that train.py runs those checks before Hydra, exit 2 and no run folder on a refusal: the missing-model
    and the grid's shared-mistake tests start it). The finished run's Hydra record is written as Hydra
    writes it (.hydra/ and train.log in the run folder): its bytes are what must stay."""
    logs = tmp_path / "logs"
    base = [*TINY, "trainer.max_epochs=1", "test=false", f"paths.log_dir={logs}", "logger=csv"]
    status, err = _train_py_in_process(tmp_path, monkeypatch, capsys, *base, "run_name=r1")
    assert status == 0, err[-2000:]
    folder = logs / "train" / "r1"
    (folder / ".hydra").mkdir()
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        (folder / ".hydra" / name).write_text(f"# the finished run's {name}\n")
    (folder / "train.log").write_text("the finished run's log\n")
    record = {p.name: p.read_bytes() for p in [*(folder / ".hydra").iterdir(), folder / "train.log"]}
    for extra, said in (
        (["run_name=r1", "seed=7"], "already holds a run"),
        (["run_name=r1", "ckpt_path=last", "model.lr=0.5"], "was trained with other model or data settings"),
    ):
        status, err = train_py_checks(tmp_path, monkeypatch, capsys, *base, *extra)
        assert status == 2 and err.startswith("train.py: error: "), err[-2000:]
        assert said in err
        assert {
            p.name: p.read_bytes() for p in [*(folder / ".hydra").iterdir(), folder / "train.log"]
        } == record
    # The default run name is pinned on the command line, yet ckpt_path=last still resumes the newest run
    # of the job (it looked for the new folder's own last.ckpt, "no run of that name has started").
    # In this process, train.py's checks before Hydra included (they pin the name); what train.log gets from
    # the run's log is checked through train.py by the Latin-1 image test.
    with caplog.at_level(logging.INFO, logger="marsunits.run_resume"):
        status, err = _train_py_in_process(
            tmp_path, monkeypatch, capsys, *base, "ckpt_path=last", "trainer.max_epochs=2"
        )
    assert status == 0, err[-2000:]
    (resumed,) = [p for p in (logs / "train").iterdir() if p.name != "r1"]
    assert f"ckpt_path=last -> {folder / 'checkpoints' / 'last.ckpt'}" in caplog.messages
    assert "seconds_total" in json.loads((resumed / "metrics.json").read_text())  # a run in two parts


def test_the_command_line_check_composes_deletions_as_the_run_does(tmp_path: Path) -> None:
    """``~key`` overrides were left out of the config composed before Hydra: its job was not the run's, and
    a resume of a run started with a deletion was refused as "trained with other model or data settings"."""
    from marsunits import run_folder_claim
    from marsunits.cli_overrides import claim_run_folder

    logs = tmp_path / "logs"
    argv = [*TINY, "trainer.max_epochs=1", "test=false", f"paths.log_dir={logs}", "~data.hflip_p"]
    run(compose_config("train", logs / "train" / "del", [*argv, "run_name=del"]))
    try:
        resume = [*argv, "run_name=del", "ckpt_path=last"]
        assert claim_run_folder(resume, CONFIG_DIR) == (None, resume)
        assert claim_run_folder([*resume[:-2], "ckpt_path=last"], CONFIG_DIR)[0] is None  # the newest run
        refused, _ = claim_run_folder([*argv[:-1], "run_name=del", "ckpt_path=last"], CONFIG_DIR)
        assert refused is not None and "data.hflip_p: absent -> " in refused  # without the deletion
    finally:
        run_folder_claim.release_held_claims()


def test_a_second_run_in_a_run_folder_in_use_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs started in the same second got the same default run folder and wrote their config.yaml,
    checkpoints and metrics.json over each other, both with status 0."""
    import subprocess
    import sys
    import textwrap

    from marsunits.run_folder_claim import is_global_rank_zero

    folder = tmp_path / "run"
    cfg = compose_config("train", folder, [*TINY, "trainer.max_epochs=1", "test=false"])
    holder = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from marsunits.run_folder_claim import claimed_run_folder
        with claimed_run_folder(Path({str(folder)!r})):
            print("held", flush=True)
            time.sleep(60)
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "SLURM_PROCID")}
    other = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "held"
        with pytest.raises(
            ConfigError, match=rf"run folder {folder} is in use by train.py \(pid {other.pid}"
        ) as err:
            run(cfg)
        assert "same default run_name: give this one its own, e.g. run_name=" in str(err.value)
        assert not (folder / "config.yaml").exists()  # the other run's folder untouched
        # From the command line it is refused before Hydra writes its .hydra/ record (the other run's
        # .hydra/config.yaml was replaced by this command's) or train.log there.
        held = tmp_path / "logs" / "train" / "held"
        second = subprocess.Popen(
            [sys.executable, "-c", holder.replace(repr(str(folder)), repr(str(held)))],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert second.stdout is not None and second.stdout.readline().strip() == "held"
            proc = subprocess.run(
                [sys.executable, str(REPO_ROOT / "train.py"), *TINY, f"paths.log_dir={tmp_path / 'logs'}"]
                + ["run_name=held"],
                capture_output=True,
                text=True,
                timeout=120,
                env=env,
            )
            # A DDP rank that Lightning starts again with the same command line (LOCAL_RANK=1) is not
            # refused: its rank 0 holds the folder.
            from marsunits.cli_overrides import claim_run_folder

            argv = [*TINY, f"paths.log_dir={tmp_path / 'logs'}", "run_name=held"]
            assert claim_run_folder(argv, CONFIG_DIR)[0] is not None
            monkeypatch.setenv("LOCAL_RANK", "1")
            assert claim_run_folder(argv, CONFIG_DIR) == (None, argv)
            monkeypatch.delenv("LOCAL_RANK")
        finally:
            second.kill()
            second.wait()
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert proc.stderr.startswith(
            f"train.py: error: run folder {held} is in use by train.py (pid {second.pid}"
        )
        assert sorted(p.name for p in held.iterdir()) == [".train.claim"]  # no .hydra/, no train.log
    finally:
        other.kill()
        other.wait()
    # Its process is gone (a SIGKILL): the operating system released the claim, the folder is free.
    run(cfg)
    assert (folder / "config.yaml").is_file()
    last = folder / "checkpoints" / "last.ckpt"  # one run after another in the folder: resumed in place
    run(compose_config("train", folder, [*TINY, "trainer.max_epochs=2", "test=false", f"ckpt_path={last}"]))
    # Only the global rank 0 claims (DDP ranks share the folder); an inherited SLURM_PROCID=0 beside
    # Lightning's LOCAL_RANK=1 is another rank.
    cases = (
        ({"RANK": "1"}, False),
        ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, False),
        ({"SLURM_PROCID": "0", "LOCAL_RANK": "1"}, False),
        ({"OMPI_COMM_WORLD_RANK": "3"}, False),
        ({"RANK": "0", "LOCAL_RANK": "0"}, True),
        ({}, True),
    )
    for env_vars, zero in cases:
        for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "OMPI_COMM_WORLD_RANK"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env_vars.items():
            monkeypatch.setenv(name, value)
        assert is_global_rank_zero() is zero, env_vars


def test_a_bad_checkpoint_to_resume_from_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    """Lightning read the resume checkpoint inside fit, after the run folder's files were written: a file cut
    short, a garbage or an unsafe one, and a checkpoint of another network copied out of its run folder,
    each ended in a traceback."""
    from marsunits.task import CheckpointError

    first = run(compose_config("train", tmp_path / "a", [*TINY, "trainer.max_epochs=1", "test=false"]))
    last = Path(first["last_ckpt"])
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    garbage = tmp_path / "notes.ckpt"
    garbage.write_text("not a checkpoint")
    copied = tmp_path / "copied.ckpt"  # no config.yaml beside it to compare the model settings with
    copied.write_bytes(last.read_bytes())
    cases = [
        (cut, [], CheckpointError, r"cut.ckpt is a checkpoint file cut short"),
        (garbage, [], CheckpointError, r"notes.ckpt is not a checkpoint"),
        (
            copied,
            ["model.decoder_channels=[16,16,8]"],
            ConfigError,
            r"copied.ckpt holds another network",
        ),
        (  # one tensor, the stem's: it read "1 tensor names or shapes differ"
            copied,
            ["data.in_channels=1"],
            ConfigError,
            r"copied.ckpt holds another network .*: 1 tensor name or shape differs "
            r"\(\['model\.encoder\.model\.conv_stem\.weight'\]; hyper-parameters",
        ),
    ]
    for k, (ckpt, extra, error, said) in enumerate(cases):
        folder = tmp_path / f"r{k}"
        cfg = compose_config("train", folder, [*TINY, "trainer.max_epochs=2", f"ckpt_path={ckpt}", *extra])
        with pytest.raises(error, match=said):
            run(cfg)
        assert not (folder / "config.yaml").exists() and not (folder / "checkpoints").exists()
    resumed = run(
        compose_config("train", tmp_path / "ok", [*TINY, "trainer.max_epochs=2", f"ckpt_path={copied}"])
    )
    assert torch.load(resumed["last_ckpt"], map_location="cpu", weights_only=True)["epoch"] == 2


def test_a_missing_model_to_evaluate_or_start_from_is_refused_before_the_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``train=false ckpt_path=<missing>`` and ``init_ckpt_path=<missing>`` were refused only inside the run,
    after Hydra had made the run folder with its .hydra/ record and train.log: a folder of a run that never
    started (README: such a command makes no run folder). The file's existence is now checked first.
    The first case through train.py itself, the others through its checks before Hydra in this process."""
    logs = tmp_path / "logs"
    missing = tmp_path / "no_such.ckpt"
    for k, (args, option) in enumerate(
        (
            (["train=false", f"ckpt_path={missing}"], "ckpt_path"),
            (["train=false", f"ckpt_path={tmp_path}"], "ckpt_path"),  # a folder that is no model package
            ([f"init_ckpt_path={missing}"], "init_ckpt_path"),
            (["train=false", f"init_ckpt_path={missing}"], "init_ckpt_path"),
            # A folder named by the clock, which the command line leaves to the run: the values are checked.
            (["run_name=x-${now:%H-%M-%S}", "train=false", f"ckpt_path={missing}"], "ckpt_path"),
            # Named as a model package's file, in no package: taken for one by its name, and refused inside
            # the run, after the run folder was made, as "/model.json does not exist".
            (["train=false", f"ckpt_path={tmp_path / 'nope' / 'model.json'}"], "ckpt_path"),
            ([f"init_ckpt_path={tmp_path / 'nope' / 'model.safetensors'}"], "init_ckpt_path"),
            (["train=false", f"ckpt_path={tmp_path / 'model.json'}"], "ckpt_path"),  # a folder there
        )
    ):
        argv = [*TINY, "logger=none", f"paths.log_dir={logs}", *args]
        status, said = _train_py_status(k == 0, tmp_path, monkeypatch, capsys, *argv)
        assert status == 2, (args, said[-2000:])
        assert f"train.py: error: {option}=" in said and "no such file or model package" in said, said[-2000:]
        assert not logs.exists(), sorted(logs.rglob("*"))


def test_a_missing_folder_root_names_the_value_given_and_what_the_folder_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``data=folder data.root=<missing>`` advised ``data.root=/path/to/folder``, a placeholder, in place of
    the user's value, and said only "images/ and masks/ sub-folders": the advice now shows the value given,
    quoted for the shell, and what the folder must hold (masks in project ids). Through train.py's checks
    before Hydra in this process (train.py's own start, status 2 and no run folder on such a refusal: the
    checkpoint tests above)."""
    missing = tmp_path / "sol 12"
    logs = tmp_path / "logs"
    status, said = train_py_checks(
        tmp_path,
        monkeypatch,
        capsys,
        "model=tiny",
        "logger=none",
        f"paths.log_dir={logs}",
        "data=folder",
        f"data.root={missing}",
    )
    assert status == 2 and "Traceback" not in said, said[-2000:]
    assert f"root folder {missing} does not exist" in said, said[-2000:]
    assert "/path/to/" not in said and f"`'data.root={missing}'`" in said, said[-2000:]
    assert "images/<stem>" in said and "masks/<stem>.png" in said and "project ids" in said, said[-2000:]
    assert not logs.exists(), sorted(logs.rglob("*"))


def test_a_text_file_as_the_checkpoint_is_refused_before_the_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``ckpt_path=<a text file>`` (resume or ``train=false``) and ``init_ckpt_path=<a text file>`` passed the
    check that the file is there and were refused only inside the run, after Hydra had made the run folder.
    The file's first bytes (a zip archive or a pickle, as torch.save writes) are now checked first.
    Through train.py's checks before Hydra in this process: the missing-model test above starts train.py
    itself for the same check of the checkpoint options."""
    logs = tmp_path / "logs"
    notes = tmp_path / "notes.ckpt"
    notes.write_text("the run I liked: logs/train/2026-12-06/checkpoints/best.ckpt\n")
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    config = tmp_path / "config.yaml"  # a run folder's, given for its checkpoint
    config.write_text("task:\n  lr: 0.001\n")
    for args, option, found in (
        ([f"ckpt_path={notes}"], "ckpt_path", "is a text file and starts with b'the '"),
        (["train=false", f"ckpt_path={notes}"], "ckpt_path", "is a text file and starts with b'the '"),
        ([f"init_ckpt_path={notes}"], "init_ckpt_path", "is a text file and starts with b'the '"),
        ([f"init_ckpt_path={config}"], "init_ckpt_path", "is a text file (YAML) and starts with b'task'"),
        ([f"init_ckpt_path={empty}"], "init_ckpt_path", "is empty"),
    ):
        argv = [*TINY, "logger=none", f"paths.log_dir={logs}", *args]
        status, said = train_py_checks(tmp_path, monkeypatch, capsys, *argv)
        assert status == 2, (args, said[-2000:])
        assert f"train.py: error: {option}=" in said and "is not a checkpoint" in said, said[-2000:]
        assert found in said and ".ckpt written by marsunits' train.py" in said, said[-2000:]
        assert ("model package" in said) == (args[0] != f"ckpt_path={notes}"), said[-2000:]  # no resume
        assert not logs.exists(), sorted(logs.rglob("*"))


def test_resuming_after_the_data_changed_refuses_to_validate_on_trained_sols(tmp_path: Path) -> None:
    """Panoramas added to the data folder since a run began re-draw the sol-grouped split; the resumed run
    then validated on sols its network had trained on, silently, and kept best.ckpt by those scores."""
    from marsunits.data.fake import write_fake_marsscapes

    sols = (9, 10, 19, 20, 29, 30, 39, 40, 49, 50, 59, 60, 69, 70)
    root = write_fake_marsscapes(tmp_path / "marsscapes", sols=sols, height=64, width=128)
    common = [
        "model=tiny",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "data.batch_size=4",
        "data=marsscapes",
        f"data.root={root}",
        "data.crop_size=64",
        "data.samples_per_epoch=8",
        "test=false",
    ]
    run(compose_config("train", tmp_path / "run", [*common, "trainer.max_epochs=1"]))
    resume = [*common, "trainer.max_epochs=2", "ckpt_path=last"]
    run(compose_config("train", tmp_path / "run", resume))  # the same data: resumes
    config = OmegaConf.load(tmp_path / "run" / "config.yaml")
    before = instantiate(config.data)
    before.setup("fit")
    write_fake_marsscapes(root, sols=(*sols, 109, 119, 129), height=64, width=128)
    after = instantiate(config.data)
    after.setup("fit")
    moved = set(validation_sols(after.splits)["marsscapes"]) & set(before.trained_sols()["marsscapes"])
    assert moved  # the precondition: the new split validates on trained sols
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    with pytest.raises(
        DataError, match=r"ckpt_path=.*last\.ckpt \(the run this command resumes\) was trained"
    ):
        run(compose_config("train", tmp_path / "run", [*common, "trainer.max_epochs=3", f"ckpt_path={last}"]))


def test_resuming_after_images_were_added_to_a_folder_refuses_to_validate_on_trained_images(
    tmp_path: Path,
) -> None:
    """data=folder splits its images one by one, by position: an image added since the run began moved
    several across the split, and the resumed run validated on images it had trained on, silently."""
    from marsunits.data.fake import write_fake_folder

    root = write_fake_folder(tmp_path / "folder", n_images=10, height=64, width=64)
    common = folder_run(root)
    run(compose_config("train", tmp_path / "run", [*common, "trainer.max_epochs=1"]))
    run(compose_config("train", tmp_path / "run", [*common, "trainer.max_epochs=2", "ckpt_path=last"]))
    config = OmegaConf.load(tmp_path / "run" / "config.yaml")
    before = instantiate(config.data)
    before.setup("fit")
    write_fake_folder(root, n_images=13, height=64, width=64)
    after = instantiate(config.data)
    after.setup("fit")
    val_after = {after._image_key("folder", r) for r in after.splits["folder"][1]}
    assert val_after & set(before.trained_images()["folder"])  # the precondition: the split moved
    with pytest.raises(
        DataError, match=r"the run this command resumes\) was trained on \d+ images? of 'folder'"
    ) as refused:
        run(compose_config("train", tmp_path / "run", [*common, "trainer.max_epochs=3", "ckpt_path=last"]))
    # It advised a new run from its weights (init_ckpt_path=<its checkpoint>), which validates on the same
    # images the weights trained on and is refused in turn: the advice must say so, not offer it as a way out.
    assert "init_ckpt_path=<its checkpoint> starts from its weights" not in str(refused.value)
    assert "refused for the same reason" in str(refused.value)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    with pytest.raises(
        DataError, match=r"init_ckpt_path=.* was trained on \d+ of the images this run validates"
    ):
        run(compose_config("train", tmp_path / "fresh", [*common, f"init_ckpt_path={last}"]))
    allowed = [*common, "trainer.max_epochs=3", "ckpt_path=last", "data.allow_seen_val_sols=true"]
    assert 0.0 <= run(compose_config("train", tmp_path / "run", allowed))["val/miou"] <= 1.0


def test_a_model_trained_on_images_this_run_validates_on_is_refused_under_any_name(tmp_path: Path) -> None:
    """A data=folder model records its training images by content (they have no sol): fine-tuning from it
    (init_ckpt_path) or evaluating it (train=false) on a folder whose validation part holds copies of them,
    renamed, gave optimistic scores silently; predict.py names such images among those it scores."""
    import shutil

    from marsunits.data.fake import write_fake_folder
    from marsunits.export import export_checkpoint
    from marsunits.file_digest import file_sha256, image_content_key
    from marsunits.inference import run as predict

    a = write_fake_folder(tmp_path / "a", n_images=10, height=64, width=64)
    common = [*folder_run(None), "trainer.max_epochs=1"]
    trained = run(compose_config("train", tmp_path / "t", [*common, f"data.root={a}"]))
    dm = instantiate(OmegaConf.load(tmp_path / "t" / "config.yaml").data)
    dm.setup("fit")
    train_images = [r.image for r in dm.splits["folder"][0]]
    task = load_task(trained["best_ckpt"])
    assert task.trained_image_keys == sorted(image_content_key(file_sha256(p)) for p in train_images)
    # Another folder made of those training images under other names: whatever it validates on, it trained on.
    b = tmp_path / "b"
    for sub in ("images", "masks"):
        (b / sub).mkdir(parents=True)
    for k, image in enumerate(train_images):
        shutil.copy(image, b / "images" / f"copy_{k}.png")
        shutil.copy(a / "masks" / image.name, b / "masks" / f"copy_{k}.png")
    on_b = [*common, f"data.root={b}"]
    package = tmp_path / "package"
    export_checkpoint(trained["best_ckpt"], package)
    for model in (trained["best_ckpt"], package):  # a package carries the keys too
        with pytest.raises(DataError, match=rf"ckpt_path={model} was trained on \d+ of the images .*copy_"):
            run(compose_config("train", tmp_path / "eval", [*on_b, "train=false", f"ckpt_path={model}"]))
    fine = [*on_b, f"init_ckpt_path={trained['best_ckpt']}"]
    with pytest.raises(DataError, match=r"init_ckpt_path=.* was trained on .*allow_seen_val_sols=true"):
        run(compose_config("train", tmp_path / "fine", fine))
    tuned = run(compose_config("train", tmp_path / "fine2", [*fine, "data.allow_seen_val_sols=true"]))
    assert load_task(tuned["best_ckpt"]).trained_image_keys == task.trained_image_keys  # nothing new
    # Its own folder, its own split: accepted.
    same = run(
        compose_config(
            "train",
            tmp_path / "same",
            [*common, f"data.root={a}", "train=false", f"ckpt_path={trained['best_ckpt']}"],
        )
    )
    assert same["val/miou"] == pytest.approx(trained["val/miou"], abs=1e-6)
    # predict.py scoring those copies names them, and not an image the model never saw.
    write_fake_folder(b, stems=["unseen"], height=64, width=64, seed=9)
    out = tmp_path / "pred"
    cfg = compose_config(
        "predict",
        tmp_path / "hp",
        [
            f"ckpt_path={package}",
            f"input_dir={b / 'images'}",
            f"labels_dir={b / 'masks'}",
            f"output_dir={out}",
            "num_workers=0",
            "device=cpu",
        ],
    )
    assert predict(cfg) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images_scored"] == len(train_images) + 1
    assert metrics["images_trained_on"] == sorted(f"copy_{k}.png" for k in range(len(train_images)))
    assert predict(cfg) == 0  # skipped images are checked from their recorded digests
    assert json.loads((out / "metrics.json").read_text())["images_trained_on"] == metrics["images_trained_on"]


def test_a_folder_holding_copies_on_both_sides_of_its_split_still_evaluates_its_own_model(
    tmp_path: Path,
) -> None:
    """A user's folder with byte-identical copies under other names: the run's own split has one copy on each
    side. Evaluating (train=false) its own model on that same split was refused as "trained on the images
    this run validates on", with advice to use the very split it used."""
    import shutil

    from marsunits.data.fake import write_fake_folder
    from marsunits.file_digest import file_sha256, image_content_key

    root = write_fake_folder(tmp_path / "c", n_images=5, height=64, width=64)
    for k in range(5):
        for sub in ("images", "masks"):
            shutil.copy(root / sub / f"img_{k}.png", root / sub / f"twin_{k}.png")
    common = [*folder_run(root), "trainer.max_epochs=1"]
    trained = run(compose_config("train", tmp_path / "t", common))
    dm = instantiate(OmegaConf.load(tmp_path / "t" / "config.yaml").data)
    dm.setup("fit")
    train_keys = {image_content_key(file_sha256(r.image)) for r in dm.splits["folder"][0]}
    assert any(image_content_key(file_sha256(r.image)) in train_keys for r in dm.splits["folder"][1])
    again = [*common, "train=false", f"ckpt_path={trained['best_ckpt']}"]
    same = run(compose_config("train", tmp_path / "again", again))
    assert same["val/miou"] == pytest.approx(trained["val/miou"], abs=1e-6)
    # A model trained on other images, whose copies are on both sides of this folder's split, is still
    # charged with the ones it trained on.
    other_root = tmp_path / "other"
    for sub in ("images", "masks"):
        (other_root / sub).mkdir(parents=True)
    for r in dm.splits["folder"][1]:  # this folder's validation images, as another folder's training set
        for sub in ("images", "masks"):
            shutil.copy(root / sub / r.image.name, other_root / sub / r.image.name)
            shutil.copy(root / sub / r.image.name, other_root / sub / f"more_{r.image.name}")
    foreign = run(compose_config("train", tmp_path / "f", [*folder_run(other_root), "trainer.max_epochs=1"]))
    with pytest.raises(DataError, match=r"was trained on \d+ of the images this run validates on"):
        run(
            compose_config(
                "train", tmp_path / "f2", [*common, "train=false", f"ckpt_path={foreign['best_ckpt']}"]
            )
        )


def test_unreadable_images_without_a_cache_are_all_listed_when_the_first_one_stops_training(
    tmp_path: Path,
) -> None:
    """With data.cache=false, set-up reads image headers only (a truncated file has a whole one): training
    stopped at the first broken image drawn, naming it alone, and each run found one more."""
    from marsunits.data.fake import write_fake_folder
    from marsunits.data.store import UnusablePairsError

    root = write_fake_folder(tmp_path / "folder", n_images=8, height=64, width=64)
    broken = sorted((root / "images").iterdir())[:3]
    for image in broken:
        image.write_bytes(image.read_bytes()[:200])  # the header stays whole
    overrides = [
        "model=tiny",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "data=folder",
        f"data.root={root}",
        "data.cache=false",
        "data.num_workers=0",
        "data.batch_size=4",
        "data.crop_size=64",
        "data.samples_per_epoch=32",
        "trainer.max_epochs=1",
        "test=false",
    ]
    with pytest.raises(UnusablePairsError) as listed:
        run(compose_config("train", tmp_path / "run", overrides))
    said = str(listed.value)
    assert said.startswith("3 of 8 image/mask pairs cannot be used")
    assert all(image.name in said for image in broken)


def test_read_metrics_expands_the_home_folder_and_names_what_is_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``read_metrics("~/runs/x")`` was "No such file or directory: '~/runs/x'" (every other path option
    reads ``~`` as the home folder); a run folder without metrics.json, a file that is not JSON and a list of
    runs failed in pathlib's or json's words, naming no file or nothing to do."""
    from marsunits.run_metrics import read_metrics

    monkeypatch.setenv("HOME", str(tmp_path))
    run = tmp_path / "runs" / "x"
    run.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=rf"no metrics.json in the run folder {run}: .*finished run"):
        read_metrics("~/runs/x")
    (run / "metrics.json").write_text('{"val/miou": 0.5}')
    assert read_metrics("~/runs/x") == read_metrics(run / "metrics.json") == {"val/miou": 0.5}
    (run / "metrics.json").write_text("{truncated")
    with pytest.raises(ValueError, match=rf"{run / 'metrics.json'}: not the JSON train.py writes"):
        read_metrics(run)
    with pytest.raises(TypeError, match=r"run folder or its metrics.json, got list.*read_metrics\(p\) for p"):
        read_metrics([run])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "overrides",
    [
        *([f"experiment={p.stem}"] for p in sorted((CONFIG_DIR / "experiment").glob("*.yaml"))),
        *([f"model={p.stem}"] for p in sorted((CONFIG_DIR / "model").glob("*.yaml"))),
        ["model=unet_lite0", "model.encoder_depth=4"],  # smp's default decoder widths, cut to the depth
        ["trainer.precision=16-mixed"],
        ["trainer.precision=bf16"],
        ["trainer.devices=auto"],
        ["trainer.devices=-1"],
        ["trainer.devices=[0,1]"],
        ["trainer.devices='0,'"],
        ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"],
    ],
    ids=" ".join,  # the overrides as the id, so that -k picks a config's case (-k synthetic_tiny_demo)
)
def test_every_shipped_config_passes_the_checks_before_the_run_folder(
    tmp_path: Path, overrides: list[str]
) -> None:
    """The checks run before Hydra makes the run folder refuse no config the project ships (every
    experiment and model) nor the trainer values Lightning reads; a value refused there would stop a run
    that trains. The self-training experiment's pseudo-labelled folder is written by the README's step
    before it (pseudo_labels): a folder of its layout without images stands in for it here (the checks look
    only at the folder's subfolders)."""
    from hydra import compose, initialize_config_dir

    from marsunits.run_checks import check_config_values, refusal_before_hydra

    if overrides == ["experiment=marsscapes_selftrain"]:
        for sub in ("images", "masks"):
            (tmp_path / "pseudo" / sub).mkdir(parents=True)
        overrides = [*overrides, f"data.source_dirs.folder={tmp_path / 'pseudo'}"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    refused = refusal_before_hydra(cfg, tmp_path / "run")
    if refused is not None and "does not exist" in refused and not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (CI has it); the config reads it: {refused}")
    assert refused is None, refused
    # Called directly too: refusal_before_hydra leaves to the run anything but a refusal (a crash included).
    cfg.paths.output_dir = str(tmp_path / "run")
    check_config_values(OmegaConf.masked_copy(cfg, [str(k) for k in cfg if k != "hydra"]))


def test_the_readme_train_commands_pass_the_checks_before_the_run_folder(tmp_path: Path) -> None:
    """Every ``train.py`` command of the README and of RESULTS.md, the experiment log behind its Results
    (one run, not a sweep; shell variables and <placeholders> left out) passes the checks the command line
    runs before Hydra makes the run folder, but for the GPU commands on a machine without one, a ``???``
    the README leaves to the user and a checkpoint its earlier commands write."""
    import re

    from hydra import compose, initialize_config_dir

    from conftest import USER_DOCS
    from marsunits.errors import MissingFileError
    from marsunits.run_checks import check_config_values

    checked = {}
    commands = [
        (path.name, tail)
        for path in [*USER_DOCS, REPO_ROOT / "RESULTS.md"]
        for tail in re.findall(r"train\.py((?:[ \t]+(?:\\\n\s*)?[^\s`]+)+)", path.read_text(encoding="utf-8"))
    ]
    for doc, tail in commands:
        tokens = [a.strip("'\"(),;:") for a in tail.split(" #")[0].replace("\\\n", " ").split()]
        args = [a for a in tokens if re.match(r"^[A-Za-z_+][\w.@/+-]*=", a) and not re.search("[<$]", a)]
        if (
            not args
            or {"-m", "--multirun"} & set(tokens)
            or any("," in a.split("=", 1)[1] and "[" not in a for a in args)
        ):
            continue
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("train", overrides=args, return_hydra_config=True)
        if "hparams_search" in cfg.hydra.runtime.choices and cfg.hydra.runtime.choices.hparams_search:
            continue  # a sweep's settings: its trials are checked one by one
        cfg.paths.output_dir = str(tmp_path / "run")
        try:
            check_config_values(OmegaConf.masked_copy(cfg, [str(k) for k in cfg if k != "hydra"]))
        except ConfigError as refused:
            gpu = "no CUDA GPU" in str(refused) and not torch.cuda.is_available()
            # A checkpoint the README's earlier commands write (logs/train/<run>/checkpoints/best.ckpt).
            written = isinstance(refused, MissingFileError) and "ckpt_path=logs/train/" in str(refused)
            assert gpu or written or "not set (??? in the config)" in str(refused), (doc, args, str(refused))
        checked[doc] = checked.get(doc, 0) + 1
    # the pattern found each file's commands
    assert checked.get("training.md", 0) > 20 and checked.get("RESULTS.md", 0) > 2, checked


def test_a_number_read_from_the_environment_is_refused_with_how_to_read_it_as_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``${oc.env:BATCH}`` always gives text: ``data.batch_size='4': expected a whole number >= 1 ... e.g.
    data.batch_size=4`` refused the value it gave as its example. The message names the interpolation and
    the oc.decode that reads it as a number, which is then taken."""
    from hydra import compose, initialize_config_dir

    from marsunits.run_checks import refusal_before_hydra

    monkeypatch.setenv("MARSUNITS_TEST_BATCH", "4")
    monkeypatch.setenv("MARSUNITS_TEST_LR", "0.01")
    for value, said in (
        ("data.batch_size=${oc.env:MARSUNITS_TEST_BATCH}", "data.batch_size"),
        ("model.lr=${oc.env:MARSUNITS_TEST_LR}", "model.lr"),
    ):
        key, written = value.split("=", 1)
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("train", overrides=["model=tiny", value], return_hydra_config=True)
            decoded = compose(
                "train",
                overrides=["model=tiny", f"{key}='${{oc.decode:{written}}}'"],
                return_hydra_config=True,
            )
        refused = refusal_before_hydra(cfg, tmp_path / "run")
        assert refused is not None and refused.startswith(said), refused
        assert f"{written} gives text" in refused and f"{key}='${{oc.decode:{written}}}'" in refused, refused
        assert refusal_before_hydra(decoded, tmp_path / "run") is None  # as advised: taken


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("model.arch=unet++", "model.arch='unet++': Unknown architecture 'unet++'. Valid choices"),
        ("model.encoder=efficientnet-lite0", "model.encoder='efficientnet-lite0': Unknown encoder"),
        # A timm name smp's decoders cannot take (a plain ViT, one stride throughout): refused by smp only
        # when the network was built, inside the run folder; said before the offline weights that do not
        # fit it either (no weights make it fit).
        (
            "model.encoder=vit_tiny_patch16_224",
            "model.encoder='vit_tiny_patch16_224': encoder 'vit_tiny_patch16_224': its timm feature maps at "
            "strides [16, 16, 16] are not what smp's decoders take",
        ),
        (
            "model=unet_lite0 model.encoder=vit_tiny_patch16_224",
            "model.encoder='vit_tiny_patch16_224': encoder 'vit_tiny_patch16_224': its timm feature maps",
        ),
        ("model.encoder_weights=lite9", "model.encoder_weights='lite9': Unknown encoder_weights"),
        ("model.optimizer=adamm", "model.optimizer='adamm': Unknown optimizer 'adamm'. Valid choices"),
        ("model.scheduler=step", "model.scheduler='step': Unknown scheduler 'step'. Valid choices"),
        ("model.loss=dice", "model.loss='dice': Unknown loss 'dice'. Valid choices"),
        ("model.num_classes=4", "model.num_classes=4: the project has 3 classes"),
        ("data.batch_size=eight", "data.batch_size='eight': expected a whole number >= 1"),
        # model=tiny (3 encoder stages) takes multiples of 8; unet_lite0 (5) of 32, named as such
        ("data.crop_size=100", "data.crop_size=100: expected a multiple of 8 (model.arch=unet with model.en"),
        ("model=unet_lite0 data.crop_size=112", "data.crop_size=112: expected a multiple of 32 (model.arch="),
        ("data=folder data.root=x data.val_context_px=2", "data.val_context_px=2: expected a multiple of 4"),
        ("data.scene.width=100", "data.scene.width=100: expected a multiple of 8 (validation and test run"),
        ("data=folder", "data.root not set (??? in the config)"),
        # Refused once the scenes were rendered and the trainer built (Lightning's estimate of the steps).
        ("trainer.max_epochs=-1", "trainer.max_epochs=-1 (no limit) but model.scheduler='cosine' needs"),
        # Lightning refused these inside Hydra's instantiation of the Trainer: a traceback, status 1.
        ("trainer.devices=abc", "trainer.devices='abc': give a number of devices"),
        ("trainer.devices=0", "trainer.devices=0: give a number of devices"),
        # int()'s ValueError, a traceback: "--1" and "²" passed str.isdigit
        ("trainer.devices='--1'", "trainer.devices='--1': give a number of devices"),
        ("trainer.devices='0,²'", "trainer.devices='0,²': give a number of devices"),
        ("trainer=ddp trainer.accelerator=cpu trainer.num_nodes=0", "trainer.num_nodes=0: expected a whole"),
        # Refused only by the data module, the network or Lightning, once the scenes were rendered.
        ("data.in_channels=2", "data.in_channels=2: give 1 (grey) or 3 (colour)"),
        ("model.encoder_depth=7", "model.encoder_depth=7: encoder_depth must be a whole number from 1 to 5"),
        ("model.decoder_channels=[8,8]", "decoder_channels needs one width per encoder stage"),
        ("model=fpn_lite0 model.encoder_depth=2", "arch 'fpn' needs 3 to 5 encoder stages"),
        # smp's DPT takes a plain ViT, at 4 stages only: its "must have the same length" came in the run
        (
            "model.arch=dpt model.encoder=vit_tiny_patch16_224 model.decoder_channels=null",
            "model.encoder_depth=3: encoder_depth=3: arch 'dpt' takes 4 encoder stages",
        ),
        # The widths' key, not model.encoder_depth; 64 (no list) was a TypeError traceback in the run
        ("model.decoder_channels=64", "model.decoder_channels=64: decoder_channels must be a list of whole"),
        ("model.decoder_channels=[a,b,c]", "model.decoder_channels=['a', 'b', 'c']: decoder_channels must"),
        ("model.decoder_channels=[8.5,8,8]", "model.decoder_channels=[8.5, 8, 8]: decoder_channels must"),
        ("model.decoder_channels=[0,8,8]", "model.decoder_channels=[0, 8, 8]: decoder_channels must"),
        ("model.decoder_channels=[8,8]", "model.decoder_channels=[8, 8]: decoder_channels needs one width"),
        (
            "model=fpn_lite0 model.decoder_channels=[8,8,8,8,8]",
            "model.decoder_channels=[8, 8, 8, 8, 8]: decoder_channels is only configurable for arch 'unet'",
        ),
        ("model.lr=0", "model.lr must be a number > 0, got 0"),
        ("model.weight_decay=-1", "model.weight_decay must be a number >= 0, got -1"),
        ("trainer.precision=15", "trainer.precision=15: give one of Lightning's precisions"),
        # int()'s "invalid literal for int() with base 10: 'a'", naming no key, once Hydra made the folder
        (
            "model.subclasses=[a,b]",
            "model.subclasses=['a', 'b']: give the project class id (0 to 2: 0 smooth_volcanic",
        ),
        (
            "model.subclasses=[0,1,5]",
            "model.subclasses=[0, 1, 5]: give the project class id (0 to 2: 0 smooth_volcanic",
        ),
        ("model.subclasses=2", "model.subclasses=2: give the project class id (0 to 2: 0 smooth_volcanic, 1"),
        (
            "experiment=marsscapes_subclasses data.root=x data.subclasses=[a,b]",
            "data.subclasses=['a', 'b'] (which model.subclasses follows): give the project class id",
        ),
        # Sub-class outputs on the model alone (the data config has none), or the reverse: refused by the
        # run's check of the network against the data module, after Hydra made the folder.
        (
            "model.subclasses=[0,0,1,2]",
            "model.subclasses=[0, 0, 1, 2] but data.subclasses=None: the network's outputs must be the "
            "classes the training masks hold. Set data.subclass_map and data.subclasses (the model reads "
            "them), e.g. experiment=marsscapes_subclasses, and leave model.subclasses to follow them.",
        ),
        (
            "data=marsscapes data.root=x model.subclasses=[0,1,2,2]",
            "model.subclasses=[0, 1, 2, 2] but data.subclasses=None: the network's outputs must be the",
        ),
        (
            "experiment=marsscapes_subclasses data.root=x model.subclasses=null",
            "model.subclasses=None but data.subclasses=[0, 0, 1, 1, 1, 2, 2, 2]: the network's outputs must",
        ),
    ],
)
def test_a_wrong_value_is_refused_before_the_run_folder_is_made(
    tmp_path: Path, override: str, said: str
) -> None:
    """A wrong value on the command line (a misspelt architecture, a dash in a timm name, text for a
    number) was refused only inside the run, after Hydra had made the run folder and written its .hydra/
    record and train.log there: every mistyped command left a run folder of a run that never started. The
    command line now refuses it first, with the key and the valid choices, and makes no folder."""
    from marsunits.cli_overrides import claim_run_folder
    from marsunits.run_folder_claim import release_held_claims

    logs = tmp_path / "logs"
    try:
        refused, _ = claim_run_folder(["model=tiny", f"paths.log_dir={logs}", *override.split()], CONFIG_DIR)
    finally:
        release_held_claims()
    assert refused is not None and said in refused, refused
    assert not logs.exists() or not any(logs.rglob("*")), sorted(logs.rglob("*"))


def test_dpt_with_a_plain_vit_trains_on_crops_and_validates_on_whole_scenes(tmp_path: Path) -> None:
    """``model.arch=dpt`` with a plain ViT was refused before the run whatever the architecture (smp's DPT
    takes one), and a ViT built alone takes only its 224 x 224 pretraining size: training on 32-px crops
    and validating on 64 x 96 scenes checks both, through the run's checks and the run. A scene side of 48
    (a multiple of the ViT's 16, not of DPT's 32) is refused before the run."""
    dpt = [
        "model.arch=dpt",
        "model.encoder=vit_tiny_patch16_224",
        "model.encoder_depth=4",
        "model.decoder_channels=null",
    ]
    sizes = ["data.crop_size=32", "data.scene.height=96", "data.val_length=2", "trainer.max_epochs=1"]
    sizes.append("test=false")
    said = r"data.scene.height=48: expected a multiple of 32 \(.*model.arch=dpt.* multiples of 32, which its"
    with pytest.raises(ConfigError, match=said):
        run(compose_config("train", tmp_path / "48", [*TINY, *dpt, *sizes, "data.scene.height=48"]))
    run(compose_config("train", tmp_path, [*TINY, *dpt, *sizes]))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["val/miou"] <= 1.0, metrics


def test_a_wrong_value_is_refused_before_hydra_where_the_run_folder_is_left_to_the_run(
    tmp_path: Path,
) -> None:
    """Where the command line leaves the run folder to the run (a run_name made of the clock, another
    primary config, config path or config folder, a paths.output_dir), it skipped the value checks too: a
    mistyped value was refused only inside the run, after Hydra had made the run folder. The values are now
    checked there as well, and no folder is made."""
    from marsunits.cli_overrides import claim_run_folder
    from marsunits.run_folder_claim import release_held_claims

    logs = tmp_path / "logs"
    argv = ["model=tiny", f"paths.log_dir={logs}"]
    mine = tmp_path / "mine"  # a --config-dir of one's own configs, added to Hydra's search path
    (mine / "model").mkdir(parents=True)
    (mine / "model" / "tiny2.yaml").write_text("defaults:\n  - tiny\n  - _self_\n")
    for extra in (
        ["run_name=x-${now:%H-%M-%S}"],
        ["--config-name", "train"],
        ["-cn=train"],
        ["-cp", "configs", "-cn", "train.yaml"],
        ["-cd", str(mine), "model=tiny2"],
        [f"paths.output_dir={tmp_path / 'elsewhere'}"],
    ):
        try:
            refused, given = claim_run_folder([*argv, "data.crop_size=100", *extra], CONFIG_DIR)
            assert claim_run_folder([*argv, *extra], CONFIG_DIR) == (None, [*argv, *extra])  # fine values
        finally:
            release_held_claims()
        assert refused is not None and refused.startswith("data.crop_size=100: expected a multiple of 8"), (
            extra
        )
        assert given == [*argv, "data.crop_size=100", *extra]
    assert not logs.exists() and not (tmp_path / "elsewhere").exists()


def test_a_mistake_every_trial_of_a_sweep_shares_is_refused_before_any_trial_folder(tmp_path: Path) -> None:
    """``train.py -m model.lr=1e-3,2e-3 data.crop_size=100`` made one trial folder per trial (Hydra's record,
    a train.log) before each trial failed on the same value. The trials' configs are now checked before the
    sweep starts: a mistake they all share is said once, exit 2, and no folder is made; a grid some trial of
    which passes runs."""
    from marsunits.cli_overrides import claim_run_folder
    from marsunits.run_folder_claim import release_held_claims

    logs = tmp_path / "logs"
    argv = ["-m", *TINY, "trainer.max_epochs=1", f"paths.log_dir={logs}"]
    proc = _train_py(tmp_path, *argv, "model.lr=1e-3,2e-3", "data.crop_size=100")
    assert proc.returncode == 2, proc.stderr[-2000:]
    said = [line for line in proc.stderr.splitlines() if "Warning" not in line and line.strip()]
    assert said == [
        "train.py: error: data.crop_size=100: expected a multiple of 8 (model.arch=unet with "
        "model.encoder_depth=3 takes multiples of 2**3 = 8), e.g. data.crop_size=96 or data.crop_size=104 "
        "(in every trial of this sweep: none was started)"
    ], proc.stderr[-2000:]
    assert not logs.exists(), sorted(logs.rglob("*"))
    try:
        refused, _ = claim_run_folder([*argv, "data.crop_size=100,101"], CONFIG_DIR)  # each its own value
        assert refused is not None and refused.startswith(
            "every trial of this sweep is refused (none was started); the first (data.crop_size=100): "
            "data.crop_size=100: expected a multiple of 8"
        ), refused
        assert claim_run_folder([*argv, "data.crop_size=100,104"], CONFIG_DIR)[0] is None  # one trial runs
        # A glob over a config group's options (listed by Hydra's config loader when it sweeps) is listed too.
        refused, _ = claim_run_folder([*argv, "experiment=glob(synth*)", "data.crop_size=100"], CONFIG_DIR)
        assert refused is not None and refused.endswith("(in every trial of this sweep: none was started)")
    finally:
        release_held_claims()


def test_a_mistake_every_trial_of_an_optuna_study_shares_is_refused_before_any_trial_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``train.py hparams_search=optuna data.crop_size=100`` made three trial folders (the 3-failure rule of
    marsunits.sweep_trials) before it stopped, where a grid with the same mistake was refused up front. A
    study's fixed values are now checked the same way, the search space at each choice and at both ends of
    each interval: a refusal that stays the same whatever the searched values is said once, exit 2, no
    folder; one that depends on a searched value is left to the trials."""
    from marsunits.cli_overrides import sweep_refusal

    logs = tmp_path / "logs"
    # Without TINY's data.crop_size=64: a value given outright takes the option out of the search space.
    tiny = [a for a in TINY if not a.startswith("data.crop_size=")]
    argv = ["hparams_search=optuna", *tiny, "trainer.max_epochs=1", f"paths.log_dir={logs}"]
    # Through train.py's checks before Hydra (the grid's test above starts train.py itself for this check).
    status, err = train_py_checks(tmp_path, monkeypatch, capsys, *argv, "data.crop_size=100")
    assert status == 2, err[-2000:]
    said = [line for line in err.splitlines() if "Warning" not in line and line.strip()]
    assert len(said) == 1 and said[0].startswith(
        "train.py: error: data.crop_size=100: expected a multiple of 8 (model.arch=unet with "
        "model.encoder_depth=3 takes multiples of 2**3 = 8), e.g. data.crop_size=96 or data.crop_size=104 "
        "(the same in each trial checked, whatever the values of model.lr, model.encoder, model.dice_weight: "
        "a value every trial of this sweep shares; none was started)"
    ), err[-2000:]
    assert not logs.exists(), sorted(logs.rglob("*"))
    # A search space every choice of which shares the mistake; one that replaces the mistaken value.
    every = sweep_refusal(
        [*argv, "data.crop_size=100", "model.encoder=choice(resnet18,efficientnet_lite0)"], CONFIG_DIR
    )
    assert every is not None and every.startswith("data.crop_size=100: expected a multiple of 8"), every
    assert sweep_refusal([*argv, "data.crop_size=choice(96,100)"], CONFIG_DIR) is None  # trial with 96 runs
    # Searched values that each fail their own way may be a search range to fix: left to the trials.
    assert sweep_refusal([*argv, "data.crop_size=choice(100,101)"], CONFIG_DIR) is None
    # Only searched values, every one checked (no interval): refused, as a grid whose every trial is.
    only_choices = [*argv, "data.crop_size=choice(100,101)", "model.lr=0.001", "model.dice_weight=0.5"]
    refused = sweep_refusal(only_choices, CONFIG_DIR)
    assert refused is not None and refused.startswith("every trial of this sweep is refused"), refused
    assert sweep_refusal(argv, CONFIG_DIR) is None  # a study that runs


def test_a_large_grid_or_a_glob_of_a_config_dir_is_checked_before_any_trial_folder(tmp_path: Path) -> None:
    """A grid of more than 32 trials was not checked before it started (each of its trials is one
    composition): ``-m seed=range(0,40) data.crop_size=100`` made three trial folders before it stopped.
    Nor was a glob over the options of a ``--config-dir``/``-cd`` folder, listed from the project's own
    config folder only (``experiment=glob(mine*)`` listed nothing)."""
    from marsunits.cli_overrides import sweep_refusal

    argv = ["-m", *TINY, "trainer.max_epochs=1", f"paths.log_dir={tmp_path / 'logs'}"]
    refused = sweep_refusal([*argv, "seed=range(0,40)", "data.crop_size=100"], CONFIG_DIR)
    assert refused is not None and refused.startswith("data.crop_size=100: expected a multiple of 8"), refused
    assert "(the same in each trial checked, whatever the values of seed: a value every trial" in refused
    assert sweep_refusal([*argv, "seed=range(0,40)", "data.crop_size=100,104"], CONFIG_DIR) is None
    # Over the cap, trials that each fail their own way are not all composed: left to the trials.
    assert sweep_refusal([*argv, "seed=range(0,40)", "data.crop_size=100,101"], CONFIG_DIR) is None
    extra = tmp_path / "extra"
    (extra / "experiment").mkdir(parents=True)
    (extra / "experiment" / "mine.yaml").write_text("# @package _global_\nseed: 7\n")
    for flag in (["-cd", str(extra)], [f"--config-dir={extra}"]):
        refused = sweep_refusal([*argv, *flag, "experiment=glob(mine*)", "data.crop_size=100"], CONFIG_DIR)
        assert refused is not None and refused.endswith("(in every trial of this sweep: none was started)"), (
            flag,
            refused,
        )
    assert sweep_refusal([*argv, "-cd", str(extra), "experiment=glob(none*)"], CONFIG_DIR) is None  # no trial
    # The -cd folder's option of a glob is a trial of its own: one that passes is not overlooked. (Its trial
    # passes with a data module of one's own, whose data.* values are its own to check: a data.crop_size set
    # in it would lose to the command line's. glob(*) also listed the project's experiments, which do not
    # compose with TINY's data.train_length: the sweep was left unchecked whatever fine.yaml held.)
    (extra / "experiment" / "fine.yaml").write_text(
        "# @package _global_\ndata:\n  _target_: lightning.pytorch.LightningDataModule\n"
    )
    picked = [*argv, "-cd", str(extra), "data.crop_size=100"]
    assert sweep_refusal([*picked, "experiment=glob([mine,fine])"], CONFIG_DIR) is None
    assert sweep_refusal([*picked, "experiment=glob([mine])"], CONFIG_DIR) is not None  # without it: refused


def _setup_refusal(*overrides: str) -> str:
    """What the run says (the data module's setup) for a data config whose folder is missing."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["model=tiny", *overrides])
    with pytest.raises(FileNotFoundError) as missing:
        instantiate(cfg.data).setup("fit")
    return str(missing.value)


def test_a_missing_data_folder_is_refused_before_the_run_folder_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``train.py experiment=marsscapes data.root=/nope`` (and data=folder, ai4mars, the two-dataset
    experiments) was refused with a clear line only inside the run, after Hydra had made the run folder
    (its .hydra/ record and train.log). It is now refused before, in the data module's own words, with
    data.root resolved as the run resolves it (MARSUNITS_DATA, an interpolation), where the run folder is
    claimed, where it is left to the run, and for a grid whose trials all miss the folder. A user's own data
    module and a grid with a trial whose folder is there are left to the run."""
    from marsunits.cli_overrides import claim_run_folder
    from marsunits.run_folder_claim import release_held_claims

    logs = tmp_path / "logs"
    missing = tmp_path / "nope"
    there = tmp_path / "there"  # a folder with the folder layout (its images are the run's to read)
    for sub in ("images", "masks"):
        (there / sub).mkdir(parents=True)
    # Through train.py's checks before Hydra in this process: exit 2, the run's message, no run folder
    # (train.py's own start, status 2 and no run folder on a refusal of those checks: the missing-model and
    # the grid's shared-mistake tests).
    status, err = train_py_checks(
        tmp_path,
        monkeypatch,
        capsys,
        "model=tiny",
        "logger=none",
        f"paths.log_dir={logs}",
        "experiment=marsscapes",
        f"data.root={missing}",
    )
    assert status == 2, err[-2000:]
    said = [line for line in err.splitlines() if line.startswith("train.py: error:")]
    assert said == [f"train.py: error: {_setup_refusal('data=marsscapes', f'data.root={missing}')}"], err
    assert f"root folder {missing} does not exist" in said[0]
    assert not logs.exists(), sorted(logs.rglob("*"))

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MARSUNITS_DATA", str(missing))
    argv = ["model=tiny", "logger=none", f"paths.log_dir={logs}"]
    for overrides, run_sees in (
        (["data=folder", f"data.root={missing}"], None),
        (["experiment=ai4mars", f"data.root={missing}"], None),
        (["experiment=marsscapes_ai4mars", f"data.root={missing}"], None),
        (["experiment=marsscapes_selftrain", f"data.root={missing}"], None),
        (["experiment=marsscapes"], [f"data.root={missing / 'marsscapes'}"]),  # MARSUNITS_DATA
        (["data=folder", "data.root=${oc.env:HOME}/nope"], [f"data.root={missing}"]),  # an interpolation
        (["data=folder", "data.root='~/nope'"], None),  # as train.py quotes it
    ):
        expected = _setup_refusal(*overrides, *(run_sees or []))
        # Each way the run folder is named (claimed here, or left to the run), for the first dataset.
        ways = ([], ["run_name=r"], ["run_name=x-${now:%H-%M-%S}"], ["--config-name", "train"])
        for extra in ways if overrides[0] == "data=folder" and run_sees is None else ways[:1]:
            try:
                refused, _ = claim_run_folder([*argv, *overrides, *extra], CONFIG_DIR)
            finally:
                release_held_claims()
            assert refused == expected, (overrides, extra, refused)
    assert "data.source_dirs.marsscapes" in _setup_refusal(
        "experiment=marsscapes_ai4mars", f"data.root={missing}"
    )
    assert not logs.exists(), sorted(logs.rglob("*"))
    try:
        # A folder that is there, and a user's own data module, with folders of its own: left to the run.
        assert (
            claim_run_folder([*argv, "data=folder", f"data.root={there}", "run_name=a"], CONFIG_DIR)[0]
            is None
        )
        own = [*argv, "data=folder", f"data.root={missing}", "data._target_=test_train.OwnDataModule"]
        own.append("run_name=b")
        assert claim_run_folder(own, CONFIG_DIR)[0] is None
        # hydra.job.chdir=true: the run reads a relative folder from its run folder, not from here.
        moved = [*argv, "data=folder", "data.root=nope", "hydra.job.chdir=true", "run_name=c"]
        assert claim_run_folder(moved, CONFIG_DIR)[0] is None
    finally:
        release_held_claims()
    # A grid whose trials all miss the one folder: said once, with no trial started.
    expected = _setup_refusal("data=folder", f"data.root={missing}")
    sweep = ["-m", *argv, "data=folder", "model.lr=1e-3,2e-3"]
    try:
        refused, _ = claim_run_folder([*sweep, f"data.root={missing}"], CONFIG_DIR)
        assert refused == f"{expected} (in every trial of this sweep: none was started)", refused
        # A trial whose folder is there runs; the other fails in its trial, as before.
        assert claim_run_folder([*sweep, f"data.root={missing},{there}"], CONFIG_DIR)[0] is None
    finally:
        release_held_claims()


def test_a_data_folder_of_the_wrong_layout_is_refused_before_the_run_folder_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A data root that is there but laid out otherwise (``experiment=marsscapes data.root=<an AI4Mars
    folder>``, the folder holding the datasets, a folder inside the dataset's, ``data=folder`` without
    masks/) was found only inside the run, after Hydra had made the run folder, some in words about a
    stats.csv column. It is now refused before, in the run's own words, which say what the folder looks
    like and what to give; also once for a grid whose trials all have it."""
    from marsunits.cli_overrides import claim_run_folder
    from marsunits.data.fake import write_fake_ai4mars, write_fake_marsscapes
    from marsunits.run_folder_claim import release_held_claims

    logs = tmp_path / "logs"
    data = tmp_path / "data"
    ms = write_fake_marsscapes(data / "marsscapes", sols=(122,))
    ai = write_fake_ai4mars(data / "ai4mars_msl256", n_images=1)
    only = tmp_path / "only"
    (only / "images").mkdir(parents=True)
    argv = ["model=tiny", "logger=none", f"paths.log_dir={logs}"]
    # Through train.py's checks before Hydra (the missing-folder test above starts train.py itself for the
    # same check): exit 2, the run's message, no run folder.
    status, err = train_py_checks(
        tmp_path, monkeypatch, capsys, *argv, "experiment=marsscapes", f"data.root={ai}"
    )
    assert status == 2, err[-2000:]
    said = [line for line in err.splitlines() if line.startswith("train.py: error:")]
    expected = _setup_refusal("experiment=marsscapes", f"data.root={ai}")
    assert said == [f"train.py: error: {expected}"], err
    assert f"{ai} looks like an AI4Mars folder" in said[0] and "Traceback" not in err
    assert not logs.exists(), sorted(logs.rglob("*"))
    for overrides in (
        ["experiment=ai4mars", f"data.root={ms}"],
        ["experiment=marsscapes", f"data.root={data}"],
        ["experiment=ai4mars", f"data.root={data}"],
        ["experiment=marsscapes", f"data.root={ms / 'images'}"],
        ["data=folder", f"data.root={only}"],
        ["experiment=marsscapes_ai4mars", f"data.root={data}", "data.source_dirs.marsscapes=ai4mars_msl256"],
    ):
        try:
            refused, _ = claim_run_folder([*argv, *overrides], CONFIG_DIR)
        finally:
            release_held_claims()
        assert refused == _setup_refusal(*overrides), (overrides, refused)
    assert not logs.exists(), sorted(logs.rglob("*"))
    # A grid whose trials all have the wrong layout: said once, with no trial started; one whose folder is
    # right runs, the other failing in its trial.
    sweep = ["-m", *argv, "experiment=marsscapes", "model.lr=1e-3,2e-3"]
    try:
        refused, _ = claim_run_folder([*sweep, f"data.root={ai}"], CONFIG_DIR)
        assert refused == f"{expected} (in every trial of this sweep: none was started)", refused
        assert not logs.exists(), sorted(logs.rglob("*"))
        assert claim_run_folder([*sweep, f"data.root={ai},{ms}"], CONFIG_DIR)[0] is None
    finally:
        release_held_claims()


def test_a_folder_whose_classes_json_names_native_ids_is_refused_before_the_run_folder_is_made(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """AI4Mars labels copied as ``masks/`` of a ``data=folder`` root (class_map null) trained as project ids
    when none held a 3, sand (2) as ``other``, although the root's ``classes.json`` named AI4Mars' classes.
    The command is refused before the run folder is made, and the run refuses it before reading the data,
    naming that file, the data set and ``data.class_map=`` with its map, which composes and passes; a
    classes.json naming the project's classes passes, and one that cannot be read is said in a warning by the
    run only."""
    import re
    import shlex

    from hydra import compose, initialize_config_dir

    from marsunits.data.class_map import ClassMap
    from marsunits.data.fake import write_fake_folder
    from marsunits.run_checks import data_folder_refusal

    logs = tmp_path / "logs"
    root = write_fake_folder(tmp_path / "copied", n_images=3)  # masks of 0, 1, 2 and 255 only
    classes = root / "classes.json"
    ai4mars = {0: "soil", 1: "bedrock", 2: "sand", 3: "big_rock", 255: "null"}
    classes.write_text(json.dumps({"classes": [{"id": i, "name": n} for i, n in ai4mars.items()]}))
    argv = ["model=tiny", "logger=none", f"paths.log_dir={logs}", "data=folder", f"data.root={root}"]
    status, err = train_py_checks(tmp_path, monkeypatch, capsys, *argv)
    assert status == 2, err[-2000:]
    (said,) = [line for line in err.splitlines() if line.startswith("train.py: error:")]
    assert said.startswith(
        f"train.py: error: {classes}: the labels in {root} (data.root) hold the native ids of AI4Mars"
    ), said
    assert "(their 2, sand, as other)" in said and "Traceback" not in err, said
    assert not logs.exists(), sorted(logs.rglob("*"))

    def config(*overrides: str):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose("train", overrides=[*argv, *overrides])

    def data_config(*overrides: str):
        return config(*overrides).data

    # The run's own check, before any image is read: the same words.
    with pytest.raises(ConfigError) as refused:
        instantiate(data_config()).check_split()
    assert said == f"train.py: error: {refused.value}"
    (quoted,) = re.findall(r"data\.class_map='\{[^']*\}'", said)
    (fix,) = shlex.split(quoted)  # as a shell hands it over
    assert fix == "data.class_map={0: 0, 2: 0, 1: 1, 3: 1, 255: 255}", said
    fixed = instantiate(data_config(fix))
    fixed.check_split()
    mapped = ClassMap(fixed.class_map, "folder")(np.array([[0, 1, 2, 3, 255]], np.uint8))
    assert mapped.tolist() == [[0, 1, 0, 1, 255]]
    # With several sources, the source's own map and folder key.
    from marsunits.data.datamodule import MarsDataModule

    mixed = MarsDataModule(
        name="mixed",
        sources=["marsscapes", "folder"],
        in_channels=3,
        crop_size=32,
        root=str(tmp_path),
        source_dirs={"marsscapes": "marsscapes", "folder": root.name},
        class_map={"marsscapes": {0: 0, 255: 255}, "folder": None},
    )
    with pytest.raises(ConfigError) as refused:
        mixed.check_label_classes()
    assert f"the labels in {root} (data.source_dirs.folder)" in str(refused.value), refused.value
    assert "data.class_map.folder='{0: 0, 2: 0, 1: 1, 3: 1, 255: 255}'" in str(refused.value), refused.value
    # The project's own classes, as a user names them: masks in project ids.
    project = {0: "smooth_volcanic", 1: "rough olivine", 2: "Other", 255: "unlabelled"}
    classes.write_text(json.dumps({"classes": [{"id": i, "name": n} for i, n in project.items()]}))
    instantiate(data_config()).check_split()
    # Unreadable: no refusal; the run warns once, naming it (the check before Hydra says nothing).
    classes.write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assert data_folder_refusal(config()) is None
        assert not [r for r in caplog.records if str(classes) in r.getMessage()]
        instantiate(data_config()).check_split()
    warned = [r.getMessage() for r in caplog.records if str(classes) in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith(f"{classes} is ignored: it cannot be read as JSON"), (
        warned
    )
    assert "give data.class_map if the labels are in a data set's own ids" in warned[0], warned


def test_a_classes_json_inside_the_masks_folder_is_read_before_the_one_in_the_root(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Training read only ``ROOT/classes.json``: AI4Mars labels copied as ``masks/`` of a ``data=folder`` root
    with their own ``classes.json`` inside trained as project ids, sand (2) as ``other``, while predict.py
    reads a ``classes.json`` among the labels first. The check before Hydra and the run's now read the one in
    ``masks/`` (the folder the masks are read from) first, by predict's rule
    (:func:`~marsunits.data.class_map.labels_classes_folder`), and warn of it when it cannot be read."""
    from hydra import compose, initialize_config_dir

    from marsunits.data.fake import write_fake_folder
    from marsunits.run_checks import data_folder_refusal

    root = write_fake_folder(tmp_path / "copied", n_images=2)  # masks of 0, 1, 2 and 255 only
    ai4mars = {0: "soil", 1: "bedrock", 2: "sand", 3: "big_rock", 255: "null"}
    project = {0: "smooth_volcanic", 1: "rough_olivine", 2: "other", 255: "ignore"}

    def write(path: Path, classes: dict[int, str] | str) -> Path:
        text = (
            classes
            if isinstance(classes, str)
            else json.dumps({"classes": [{"id": i, "name": n} for i, n in classes.items()]})
        )
        path.write_text(text)
        return path

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["model=tiny", "logger=none", "data=folder", f"data.root={root}"])
    inside = write(root / "masks" / "classes.json", ai4mars)
    refused = data_folder_refusal(cfg)
    assert refused is not None, "masks/classes.json of AI4Mars' classes was not read"
    assert refused.startswith(f"{inside}: the labels in {root} (data.root) hold "), refused
    assert "data.class_map='{0: 0, 2: 0, 1: 1, 3: 1, 255: 255}'" in refused, refused
    with pytest.raises(ConfigError) as run_refused:
        instantiate(cfg.data).check_label_classes()
    assert str(run_refused.value) == refused
    # The labels' own file wins over the root's, either way.
    write(root / "classes.json", project)
    assert data_folder_refusal(cfg) == refused
    write(inside, project)
    write(root / "classes.json", ai4mars)
    assert data_folder_refusal(cfg) is None
    instantiate(cfg.data).check_label_classes()
    # One inside that cannot be read is the one warned of (the root's is not read then).
    write(inside, "{not json")
    with caplog.at_level(logging.WARNING):
        assert data_folder_refusal(cfg) is None
        instantiate(cfg.data).check_label_classes()
    warned = [r.getMessage() for r in caplog.records if "classes.json" in r.getMessage()]
    assert len(warned) == 1, warned
    assert warned[0].startswith(f"{inside} is ignored: it cannot be read as JSON"), warned


def test_the_crop_size_is_checked_against_the_configured_networks_divisor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``data.crop_size`` (and the validation window, crop_size + 2 x val_context_px) had to be a multiple of
    32 whatever the model: the default model (encoder_depth 4) takes multiples of 16, and 112 px crops were
    refused for it. The check before the run folder now asks the configured network's multiple, and names it;
    the run builds the network and the data module checks its own divisor again."""
    from hydra import compose, initialize_config_dir

    from marsunits.run_checks import refusal_before_hydra

    def refusal(*overrides: str) -> str | None:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
        return refusal_before_hydra(cfg, tmp_path / "run")

    assert refusal("data.crop_size=112") is None  # model=unet_lite0_d4: multiples of 16
    assert refusal("data.crop_size=112", "model=deeplabv3plus_lite0") is None  # encoder stride 16
    for sub in ("images", "masks"):  # a folder with the layout: a missing one, or another layout, is refused
        (tmp_path / sub).mkdir()
    folder = f"data.root={tmp_path}"
    assert refusal("data=folder", folder, "data.crop_size=112", "data.val_context_px=8") is None
    refused = refusal("data.crop_size=112", "model=unet_lite0")
    assert refused == (
        "data.crop_size=112: expected a multiple of 32 (model.arch=unet with model.encoder_depth=5 takes "
        "multiples of 2**5 = 32), e.g. data.crop_size=96 or data.crop_size=128"
    )
    refused = refusal("data.crop_size=100")
    assert refused is not None and "expected a multiple of 16" in refused and "data.crop_size=112" in refused
    refused = refusal("data=folder", folder, "data.crop_size=112", "data.val_context_px=4")
    assert refused is not None and refused.startswith("data.val_context_px=4: expected a multiple of 8")
    # The network built is checked again (train=false builds the checkpoint's, whatever the model config),
    # before the run folder's record is written.
    cfg = compose_config("train", tmp_path / "r2", [*TINY, "data.crop_size=36", "trainer.max_epochs=1"])
    monkeypatch.setattr("marsunits.run_checks.check_input_sizes", lambda cfg: None)
    with pytest.raises(
        ConfigError, match=r"data\.crop_size=36: expected a multiple of 8 \(.*configs/data/synthetic\.yaml\)"
    ):
        run(cfg)
    assert not (tmp_path / "r2" / "config.yaml").exists()


def test_the_data_checks_leave_a_data_module_of_ones_own_alone(tmp_path: Path) -> None:
    """The checks of data.* values (whole numbers, shares, multiples of the network's divisor, channels)
    are about marsunits' data module: a user's own (``data._target_=mypkg.MyDataModule``) with keys of
    its own was refused by them before its run started. They now apply only to marsunits' data modules.
    (The user's module here is one that imports: one that does not is refused, test_targets.py.)"""
    from hydra import compose, initialize_config_dir

    from marsunits.run_checks import marsunits_datamodule, refusal_before_hydra

    mine = ["data.crop_size=100", "+data.val_fraction=most", "data.batch_size=0", "data.in_channels=4"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        own = compose("train", overrides=["model=tiny", *mine], return_hydra_config=True)
        other = compose(
            "train",
            overrides=["model=tiny", "data._target_=test_train.OwnDataModule", *mine, "model.in_channels=4"],
            return_hydra_config=True,
        )
    assert marsunits_datamodule(own) and not marsunits_datamodule(other)
    assert refusal_before_hydra(own, tmp_path / "run") is not None
    assert refusal_before_hydra(other, tmp_path / "run") is None
    other.model.lr = 0  # the model's and trainer's checks still apply
    refused = refusal_before_hydra(other, tmp_path / "run")
    assert refused is not None and refused.startswith("model.lr must be a number > 0"), refused


def test_the_sdist_holds_every_file_of_the_checkout(tmp_path: Path) -> None:
    """A source distribution (``python -m build --sdist``, what a package index or an archive keeps) held only
    the package, README.md, pyproject.toml and the ``test_*.py`` files that setuptools picks up on its own:
    no train.py, predict.py or configs/ to train or predict with, no tests/conftest.py for its tests to run
    (they import it) and no data/README.md. MANIFEST.in now lists them: every tracked file is in it but the
    git and CI plumbing (.gitignore, .ci/). The build warns of nothing setuptools will refuse."""
    import shutil
    import tarfile

    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("needs a git checkout of the project (its list of tracked files)")
    # The build runs with this environment's setuptools (no isolated build environment, no network): one
    # older than pyproject.toml's [build-system] asks for refuses the SPDX license in a schema traceback.
    import tomllib
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement  # a dependency of pytest

    build_requires = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["build-system"]
    needed = next(r for r in map(Requirement, build_requires["requires"]) if r.name == "setuptools")
    try:
        have = version("setuptools")
    except PackageNotFoundError:
        have = "none"
    if have == "none" or not needed.specifier.contains(have, prereleases=True):
        pytest.skip(
            f"builds with this environment's setuptools ({have}); pyproject.toml's build needs {needed}: "
            f"pip install '{needed}' to run it"
        )
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True, timeout=60
    ).stdout
    tracked = {os.fsdecode(name) for name in listed.split(b"\0") if name}
    tree = tmp_path / "tree"  # the tracked files only: nothing built or generated in the checkout counts
    for name in tracked:
        if (REPO_ROOT / name).is_file():  # a tracked file deleted in the working tree is not there to pack
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, tree / name)
    built = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from setuptools import build_meta; print(build_meta.build_sdist({str(tmp_path)!r}))",
        ],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    # ``license = { text = ... }`` is deprecated (an SPDX string since setuptools 77), refused from 2027-02-18
    assert "DeprecationWarning" not in built.stderr, built.stderr[-3000:]
    with tarfile.open(tmp_path / built.stdout.strip().splitlines()[-1]) as sdist:
        packed = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    expected = {n for n in tracked if (tree / n).is_file() and n != ".gitignore" and not n.startswith(".ci/")}
    assert sorted(expected - packed) == []
    for needed in ("train.py", "predict.py", "configs/train.yaml", "tests/conftest.py", "data/README.md"):
        assert needed in packed
    # pyproject.toml said Apache-2.0 but no LICENSE file was there to ship: the license text, which the
    # license asks every copy to carry, is in the sdist and in the wheel built from it, named by its metadata.
    assert "LICENSE" in packed
    assert "Apache License" in (tree / "LICENSE").read_text(encoding="utf-8")
    import zipfile

    unpacked = tmp_path / "unpacked"
    with tarfile.open(tmp_path / built.stdout.strip().splitlines()[-1]) as sdist:
        sdist.extractall(unpacked, filter="data")
    (source,) = unpacked.iterdir()
    wheel = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from setuptools import build_meta; print(build_meta.build_wheel({str(tmp_path / 'wheel')!r}))",
        ],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert wheel.returncode == 0, wheel.stderr[-3000:]
    with zipfile.ZipFile(tmp_path / "wheel" / wheel.stdout.strip().splitlines()[-1]) as wheel_zip:
        info = next(n.split("/")[0] for n in wheel_zip.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = wheel_zip.read(f"{info}/METADATA").decode("utf-8").split("\n\n", 1)[0].splitlines()
        assert wheel_zip.read(f"{info}/licenses/LICENSE") == (tree / "LICENSE").read_bytes()
    assert "License-Expression: Apache-2.0" in metadata
    assert [line for line in metadata if line.startswith("License-File:")] == ["License-File: LICENSE"]


def test_the_readme_quick_check_of_real_data_logs_its_training_loss_without_lightning_s_warning(
    tmp_path: Path,
) -> None:
    """README's quick check of real data (``data.samples_per_epoch=16``: 2 batches of 8 an epoch) printed
    Lightning's "The number of training batches (2) is smaller than the logging interval
    Trainer(log_every_n_steps=10)", which a user reads as something wrong, and its loggers got no
    ``train/loss`` at all: a step is logged every 10. The interval is now lowered to the batches of an epoch,
    so the run logs its loss each epoch and Lightning has nothing to warn of."""
    import csv

    from marsunits.data.fake import write_fake_marsscapes

    (command,) = [
        line
        for line in (REPO_ROOT / "docs" / "training.md").read_text(encoding="utf-8").splitlines()
        if "data.samples_per_epoch=16" in line and line.startswith(".venv/bin/python train.py")
    ]
    readme = [w for w in command.split("#")[0].split()[2:] if not w.startswith("data.root=")]
    root = write_fake_marsscapes(tmp_path / "marsscapes", height=64, width=128)
    smallest = ["model=tiny", "data.crop_size=64", "data.num_workers=0", "trainer.enable_progress_bar=false"]
    overrides = [*readme, f"data.root={root}", *smallest, "logger=csv"]
    cfg = compose_config("train", tmp_path / "run", overrides)
    assert cfg.data.batch_size * 2 == cfg.data.samples_per_epoch == 16  # 2 batches, as the README's run
    assert cfg.trainer.log_every_n_steps > 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(cfg)
    assert not [w.message for w in caught if "logging interval" in str(w.message)]
    (csv_file,) = (tmp_path / "run" / "csv").glob("version_*/metrics.csv")
    with open(csv_file, newline="") as fh:
        assert [r["step"] for r in csv.DictReader(fh) if r.get("train/loss")] == ["1"]


@pytest.mark.parametrize("accumulate", [1, 2, 3])
def test_a_run_shorter_than_the_logging_interval_logs_each_epoch_whatever_its_gradient_accumulation(
    tmp_path: Path, accumulate: int
) -> None:
    """``LogWithinEpoch`` lowered ``log_every_n_steps`` to an epoch's batches, but Lightning counts the
    interval in optimiser steps: 4 batches accumulated 2 by 2 (``trainer.accumulate_grad_batches=2``, which
    train.py takes) are 2 steps, so an interval of 4 logged ``train/loss`` every second epoch, and a
    one-epoch run none. Each epoch logs its loss, at its last step, whatever the accumulation."""
    import csv

    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader, TensorDataset

    from marsunits.training import LogWithinEpoch

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch: list[torch.Tensor], index: int) -> torch.Tensor:
            loss = self.layer(batch[0]).pow(2).mean()
            self.log("train/loss", loss, on_step=True)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def train_dataloader(self) -> DataLoader:
            return DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=2)  # 4 batches

    trainer = pl.Trainer(
        max_epochs=2,
        accumulate_grad_batches=accumulate,
        log_every_n_steps=10,
        logger=CSVLogger(tmp_path),
        callbacks=[LogWithinEpoch()],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Tiny())
    steps_per_epoch = math.ceil(4 / accumulate)  # the last batch of an epoch steps
    (csv_file,) = tmp_path.glob("lightning_logs/version_*/metrics.csv")
    with open(csv_file, newline="") as fh:
        logged = [int(r["step"]) for r in csv.DictReader(fh) if r.get("train/loss")]
    assert logged == [steps_per_epoch - 1, 2 * steps_per_epoch - 1]  # one per epoch, at its last step

"""SegmentationTask (LightningModule), its self-describing checkpoints and load_task."""

from __future__ import annotations

import importlib.util
import math
import re
import socket
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

import marsunits.models.pretrained as pretrained
from marsunits.checkpoint_loading import load_task
from marsunits.constants import CLASS_NAMES, IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, PALETTE
from marsunits.task import CheckpointError, SegmentationTask

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# The tiny network of configs/model/tiny.yaml, as keyword arguments.
TINY = {
    "encoder": "mobilenetv3_small_050",
    "encoder_weights": None,
    "encoder_depth": 3,
    "decoder_channels": [32, 16, 8],
}
SIZE = 64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class RandomScenes(Dataset):
    """Random images with masks that contain every class and a band of ignored pixels."""

    def __init__(self, n: int = 4, channels: int = 3, size: int = SIZE) -> None:
        self.n, self.channels, self.size = n, channels, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        gen = torch.Generator().manual_seed(i)
        mask = torch.randint(0, 3, (self.size, self.size), generator=gen)
        mask[:5] = IGNORE_INDEX
        image = torch.rand(self.channels, self.size, self.size, generator=gen)
        return {"image": image, "mask": mask, "path": f"scene_{i}.png"}


def _trainer(max_steps: int = 2, **options: Any) -> L.Trainer:
    """A quiet CPU trainer of ``max_steps`` steps (-1: as many as ``max_epochs`` in ``options`` make)."""
    options.setdefault("num_sanity_val_steps", 0)
    return L.Trainer(
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
        **options,
    )


def _loader(channels: int = 3, size: int = SIZE) -> DataLoader:
    return DataLoader(RandomScenes(channels=channels, size=size), batch_size=2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[SegmentationTask, Path, dict]:
    """A tiny task fitted for 2 steps (with validation and test), its checkpoint and the logged metrics."""
    task = SegmentationTask(
        **TINY, class_map={3: 0, 7: 1}, dataset="random", tile_size=SIZE, warmup_steps=1, loss="ce+dice"
    )
    trainer = _trainer()
    trainer.fit(task, _loader(), _loader())
    logged = dict(trainer.callback_metrics)
    trainer.test(task, _loader(), verbose=False)
    logged.update(trainer.callback_metrics)
    task.wandb_run_id = "run-abc123"
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    trainer.save_checkpoint(path)
    return task, path, logged


@pytest.mark.parametrize("channels", [1, 3])
def test_forward_shape_and_default_normalisation(channels: int) -> None:
    task = SegmentationTask(in_channels=channels, **TINY).eval()
    with torch.no_grad():
        logits = task(torch.rand(2, channels, SIZE, 48))
    assert logits.shape == (2, 3, SIZE, 48)
    if channels == 3:
        assert task.hparams.mean == list(IMAGENET_MEAN) and task.hparams.std == list(IMAGENET_STD)
    else:
        assert task.hparams.mean == pytest.approx([sum(IMAGENET_MEAN) / 3])
        assert task.hparams.std == pytest.approx([sum(IMAGENET_STD) / 3])
    assert task.size_divisor == 8
    with pytest.raises(ValueError, match=f"Expected images \\(N, {channels}, H, W\\)"):
        task(torch.rand(1, 4 - channels if channels == 3 else 3, SIZE, SIZE))


def test_channels_last_gives_same_logits() -> None:
    torch.manual_seed(0)
    plain = SegmentationTask(**TINY).eval()
    fast = SegmentationTask(**TINY, channels_last=True).eval()
    fast.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), plain(x), rtol=1e-4, atol=1e-5)


def test_invalid_hyperparameters_fail_clearly() -> None:
    with pytest.raises(ValueError, match="one name and one RGB colour per class"):
        SegmentationTask(**TINY, class_names=["a", "b"])
    with pytest.raises(ValueError, match="mean and std need 1 values"):
        SegmentationTask(**TINY, in_channels=1, mean=[0.5, 0.5, 0.5], std=[0.2, 0.2, 0.2])
    with pytest.raises(ValueError, match="Unknown optimizer 'lion'"):
        SegmentationTask(**TINY, optimizer="lion")
    with pytest.raises(ValueError, match="Unknown scheduler"):
        SegmentationTask(**TINY, scheduler="step")


def test_a_few_steps_on_one_batch_lower_the_loss() -> None:
    torch.manual_seed(0)
    task = SegmentationTask(**TINY, lr=1e-2, scheduler="none")
    optimizer = task.configure_optimizers()
    batch = next(iter(_loader(size=32)))
    losses = []
    for _ in range(8):
        loss = task.criterion(task(batch["image"]), batch["mask"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.9 * losses[0]


@pytest.mark.parametrize("scheduler", ["none", "onecycle"])
def test_encoder_learning_rate_multiplier_splits_parameter_groups(scheduler: str) -> None:
    task = SegmentationTask(**TINY, lr=1e-2, encoder_lr_mult=0.1, scheduler=scheduler)
    if scheduler == "none":
        optimizer = task.configure_optimizers()
    else:
        trainer = _trainer(max_steps=1)
        trainer.fit(task, _loader(size=32))
        optimizer = trainer.optimizers[0]
    groups = optimizer.param_groups
    encoder = {id(p) for p in task.model.encoder.parameters()}
    assert len(groups) == 2
    assert {id(p) for p in groups[0]["params"]} == encoder
    assert not encoder & {id(p) for p in groups[1]["params"]}
    # Every trainable parameter is in exactly one group.
    assert sum(len(g["params"]) for g in groups) == len([p for p in task.parameters() if p.requires_grad])
    if scheduler == "none":
        assert groups[0]["lr"] == pytest.approx(1e-3) and groups[1]["lr"] == pytest.approx(1e-2)
    else:  # one-cycle keeps the 1:10 ratio of the peaks
        assert groups[0]["max_lr"] == pytest.approx(1e-3) and groups[1]["max_lr"] == pytest.approx(1e-2)
    with pytest.raises(ValueError, match="encoder_lr_mult must be a number > 0"):
        SegmentationTask(**TINY, encoder_lr_mult=0.0).configure_optimizers()


def test_fit_logs_metrics_and_keeps_confusion(trained) -> None:
    task, _, metrics = trained
    for stage in ("val", "test"):
        for name in ["loss", "miou", "pixel_acc", *(f"iou_{c}" for c in CLASS_NAMES)]:
            assert f"{stage}/{name}" in metrics, f"{stage}/{name}"
        confusion = task.last_confusion[stage]
        assert isinstance(confusion, np.ndarray) and confusion.shape == (3, 3)
        # Every scored pixel is counted once: 4 scenes, 64x64 minus 5 ignored rows.
        assert confusion.sum() == 4 * (SIZE - 5) * SIZE
        assert 0.0 <= float(metrics[f"{stage}/miou"]) <= 1.0
        accuracy = np.trace(confusion) / confusion.sum()
        assert float(metrics[f"{stage}/pixel_acc"]) == pytest.approx(accuracy, abs=1e-6)
    assert "train/loss" in metrics
    # Schedulers step per optimiser step.
    assert task.trainer.lr_scheduler_configs[0].interval == "step"


def test_each_validation_of_a_fit_is_one_log_line_with_its_scores(caplog: pytest.LogCaptureFixture) -> None:
    """A run's train.log held nothing between its set-up and the end of training, nor did a console that
    is not a terminal (Rich's bar draws on a terminal only): a 10-minute data=folder run under nohup said
    nothing for 10 minutes. Each validation of a fit now logs its epoch, step and scores; a model scored
    alone (trainer.validate, train=false) and the sanity check do not."""
    task = SegmentationTask(**TINY, tile_size=SIZE)
    with caplog.at_level("INFO", logger="marsunits.task"):
        trainer = _trainer(max_steps=-1, max_epochs=2, num_sanity_val_steps=1)
        trainer.fit(task, _loader(), _loader())
    said = [
        r.getMessage() for r in caplog.records if r.name == "marsunits.task" and "val/miou" in r.getMessage()
    ]
    assert len(said) == 2, said
    for epoch, line in enumerate(said):
        scores = r"val/miou \d\.\d{3}, val/loss \d+\.\d{3}, .*train/loss \d+\.\d{3}"
        assert re.fullmatch(
            rf"validation after epoch {epoch} \(epochs 0-1\), step {2 * epoch + 2}: {scores}", line
        ), line
    caplog.clear()
    with caplog.at_level("INFO", logger="marsunits.task"):
        _trainer().validate(task, _loader(), verbose=False)
    assert not [r for r in caplog.records if "val/miou" in r.getMessage()]


def test_absent_class_is_nan_and_left_out_of_miou() -> None:
    target = torch.tensor([[0, 0, 1, 1, IGNORE_INDEX]])
    preds = torch.tensor([[0, 0, 1, 0, 2]])  # class 2 only predicted on an ignored pixel: absent
    jaccard = SegmentationTask._make_metrics(3)["iou"]  # the metric the task logs iou_<name> and miou from
    iou = jaccard(preds, target)
    miou = iou.nanmean()
    assert iou[:2].tolist() == pytest.approx([2 / 3, 1 / 2])
    assert math.isnan(iou[2].item())
    assert miou.item() == pytest.approx((2 / 3 + 1 / 2) / 2)
    jaccard.reset()
    jaccard.update(torch.tensor([[1]]), torch.tensor([[IGNORE_INDEX]]))  # nothing scored
    assert math.isnan(jaccard.compute().nanmean().item())


def _logged_epoch(batches: list[tuple[torch.Tensor, torch.Tensor, int]], sources: list[str] | None) -> tuple:
    """Validate ``(logits, target, loader)`` batches through the task's own steps, the network replaced by the
    given logits; returns what the epoch end logs and the task."""
    from types import SimpleNamespace

    task = SegmentationTask(**TINY)
    logged: dict[str, float] = {}
    task.log = lambda key, value, **kwargs: logged.__setitem__(key, float(value))  # type: ignore[method-assign]
    task._trainer = SimpleNamespace(  # type: ignore[assignment]
        datamodule=SimpleNamespace(val_names=sources), world_size=1
    )
    for k, (logits, target, loader) in enumerate(batches):
        task.forward = lambda x, logits=logits: logits  # type: ignore[method-assign]
        task.validation_step({"image": torch.zeros(len(target), 3, 1, 1), "mask": target}, k, loader)
    task.on_validation_epoch_end()
    return logged, task


def _expected_scores(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, object]:
    """IoU per class, mIoU over the classes present, pixel accuracy and confusion (rows: target), by numpy."""
    preds = np.concatenate([p.flatten().numpy() for p, _ in pairs])
    target = np.concatenate([t.flatten().numpy() for _, t in pairs])
    scored = target != IGNORE_INDEX
    confusion = np.zeros((3, 3), np.int64)
    np.add.at(confusion, (target[scored], preds[scored]), 1)
    union = confusion.sum(0) + confusion.sum(1) - np.diag(confusion)
    with np.errstate(invalid="ignore"):
        iou = np.diag(confusion) / union
    return {
        "iou": iou,
        "miou": np.nanmean(iou),
        "acc": np.trace(confusion) / confusion.sum(),
        "confusion": confusion,
    }


def test_logged_metrics_are_those_of_the_epoch_pixels() -> None:
    """Every number the epoch end logs, recomputed from the predictions and targets with numpy: IoU per class
    under its own name, mIoU over the classes present (an absent class is NaN, not 0), pixel accuracy, the
    confusion matrix (rows = target) and the loss as the mean over images of batches of different sizes."""
    gen = torch.Generator().manual_seed(0)
    batches = []
    for n in (3, 1):  # batches of different sizes: the loss is a mean over images, not batches
        logits = torch.randn(n, 3, 6, 7, generator=gen)
        target = torch.randint(0, 2, (n, 6, 7), generator=gen)  # no `other` label ...
        target[:, 0] = IGNORE_INDEX
        logits[:, 2] = -100.0  # ... nor prediction: its IoU is undefined
        logits[:, 1, :, :2] += 50.0  # and plenty of rough predicted on smooth, so the IoUs differ
        batches.append((logits, target, 0))
    logged, task = _logged_epoch(batches, None)
    expected = _expected_scores([(lg.argmax(1), t) for lg, t, _ in batches])
    iou = expected["iou"]
    assert math.isnan(iou[2]) and not math.isclose(iou[0], iou[1])
    for k, name in enumerate(CLASS_NAMES):
        value = logged[f"val/iou_{name}"]
        assert (math.isnan(value) and math.isnan(iou[k])) or value == pytest.approx(iou[k]), name
    assert logged["val/miou"] == pytest.approx(expected["miou"])
    assert logged["val/pixel_acc"] == pytest.approx(expected["acc"])
    np.testing.assert_array_equal(task.last_confusion["val"], expected["confusion"])
    losses = [torch.nn.functional.cross_entropy(lg, t, ignore_index=IGNORE_INDEX) for lg, t, _ in batches]
    assert logged["val/loss"] == pytest.approx(float((3 * losses[0] + losses[1]) / 4), rel=1e-5)
    assert "val/miou_source_mean" not in logged  # one source: no per-source mean


def test_per_source_metrics_score_each_source_over_the_classes_it_labels() -> None:
    """Two sources: one labels all classes, the other (as AI4Mars) never labels `other`, which the model
    predicts there. Each source's mIoU over its labelled classes leaves that class out; their plain mean is
    what best.ckpt is chosen by; a source with nothing scored is left out of that mean."""
    gen = torch.Generator().manual_seed(1)
    full = (torch.randn(2, 3, 8, 8, generator=gen), torch.randint(0, 3, (2, 8, 8), generator=gen), 0)
    units = torch.randint(0, 2, (2, 8, 8), generator=gen)
    units_logits = torch.randn(2, 3, 8, 8, generator=gen)
    units_logits[:, 2, :2] += 50.0  # `other` predicted on its first rows
    blank = (torch.randn(1, 3, 8, 8, generator=gen), torch.full((1, 8, 8), IGNORE_INDEX), 2)
    batches = [full, (units_logits, units, 1), blank]
    logged, _ = _logged_epoch(batches, ["a", "b", "c"])
    a = _expected_scores([(full[0].argmax(1), full[1])])
    b = _expected_scores([(units_logits.argmax(1), units)])
    assert b["iou"][2] == 0.0  # predicted, never labelled
    assert logged["val/a/miou_labelled_classes"] == pytest.approx(a["miou"])
    assert logged["val/b/miou_labelled_classes"] == pytest.approx(np.mean(b["iou"][:2]))
    assert logged["val/b/miou"] == pytest.approx(np.mean(b["iou"]))
    assert logged["val/miou_source_mean"] == pytest.approx((a["miou"] + np.mean(b["iou"][:2])) / 2)
    pooled = _expected_scores([(lg.argmax(1), t) for lg, t, _ in batches])
    assert logged["val/miou"] == pytest.approx(pooled["miou"])


def test_the_network_sees_images_normalised_by_the_task_mean_and_std() -> None:
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.25, 2.0]
    task = SegmentationTask(**TINY, mean=mean, std=std).eval()
    seen: list[torch.Tensor] = []
    task.model = torch.nn.Sequential()  # type: ignore[assignment]
    task.model.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    x = torch.rand(1, 3, SIZE, SIZE)
    task.network_logits(x)
    expected = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(seen[0], expected)


def test_logged_boundary_scores_count_images_as_predict_does() -> None:
    """Per-image contact scores behind ``val/boundary_f1``: images with no scored contact on either side
    are left out (also when the predicted contact lies only under the label's ignore region, as in
    predict.py's evaluation); a contact on one side only scores F1 0; a shifted contact scores its shift."""
    from marsunits.boundary.metrics import BOUNDARY_TOLERANCE_PX, boundary_scores

    h, w = 16, 24
    truth = torch.zeros(5, h, w, dtype=torch.long)
    pred = torch.zeros(5, h, w, dtype=torch.long)
    # 0: one unit everywhere on both sides -> left out
    # 1: prediction has a contact, but only inside the label's ignore strip -> left out
    truth[1, :, 10:14] = IGNORE_INDEX
    pred[1, :, 12:] = 1
    truth[1, :, 14:] = 0
    # 2: true vertical contact at x = 12, predicted at x = 14 (2 px off, within the tolerance)
    truth[2, :, 12:] = 1
    pred[2, :, 14:] = 1
    # 3: true contact, none predicted -> F1 0, distance NaN
    truth[3, :, 12:] = 1
    # 4: predicted contact where the truth has none -> F1 0
    pred[4, 8:, :] = 1
    scores = SegmentationTask._boundary_scores(pred, truth)
    assert len(scores) == 3
    expected = boundary_scores(pred[2].numpy(), truth[2].numpy(), tolerance_px=BOUNDARY_TOLERANCE_PX)
    assert scores[0] == pytest.approx((expected["f1"], expected["mean_distance_px"]))
    assert scores[0][0] == 1.0 and scores[0][1] == pytest.approx(2.0)
    assert scores[1][0] == 0.0 and math.isnan(scores[1][1])
    assert scores[2][0] == 0.0


@pytest.mark.parametrize(("scheduler", "warmup"), [("cosine", 2), ("onecycle", None)])
def test_schedulers_follow_the_run_length(scheduler: str, warmup: int | None) -> None:
    task = SegmentationTask(**TINY, scheduler=scheduler, warmup_steps=warmup, lr=1e-2)
    trainer = _trainer(max_steps=3)
    trainer.fit(task, _loader(size=32))
    lrs = trainer.lr_scheduler_configs[0].scheduler.get_last_lr()
    assert lrs[0] < 1e-2  # decayed from the peak at the end of the run


def test_a_scheduler_without_training_batches_names_limit_train_batches() -> None:
    """``trainer.limit_train_batches=0`` with a scheduler was refused as "the trainer estimates -1 optimiser
    steps; set trainer.max_epochs or trainer.max_steps", both set already: the message names the setting."""
    task = SegmentationTask(**TINY, scheduler="cosine", lr=1e-2)
    trainer = _trainer(max_steps=-1, max_epochs=1, limit_train_batches=0)
    with pytest.raises(ValueError, match=r"trainer\.limit_train_batches=0.*model\.scheduler=none") as err:
        trainer.fit(task, _loader(size=32))
    assert "set trainer.max_epochs" not in str(err.value)


def test_checkpoint_round_trip_identical_outputs_and_metadata(trained) -> None:
    task, path, _ = trained
    loaded = load_task(path)
    assert not loaded.training
    x = torch.rand(2, 3, SIZE, SIZE)
    task.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), task(x), rtol=0, atol=0)
    meta = loaded.metadata
    assert meta == task.metadata
    assert meta["wandb_run_id"] == "run-abc123" == loaded.wandb_run_id
    assert meta["class_names"] == list(CLASS_NAMES)
    assert meta["palette"] == [list(rgb) for rgb in PALETTE]
    assert meta["class_map"] == {3: 0, 7: 1}
    assert meta["format_version"] == 1 and meta["in_channels"] == 3 and meta["tile_size"] == SIZE
    assert meta["arch"] == "unet" and meta["encoder"] == "mobilenetv3_small_050"
    assert meta["dataset"] == "random" and meta["num_classes"] == 3
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["marsunits"] == meta


def test_lightning_load_from_checkpoint_restores_run_id(trained) -> None:
    _, path, _ = trained
    task = SegmentationTask.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    assert task.wandb_run_id == "run-abc123"


def test_load_task_needs_neither_network_nor_weights_package(tmp_path, monkeypatch) -> None:
    task = SegmentationTask(encoder_weights="lite0_offline", in_channels=1, scheduler="none")
    # validate() attaches the task to a trainer (forward only, cheap on CPU) so that it can save a checkpoint;
    # the saved weights are then the pretrained ones, which a random re-initialisation would not reproduce.
    trainer = _trainer()
    trainer.validate(task, DataLoader(RandomScenes(n=2, channels=1), batch_size=2), verbose=False)
    path = tmp_path / "lite0.ckpt"
    trainer.save_checkpoint(path)

    def no_package():
        raise AssertionError("load_task must not read the weights package")

    def no_network(*args, **kwargs):
        raise AssertionError("load_task must not open a network connection")

    monkeypatch.setattr(pretrained, "lite0_weights_file", no_package)
    monkeypatch.setattr(pretrained, "offline_weights_file", lambda weights: no_package())
    monkeypatch.setattr(socket.socket, "connect", no_network)
    loaded = load_task(path)
    assert loaded.hparams.encoder_weights is None
    x = torch.rand(1, 1, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), task.eval()(x), rtol=0, atol=0)


def test_load_task_missing_file(tmp_path) -> None:
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(FileNotFoundError, match="nope.ckpt does not exist"):
        load_task(missing)


PNG_START = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"


@pytest.mark.parametrize(
    "content", [b"not a checkpoint", b"hello\n", b"\x80\x02}q\x00", b"PK\x03\x04junk", PNG_START]
)
def test_load_task_rejects_files_that_are_not_checkpoints(tmp_path, content) -> None:
    """Whatever the unpickler raises on garbage (UnpicklingError, KeyError for "hello", EOFError, zip errors)
    becomes one CheckpointError naming the file, and never repeats torch's advice to load it with
    weights_only=False (wrong for an image or a text, unsafe for any file)."""
    text = tmp_path / "notes.ckpt"
    text.write_bytes(content)
    said = (
        "notes.ckpt is a checkpoint file cut short"
        if content.startswith(b"PK")
        else r"notes.ckpt is not a checkpoint .*Give a .ckpt written by marsunits' train.py"
        if not content.isascii() or content.startswith(b"\x80")
        else r"notes.ckpt is a text file, not a checkpoint: give the run's checkpoints/best.ckpt \(or last"
    )
    with pytest.raises(CheckpointError, match=said) as info:
        load_task(text)
    assert "weights_only" not in str(info.value)
    plain = tmp_path / "weights.pt"
    torch.save({"conv.weight": torch.zeros(1)}, plain)
    with pytest.raises(CheckpointError, match="weights.pt is not a Lightning checkpoint"):
        load_task(plain)
    cut = tmp_path / "copied.ckpt"  # an interrupted copy of a real checkpoint file
    cut.write_bytes(plain.read_bytes()[: plain.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"copied.ckpt is a checkpoint file cut short.*Copy it again"):
        load_task(cut)


def flip_bytes_inside(src: Path, dst: Path, member_name: str = "/data/") -> Path:
    """A copy of checkpoint ``src`` with bytes of its largest member whose name holds ``member_name`` (a
    tensor's by default) inverted, the file otherwise intact (a bad disk or copy): same size, a valid zip
    archive whose member no longer matches its CRC-32."""
    import struct
    import zipfile

    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as archive:
        members = [i for i in archive.infolist() if member_name in i.filename]
        member = max(members, key=lambda i: i.file_size)
    name_len, extra_len = struct.unpack("<HH", data[member.header_offset + 26 : member.header_offset + 30])
    start = member.header_offset + 30 + name_len + extra_len
    for k in range(start, start + min(member.file_size, 4096)):
        data[k] ^= 0xFF
    dst.write_bytes(bytes(data))
    return dst


def test_a_checkpoint_with_damaged_bytes_inside_is_refused(trained, tmp_path) -> None:
    """torch reads a checkpoint without checking its members' CRCs: one with damaged bytes inside loaded
    without a word and predicted every pixel as one class."""
    _, ckpt, _ = trained
    damaged = flip_bytes_inside(Path(ckpt), tmp_path / "damaged.ckpt")
    assert damaged.stat().st_size == Path(ckpt).stat().st_size
    with pytest.raises(
        CheckpointError, match=r"damaged.ckpt is damaged: its member .*/data/.* fails its CRC"
    ):
        load_task(damaged)
    # Damage in the pickle itself: said as damage too (torch's loader failed first, "not a checkpoint").
    pickle = flip_bytes_inside(Path(ckpt), tmp_path / "pickle.ckpt", "data.pkl")
    with pytest.raises(CheckpointError, match=r"pickle.ckpt is damaged: its member .*data.pkl fails its CRC"):
        load_task(pickle)
    # torch writes CRC 0 when told not to compute them, and reads such files: so does this.
    if importlib.util.find_spec("torch.utils.serialization") is None:
        pytest.skip(f"torch {torch.__version__} has no torch.utils.serialization: it writes no CRC-0 files")
    import torch.utils.serialization as serialization

    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    serialization.config.save.compute_crc32 = False
    try:
        torch.save(checkpoint, tmp_path / "nocrc.ckpt")
    finally:
        serialization.config.save.compute_crc32 = True
    assert load_task(tmp_path / "nocrc.ckpt").metadata["class_names"] == list(CLASS_NAMES)


def _edited_copy(src: Path, dst: Path, edit) -> Path:
    checkpoint = torch.load(src, map_location="cpu", weights_only=True)
    edit(checkpoint)
    torch.save(checkpoint, dst)
    return dst


def test_load_task_rejects_missing_metadata(trained, tmp_path) -> None:
    _, path, _ = trained
    bare = _edited_copy(path, tmp_path / "bare.ckpt", lambda c: c.pop("marsunits"))
    with pytest.raises(CheckpointError, match="missing metadata, never a silent default"):
        load_task(bare)
    with pytest.raises(CheckpointError, match="no 'marsunits' metadata"):
        SegmentationTask.load_from_checkpoint(bare, map_location="cpu", weights_only=True)


def test_load_task_rejects_another_class_set(trained, tmp_path) -> None:
    _, path, _ = trained
    other = _edited_copy(
        path,
        tmp_path / "other.ckpt",
        lambda c: c["marsunits"].update(class_names=["soil", "bedrock", "sand"]),
    )
    with pytest.raises(CheckpointError, match="another class set") as err:
        load_task(other)
    assert "other.ckpt" in str(err.value) and "soil" in str(err.value)


def test_load_task_rejects_unknown_format_version(trained, tmp_path) -> None:
    _, path, _ = trained
    future = _edited_copy(path, tmp_path / "future.ckpt", lambda c: c["marsunits"].update(format_version=2))
    with pytest.raises(CheckpointError, match="format_version=2"):
        load_task(future)


@pytest.mark.parametrize(
    "name",
    [
        "tiny",
        "unet_lite0",
        "unet_lite0_slim",
        "unet_lite0_d4",
        "unet_lite1",
        "unet_lite2",
        "fpn_lite0",
        "deeplabv3plus_lite0",
        "unet_scratch",
    ],
)
def test_model_configs_instantiate(name: str) -> None:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name=f"model/{name}")
    data = {"name": "folder", "in_channels": 1, "crop_size": 64, "class_map": {"0": 0, "1": 1, "2": 2}}
    OmegaConf.set_struct(cfg, False)  # the data group is composed by train.yaml; stand in for it here
    cfg = OmegaConf.merge(cfg, {"data": data})
    task = instantiate(cfg.model)
    assert isinstance(task, SegmentationTask)
    assert task.hparams.in_channels == 1 and task.hparams.tile_size == 64
    assert task.metadata["class_map"] == {0: 0, 1: 1, 2: 2} and task.metadata["dataset"] == "folder"
    assert isinstance(task.hparams.class_names, list)  # plain types, not OmegaConf containers
    task.eval()
    with torch.no_grad():
        assert task(torch.rand(2, 1, 64, 64)).shape == (2, 3, 64, 64)
    if name == "tiny":
        assert sum(p.numel() for p in task.parameters()) < 500_000


def test_train_config_feeds_the_data_keys_into_the_task() -> None:
    """Real train.yaml, 1-channel data: channels, crop size, class map and name reach the task."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["model=tiny", "data=ai4mars"])
    task = instantiate(cfg.model)
    meta = task.metadata
    assert meta["in_channels"] == cfg.data.in_channels == 1
    assert meta["tile_size"] == cfg.data.crop_size
    assert meta["dataset"] == "ai4mars"
    expected_map = {int(k): int(v) for k, v in cfg.data.class_map.items()}
    assert meta["class_map"] == expected_map and all(isinstance(k, int) for k in meta["class_map"])


def test_freeze_encoder_bn_keeps_pretrained_statistics_while_the_rest_learns() -> None:
    torch.manual_seed(0)
    task = SegmentationTask(**TINY, freeze_encoder_bn=True, lr=1e-2)
    encoder_bn = [m for m in task.model.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    decoder_bn = [m for m in task.model.decoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert encoder_bn and decoder_bn
    before = [m.running_mean.clone() for m in encoder_bn]
    weights_before = [m.weight.detach().clone() for m in encoder_bn]
    _trainer(max_steps=2).fit(task, _loader(size=32))
    task.train()
    assert not any(m.training for m in encoder_bn) and all(m.training for m in decoder_bn)
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, encoder_bn, strict=True))
    # Their affine scale and shift are still trained.
    assert any(not torch.equal(w, m.weight) for w, m in zip(weights_before, encoder_bn, strict=True))
    unfrozen = SegmentationTask(**TINY).train()
    assert all(m.training for m in unfrozen.model.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))


class SubclassScenes(RandomScenes):
    """RandomScenes whose masks hold sub-class ids 0..5 (training) or, with ``project=True``, the project
    class of each (``SUBCLASSES``), as the datamodule gives them for training and validation."""

    def __init__(self, project: bool, n: int = 4) -> None:
        super().__init__(n=n)
        self.project = project

    def __getitem__(self, i: int) -> dict:
        sample = super().__getitem__(i)
        gen = torch.Generator().manual_seed(100 + i)
        sub = torch.randint(0, len(SUBCLASSES), (self.size, self.size), generator=gen)
        if self.project:
            sub = torch.tensor(SUBCLASSES)[sub]
        sample["mask"] = torch.where(sample["mask"] == IGNORE_INDEX, sample["mask"], sub)
        return sample


SUBCLASSES = [0, 0, 1, 1, 1, 2]


def test_subclass_outputs_sum_back_into_the_project_classes(tmp_path) -> None:
    torch.manual_seed(0)
    task = SegmentationTask(**TINY, subclasses=SUBCLASSES, warmup_steps=1).eval()
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        sub = task.network_logits(x)
        logits = task(x)
    assert sub.shape == (2, len(SUBCLASSES), SIZE, SIZE) and logits.shape == (2, 3, SIZE, SIZE)
    sub_probs = sub.softmax(dim=1)
    summed = torch.stack(
        [sub_probs[:, [k for k, c in enumerate(SUBCLASSES) if c == cls]].sum(1) for cls in range(3)], 1
    )
    torch.testing.assert_close(logits.softmax(dim=1), summed, rtol=1e-5, atol=1e-6)
    # Trains on sub-class masks, validates on project masks, and its checkpoint alone rebuilds it.
    task.train()
    trainer = _trainer()
    trainer.fit(
        task,
        DataLoader(SubclassScenes(project=False), batch_size=2),
        DataLoader(SubclassScenes(True), batch_size=2),
    )
    assert 0.0 <= float(trainer.callback_metrics["val/miou"]) <= 1.0
    assert math.isfinite(float(trainer.callback_metrics["val/loss"]))
    path = tmp_path / "sub.ckpt"
    trainer.save_checkpoint(path)
    loaded = load_task(path)
    task.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), task(x), rtol=0, atol=0)
    assert loaded.hparams.subclasses == SUBCLASSES and loaded.metadata["num_classes"] == 3


def test_subclass_training_takes_one_class_weight_per_subclass() -> None:
    """class_weights weigh the training loss, which is over the sub-classes (one weight each); the validation
    loss over the project classes is built as well."""
    task = SegmentationTask(**TINY, subclasses=SUBCLASSES, class_weights=[1, 2, 1, 1, 3, 1])
    assert task.criterion.class_weights.tolist() == [1, 2, 1, 1, 3, 1]
    assert task.eval_criterion is not None and task.eval_criterion.num_classes == 3


def test_subclass_training_loss_is_over_the_subclasses() -> None:
    # A network that tells sub-classes of one class apart must get a lower training loss than one that
    # puts all of a class's probability on the wrong sub-class: the project-class loss would not see this.
    task = SegmentationTask(**TINY, subclasses=SUBCLASSES)
    target = torch.tensor([[[0, 1], [2, 3]]])
    right = torch.nn.functional.one_hot(target, len(SUBCLASSES)).permute(0, 3, 1, 2).float() * 10
    swapped = right[:, [1, 0, 3, 2, 2, 5]]  # soil<->sand, bedrock<->gravel: same project classes
    assert task.criterion(right, target) < task.criterion(swapped, target) - 1.0
    torch.testing.assert_close(
        task.group_subclasses(right).argmax(1), task.group_subclasses(swapped).argmax(1)
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"subclasses": [0, 0, 1]}, r"each project class at least one sub-class"),
        ({"subclasses": [0, 1, 2, 3]}, r"project class id in 0\.\.2"),
        ({"subclasses": [0, 1, 2], "contact_weight": 1.0}, r"set model\.contact_weight=0"),
    ],
)
def test_bad_subclasses_fail_clearly(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SegmentationTask(**TINY, **kwargs)


def _stretched_rates(scheduler, planned_steps: int, step: int, total: int) -> list[float]:
    """Rates from ``step`` to ``total`` after on_train_start met a schedule of another length."""
    from types import SimpleNamespace

    from marsunits.task import SegmentationTask, _schedule_length

    fake = SimpleNamespace(
        _planned_schedule=("cosine", planned_steps),
        lr_schedulers=lambda: scheduler,
        trainer=SimpleNamespace(global_step=step, ckpt_path="run/last.ckpt"),
    )
    assert _schedule_length(scheduler)[1] != planned_steps
    SegmentationTask.on_train_start(fake)  # type: ignore[arg-type]
    rates = []
    for _ in range(step, total):
        rates.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return rates


def test_a_schedule_stretched_on_resume_follows_the_longer_cosine() -> None:
    """A finished cosine (rate 0) goes on from the longer curve's value, not from 0; a resume during the
    warm-up leaves the ramp to set the rates (resetting them there drove the rate to 3x the peak)."""
    import math

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=1e-3)
    finished = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
    for _ in range(10):
        optimizer.step()
        finished.step()
    rates = _stretched_rates(finished, planned_steps=20, step=10, total=20)
    expected = [0.5e-3 * (1 + math.cos(math.pi * s / 20)) for s in range(10, 20)]
    assert rates == pytest.approx(expected, rel=1e-6)

    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    ramp = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1e-3, total_iters=10)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=90)
    warming = torch.optim.lr_scheduler.SequentialLR(optimizer, [ramp, cosine], milestones=[10])
    for _ in range(3):
        optimizer.step()
        warming.step()
    rates = _stretched_rates(warming, planned_steps=200, step=3, total=200)
    assert max(rates) <= 1e-3 * (1 + 1e-6) and rates[:7] == sorted(rates[:7])  # the ramp, up to the peak
    assert rates[7] == pytest.approx(1e-3) and rates[-1] < 1e-6  # then the 190-step cosine to its end


def _past_warm_up(total: int = 20) -> torch.optim.lr_scheduler.SequentialLR:
    """A warm-up then cosine schedule of ``total`` steps, run to its end (rate 0)."""
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    ramp = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1e-3, total_iters=2)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total - 2)
    scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, [ramp, cosine], milestones=[2])
    for _ in range(total):
        optimizer.step()
        scheduler.step()
    return scheduler


def test_a_stretched_schedule_reports_the_rates_it_set(caplog: pytest.LogCaptureFixture) -> None:
    """After the stretch, ``get_last_lr()`` (what a callback or the next checkpoint reads) is the rate the
    optimiser now has, for a warm-up schedule as for a plain cosine: the warm-up's was left at 0."""
    import math

    scheduler = _past_warm_up(total=20)
    with caplog.at_level("WARNING", logger="marsunits.task"):
        _stretched_rates(scheduler, planned_steps=40, step=20, total=20)
    rate = scheduler.optimizer.param_groups[0]["lr"]
    assert rate == pytest.approx(0.5e-3 * (1 + math.cos(math.pi * 18 / 38)))
    assert scheduler.get_last_lr() == [rate]
    assert scheduler.state_dict()["_schedulers"][-1]["T_max"] == 38
    assert "now ends at step 40 (from step 20 on)" in caplog.text


def test_a_torch_that_renames_the_schedule_state_is_not_fitted_but_said(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The warm-up's milestone and parts are read from SequentialLR's state dict, which names them with
    private names; a torch that renames them gets one warning at the resume, not a KeyError mid-run."""
    from types import SimpleNamespace

    from marsunits.task import SegmentationTask, _schedule_length

    scheduler = _past_warm_up(total=20)
    saved = torch.optim.lr_scheduler.SequentialLR.state_dict

    def renamed(self: torch.optim.lr_scheduler.SequentialLR) -> dict:
        state = saved(self)
        state["milestones"] = state.pop("_milestones")
        return state

    monkeypatch.setattr(torch.optim.lr_scheduler.SequentialLR, "state_dict", renamed)
    assert _schedule_length(scheduler) is None
    fake = SimpleNamespace(
        _planned_schedule=("cosine", 40),
        lr_schedulers=lambda: scheduler,
        trainer=SimpleNamespace(global_step=20, ckpt_path="run/last.ckpt"),
    )
    with caplog.at_level("WARNING", logger="marsunits.task"):
        SegmentationTask.on_train_start(fake)  # type: ignore[arg-type]
    assert scheduler.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # left as restored
    assert f"run/last.ckpt: this torch {torch.__version__} keeps its SequentialLR's state" in caplog.text
    assert "resume with the original settings" in caplog.text


def test_boundary_scores_and_loss_are_pooled_over_the_images_of_every_rank() -> None:
    """Under DDP each rank scores its share of the images; the logged means are those of all of them. The
    loss too: Lightning's `sync_dist` mean rounded the ranks' image count down (5 images on 2 ranks counted
    as 4), so `val/loss` came out 1.25 times too high."""
    from types import SimpleNamespace

    task = SegmentationTask(**TINY)
    mine = [(1.0, 2.0), (0.5, float("nan"))]  # an image whose contact distance is undefined
    theirs = [(0.0, 4.0), (0.25, 6.0), (0.75, 8.0)]
    my_loss, their_loss = [0.5 * 2 + 0.25 * 1, 3.0], [1.0 * 2, 2.0]  # [sum of loss x images, images]

    def local_sums(scores: list[tuple[float, float]], loss: list[float]) -> torch.Tensor:
        task._boundary["val"], task._loss["val"] = list(scores), list(loss)
        seen: list[torch.Tensor] = []
        task._trainer = SimpleNamespace(  # type: ignore[assignment]
            world_size=2, strategy=SimpleNamespace(reduce=lambda t, reduce_op: seen.append(t.clone()) or t)
        )
        task._pooled_image_scores("val")
        return seen[0]

    other_rank = local_sums(theirs, their_loss)
    task._boundary["val"], task._loss["val"] = list(mine), list(my_loss)
    task._trainer = SimpleNamespace(  # type: ignore[assignment]
        world_size=2, strategy=SimpleNamespace(reduce=lambda t, reduce_op: t + other_rank)
    )
    f1, dist, loss = task._pooled_image_scores("val")
    assert f1 == pytest.approx((1.0 + 0.5 + 0.0 + 0.25 + 0.75) / 5)
    assert dist == pytest.approx((2.0 + 4.0 + 6.0 + 8.0) / 4)  # NaN distances are left out
    assert loss == pytest.approx((0.5 * 2 + 0.25 + 1.0 * 2) / 5)  # each batch weighed by its images
    task._trainer = None
    f1, dist, loss = task._pooled_image_scores("val")
    assert math.isnan(f1) and math.isnan(dist)  # no image had a contact
    assert loss is None  # nothing scored under this prefix: no loss logged


def test_a_resumed_ddp_rank_draws_new_random_streams() -> None:
    """Under DDP each rank re-seeds itself when training starts; a resumed run re-seeded exactly as a fresh
    one, so every resume drew the crops and augmentations of the run's first epoch again."""
    from marsunits.task import seed_rank

    def draws(rank: int, step: int) -> torch.Tensor:
        seed_rank(42, rank, step)
        return torch.rand(4)

    fresh = draws(0, 0)
    assert torch.equal(fresh, draws(0, 0))
    torch.manual_seed(42)  # a fresh run keeps the streams it always had: seed + rank
    assert torch.equal(fresh, torch.rand(4))
    resumed = [draws(0, 120), draws(0, 240), draws(1, 120)]
    assert all(not torch.equal(fresh, r) for r in resumed)
    assert not torch.equal(resumed[0], resumed[1]) and not torch.equal(resumed[0], resumed[2])

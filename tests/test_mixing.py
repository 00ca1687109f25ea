"""ClassMix (marsunits.data.mixing) and its use by MarsDataModule on training batches only."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from conftest import compose_config
from marsunits.data.mixing import class_mix
from marsunits.training import run
from test_train import TINY

IGNORE = 255


def _batch(n: int = 6, size: int = 16, seed: int = 0, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, size, size, generator=g)
    masks = torch.randint(0, classes, (n, size, size), generator=g)
    masks[:, :2, :] = IGNORE  # an unlabelled band in every crop
    return images, masks


def _explain(i: int, images, masks, out_images, out_masks) -> tuple[int, frozenset[int]] | None:
    """The (partner, pasted classes) that turn crop i into its output, or None if crop i is unchanged."""
    if torch.equal(out_images[i], images[i]) and torch.equal(out_masks[i], masks[i]):
        return None
    for j in range(len(masks)):
        if j == i:
            continue
        present = [c for c in masks[j].unique().tolist() if c != IGNORE]
        for chosen in itertools.combinations(present, (len(present) + 1) // 2):
            paste = torch.isin(masks[j], torch.tensor(chosen))
            expected_mask = torch.where(paste, masks[j], masks[i])
            expected_image = torch.where(paste, images[j], images[i])
            if torch.equal(out_masks[i], expected_mask) and torch.equal(out_images[i], expected_image):
                return j, frozenset(chosen)
    raise AssertionError(f"crop {i} is not crop {i} with half the classes of another crop pasted on")


@pytest.mark.parametrize(("n", "classes"), [(6, 3), (6, 2), (2, 3)])  # half of 2 classes is 1; a pair swaps
def test_every_mixed_crop_is_itself_with_half_the_classes_of_another_crop_pasted(
    n: int, classes: int
) -> None:
    images, masks = _batch(n, classes=classes)
    out_images, out_masks = class_mix(images, masks, 1.0, torch.Generator().manual_seed(3))
    assert out_images.shape == images.shape and out_masks.shape == masks.shape
    assert out_images.dtype == images.dtype and out_masks.dtype == masks.dtype
    explained = [_explain(i, images, masks, out_images, out_masks) for i in range(len(masks))]
    assert all(e is not None for e in explained)  # probability 1: every crop is mixed
    partners = [e[0] for e in explained if e is not None]
    assert sorted(partners) == list(range(len(masks)))  # each crop lends its pixels to exactly one other
    # ignore pixels are never pasted, so the unlabelled band stays each crop's own
    assert torch.equal(out_masks[:, :2], masks[:, :2]) and torch.equal(out_images[:, :, :2], images[:, :, :2])
    # the inputs are not modified in place
    assert torch.equal(masks, _batch(n, classes=classes)[1])


def test_probability_zero_or_a_single_crop_changes_nothing_and_half_mixes_some() -> None:
    images, masks = _batch()
    same = class_mix(images, masks, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(same[0], images) and torch.equal(same[1], masks)
    one = class_mix(images[:1], masks[:1], 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(one[0], images[:1]) and torch.equal(one[1], masks[:1])
    images, masks = _batch(n=64)
    out_images, out_masks = class_mix(images, masks, 0.5, torch.Generator().manual_seed(1))
    mixed = sum(_explain(i, images, masks, out_images, out_masks) is not None for i in range(64))
    assert 16 <= mixed <= 48


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_batch_on_the_training_device_mixes_as_on_the_cpu(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    images, masks = _batch()
    expected = class_mix(images, masks, 0.5, torch.Generator().manual_seed(5))
    out = class_mix(images.to(device), masks.to(device), 0.5, torch.Generator().manual_seed(5))
    assert out[0].device.type == device and out[1].device.type == device
    assert torch.equal(out[0].cpu(), expected[0]) and torch.equal(out[1].cpu(), expected[1])


def test_same_generator_state_mixes_the_same_way() -> None:
    images, masks = _batch()
    a = class_mix(images, masks, 0.5, torch.Generator().manual_seed(7))
    b = class_mix(images, masks, 0.5, torch.Generator().manual_seed(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("probability", [-0.1, 1.5])
def test_probability_outside_zero_one_is_refused(probability: float) -> None:
    images, masks = _batch()
    with pytest.raises(ValueError, match=r"probability must be in \[0, 1\]"):
        class_mix(images, masks, probability, torch.Generator())


class _Trainer:
    def __init__(self, training: bool) -> None:
        self.training = training


def test_datamodule_mixes_training_batches_only_and_saves_its_random_state(tmp_path: Path) -> None:
    overrides = ["data.class_mix_prob=1.0", "data.train_length=4", "data.batch_size=4", "logger=none"]
    cfg = compose_config("train", tmp_path, overrides)
    dm = instantiate(cfg.data)
    images, masks = _batch()

    def batch() -> dict:
        return {"image": images.clone(), "mask": masks.clone(), "path": [str(i) for i in range(len(masks))]}

    dm.trainer = _Trainer(training=False)
    untouched = dm.on_after_batch_transfer(batch(), 0)
    assert torch.equal(untouched["image"], images) and torch.equal(untouched["mask"], masks)

    dm.trainer = _Trainer(training=True)
    state = dm.state_dict()
    first = dm.on_after_batch_transfer(batch(), 0)
    assert not torch.equal(first["mask"], masks)
    assert all(_explain(i, images, masks, first["image"], first["mask"]) for i in range(len(masks)))
    second = dm.on_after_batch_transfer(batch(), 0)
    assert not torch.equal(second["mask"], first["mask"])  # the random state moves on
    dm.load_state_dict(state)  # as a resumed run does
    again = dm.on_after_batch_transfer(batch(), 0)
    assert torch.equal(again["mask"], first["mask"]) and torch.equal(again["image"], first["image"])
    dm.load_state_dict({})  # a checkpoint from before ClassMix: nothing to restore, no error


def test_training_run_with_class_mix_checkpoints_its_random_state(tmp_path: Path) -> None:
    cfg = compose_config("train", tmp_path, [*TINY, "data.class_mix_prob=0.5", "trainer.max_epochs=1"])
    run(cfg)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    (state,) = [v for k, v in ckpt.items() if k.endswith("MarsDataModule")]
    saved = torch.Generator()
    saved.set_state(state["mix_generator_state"])
    fresh = torch.Generator().manual_seed(int(cfg.data.seed))  # the state has moved on by the mixed batches
    assert not torch.equal(torch.rand(8, generator=saved), torch.rand(8, generator=fresh))
    assert 0.0 <= json.loads((tmp_path / "metrics.json").read_text())["test/miou"] <= 1.0


class _RankTrainer(_Trainer):
    def __init__(self, rank: int) -> None:
        super().__init__(training=True)
        self.global_rank = rank


def test_ddp_ranks_mix_their_crops_differently_and_repeatably(tmp_path: Path) -> None:
    """Every rank drew its ClassMix choices from data.seed alone (and a resume gave all ranks rank zero's
    saved state), so N ranks mixed the same way; each rank now has draws of its own, repeatable for a seed."""
    overrides = ["data.class_mix_prob=1.0", "data.train_length=4", "data.batch_size=4", "logger=none"]
    cfg = compose_config("train", tmp_path, overrides)
    images, masks = _batch(n=8)

    def mixed(rank: int, state: dict | None = None) -> torch.Tensor:
        dm = instantiate(cfg.data)
        if state is not None:
            dm.load_state_dict(state)  # as a resumed run does on every rank
        dm.trainer = _RankTrainer(rank)
        out = [
            dm.on_after_batch_transfer({"image": images.clone(), "mask": masks.clone()}, 0)["mask"]
            for _ in "ab"
        ]
        return torch.stack(out)

    ranks = [mixed(rank) for rank in range(3)]
    assert not torch.equal(ranks[0], ranks[1]) and not torch.equal(ranks[1], ranks[2])
    assert not torch.equal(ranks[0], ranks[2])
    assert torch.equal(mixed(1), ranks[1])  # the same seed and rank mix the same way
    # rank zero (one process) mixes as it always did: from data.seed
    _, expected = class_mix(images, masks, 1.0, torch.Generator().manual_seed(int(cfg.data.seed)))
    assert torch.equal(ranks[0][0], expected)

    saved = instantiate(cfg.data)
    saved.trainer = _RankTrainer(0)
    saved.on_after_batch_transfer({"image": images.clone(), "mask": masks.clone()}, 0)
    state = {**saved.state_dict(), "global_step": 5}  # rank zero's checkpoint, read by every rank
    resumed = [mixed(rank, state) for rank in range(2)]
    assert not torch.equal(resumed[0], resumed[1])
    assert not torch.equal(resumed[1], ranks[1])  # a resumed rank does not repeat its first draws

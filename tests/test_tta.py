"""Flip test-time augmentation (predict.py tta=true)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from marsunits.inference.runner import run
from marsunits.inference.runtime import FlipAveraged, TorchForward
from marsunits.task import SegmentationTask
from test_predict import ckpt, make_cfg, save_rgb  # noqa: F401  (ckpt is a fixture)


def _forward() -> TorchForward:
    torch.manual_seed(0)
    task = SegmentationTask(
        encoder="mobilenetv3_small_050", encoder_weights=None, encoder_depth=3, decoder_channels=[32, 16, 8]
    )
    return TorchForward(task.eval(), torch.device("cpu"), channels_last=False)


def test_flip_average_is_mirror_symmetric_and_a_distribution() -> None:
    plain = _forward()
    tta = FlipAveraged(plain)
    x = torch.rand(2, 3, 32, 64)
    out = tta(x)
    assert out.shape == (2, 3, 32, 64) and out.dtype == torch.float32
    torch.testing.assert_close(out.sum(1), torch.ones(2, 32, 64), rtol=0, atol=1e-5)
    torch.testing.assert_close(tta(torch.flip(x, dims=(-1,))), torch.flip(out, dims=(-1,)), rtol=0, atol=1e-6)
    # The network alone is not symmetric, so the property is the averaging's doing.
    assert (plain(torch.flip(x, dims=(-1,))) - torch.flip(plain(x), dims=(-1,))).abs().max() > 1e-3


def test_predict_with_tta_writes_mirrored_masks_for_a_mirrored_image(tmp_path: Path, ckpt: Path) -> None:  # noqa: F811
    inp = tmp_path / "in"
    save_rgb(inp / "a.png", 64, 96, seed=5)
    Image.fromarray(np.asarray(Image.open(inp / "a.png"))[:, ::-1].copy()).save(inp / "b.png")
    out = tmp_path / "out"
    assert run(make_cfg(tmp_path, ckpt, inp, out, "tta=true", "precision=32", "min_unit_area_px=7")) == 0
    a = np.asarray(Image.open(out / "a.mask.png"))
    b = np.asarray(Image.open(out / "b.mask.png"))
    # Equal up to exact ties (windows are placed symmetrically, so the blend weights mirror too).
    assert (a[:, ::-1] == b).mean() > 0.999
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tta"] is True and summary["min_unit_area_px"] == 7

"""The GPU paths on a CUDA machine: ``trainer=gpu`` (bf16-mixed, channels_last, cuDNN benchmark),
``trainer=ddp`` with NCCL over two GPUs, and prediction with ``device=cuda``.

Every test here is marked ``gpu``: deselected by default, run with ``pytest -m gpu``, skipped with the reason
on a machine without CUDA. Their CPU counterparts (``test_train.py``, ``test_ddp.py`` with gloo,
``test_predict.py``) run the same code paths on every machine.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from marsunits.checkpoint_loading import load_task
from marsunits.inference import run as predict
from marsunits.training import run as train

try:  # tests/ as a package (rootdir import) or as a plain folder on sys.path (pytest's prepend mode)
    from .conftest import compose_config
    from .test_ddp import run_ddp_training
    from .test_predict import ckpt, make_cfg, save_rgb  # noqa: F401 - ckpt is a fixture
    from .test_train import TINY
except ImportError:
    from conftest import compose_config  # type: ignore[no-redef]
    from test_ddp import run_ddp_training  # type: ignore[no-redef]
    from test_predict import ckpt, make_cfg, save_rgb  # type: ignore[no-redef]  # noqa: F401
    from test_train import TINY  # type: ignore[no-redef]

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_gpu_trainer_trains_in_bf16_and_the_checkpoint_predicts_the_same_on_cpu(tmp_path: Path) -> None:
    cfg = compose_config("train", tmp_path, ["trainer=gpu", *TINY, "trainer.max_epochs=1"])
    assert cfg.trainer.precision == "bf16-mixed" and cfg.model.channels_last
    metrics = train(cfg)
    assert all(
        math.isfinite(v) for k, v in metrics.items() if k.startswith(("val/", "test/")) and v is not None
    )
    task = load_task(tmp_path / "checkpoints" / "last.ckpt")
    # bf16-mixed keeps float32 master weights: the checkpoint is float32 and runs anywhere.
    assert all(p.dtype == torch.float32 for p in task.parameters())
    x = torch.rand(2, task.metadata["in_channels"], 64, 64)
    with torch.no_grad():
        on_cpu = task(x)
        on_gpu = task.to("cuda")(x.to("cuda")).cpu()
    torch.testing.assert_close(on_gpu, on_cpu, atol=5e-2, rtol=5e-2)  # TF32 convolutions on the GPU


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_ddp_training_with_two_nccl_processes(tmp_path: Path) -> None:
    """``trainer=ddp`` as configured (NCCL, SyncBatchNorm, bf16-mixed) on two GPUs; the step count is that of
    ``test_ddp.py``'s gloo run: 16 scenes / 2 ranks / batch 4 = 2 steps per epoch, 2 epochs."""
    proc, run_dir = run_ddp_training(tmp_path)  # trainer=ddp as configured: NCCL, SyncBatchNorm, bf16
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "val/miou" in metrics and math.isfinite(metrics["test/miou"])
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["global_step"] == 4, state["global_step"]


@pytest.mark.parametrize("precision", ["32", "auto"])
def test_predict_on_cuda_gives_the_cpu_masks(tmp_path: Path, ckpt: Path, precision: str) -> None:  # noqa: F811
    """``device=cuda`` against ``device=cpu precision=32`` on a 96 x 160 image (several windows)."""
    inp = tmp_path / "in"
    save_rgb(inp / "a.png", 96, 160, seed=5)
    masks = {}
    for device, prec in (("cpu", "32"), ("cuda", precision)):
        out = tmp_path / f"out-{device}"
        cfg = make_cfg(tmp_path, ckpt, inp, out, f"precision={prec}", "min_unit_area_px=0")
        cfg.device = device
        assert predict(cfg) == 0
        masks[device] = np.asarray(Image.open(out / "a.mask.png"))
    assert masks["cuda"].shape == masks["cpu"].shape == (96, 160)
    # The test checkpoint is barely trained, so many pixels are near-ties between classes: float32 (TF32
    # convolutions) agrees almost everywhere, bf16 autocast nearly so (0.998 on CPU with AMX).
    agreement = 0.99 if precision == "32" else 0.97
    assert (masks["cuda"] == masks["cpu"]).mean() > agreement

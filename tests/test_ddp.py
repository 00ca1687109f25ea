"""Multi-process training (``trainer=ddp``) and sharded prediction (``predict.py devices=2``), gloo on CPU.

Both start two real processes, so they are ``slow``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

try:  # tests/ as a package (rootdir import) or as a plain folder on sys.path (pytest's prepend mode)
    from .conftest import LAUNCH_VARIABLES, REPO_ROOT, compose_config
    from .test_predict import ckpt, save_rgb  # noqa: F401 - ckpt is a fixture
except ImportError:
    from conftest import LAUNCH_VARIABLES, REPO_ROOT, compose_config  # type: ignore[no-redef]
    from test_predict import ckpt, save_rgb  # type: ignore[no-redef]  # noqa: F401


#: The model and data of the DDP runs (tiny network, 16 small scenes); the ddp strategy as configured: the
#: tiny encoder (3 of timm's stages) holds blocks that the loss never reaches, as the default model
#: (encoder_depth 4) does, and trainer=ddp must train them as they are.
TRAINING_OVERRIDES = [
    "model=tiny",
    "logger=none",
    "data.num_workers=0",
    "data.train_length=16",
    "data.val_length=5",  # odd: 2 ranks must not score one image twice
    "data.test_length=5",
    "data.batch_size=4",
    "data.val_batch_size=2",
    "data.crop_size=64",
    "data.scene.width=96",
    "data.scene.height=64",
]


def run_ddp_training(tmp_path: Path, *overrides: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """``train.py trainer=ddp`` on two ranks with the tiny model and 16 small scenes (2 steps per epoch on
    each rank at batch 4, 2 epochs), plus ``overrides`` (the backend's settings); returns the process and
    run dir. Shared by the gloo test here and the NCCL one in test_gpu.py."""
    run_dir = tmp_path / "run"
    proc = _run(
        [
            str(REPO_ROOT / "train.py"),
            "trainer=ddp",
            "trainer.devices=2",
            "trainer.max_epochs=2",
            "trainer.enable_progress_bar=false",
            *TRAINING_OVERRIDES,
            *overrides,
            f"hydra.run.dir={run_dir}",
            f"paths.output_dir={run_dir}",
        ],
        cwd=tmp_path,
    )
    return proc, run_dir


def _run(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WANDB_MODE": "disabled", "MARSUNITS_TRACEBACK": "1"}
    # tests/ddp_probe.py's callback, for the runs that add it
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), env.get("PYTHONPATH")]))
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.mark.slow
def test_ddp_training_with_two_gloo_processes(tmp_path: Path) -> None:
    """Two ranks, 16 training scenes, per-rank batch 4, 2 epochs.

    The distributed sampler gives each rank 16 / 2 = 8 scenes, i.e. 2 batches per epoch, so the optimiser
    steps 2 x 2 = 4 times (a single process with batch 4 would step 8 times: DDP averages the gradients of
    the two ranks' batches into one step). Loss values are not compared with a single-process run: the batch
    composition differs, so only the step count and finiteness are meaningful.
    """
    proc, run_dir = run_ddp_training(
        tmp_path,
        "trainer.accelerator=cpu",
        "trainer.precision=32-true",
        "trainer.sync_batchnorm=false",  # SyncBatchNorm needs CUDA modules; gloo on CPU cannot use it
        "data.pin_memory=false",
        "data.persistent_workers=false",
        "model.channels_last=false",
        "+callbacks.probe._target_=ddp_probe.RankRandomness",
        f"+callbacks.probe.out_dir={tmp_path / 'probe'}",
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    # Each rank draws its own crops and augmentations (seeded alike, the two drew the same ones).
    digests = {p.name: p.read_text() for p in (tmp_path / "probe").glob("rank*.txt")}
    assert len(digests) == 2 and len(set(digests.values())) == 2, digests
    # ... while their samplers still deal the scenes out between them: each scene to one rank per epoch.
    shares = [set(map(int, p.read_text().split(","))) for p in (tmp_path / "probe").glob("rank*.indices")]
    assert len(shares) == 2 and not shares[0] & shares[1] and shares[0] | shares[1] == set(range(16))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    finite = [v for k, v in metrics.items() if k.startswith(("train/", "val/", "test/")) and v is not None]
    assert finite and all(math.isfinite(v) for v in finite)
    assert "val/miou" in metrics and "test/miou" in metrics
    ckpts = list((run_dir / "checkpoints").glob("*.ckpt"))
    assert ckpts, "no checkpoint written"
    import torch

    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["global_step"] == 4, state["global_step"]
    assert state["epoch"] == 1 or state["epoch"] == 2
    assert "sync_dist=True" not in proc.stderr  # Lightning's warning for each unsynchronised metric
    # Each rank validated half the scenes; the logged figures are those of all of them, as one process
    # scoring the same checkpoint finds (the boundary scores used to be rank zero's half).
    from marsunits.training import run

    single = run(
        compose_config(
            "train",
            tmp_path / "single",
            [*TRAINING_OVERRIDES, "train=false", f"ckpt_path={metrics['best_ckpt']}"],
        )
    )
    for key in ("val/miou", "val/boundary_f1", "val/contact_distance_px"):
        assert single[key] == pytest.approx(metrics[key], rel=1e-5, abs=1e-6), key
    # The losses too, to the batches' make-up: a batch's loss is its pixels' mean, and the ranks batch other
    # images together (0.07 % apart here). Lightning's `sync_dist` mean counted the 5 images of 2 ranks as
    # 4, and val/loss and test/loss came out 1.25 times too high.
    for key in ("val/loss", "test/loss"):
        assert single[key] == pytest.approx(metrics[key], rel=1e-2), key
    assert single["test/miou"] == pytest.approx(metrics["test/miou"], rel=1e-5, abs=1e-6)


def _torchrun_summary(tmp_path: Path, *overrides: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """``torchrun --standalone --nproc-per-node 2 train.py trainer=ddp`` with the tiny run of
    :data:`TRAINING_OVERRIDES` on gloo, plus ``overrides``, as a user runs it (no MARSUNITS_TRACEBACK);
    returns the process and the "Root Cause" part of torchrun's failure summary ("" when there is none)."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES}
    env.update(WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    for key in ("MARSUNITS_TRACEBACK", "TORCHELASTIC_ERROR_FILE", "RANK"):
        env.pop(key, None)
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",  # the torchrun command
            "--standalone",
            "--nproc-per-node=2",
            str(REPO_ROOT / "train.py"),
            "trainer=ddp",
            "trainer.devices=2",
            "trainer.max_epochs=1",
            "trainer.enable_progress_bar=false",
            "trainer.accelerator=cpu",
            "trainer.precision=32-true",
            "trainer.sync_batchnorm=false",
            "data.pin_memory=false",
            "data.persistent_workers=false",
            "model.channels_last=false",
            *TRAINING_OVERRIDES,
            f"hydra.run.dir={run_dir}",
            f"paths.output_dir={run_dir}",
            *overrides,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    return proc, proc.stderr.partition("Root Cause (first observed failure):")[2]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "own_error"),
    [
        # Inside the run, on every rank: Lightning's check of the devices against torchrun's world.
        (
            "trainer.devices=1",
            "ValueError: You set `devices=1` and `num_nodes=1` in Lightning, but the product",
        ),
        # Before Hydra starts: the command line's one-line refusal.
        ("model.lr=-1", "marsunits.errors.ConfigError: model.lr must be a number > 0, got -1"),
    ],
)
def test_torchrun_s_summary_of_a_failed_training_names_the_rank_s_own_error(
    tmp_path: Path, override: str, own_error: str
) -> None:
    """torchrun's summary of a failed ``train.py`` run said, for the rank that failed first, ``error_file:
    <N/A>`` and ``traceback : To enable traceback see: https://pytorch.org/docs/...``: the rank's own error
    (a one-line user error, in the run or before Hydra) was only in the interleaved output above it. Each
    rank now writes it to its agent's error file, which the summary shows; the rank still prints its line."""
    proc, root_cause = _torchrun_summary(tmp_path, override)
    assert proc.returncode != 0 and root_cause, proc.stderr[-4000:]
    assert "train.py: error: " in proc.stderr  # the rank's one line, as before
    assert "error_file: <N/A>" not in root_cause and own_error in root_cause, proc.stderr[-4000:]


def _manifest(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "manifest.csv", newline="") as fh:
        return {r["path"]: {k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(fh)}


@pytest.mark.slow
def test_sharded_prediction_equals_single_process(tmp_path: Path, ckpt: Path) -> None:  # noqa: F811
    inp = tmp_path / "in"
    sizes = [(70, 150), (40, 50), (64, 64), (33, 129), (90, 45)]
    for i, (h, w) in enumerate(sizes):
        save_rgb(inp / ("sub" if i % 2 else "") / f"img{i}.png", h, w, seed=i)
        camera = {
            "model": "pinhole",
            "image_width": w,
            "image_height": h,
            "hfov_deg": 60.0,
            "pitch_deg": 20.0,
        }
        (inp / ("sub" if i % 2 else "") / f"img{i}.camera.json").write_text(json.dumps(camera))
    (inp / "broken.png").write_bytes(b"not a png")
    from PIL import Image

    with Image.open(inp / "sub" / "img1.png") as im:  # a grey frame, on one rank's shard
        im.convert("L").save(inp / "sub" / "img1.png")
    outs = {}
    for devices in (1, 2):
        out = tmp_path / f"out{devices}"
        proc = _run(
            [
                str(REPO_ROOT / "predict.py"),
                f"ckpt_path={ckpt}",
                f"input_dir={inp}",
                f"output_dir={out}",
                "device=cpu",
                f"devices={devices}",
                "threads=1",  # the same arithmetic in every process, so outputs are bit-identical
                "num_workers=0",
                "map=true",  # the map lists every image's camera: in path order, whichever rank had it
                f"hydra.run.dir={tmp_path / f'hydra{devices}'}",
            ],
            cwd=tmp_path,
        )
        assert proc.returncode == 1, proc.stderr[-4000:]  # broken.png is an error row
        outs[devices] = out
    single, sharded = outs[1], outs[2]
    files = sorted(p.relative_to(single).as_posix() for p in single.rglob("*") if p.is_file())
    other = sorted(p.relative_to(sharded).as_posix() for p in sharded.rglob("*") if p.is_file())
    assert files == other
    assert ".predict.claim" not in files  # the claim on output_dir ends with the run
    masks = [f for f in files if f.endswith((".mask.png", ".overlay.png", ".thumb.jpg", ".contact.geojson"))]
    assert len(masks) == 4 * len(sizes) and "contact_map.geojson" in files
    masks.append("contact_map.geojson")
    for rel in masks:
        assert (single / rel).read_bytes() == (sharded / rel).read_bytes(), rel
    assert _manifest(single) == _manifest(sharded)
    s1 = json.loads((single / "summary.json").read_text())
    s2 = json.loads((sharded / "summary.json").read_text())
    assert s2["world_size"] == 2 and s1["world_size"] == 1
    # The spawned processes log as one process does (they used to log nothing, on screen or in the file).
    for devices in (1, 2):
        logged = (tmp_path / f"hydra{devices}" / "predict.log").read_text()
        assert "contact map written" in logged, (devices, logged[-2000:])
    assert s1["counts"] == s2["counts"] == {"ok": 5, "error": 1, "skipped": 0, "total": 6, "not_reached": 0}
    assert s1["megapixels"] == s2["megapixels"]
    # Each rank counts the grey images it predicted; rank 0 adds the other ranks' counts to its own.
    assert (
        s1["greyscale_inputs_for_colour_model_this_run"]
        == s2["greyscale_inputs_for_colour_model_this_run"]
        == 1
    )


@pytest.mark.slow
def test_a_sharded_adapt_bn_folder_is_resumed_with_the_statistics_it_began_with(
    tmp_path: Path,
    ckpt: Path,  # noqa: F811
) -> None:
    """Each rank adapts to its shard and the ranks add up their sums; rank 0 keeps the statistics, and a
    resumed sharded run reads them on rank 0, which sends them to every rank (with another batch_size, each
    rank adapted again, a float rounding apart)."""
    inp = tmp_path / "in"
    for i in range(4):
        save_rgb(inp / f"img{i}.png", 70, 90, seed=i)
    out = tmp_path / "out"

    def predict(*extra: str) -> subprocess.CompletedProcess[str]:
        return _run(
            [
                str(REPO_ROOT / "predict.py"),
                f"ckpt_path={ckpt}",
                f"input_dir={inp}",
                f"output_dir={out}",
                "device=cpu",
                "devices=2",
                "threads=1",
                "num_workers=0",
                "adapt_bn=true",
                *extra,
                f"hydra.run.dir={tmp_path / 'hydra'}",
            ],
            cwd=tmp_path,
        )

    proc = predict("batch_size=1")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (out / "adapted_batchnorm.safetensors").is_file()

    def models() -> list[object]:
        return [json.loads((out / f"img{i}.contact.geojson").read_text())["model"] for i in range(4)]

    first = models()
    assert all(m == first[0] for m in first)
    for i in (1, 2):  # one image of each rank's shard left to predict
        (out / f"img{i}.mask.png").unlink()
    proc = predict("batch_size=3")
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["ok"] == 2 and summary["counts"]["skipped"] == 2
    assert summary["adapt_bn_statistics"] == "stored"
    assert models() == first
    logged = (tmp_path / "hydra" / "predict.log").read_text()
    assert "using the batch-norm statistics kept in" in logged and "rather than adapting them again" in logged

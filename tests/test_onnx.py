"""ONNX Runtime path of predict.py: export, agreement with PyTorch, runtime choice and fall-back."""

from __future__ import annotations

import importlib.abc
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from marsunits.atomic import FILE_MODE
from marsunits.checkpoint_loading import load_task
from marsunits.inference import run
from marsunits.inference.runtime import (
    ONNX_OPSET,
    OnnxForward,
    TorchForward,
    build_forward,
    export_onnx,
    max_difference,
)

#: Tiny networks on tiny inputs: intra-op threads only oversubscribe a shared 2-core machine (conftest).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


try:  # tests/ as a package (rootdir import) or as a plain folder on sys.path (pytest's prepend mode)
    from .test_predict import ckpt, make_cfg, save_rgb  # noqa: F401 - ckpt is a fixture
except ImportError:
    from test_predict import ckpt, make_cfg, save_rgb  # type: ignore[no-redef]  # noqa: F401

# onnxruntime is a core dependency (pyproject.toml): if it is missing the install is broken, and these tests
# fail on that import instead of being skipped.
import onnxruntime  # noqa: E402, F401


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ONNX cache for the module: the checkpoint is exported once."""
    return tmp_path_factory.mktemp("onnx_cache")


def test_exported_model_matches_torch_on_two_sizes(tmp_path: Path, ckpt: Path) -> None:  # noqa: F811
    import onnx

    task = load_task(ckpt)
    path = export_onnx(task, tmp_path / "m.onnx", in_channels=3, size=64)
    assert path.stat().st_mode & 0o777 == FILE_MODE  # as every output (mkstemp's 0600 made it private)
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary file left
    model = onnx.load(path)
    assert model.opset_import[0].version >= ONNX_OPSET
    onnx_fn = OnnxForward(path, threads=1)
    torch_fn = TorchForward(task, torch.device("cpu"), channels_last=False)
    gen = torch.Generator().manual_seed(1)
    for shape in [(1, 3, 64, 64), (3, 3, 96, 160)]:  # dynamic batch, height and width
        x = torch.rand(shape, generator=gen)
        out = onnx_fn(x)
        assert out.shape == (shape[0], 3, shape[2], shape[3]) and out.dtype == torch.float32
        assert max_difference(torch_fn, onnx_fn, x) <= 1e-4
        np.testing.assert_allclose(out.sum(1).numpy(), 1.0, atol=1e-5)


def test_runtime_onnx_end_to_end_matches_torch(tmp_path: Path, ckpt: Path, cache: Path) -> None:  # noqa: F811
    inp = tmp_path / "in"
    save_rgb(inp / "a.png", 70, 150, seed=1)  # tiled (wider than the 64 px tile)
    save_rgb(inp / "sub" / "b.png", 40, 50, seed=2)
    outs = {}
    for runtime in ("torch", "onnx"):
        out = tmp_path / runtime
        # precision=32: the comparison is about the runtime, not bfloat16 (precision=auto on AMX CPUs).
        extra = (f"runtime={runtime}", f"onnx_cache_dir={cache}", "precision=32")
        assert run(make_cfg(tmp_path, ckpt, inp, out, *extra)) == 0
        outs[runtime] = out
        summary = json.loads((out / "summary.json").read_text())
        assert summary["runtime"]["name"] == runtime
    cached = list(cache.glob("*.onnx"))
    assert len(cached) == 1 and f"opset{ONNX_OPSET}" in cached[0].name
    for rel in ("a.mask.png", "sub/b.mask.png"):
        a = np.asarray(Image.open(outs["torch"] / rel))
        b = np.asarray(Image.open(outs["onnx"] / rel))
        assert a.shape == b.shape
        assert (a == b).mean() >= 0.999, rel


def _forward_options(ckpt: Path, cache: Path) -> dict:
    """build_forward's options for the tiny checkpoint on the CPU in float32, exports cached in ``cache``."""
    return dict(
        device=torch.device("cpu"),
        precision="32",
        channels_last=True,
        compile=False,
        threads=1,
        ckpt_path=ckpt,
        cache_dir=cache,
        probe_shape=(1, 3, 64, 64),
    )


def test_auto_picks_a_runtime_and_failed_check_falls_back(ckpt: Path, cache: Path) -> None:  # noqa: F811
    task = load_task(ckpt)
    common = _forward_options(ckpt, cache)
    fn, choice = build_forward(task, runtime="auto", **common)
    assert choice.name in ("torch", "onnx") and set(choice.seconds) == {"torch", "onnx"}
    assert choice.max_abs_diff is not None and choice.max_abs_diff <= 1e-3
    assert fn(torch.rand(1, 3, 64, 96)).shape == (1, 3, 64, 96)
    # A tolerance no export can meet: the check fails and PyTorch is used, saying why.
    fn, choice = build_forward(task, runtime="onnx", tolerance=-1.0, **common)
    assert isinstance(fn, TorchForward) and choice.name == "torch" and "differ" in choice.reason


def test_an_onnx_cache_folder_that_is_a_file_falls_back_saying_so(ckpt: Path, tmp_path: Path) -> None:  # noqa: F811
    """``onnx_cache_dir=<a file>``: PyTorch is used, as before, and the reason names the option and the
    fix; it was "ONNX export or session failed (FileExistsError: [Errno 17] File exists: ...)"."""
    (tmp_path / "cachefile").write_text("notes")
    task = load_task(ckpt)
    fn, choice = build_forward(task, runtime="onnx", **_forward_options(ckpt, tmp_path / "cachefile"))
    assert isinstance(fn, TorchForward) and choice.name == "torch"
    assert f"{tmp_path / 'cachefile'} is a file, not a folder (onnx_cache_dir)" in choice.reason
    assert (tmp_path / "cachefile").read_text() == "notes"


class _BuiltForAnotherNumpy(importlib.abc.MetaPathFinder):
    """onnxruntime as 1.18.0 is on numpy 2: installed, but its import raises ImportError (of no message
    there: numpy prints its reason on stderr)."""

    def __init__(self, message: str) -> None:
        self.message = message

    def find_spec(self, name: str, path: object, target: object = None) -> None:
        if name == "onnxruntime":
            raise ImportError(self.message)
        return None


@pytest.mark.parametrize(
    ("message", "said"),
    [
        ("numpy.core.multiarray failed to import", "ImportError: numpy.core.multiarray failed to import"),
        ("", "ImportError, of no message"),
    ],
)
def test_an_onnxruntime_that_cannot_be_imported_is_not_called_missing(
    ckpt: Path,  # noqa: F811
    cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    message: str,
    said: str,
) -> None:
    """An installed onnxruntime whose import fails (1.18.0, built for numpy 1, on numpy 2): PyTorch is used
    and the reason quotes the error; it said "onnxruntime is not installed (pip install onnxruntime)",
    which sent the user to install what was there. A missing one is still called missing."""
    task = load_task(ckpt)
    monkeypatch.delitem(sys.modules, "onnxruntime")
    monkeypatch.setattr(sys, "meta_path", [_BuiltForAnotherNumpy(message), *sys.meta_path])
    fn, choice = build_forward(task, runtime="onnx", **_forward_options(ckpt, cache))
    assert isinstance(fn, TorchForward) and choice.name == "torch"
    assert "not installed" not in choice.reason, choice.reason
    assert choice.reason.startswith(f"onnxruntime is installed but cannot be imported ({said})"), (
        choice.reason
    )
    assert "pip install -U onnxruntime" in choice.reason, choice.reason
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # not installed
    fn, choice = build_forward(task, runtime="onnx", **_forward_options(ckpt, cache))
    assert choice.reason == "onnxruntime is not installed (pip install onnxruntime); using PyTorch"


def test_subclass_model_exports_with_its_grouping(tmp_path: Path) -> None:
    # A network trained on sub-classes (model.subclasses) sums them back inside forward(); the exported
    # graph must carry that sum, giving the three project classes as PyTorch does.
    from marsunits.task import SegmentationTask

    torch.manual_seed(0)
    task = SegmentationTask(
        encoder="mobilenetv3_small_050",
        encoder_weights=None,
        encoder_depth=3,
        decoder_channels=[32, 16, 8],
        subclasses=[0, 0, 1, 1, 1, 2, 2, 2],
    ).eval()
    onnx_fn = OnnxForward(export_onnx(task, tmp_path / "sub.onnx", in_channels=3, size=64), threads=1)
    torch_fn = TorchForward(task, torch.device("cpu"), channels_last=False)
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    assert onnx_fn(x).shape == (2, 3, 64, 96)
    assert max_difference(torch_fn, onnx_fn, x) <= 1e-4


def test_an_export_is_not_reused_for_another_normalisation(ckpt: Path, cache: Path) -> None:  # noqa: F811
    """A model package keeps mean/std in model.json, outside the weights file the cache is named by: an
    edited normalisation reused the old export."""
    from marsunits.inference.runtime import cached_onnx

    task = load_task(ckpt)
    first = cached_onnx(task, ckpt, cache, 3, 64)
    assert cached_onnx(task, ckpt, cache, 3, 64) == first  # the same model: reused
    task.mean.add_(0.001)  # a small edit, as in model.json
    second = cached_onnx(task, ckpt, cache, 3, 64)
    assert second != first and second.is_file()


def test_a_damaged_cached_export_is_made_again(
    ckpt: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cut-short file in the ONNX cache (a killed copy, a full disk) made every run fall back to PyTorch,
    and the file was never replaced."""
    task = load_task(ckpt)
    common = _forward_options(ckpt, tmp_path)
    _, choice = build_forward(task, runtime="onnx", **common)
    assert choice.name == "onnx" and choice.onnx_path
    cached = Path(choice.onnx_path)
    whole = cached.read_bytes()
    cached.write_bytes(whole[:100])  # cut short
    fn, choice = build_forward(task, runtime="onnx", **common)
    assert choice.name == "onnx" and isinstance(fn, OnnxForward)
    assert cached.read_bytes() == whole
    # Same size, bytes flipped in the weights: it loads, but its probabilities are wrong. Made again too.
    flipped = bytearray(whole)
    middle = len(flipped) // 2
    flipped[middle : middle + 2000] = bytes(b ^ 0xFF for b in flipped[middle : middle + 2000])
    cached.write_bytes(bytes(flipped))
    fn, choice = build_forward(task, runtime="onnx", **common)
    assert choice.name == "onnx" and isinstance(fn, OnnxForward) and cached.read_bytes() == whole
    # A damaged weight that makes the probabilities NaN compares as no number: made again as well.
    import marsunits.inference.runtime as runtime_module

    real, calls = runtime_module.max_difference, []

    def nan_first(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return float("nan") if len(calls) == 1 else real(*args, **kwargs)

    monkeypatch.setattr(runtime_module, "max_difference", nan_first)
    before_nan = cached.stat().st_mtime_ns
    fn, choice = build_forward(task, runtime="onnx", **common)
    monkeypatch.undo()
    assert choice.name == "onnx" and len(calls) == 2 and cached.stat().st_mtime_ns != before_nan
    # An intact export that misses a stricter tolerance than the default is not damaged: PyTorch is used,
    # and the cached file stays (it was deleted and exported again on every run).
    before = cached.stat().st_mtime_ns
    fn, choice = build_forward(task, runtime="onnx", **{**common, "tolerance": 1e-12})
    assert choice.max_abs_diff is not None and choice.max_abs_diff > 1e-12  # the export misses it
    assert choice.name == "torch" and isinstance(fn, TorchForward) and "differ" in choice.reason
    assert cached.stat().st_mtime_ns == before and cached.read_bytes() == whole


def test_runtime_auto_resumes_a_folder_with_the_runtime_it_was_begun_with(
    tmp_path: Path,
    ckpt: Path,  # noqa: F811
) -> None:
    """runtime=auto times PyTorch against ONNX Runtime on every run, and the choice flips with the machine's
    load; with the runtime recorded, re-running the same command was refused at random."""
    inp, out = tmp_path / "in", tmp_path / "out"
    for i in range(2):
        save_rgb(inp / f"img{i}.png", 40, 48, seed=i)
    assert run(make_cfg(tmp_path, ckpt, inp, out, "runtime=onnx")) == 0
    record = json.loads((out / "prediction_settings.json").read_text())
    assert record["runtime"] == "onnx" and record["precision"] == "32"
    save_rgb(inp / "img2.png", 40, 48, seed=2)
    assert run(make_cfg(tmp_path, ckpt, inp, out, "runtime=auto")) == 0  # resumed, not refused
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["skipped"] == 2 and summary["counts"]["ok"] == 1
    assert summary["runtime"]["name"] == "onnx"
    # What was asked and what ran: ONNX Runtime is float32 (summary.json said bf16 on an AMX CPU), and
    # the runtime was kept from the folder, not timed (it said runtime=onnx was asked).
    assert summary["precision"] == "32" and summary["runtime"]["requested"] == "auto"
    assert "resuming a folder begun with runtime onnx" in summary["runtime"]["reason"]

"""How the network runs at prediction time: threads, memory format, precision, and the runtime
(PyTorch or ONNX Runtime) chosen for this machine.

Every runtime is a *forward function*: it maps a float32 batch ``(B, C, h, w)`` in [0, 1] (``h``, ``w``
multiples of the network stride) on the run's device to softmax probabilities ``(B, num_classes, h, w)``
float32. :func:`marsunits.inference.tiling.sliding_window` calls it window batch by window batch.

* :class:`TorchForward`: the checkpoint's :class:`~marsunits.task.SegmentationTask` under
  ``torch.inference_mode``, in ``channels_last`` memory format (on CPU, oneDNN's NHWC kernels run this
  depthwise-convolution network several times faster than the default NCHW layout; on GPU it is what
  tensor cores want), with batch norm folded into the convolutions (:mod:`marsunits.inference.fusion`),
  optionally under bfloat16 autocast (CUDA, or CPUs with AMX/AVX-512 BF16) and ``torch.compile``.
* :class:`OnnxForward`: the same network exported with ``torch.onnx.export`` (dynamic batch, height and
  width; opset :data:`ONNX_OPSET`) and run by ONNX Runtime's CPU provider. The ``.onnx`` file is cached
  under a name made of the checkpoint's SHA-256, so a checkpoint is exported once.

Choosing (:func:`build_forward`, config ``runtime``):

* ``torch``: PyTorch.
* ``onnx``: ONNX Runtime, after a start-up check that its probabilities on a probe batch match PyTorch's
  within ``tolerance`` (max absolute difference of probabilities); if ``onnxruntime`` is missing, the
  export fails or the check fails, the run falls back to PyTorch with a one-line warning saying why.
* ``auto``: on CPU, both are timed on a probe batch (one batch of windows of the run's tile size; best of
  two after a warm-up) and the faster one whose outputs agree is used; on CUDA, PyTorch (no CUDA provider
  of ONNX Runtime is installed here).

The probe batch is random (a fixed seed) because the agreement of two implementations of the same
arithmetic does not depend on the image content.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import logging
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import nn

from marsunits.atomic import atomic_write
from marsunits.errors import ConfigError
from marsunits.file_digest import file_sha256
from marsunits.inference.options import RUNTIMES as RUNTIMES

log = logging.getLogger(__name__)

#: ONNX opset used for export (>= 17: LayerNormalization and the modern Resize semantics).
ONNX_OPSET = 17

#: Default agreement tolerance between ONNX Runtime and PyTorch: max |delta probability|.
ONNX_TOLERANCE = 1e-3

PRECISIONS = ("auto", "32", "bf16")

ForwardFn = Callable[[torch.Tensor], torch.Tensor]


def available_cores() -> int:
    """CPU cores this process may run on (affinity-aware where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def check_threads(threads: Any, python: bool = False) -> None:
    """Refuse a ``threads`` value that is not a positive whole number or None (said ``null``, the config's
    word, or ``None`` where ``python``: options built in Python).

    Raises:
        ConfigError: naming the value.
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        none = "None" if python else "null"
        raise ConfigError(f"threads must be a positive integer or {none} (= all cores), got {threads!r}")


def configure_threads(threads: int | None, processes_per_machine: int = 1) -> int:
    """Set PyTorch's intra-op threads (and one inter-op thread); returns the intra-op count.

    Args:
        threads: Threads to use, or None for ``available_cores() // processes_per_machine`` (at least 1).
        processes_per_machine: Prediction processes sharing this machine's cores (sharded prediction).

    One inter-op thread because the network is a single chain of operators: inter-op parallelism only
    adds threads competing for the same cores. ``torch.set_num_interop_threads`` may be called only
    once per process, before any parallel work; a later call is skipped silently.

    Raises:
        ConfigError: ``threads`` is not a positive integer.
    """
    check_threads(threads)
    n = threads if threads is not None else max(1, available_cores() // max(1, processes_per_machine))
    torch.set_num_threads(n)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    return n


def cpu_has_bf16_matrix_units() -> bool:
    """True when this CPU multiplies bfloat16 matrices natively (Intel AMX tiles), so bf16 autocast is fast.

    Uses PyTorch's own CPU capability probe; False where it is not available.
    """
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` where the hardware computes it natively, else ``32``.

    Native means a CUDA device with bf16 support, or a CPU with AMX matrix units (there, bf16 autocast runs
    this network about 2x faster than float32). bf16 changes probabilities by up to a few 1e-2 and flips the
    class of a small fraction of pixels (near-ties: 0.6-2.8 % of three MarsScapes panoramas);
    ``precision=32`` gives float32 results that are the same on every machine.

    Raises:
        ConfigError: An unknown value.
    """
    precision = str(precision)
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "32"
        return "bf16" if device.type == "cpu" and cpu_has_bf16_matrix_units() else "32"
    return precision


class Probabilities(nn.Module):
    """Wraps a logits model so that it returns softmax probabilities (what is blended and exported)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x).float(), dim=1)


class TorchForward:
    """PyTorch forward function (see module docstring).

    Args:
        model: Maps float ``(B, C, h, w)`` in [0, 1] to logits ``(B, K, h, w)`` (normalisation inside).
        device: Where it runs.
        channels_last: Convert weights and inputs to NHWC memory format.
        precision: ``"32"`` or ``"bf16"`` (autocast; on CPU only worthwhile with AMX / AVX-512 BF16).
        compile: Wrap the model in ``torch.compile`` (dynamic shapes). The first batches of each new
            window shape are slow while it compiles; worth it for long runs on GPU.
        fold_bn: Run a copy of the model whose network (its ``model`` attribute, the smp network of a
            :class:`~marsunits.task.SegmentationTask`) has batch norm folded into the convolutions
            (:mod:`marsunits.inference.fusion`; same outputs, faster on CPU).
    """

    name = "torch"

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        *,
        channels_last: bool = True,
        precision: str = "32",
        compile: bool = False,
        fold_bn: bool = False,
    ) -> None:
        self.device = device
        self.channels_last = channels_last
        self.precision = precision
        network = getattr(model, "model", None)
        if fold_bn and isinstance(network, nn.Module):
            from marsunits.inference.fusion import fold_batchnorm

            model = copy.deepcopy(model)
            model.model = fold_batchnorm(network)
        module: nn.Module = Probabilities(model).to(device).eval()
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.module = module
        self._call: Callable[[torch.Tensor], torch.Tensor] = module
        if compile:
            self._call = torch.compile(module, dynamic=True)  # type: ignore[assignment]

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return self._call(x).float()


def export_onnx(model: nn.Module, path: str | os.PathLike[str], in_channels: int, size: int) -> Path:
    """Export ``Probabilities(model)`` to ONNX with dynamic batch, height and width, atomically.

    Args:
        model: Logits model (float32, CPU); it is not modified.
        path: Destination ``.onnx``.
        in_channels: Input channels.
        size: Side of the example input used for tracing (a multiple of the network stride).

    Returns:
        ``path``. Input ``image`` float32 ``(N, C, H, W)`` in [0, 1]; output ``probabilities`` float32
        ``(N, K, H, W)``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = Probabilities(model).cpu().float().eval()
    example = torch.rand(1, in_channels, size, size)

    def write(fh: BinaryIO) -> None:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about Python-side shape checks
            torch.onnx.export(
                wrapper,
                (example,),
                fh.name,  # torch's exporter takes a path; the file is atomic_write's temporary one
                input_names=["image"],
                output_names=["probabilities"],
                dynamic_axes={
                    "image": {0: "batch", 2: "height", 3: "width"},
                    "probabilities": {0: "batch", 2: "height", 3: "width"},
                },
                opset_version=ONNX_OPSET,
                dynamo=False,
            )

    # Atomic, and with the permissions of every other output (mkstemp's 0600 made it private to one user).
    atomic_write(path, write)
    return path


class OnnxForward:
    """ONNX Runtime forward function on CPU (see module docstring).

    Args:
        onnx_path: A file written by :func:`export_onnx`.
        threads: Intra-op threads of the session (inter-op: 1).
    """

    name = "onnx"

    def __init__(self, onnx_path: str | os.PathLike[str], threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(onnx_path)
        self.session = ort.InferenceSession(os.fspath(onnx_path), options, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().cpu().float().numpy())
        (out,) = self.session.run(None, {"image": array})
        return torch.from_numpy(out)


def max_difference(a: ForwardFn, b: ForwardFn, probe: torch.Tensor) -> float:
    """Largest absolute difference between two forward functions' outputs on ``probe``."""
    return float((a(probe).float() - b(probe).float()).abs().max())


def time_forward(fn: ForwardFn, probe: torch.Tensor, repeats: int = 2) -> float:
    """Best wall-clock seconds of ``repeats`` calls on ``probe`` after one warm-up call."""
    fn(probe)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(probe)
        best = min(best, time.perf_counter() - start)
    return best


@dataclass
class RuntimeChoice:
    """Which runtime a run uses and why (copied into ``summary.json``).

    Attributes:
        name: ``torch`` or ``onnx``.
        requested: The ``runtime`` option.
        reason: One sentence.
        max_abs_diff: ONNX vs PyTorch probability difference on the probe (None when not checked).
        seconds: Probe timings per runtime (``auto`` only).
        onnx_path: The cached ``.onnx`` file, when one was used or checked.
    """

    name: str
    requested: str
    reason: str
    max_abs_diff: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    onnx_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "requested": self.requested,
            "reason": self.reason,
            "max_abs_diff": self.max_abs_diff,
            "probe_seconds": {k: round(v, 4) for k, v in self.seconds.items()},
            "onnx_path": self.onnx_path,
        }


def cached_onnx(
    model: nn.Module,
    ckpt_path: Path,
    cache_dir: Path,
    in_channels: int,
    size: int,
    exported: list[Path] | None = None,
) -> Path:
    """The ONNX export of ``ckpt_path``'s model in ``cache_dir``, exporting it on first use.

    The file name holds the checkpoint's SHA-256 (first 16 hex digits), a digest of the input
    normalisation the model applies (``model.mean``, ``model.std``) and the opset, so a changed checkpoint
    never reuses a stale export. The normalisation is named apart because a model package keeps it in
    ``model.json``, outside the hashed weights: an edited mean reused the old export (a large change was
    caught by the start-up probe and blamed on ONNX, a small one passed unseen). ``exported``: a list the
    path is appended to when this call made the file (it was not in the cache).
    """
    norm = hashlib.sha256()
    for name in ("mean", "std"):
        value = getattr(model, name, None)
        if isinstance(value, torch.Tensor):
            norm.update(name.encode() + value.detach().cpu().double().numpy().tobytes())
    path = cache_dir / f"{file_sha256(ckpt_path)[:16]}-{norm.hexdigest()[:8]}-opset{ONNX_OPSET}.onnx"
    if not path.is_file():
        log.info("exporting %s to ONNX: %s", ckpt_path.name, path)
        export_onnx(model, path, in_channels, size)
        if exported is not None:  # the caller learns that this run made the file
            exported.append(path)
    return path


def build_forward(
    model: nn.Module,
    *,
    runtime: str,
    device: torch.device,
    precision: str,
    channels_last: bool,
    compile: bool,
    threads: int,
    ckpt_path: Path,
    cache_dir: Path,
    probe_shape: tuple[int, int, int, int],
    tolerance: float = ONNX_TOLERANCE,
    fold_bn: bool = True,
) -> tuple[ForwardFn, RuntimeChoice]:
    """Build the forward function the ``runtime`` option asks for (rules in the module docstring).

    Args:
        model: The checkpoint's logits model (CPU, float32).
        runtime: ``auto``, ``torch`` or ``onnx``.
        device: Where PyTorch runs.
        precision: ``32`` or ``bf16`` (resolved, see :func:`resolve_precision`).
        channels_last: NHWC for PyTorch.
        compile: ``torch.compile`` for PyTorch.
        threads: ONNX Runtime intra-op threads.
        ckpt_path: The checkpoint (its SHA-256 names the cached export).
        cache_dir: Where exports are cached.
        probe_shape: ``(B, C, h, w)`` of the probe batch (a batch of windows).
        tolerance: Largest accepted max |delta probability| between ONNX Runtime and PyTorch.
        fold_bn: Fold batch norm into the convolutions for PyTorch (ONNX Runtime does its own folding).

    Raises:
        ConfigError: An unknown ``runtime``.
    """
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {list(RUNTIMES)}, got {runtime!r}")
    torch_fn = TorchForward(
        model, device, channels_last=channels_last, precision=precision, compile=compile, fold_bn=fold_bn
    )
    if runtime == "torch":
        return torch_fn, RuntimeChoice("torch", runtime, "runtime=torch")
    if device.type != "cpu":
        return torch_fn, RuntimeChoice(
            "torch", runtime, f"ONNX Runtime is used on CPU only; {device} runs PyTorch"
        )
    try:
        import onnxruntime  # noqa: F401
    except ImportError as err:
        if isinstance(err, ModuleNotFoundError) and err.name == "onnxruntime":
            msg = "onnxruntime is not installed (pip install onnxruntime); using PyTorch"
        else:  # installed but broken: 1.18.0, built for numpy 1, on numpy 2 (an ImportError of no words)
            lines = str(err).strip().splitlines()
            why = f"{type(err).__name__}: {lines[0]}" if lines else f"{type(err).__name__}, of no message"
            msg = (
                f"onnxruntime is installed but cannot be imported ({why}); install a release built for this "
                "environment's numpy and Python (pip install -U onnxruntime); using PyTorch"
            )
        log.warning("runtime=%s: %s", runtime, msg)
        return torch_fn, RuntimeChoice("torch", runtime, msg)
    if cache_dir.exists() and not cache_dir.is_dir():  # it was "FileExistsError: [Errno 17] File exists"
        msg = (
            f"the ONNX cache folder {cache_dir} is a file, not a folder (onnx_cache_dir); give a folder, or "
            "leave onnx_cache_dir unset for <output_dir>/.cache/onnx; using PyTorch"
        )
        log.warning("runtime=%s: %s", runtime, msg)
        return torch_fn, RuntimeChoice("torch", runtime, msg)
    probe = torch.rand(probe_shape, generator=torch.Generator().manual_seed(0))
    # Reference in float32 whatever the run's precision, so the check measures the export only.
    reference = TorchForward(model, torch.device("cpu"), channels_last=channels_last)
    fresh: list[Path] = []
    try:
        path = cached_onnx(model, ckpt_path, cache_dir, probe_shape[1], probe_shape[2], fresh)
        try:
            onnx_fn = OnnxForward(path, threads)
            diff = max_difference(reference, onnx_fn, probe)
            # Damaged only beyond what a default run accepts: a stricter onnx_tolerance that an intact export
            # misses (5e-7 > 1e-9) falls back below, instead of deleting and exporting it again every run.
            damaged = not diff <= max(tolerance, ONNX_TOLERANCE)  # NaN too: a corrupt weight
            failed = f"its probabilities differ by {diff:.2e}" if damaged else None
        except Exception as exc:  # noqa: BLE001 - judged below: a cached file is made again once
            if fresh:
                raise
            failed = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        if failed is not None and not fresh:
            # A damaged cached export (a killed copy, flipped bytes) fell back to PyTorch on every run and
            # was never replaced: made again once, then judged as a fresh export is.
            log.warning("the cached ONNX export %s is unusable (%s); exporting it again", path, failed)
            path.unlink(missing_ok=True)
            path = cached_onnx(model, ckpt_path, cache_dir, probe_shape[1], probe_shape[2])
            onnx_fn = OnnxForward(path, threads)
            diff = max_difference(reference, onnx_fn, probe)
    except Exception as exc:  # noqa: BLE001 - any exporter/runtime failure means: fall back
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        msg = f"ONNX export or session failed ({type(exc).__name__}: {first}); using PyTorch"
        log.warning("runtime=%s: %s", runtime, msg)
        return torch_fn, RuntimeChoice("torch", runtime, msg)
    if not diff <= tolerance:
        msg = (
            f"ONNX Runtime's probabilities differ from PyTorch's by {diff:.2e} > {tolerance:g} on the probe; "
            "using PyTorch"
        )
        log.warning("runtime=%s: %s", runtime, msg)
        return torch_fn, RuntimeChoice("torch", runtime, msg, diff, onnx_path=os.fspath(path))
    if runtime == "onnx":
        return onnx_fn, RuntimeChoice(
            "onnx",
            runtime,
            f"runtime=onnx (max |dprob| {diff:.1e} on the probe)",
            diff,
            onnx_path=os.fspath(path),
        )
    seconds = {"torch": time_forward(torch_fn, probe), "onnx": time_forward(onnx_fn, probe)}
    name = min(seconds, key=seconds.__getitem__)
    reason = (
        f"runtime=auto: {name} was faster on a {tuple(probe_shape)} probe "
        f"(torch {seconds['torch']:.3f} s, onnx {seconds['onnx']:.3f} s; max |dprob| {diff:.1e})"
    )
    log.info(reason)
    return (onnx_fn if name == "onnx" else torch_fn), RuntimeChoice(
        name, runtime, reason, diff, seconds, os.fspath(path)
    )

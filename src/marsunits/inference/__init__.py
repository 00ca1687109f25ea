"""Batch prediction on folders of images of any size (``predict.py``).

Modules: :mod:`~marsunits.inference.tiling` (Gaussian-blended sliding windows),
:mod:`~marsunits.inference.predictor` (forward function -> probabilities, decoding workers),
:mod:`~marsunits.inference.runtime` (threads, channels_last, precision, PyTorch or ONNX Runtime),
:mod:`~marsunits.inference.distributed` (inputs sharded over processes, GPUs or nodes),
:mod:`~marsunits.inference.inputs` (file discovery and folder checks),
:mod:`~marsunits.inference.writers` (atomic outputs, manifest), :mod:`~marsunits.inference.evaluation`
(IoU against labels), :mod:`~marsunits.inference.gallery` (``index.html``) and
:mod:`~marsunits.inference.runner` (``run(cfg)``); one image from Python (a notebook):
:mod:`~marsunits.inference.unit_mapper` (:class:`UnitMapper`).
"""

from typing import TYPE_CHECKING

import lazy_loader

# Loaded on first use (lazy_loader): the runner imports torch, seconds before any command's own code, and
# ``python -m marsunits.inference.pseudo_labels`` imports this package first; a stop in those seconds found
# no handler (quiet_interrupt_at_start), SIGTERM ending the command silently.
__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "options": ["PredictOptions"],
        "runner": ["RunResult", "predict_folder", "run"],
        "unit_mapper": ["UnitMap", "UnitMapper"],
    },
)
__all__ = ["PredictOptions", "RunResult", "UnitMap", "UnitMapper", "predict_folder", "run"]

if TYPE_CHECKING:  # the names for type checkers
    from marsunits.inference.options import PredictOptions
    from marsunits.inference.runner import RunResult, predict_folder, run
    from marsunits.inference.unit_mapper import UnitMap, UnitMapper

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

from marsunits.inference.options import PredictOptions
from marsunits.inference.runner import RunResult, predict_folder, run
from marsunits.inference.unit_mapper import UnitMap, UnitMapper

__all__ = ["PredictOptions", "RunResult", "UnitMap", "UnitMapper", "predict_folder", "run"]

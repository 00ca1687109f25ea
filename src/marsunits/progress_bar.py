"""The training progress bar, without Lightning's ``v_num`` item.

Lightning shows the first logger's version as ``v_num`` next to the metrics; with the CSV logger that is the
string ``"0"``, drawn as ``v_num: 0.000``, which reads as a metric that never moves. A marsunits run is named
by its run folder (printed at the start), so the item only misleads. Lightning's documented way to drop it is
overriding ``get_metrics`` on the progress-bar callback; this module does that for the bar Lightning would
have chosen itself (Rich when ``rich`` is installed, else tqdm). Whether it is, is told as Lightning's
``RichProgressBar`` tells it, by refusing to be made (``ModuleNotFoundError``): Lightning's own flag for it
is private and moved module in 2.6.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar, TQDMProgressBar

__all__ = ["RichRunProgressBar", "TQDMRunProgressBar", "run_progress_bar"]


def _without_version(items: dict[str, Any]) -> dict[str, Any]:
    items.pop("v_num", None)
    return items


class RichRunProgressBar(RichProgressBar):
    """Lightning's Rich progress bar showing only the logged metrics (no ``v_num``)."""

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        return _without_version(super().get_metrics(trainer, pl_module))


class TQDMRunProgressBar(TQDMProgressBar):
    """Lightning's tqdm progress bar showing only the logged metrics (no ``v_num``)."""

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        return _without_version(super().get_metrics(trainer, pl_module))


def run_progress_bar(callbacks: list[Any], enabled: bool) -> list[Any]:
    """``callbacks`` plus the run's progress bar, when the trainer shows one and no callback is one already.

    Args:
        callbacks: The instantiated callbacks of the run's config.
        enabled: ``trainer.enable_progress_bar`` (Lightning refuses a progress-bar callback when it is false).
    """
    if not enabled or any(isinstance(cb, ProgressBar) for cb in callbacks):
        return callbacks
    bar: ProgressBar
    try:
        bar = RichRunProgressBar()
    except ModuleNotFoundError:  # what Lightning's RichProgressBar raises without rich (>= 10.2.2)
        bar = TQDMRunProgressBar()
    return [*callbacks, bar]

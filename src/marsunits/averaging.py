"""Exponential moving average (EMA) of the weights, validated, checkpointed and tested consistently.

Lightning's :class:`~lightning.pytorch.callbacks.EMAWeightAveraging` keeps the average during ``fit``,
swaps it in for validation and writes it as the checkpoint's ``state_dict`` (the raw weights go under
``current_model_state`` so a resumed run continues both). After ``fit``, however, it still holds the
averaged model: ``trainer.validate``/``trainer.test`` with ``ckpt_path=best`` then reload the *raw* weights
from ``current_model_state``, and test (which it does not swap) would score weights that were never
validated nor exported. :class:`EMAWeights` drops the average when ``fit`` ends, so later stages load the
checkpoint's ``state_dict`` -- the averaged weights that were validated, and that ``predict.py`` and the
model package read. The average is Lightning's private ``_average_model`` (2.6): a Lightning that keeps it
under another name is refused when the callback is made, before any training, rather than testing and
exporting the raw weights unnoticed.

A user may add Lightning's own ``EMAWeightAveraging`` or ``WeightAveraging`` to the callbacks directly
instead: :func:`drop_averages` does to them, once ``train.py``'s fit ends, what :class:`EMAWeights` does
itself, and :func:`check_averages_reachable` refuses them, as the callbacks are made, on a Lightning that
keeps the average elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import EMAWeightAveraging, WeightAveraging

from marsunits.errors import ConfigError

__all__ = ["EMAWeights", "averaging_callbacks", "check_averages_reachable", "drop_averages"]


class EMAWeights(EMAWeightAveraging):
    """EMA of the weights (and batch-norm buffers) for validation, checkpoints and every later stage.

    Args:
        decay: Weight of the running average per update, in (0, 1); the average spans about
            ``1 / (1 - decay)`` optimiser steps (0.99: ~100 steps).
        update_starting_at_step: First optimiser step that updates the average (``None``: from the start).
        **kwargs: Passed to :class:`~lightning.pytorch.callbacks.EMAWeightAveraging`.
    """

    def __init__(
        self, decay: float = 0.99, update_starting_at_step: int | None = None, **kwargs: Any
    ) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}; 0.99 averages about 100 steps.")
        super().__init__(decay=decay, update_starting_at_step=update_starting_at_step, **kwargs)
        if not _average_reachable(self):
            raise ConfigError(
                f"callbacks=ema: Lightning {pl.__version__}'s weight averaging keeps its average elsewhere "
                "than _average_model (private, as Lightning 2.6 names it), which marsunits needs to test and "
                "export the averaged weights; install Lightning 2.6 (pip install 'lightning~=2.6.0'), or "
                "train without callbacks=ema."
            )

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """After ``fit`` (whose end copied the average into the module), forget the average."""
        if stage == "fit":
            self._average_model = None
        super().teardown(trainer, pl_module, stage)

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Outside ``fit`` the checkpoint's ``state_dict`` (the average) is what is wanted: nothing to add."""
        if self._average_model is None:
            return
        super().on_load_checkpoint(trainer, pl_module, checkpoint)


def _average_reachable(callback: WeightAveraging) -> bool:
    """Whether ``callback`` keeps its average where marsunits drops it after ``fit``."""
    return hasattr(callback, "_average_model")  # set to None by WeightAveraging.__init__ in Lightning 2.6


def check_averages_reachable(callbacks: Iterable[object]) -> None:
    """Refuse, before any training, a weight-averaging callback added directly (Lightning's
    ``EMAWeightAveraging``, ``WeightAveraging`` or a subclass) on a Lightning that keeps the average elsewhere
    than ``_average_model``: :func:`drop_averages` would do nothing, and the test of ``best.ckpt`` would score
    its raw weights unnoticed. (:class:`EMAWeights` refuses itself when it is made.)

    Raises:
        ConfigError: naming the class, the Lightning version and the ways on.
    """
    for callback in callbacks:
        if isinstance(callback, WeightAveraging) and not _average_reachable(callback):
            raise ConfigError(
                f"callbacks: Lightning {pl.__version__}'s weight averaging ({type(callback).__name__}) keeps "
                "its average elsewhere than _average_model (private, as Lightning 2.6 names it), which "
                "marsunits needs to test the averaged weights that best.ckpt holds; install Lightning 2.6 "
                "(pip install 'lightning~=2.6.0'), or train without weight averaging."
            )


def drop_averages(callbacks: Iterable[object]) -> None:
    """Once ``fit`` ended (whose end copied each average into the module), forget the average of every
    weight-averaging callback among ``callbacks``, as :class:`EMAWeights` does itself: the validation and
    test of ``best.ckpt`` after it then load the checkpoint's ``state_dict``, the average that was validated
    and that ``predict.py`` reads. Lightning's own ``EMAWeightAveraging`` or ``WeightAveraging``, added to
    the callbacks directly, still held it, so they reloaded the raw weights (``current_model_state``) instead,
    and the test (which they do not swap) scored those."""
    for callback in callbacks:
        if isinstance(callback, WeightAveraging):
            callback._average_model = None


def averaging_callbacks(callbacks_cfg: Any) -> list[tuple[str, str]]:
    """The entries of a run's ``callbacks`` config node that build a Lightning ``WeightAveraging``
    (``callbacks=ema``, Lightning's ``EMAWeightAveraging`` or ``WeightAveraging``, a user's own subclass), as
    ``(key, class name)`` in their order. Their ``_target_`` values were checked to import before
    (:func:`~marsunits.run_checks.check_config_values`): one that does not is left out."""
    from marsunits.targets import locate

    found = []
    for key, node in callbacks_cfg.items() if isinstance(callbacks_cfg, Mapping) else []:
        target = node.get("_target_") if isinstance(node, Mapping) else None
        if not isinstance(target, str):
            continue
        try:
            built = locate(target)
        except ImportError:
            continue
        if isinstance(built, type) and issubclass(built, WeightAveraging):
            found.append((str(key), built.__name__))
    return found

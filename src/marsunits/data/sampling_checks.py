"""The rules of the data module's training draw that need no data read: how many crops an epoch draws
(``samples_per_epoch``), which crops are kept (``min_labelled_fraction``), which are placed on a class
(``focus_class``, ``focus_fraction``) and which sources only train (``train_only``).

One wording of the rules (:func:`sampling_refusal`) for :class:`~marsunits.data.datamodule.MarsDataModule`,
which refuses them when it is built, inside the run, and for ``train.py``'s checks before Hydra
(:func:`~marsunits.run_checks.check_run_values`), which refuse them before the run folder is made: the data
module alone left a folder with Hydra's record and ``train.log`` of a run that never started. Imports
neither torch nor the data module (seconds of start-up for a one-line refusal).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from marsunits.constants import CLASS_NAMES

__all__ = ["sampling_refusal"]


def _number(value: Any, kind: type[int] | type[float]) -> int | float | None:
    """``kind(value)`` (the data module's own conversion), or None where that fails (text, a list): such
    a value is left to the checks of its type (``run_checks``' ``expected a number``, the data module's
    conversion)."""
    try:
        return kind(value)
    except (TypeError, ValueError):
        return None


def sampling_refusal(
    name: str,
    sources: Sequence[str],
    samples_per_epoch: Any,
    min_labelled_fraction: Any,
    focus_class: Any,
    focus_fraction: Any,
    train_only: Sequence[str],
) -> str | None:
    """The refusal of the data config ``configs/data/<name>.yaml``'s training draw, or None. The values are
    the data module's arguments (``sources``: the source names, checked by the data module itself):

    * ``train_only``: real sources among ``sources``, leaving at least one to validate on;
    * ``samples_per_epoch``: at least one crop per source (each real source is given its share);
    * ``min_labelled_fraction``: a share in [0, 1] (above 1 no crop could ever be accepted);
    * ``focus_class``: a project class id (:data:`~marsunits.constants.CLASS_NAMES`) or None;
    * ``focus_fraction``: a share in [0, 1], with a ``focus_class`` to place crops on, and for real data
      only (synthetic scenes are drawn whole).

    Returns:
        One line naming the config, the value, what is taken and an example; None where all hold. A value
        that is not a number is not refused here: its own type check names it.
    """
    where = f"configs/data/{name}.yaml"
    sources = list(sources)
    train_only = list(train_only)
    if not set(train_only) <= set(sources) or set(train_only) == set(sources) or "synthetic" in train_only:
        return (
            f"{where}: train_only must list real sources among {sources} and leave at least one for "
            f"validation, got {train_only}."
        )
    samples = _number(samples_per_epoch, int)
    if samples is not None and samples < len(sources):  # each real source would be given 0 crops, then 1
        return (
            f"{where}: samples_per_epoch must be at least one crop per source ({len(sources)}), got "
            f"{samples_per_epoch!r}; e.g. data.samples_per_epoch=512."
        )
    labelled = _number(min_labelled_fraction, float)
    if labelled is not None and not 0.0 <= labelled <= 1.0:
        return (
            f"{where}: min_labelled_fraction is the share of labelled pixels a training crop needs, in "
            f"[0, 1], got {min_labelled_fraction!r}; e.g. data.min_labelled_fraction=0.05."
        )
    if focus_class is not None and focus_class not in range(len(CLASS_NAMES)):
        return (
            f"{where}: focus_class={focus_class} is not a project class id; use one of "
            f"{dict(enumerate(CLASS_NAMES))} or null."
        )
    fraction = _number(focus_fraction, float)
    if fraction is None:
        return None
    if not 0.0 <= fraction <= 1.0:
        return (
            f"{where}: focus_fraction is the share of training crops placed on focus_class, in [0, 1], got "
            f"{focus_fraction!r}; e.g. data.focus_fraction=0.33."
        )
    if fraction and focus_class is None and sources != ["synthetic"]:  # was silently ignored
        return (
            f"{where}: focus_fraction={focus_fraction} places crops on focus_class, which is null: name the "
            "class too, e.g. data.focus_class=1 (rough_olivine), or set data.focus_fraction=0."
        )
    if fraction and sources == ["synthetic"]:
        return (
            f"{where}: focus_class/focus_fraction over-sample crops of real images; synthetic scenes are "
            "drawn whole. Set data.focus_fraction=0."
        )
    return None

"""Lightning's log lines and warnings kept to what a user of ``train.py`` can act on: its handlers, adverts,
deprecations and the warnings of a run that does what they ask.

:func:`marsunits.training.run` applies them around a fit; each ``_quiet_*`` function adds a filter for a
``warnings.catch_warnings()`` block.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from collections.abc import Iterable, Iterator

from marsunits.user_paths import expand_home


def log_lightning_once() -> None:
    """Leave Lightning's log lines to the root logger's handlers when it has some (Hydra's console and
    ``train.log``).

    Why: importing ``lightning`` adds a console handler of its own (``INFO: ...``) to the ``lightning``
    logger, whose records also propagate to the root logger: under Hydra every Lightning line was printed
    twice. Imported while the root logger has no handler yet (the command line imports Lightning's classes
    to check the run's config before Hydra configures logging), ``lightning.pytorch`` and
    ``lightning.fabric`` add a console handler each and stop propagating: every Lightning line
    (``Trainer.fit`` stopped, the DDP ranks joining, checkpoints restored) went to the console unformatted
    and never reached ``train.log``. Without root handlers (plain Python use) Lightning's own console
    handlers stay.
    """
    import lightning  # noqa: F401  (adds its handler on import)
    import lightning.pytorch  # noqa: F401  (and these, theirs when the root logger had none)

    if not logging.getLogger().handlers:
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        package = logging.getLogger(name)
        own = [h for h in package.handlers if type(h) is logging.StreamHandler]
        for handler in own:
            package.removeHandler(handler)
        if own and name != "lightning":  # Lightning turned propagation off when it added its handler
            package.propagate = True


def _quiet_resumed_folder(ckpt_path: str | None) -> None:
    """Silence Lightning's "Checkpoint directory <folder> exists and is not empty." for the folder of the
    checkpoint ``ckpt_path`` resumes (``ckpt_path=last``, the README's resume in the run's own folder):
    that folder holds the run's checkpoints on purpose. Only that folder's (named as Lightning names it, its
    real path): a new run (no ``ckpt_path``), or a resume from another run's folder, into a checkpoints
    folder holding other files is still warned. For a ``warnings.catch_warnings()`` block around the fit.
    """
    if not ckpt_path:
        return
    folder = os.path.realpath(os.path.dirname(expand_home(str(ckpt_path))))
    # Lightning's rank_zero_warn, in ModelCheckpoint.setup; matched from its start, ignoring letter case
    # (as warnings does) but in the folder's name: /runs/A is not /runs/a.
    warnings.filterwarnings(
        "ignore", f"Checkpoint directory (?-i:{re.escape(folder)}) exists and is not empty\\.$", UserWarning
    )


def _quiet_logging_interval() -> None:
    """Silence Lightning's "The number of training batches (<n>) is smaller than the logging interval
    Trainer(log_every_n_steps=<m>)", for a ``warnings.catch_warnings()`` block around a fit whose trainer has
    :class:`~marsunits.training.LogWithinEpoch`: Lightning warns as it builds the training loader, before any
    hook can lower the interval, and the callback then does what it advises. Only that message."""
    from lightning.fabric.utilities.warnings import PossibleUserWarning

    warnings.filterwarnings(
        "ignore",
        r"The number of training batches \(\d+\) is smaller than the logging interval ",
        PossibleUserWarning,
    )


def _quiet_monitor_before_validation() -> None:
    """Silence Lightning's "`ModelCheckpoint(monitor='val/miou')` could not find the monitored key in the
    returned metrics: [...]. HINT: Did you call `log('val/miou', value)` in the `LightningModule`?", for a
    ``warnings.catch_warnings()`` block around a fit. Lightning warns so only while no validation has run
    (a checkpoint saved at the end of a training epoch, or of a run that ``trainer.max_steps`` ended, before
    the first validation: the README's quick check of real data, which validates every 2nd epoch, and a
    user's first tiny run both printed it), and raises the same words once one has; a monitored name that
    validation never logs is refused before the run anyway
    (:func:`~marsunits.run_checks.check_config_values`). The hint reads as a bug in the tool, whose task logs
    the metric at every validation; a run that ends with no best checkpoint says why in its own warning
    (:func:`marsunits.training._why_no_best`)."""
    warnings.filterwarnings(
        "ignore",
        r"`ModelCheckpoint\(monitor='[^']*'\)` could not find the monitored key in the returned metrics",
    )


def _quiet_averaging_taken_over(kept: Iterable[str], others: Iterable[str]) -> None:
    """Silence Lightning's "Be aware that when using `ckpt_path`, callbacks used to create the checkpoint
    need to be provided during `Trainer` instantiation. Please add the following callbacks: ['<key>']" for
    each state key in ``others`` (the EMA callbacks, marsunits' ``EMAWeights`` and Lightning's
    ``EMAWeightAveraging``) that none of the fit's weight-averaging callbacks has (``kept``: their state
    keys; none, and nothing is silenced). For a ``warnings.catch_warnings()`` block around a fit.

    A run trained with one EMA class and resumed with the other (``'+callbacks=[ema]'`` on a run of
    Lightning's, or the reverse) takes the average and the raw weights over: Lightning's ``WeightAveraging``
    restores them from the checkpoint's ``averaging_state`` and ``current_model_state``, whichever class
    wrote them. Only the callback's own state, kept under its class's name, is not read: its last update
    step, which only stops a second update at one step, and the resumed steps are all past it. Lightning
    warns of that key before any callback's hook sees the checkpoint, so no callback can read it under the
    other name in time; its advice (add the callback) would put a second average beside the first. Only that
    message, and only when it names that one key: another callback left out is still warned of."""
    present = set(kept)
    if not present:
        return
    for key in set(others) - present:
        warnings.filterwarnings(
            "ignore",
            r"Be aware that when using `ckpt_path`, callbacks used to create the checkpoint need to be "
            r"provided during `Trainer` instantiation\. Please add the following callbacks: "
            rf"\['{re.escape(key)}'\]\.$",
        )


def _quiet_average_not_restored() -> None:
    """Silence Lightning's "You're using the WeightAveraging callback, but loading a checkpoint outside the
    'fit' stage. The WeightAveraging state cannot be restored. If you're using the checkpoint for prediction
    or testing, you can ignore this warning. ...", for a ``warnings.catch_warnings()`` block around a run.
    Lightning's own averaging callbacks (``EMAWeightAveraging``, ``WeightAveraging``), added to a run's
    callbacks directly, give it at each validation and test of ``best.ckpt`` after the fit (their average is
    dropped then: :func:`marsunits.averaging.drop_averages`) and of a ``train=false`` run: the checkpoint's
    averaged weights are what is scored there, as the warning says it may be ignored. Only that message."""
    warnings.filterwarnings(
        "ignore",
        r"You're using the WeightAveraging callback, but loading a checkpoint outside the 'fit' stage\.",
    )


def _quiet_lightning_deprecations() -> None:
    """Silence the deprecation warning Lightning's own code raises against the torch it runs on, which no
    user of this tool can act on; for a ``warnings.catch_warnings()`` block around the run.

    Lightning 2.6's ``lightning.pytorch.utilities._pytree`` (its ``CombinedLoader``) builds torch's
    ``LeafSpec``, which torch deprecates (2.14 here; a ``FutureWarning``, printed by default):
    "`isinstance(treespec, LeafSpec)` is deprecated, use ...", a path into site-packages and a line of
    Lightning's source, printed into ``train.py``'s output at each fit, validation and test. Only that
    message from that module: any other warning is shown. ``predict.py`` builds no ``CombinedLoader``
    (its output never held it)."""
    warnings.filterwarnings(
        "ignore",
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        FutureWarning,
        r"(lightning\.pytorch|pytorch_lightning)\.utilities\._pytree$",
    )


#: The logger of Lightning's ``rank_zero_info`` lines ("GPU available: ...", "`Trainer.fit` stopped ...").
_LIGHTNING_INFO_LOGGER = "lightning.pytorch.utilities.rank_zero"


class _NoLightningAdverts(logging.Filter):
    """Drop Lightning's adverts for its cloud packages from its info log, and nothing else.

    Lightning 2.6 logs, at every ``Trainer`` built without its ``LitLogger``, "💡 Tip: For seamless cloud
    logging and experiment tracking, try installing [litlogger](...) ...", and at a fit with the default
    ``ModelCheckpoint`` the same for ``litmodels``: a line in every ``train.py`` output (``debug=fdr`` and
    ``logger=csv`` included) that offers a service this tool neither uses nor needs, read by users as
    something to install. The rest of that logger (devices, ``fast_dev_run``, why a fit stopped) is kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("💡 Tip:") and ("litlogger" in message or "litmodels" in message))


@contextlib.contextmanager
def _quiet_lightning_adverts() -> Iterator[None]:
    """:class:`_NoLightningAdverts` on Lightning's info logger while the block runs, removed after it (a
    notebook's own Trainer later in the process logs as Lightning does)."""
    logger, advert_filter = logging.getLogger(_LIGHTNING_INFO_LOGGER), _NoLightningAdverts()
    logger.addFilter(advert_filter)
    try:
        yield
    finally:
        logger.removeFilter(advert_filter)

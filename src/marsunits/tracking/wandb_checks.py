"""The checks of a W&B logger's settings that need no logger: its mode (:func:`checked_wandb_mode`), W&B's
data folder (:func:`check_wandb_staging`) and the run's W&B folder (:func:`check_wandb_folder`).

Imports neither torch nor Lightning (W&B itself only when the data folder is checked): ``predict.py
logger=wandb`` runs these before Hydra starts (:func:`~marsunits.inference.checks.check_logger`), and
reaching them through :mod:`marsunits.tracking.wandb_setup`, which builds Lightning's loggers, cost a
refusal seconds of imports. :mod:`~marsunits.tracking.wandb_setup` still offers the same names.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from marsunits.errors import ConfigError, readable
from marsunits.user_paths import expand_home

__all__ = ["WANDB_MODES", "check_wandb_folder", "check_wandb_staging", "checked_wandb_mode"]

#: Values accepted for a W&B logger's ``mode`` (``WANDB_MODE``); ``dryrun``/``run`` are W&B's old spellings.
WANDB_MODES: tuple[str, ...] = ("auto", "online", "offline", "disabled")
_MODE_ALIASES = {"dryrun": "offline", "run": "online"}


def checked_wandb_mode(requested: str | None) -> str:
    """The requested W&B mode spelled as W&B spells it (``auto`` for None or empty), without looking at the
    network or the credentials.

    Raises:
        ConfigError: not a W&B mode (names the value and the choices).
    """
    mode = (str(requested).strip().lower() if requested not in (None, "") else "auto") or "auto"
    mode = _MODE_ALIASES.get(mode, mode)
    if mode not in WANDB_MODES:
        raise ConfigError(
            f"W&B mode {requested!r} (logger.wandb.mode or WANDB_MODE) is not one of {list(WANDB_MODES)}. "
            "Use auto (online when possible), online, offline or disabled."
        )
    return mode


def check_wandb_folder(save_dir: str | Path | None) -> None:
    """Refuse a W&B folder (``logger.wandb.save_dir``) whose name is not UTF-8, before the run starts.

    W&B's settings are protobuf strings, UTF-8 only: a run folder under a ``paths.log_dir`` or a
    ``run_name`` in Latin-1 bytes (an old archive's name) stopped ``wandb.init`` in ``UnicodeEncodeError``.

    Raises:
        ConfigError: names the folder (such a byte as ``\\xNN``) and the ways out.
    """
    if save_dir is None or readable(str(save_dir)) == str(save_dir):
        return
    raise ConfigError(
        f"W&B cannot keep its run files in {readable(str(save_dir))}: the folder's name holds bytes that are "
        "not UTF-8 (shown \\xNN), and W&B takes UTF-8 paths only. Give the run a folder named in UTF-8 "
        "(paths.log_dir=..., run_name=...), set logger.wandb.save_dir=<a UTF-8 folder>, or run without W&B "
        "(train.py: logger=csv; predict.py: leave logger unset)."
    )


def check_wandb_staging() -> None:
    """Refuse a W&B data folder that cannot be written, before the run starts: W&B stages there the tables
    (confusion matrices, the prediction table) and checkpoints a run logs (``$WANDB_DATA_DIR/artifacts/
    staging``, by default under ``~/.local/share/wandb``), and its PermissionError stopped a training at the
    end of its first validation, after a whole epoch, and a prediction after every image.

    Raises:
        ConfigError: names the folder, why, and the fix.
    """
    from wandb import env  # W&B's own rule for its data folder (imports no torch)

    folder = expand_home(env.get_data_dir()) / "artifacts" / "staging"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ConfigError(
            f"W&B cannot write {folder} ({exc.strerror or exc}), where it stages the tables and "
            "checkpoints a run logs: set WANDB_DATA_DIR to a folder you can write (W&B uses its "
            "artifacts/staging), or WANDB_MODE=disabled to run without W&B"
        ) from None

"""The checks of a W&B logger's settings that need no logger: its mode (:func:`checked_wandb_mode`), W&B's
data folder (:func:`check_wandb_staging`), the run's W&B folder (:func:`check_wandb_folder`), its
``log_model`` (:func:`resolve_log_model`), and those of every W&B node of a ``train.yaml`` config's
``logger`` (:func:`check_wandb_modes`, the nodes told by :func:`is_wandb_node`).

Imports neither torch nor Lightning (W&B itself only when the data folder is checked, Lightning only to ask
a logger class of one's own whether it is a ``WandbLogger``): ``predict.py logger=wandb`` runs these before
Hydra starts (:func:`~marsunits.inference.checks.check_logger`), and so does ``train.py``
(:func:`~marsunits.run_checks.check_config_values`); reaching them through
:mod:`marsunits.tracking.wandb_setup`, which builds Lightning's loggers, cost a refusal seconds of imports.
:mod:`~marsunits.tracking.wandb_setup` still offers the same names.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from marsunits.errors import YES_NO_WORDS, ConfigError, readable
from marsunits.user_paths import expand_home

__all__ = [
    "WANDB_MODES",
    "check_wandb_folder",
    "check_wandb_modes",
    "check_wandb_staging",
    "checked_wandb_mode",
    "is_wandb_node",
    "resolve_log_model",
]

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


def resolve_log_model(value: Any, mode: str) -> bool | str:
    """``auto`` -> upload checkpoints only when online; true/false/"all" as given.

    Raises:
        ConfigError: any other value (names ``logger.wandb.log_model`` and the choices; for yes/no/on/off,
            that the config reads them as text).
    """
    if value is None or (isinstance(value, str) and value.lower() == "auto"):
        return mode == "online"
    if isinstance(value, bool) or value == "all":
        return value
    yes_no = isinstance(value, str) and value.lower() in YES_NO_WORDS
    why = " (yes/no/on/off are read as text)" if yes_no else ""
    raise ConfigError(f"logger.wandb.log_model={value!r}: expected auto, true, false or all{why}.")


def check_wandb_modes(cfg: DictConfig) -> None:
    """Refuse a W&B logger's mode that W&B does not know, or a ``log_model`` it cannot take, or a folder it
    cannot use (:func:`check_wandb_staging`, :func:`check_wandb_folder`), before the run writes anything
    (``WANDB_MODE=bogus`` left a ``config.yaml`` and a ``train.log`` of a run that never started).

    Raises:
        ConfigError: as :func:`checked_wandb_mode`, or for a ``log_model`` other than auto/true/false/all.
    """
    for node in (cfg.get("logger") or {}).values():
        if is_wandb_node(node):
            mode = checked_wandb_mode("offline" if node.get("offline") is True else node.get("mode"))
            # log_model=yes was refused only when the loggers started: after the scenes were rendered
            resolve_log_model(node.get("log_model", "auto"), mode)
            if mode != "disabled":
                check_wandb_staging()
                check_wandb_folder(node.get("save_dir"))


#: The module of Lightning's loggers: a ``_target_`` under it is told by its name, without importing it.
_LIGHTNING_LOGGERS = "lightning.pytorch.loggers."


def is_wandb_node(node: Any) -> bool:
    """Whether a ``cfg.logger`` node builds a W&B logger: its ``_target_`` is Lightning's ``WandbLogger`` or
    a subclass of it.

    One of Lightning's own loggers (``lightning.pytorch.loggers.WandbLogger``, its alias
    ``lightning.pytorch.loggers.wandb.WandbLogger``, ``lightning.pytorch.loggers.CSVLogger``) is told by its
    name, importing nothing: importing ``WandbLogger`` to ask cost a refused ``logger.wandb.mode=onlien``
    seconds of Lightning and torch. Any other class (a subclass of ``WandbLogger`` of one's own) is imported
    and asked; one that does not import is not a W&B logger here
    (:func:`~marsunits.targets.unimportable_target` refuses it in words of its own).
    """
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return False
    target = node.get("_target_")
    if not isinstance(target, str):
        return False
    if target.startswith(_LIGHTNING_LOGGERS):
        return target.rsplit(".", 1)[-1] == "WandbLogger"
    from hydra.utils import get_class

    try:
        cls = get_class(target)
    except Exception:  # noqa: BLE001 - not a class that imports: refused by the _target_ check, not here
        return False
    from lightning.pytorch.loggers import WandbLogger

    return issubclass(cls, WandbLogger)

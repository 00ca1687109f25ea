"""The checks of ``predict.py``'s options that need neither the model nor the images
(:func:`check_before_predicting`): the folders, the option values, the logger, the device and precision, and
that the checkpoint is there. ``predict.py`` runs them before Hydra starts
(:func:`~marsunits.cli_values.predict_refusal`: a refused command leaves no run folder) and each run, each
rank of a sharded one, runs them again (:mod:`marsunits.inference.runner`). Before Hydra only, it also
refuses a ``labels_class_map`` by the model's metadata, read without building the network
(:func:`labels_map_refusal`; the run refuses it again once the model is loaded).

Imports no torch: ``predict.py --help`` and a refusal that needs no device (a folder that is not there, a
required option missing, ``overlap=1.5``) paid some 4 s of its start-up when these lived in the runner. The
device and precision checks import it when they are reached, the ``contact`` options' check SciPy and
Shapely; the W&B checks (``logger=wandb``, :mod:`marsunits.tracking.wandb_checks`) import W&B, not
Lightning.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from marsunits.checkpoint_files import model_hyper_parameters
from marsunits.data.class_map import classes_file_refusal, labels_classes_folder
from marsunits.errors import ConfigError, DataError, MissingFileError
from marsunits.inference.inputs import check_folders, normalise_patterns, resolve_option_path
from marsunits.inference.options import PredictOptions, read_contact_config, read_labels_class_map
from marsunits.user_paths import expand_home, is_package, meant_path

if TYPE_CHECKING:
    import torch

    from marsunits.boundary.extract import ContactConfig

__all__ = [
    "CheckedOptions",
    "check_before_predicting",
    "check_logger",
    "configured_log_dir",
    "labels_map_refusal",
    "labels_option",
    "newest_best_checkpoint",
    "refuse_train_last",
    "train_last_refusal",
]


def configured_log_dir(cfg: DictConfig) -> Path | None:
    """``paths.log_dir`` of a composed config (where train.py's runs are), or None where it has none or it
    does not resolve."""
    log_dir = OmegaConf.select(cfg, "paths.log_dir", default=None, throw_on_resolution_failure=False)
    return None if log_dir is None else expand_home(str(log_dir))


def refuse_train_last(
    ckpt_path: str | os.PathLike[str], log_dir: Path | None, prog: str = "predict.py"
) -> None:
    """Refuse ``ckpt_path=last`` (train.py's word for resuming, no file ``last`` there) with
    :func:`train_last_refusal`'s message for ``prog``: ``predict.py``'s, or ``python -m marsunits.export``'s
    (which passes its own name, and the ``logs/`` folder train.py's runs are in).

    Raises:
        MissingFileError: naming the newest run's ``best.ckpt`` under ``log_dir``, else the general form.
    """
    if os.fspath(ckpt_path) == "last" and not expand_home(ckpt_path).exists():
        raise MissingFileError(train_last_refusal(log_dir, prog))


def newest_best_checkpoint(log_dir: Path, name: str = "best.ckpt") -> Path | None:
    """The most recently written ``checkpoints/best.ckpt`` (or ``checkpoints/<name>``) of a train.py run
    under ``log_dir`` (``<task>/<run>/`` or a sweep's trial, ``<task>/multirun-<time>/<n>/``), or None."""
    found: list[tuple[float, Path]] = []
    for pattern in (f"*/*/checkpoints/{name}", f"*/*/*/checkpoints/{name}"):
        for path in log_dir.glob(pattern):
            try:
                found.append((path.stat().st_mtime, path))
            except OSError:  # removed since it was listed
                continue
    return max(found)[1] if found else None


def train_last_refusal(log_dir: Path | None, prog: str = "predict.py") -> str:
    """Why ``ckpt_path=last`` names no model for ``prog`` (``predict.py``, ``python -m marsunits.export``),
    and the checkpoint to give: the newest run's ``best.ckpt`` under ``log_dir`` (train.py's
    ``paths.log_dir``) where one is there; else the newest ``last.ckpt`` there, named as a path to give (said
    to be a debug run's where it is one), not taken; else the general form. A model package folder is
    offered as an alternative to ``predict.py`` only: the export refuses one, exported already.
    """
    package = prog == "predict.py"
    said = (
        "ckpt_path=last means something only to train.py (resume the newest run from its last.ckpt); "
        f"{prog} needs the model itself: "
    )
    best = None if log_dir is None else newest_best_checkpoint(log_dir)
    if best is not None:
        return (
            f"{said}the newest run's best weights are ckpt_path={shlex.quote(os.fspath(best))} (or give "
            "another run's <run folder>/checkpoints/best.ckpt"
            + (", or a model package folder from python -m marsunits.export)" if package else ")")
        )
    give = _GIVE_A_RUNS_CHECKPOINT + (_OR_A_PACKAGE if package else "")
    if log_dir is None:
        return f"{said}{give}"
    none = f"no run under {log_dir} has a checkpoints/best.ckpt"
    # A debug=fdr run's last.ckpt, or a run's stopped before it kept a best: named as a path to give, never
    # taken (ckpt_path=last said only "no run has a best.ckpt", with a debug run's checkpoint right there).
    last = newest_best_checkpoint(log_dir, "last.ckpt")
    if last is None:
        return f"{said}{none}, so {give}"
    what = (
        " of a debug run (a few batches of training, to check the wiring)"
        if last.relative_to(log_dir).parts[0] == "debug"  # train.py debug=...: task_name debug
        else ", the weights where its run stopped"
    )
    return (
        f"{said}{none}; the newest checkpoint there is a last.ckpt{what}: "
        f"ckpt_path={shlex.quote(os.fspath(last))} if it is the model you mean, else train a run until it "
        "keeps a best.ckpt"
        + (", or give a model package folder (python -m marsunits.export)" if package else "")
    )


#: The general form of :func:`train_last_refusal`'s advice.
_GIVE_A_RUNS_CHECKPOINT = (
    "give a train.py run's checkpoint, ckpt_path=<log folder>/train/<run>/checkpoints/best.ckpt (the log "
    "folder is train.py's paths.log_dir, logs/ where it was run)"
)
_OR_A_PACKAGE = ", or a model package folder (python -m marsunits.export)"


def check_logger(logger: Mapping[str, Any] | None) -> None:
    """Prediction logs to W&B only: ``logger`` is None or the ``configs/logger/wandb.yaml`` group, in a mode
    W&B knows (checked before predicting: ``WANDB_MODE=onlien`` was refused after the whole folder).

    Raises:
        ConfigError: Another logger group was chosen, the W&B mode is not one (``checked_wandb_mode``), or
            W&B's data folder cannot be written (``check_wandb_staging``), or its run folder is named in
            bytes that are not UTF-8 (``check_wandb_folder``).
    """
    if logger is None:
        return
    if set(logger) != {"wandb"}:
        raise ConfigError(
            f"prediction can log to W&B only, got logger with {sorted(logger)}; use logger=wandb or leave "
            "logger unset"
        )
    from marsunits.tracking.wandb_checks import check_wandb_folder, check_wandb_staging, checked_wandb_mode

    node = logger["wandb"] or {}
    if checked_wandb_mode("offline" if node.get("offline") is True else node.get("mode")) != "disabled":
        check_wandb_staging()  # W&B's own refusal came after the whole folder was predicted
        check_wandb_folder(node.get("save_dir"))  # a name that is not UTF-8: likewise


def labels_option(labels_dir: Path) -> str:
    """``labels_dir=<folder>`` as a message names the labels (quoted as a shell would need it)."""
    return f"labels_dir={shlex.quote(os.fspath(labels_dir))}"


def _labels_dir_is_input_dir(input_dir: Path, masks_matched: list[str]) -> str:
    """Why ``labels_dir`` = ``input_dir`` is refused with patterns that match the masks' extensions, most
    likely case first: the photographs' folder given twice, where the masks are in a folder of their own
    (one beside ``input_dir`` named ``labels`` or ``masks``, as DESIGN.md's ``images/`` + ``masks/`` and
    MarsScapes' ``labels/`` have them, is named); then, for masks that do sit beside the photographs, the
    patterns that leave them out. (The message began with the second: "give patterns for the photographs
    only", to a user whose masks were in a folder of their own.)"""
    beside = [input_dir.parent / name for name in ("labels", "masks")]
    found = next((folder for folder in beside if folder != input_dir and folder.is_dir()), None)
    where = (
        f", as {found} beside it may be (labels_dir={shlex.quote(os.fspath(found))})"
        if found is not None
        else f" (e.g. {beside[0]})"
    )
    return (
        f"labels_dir is the same folder as input_dir ({input_dir}): labels are class-id masks, usually in a "
        f"folder of their own{where}; if the masks do sit beside the photographs, give patterns for the "
        f"photographs only, e.g. patterns=[jpg]: these patterns match the masks' extensions "
        f"({', '.join(masks_matched)}), so each mask would be read as a photograph"
    )


@dataclass(frozen=True)
class CheckedOptions:
    """What :func:`check_before_predicting` found: the folders, checkpoint and settings the run uses."""

    input_dir: Path
    output_dir: Path
    labels_dir: Path | None
    contact_config: ContactConfig
    device: torch.device
    precision: str
    ckpt_path: Path


def check_before_predicting(opts: PredictOptions, log_dir: Path | None = None) -> CheckedOptions:
    """Every check of ``opts`` that needs neither the model nor the images: the folders, labels read as
    project ids beside a ``classes.json`` naming other classes
    (:func:`~marsunits.data.class_map.classes_file_refusal`), the option values, the logger, the device
    and precision, and that the checkpoint exists. Nothing is written. ``log_dir``
    (``paths.log_dir``, where train.py's runs are) lets a refused ``ckpt_path=last`` name the newest run's
    ``best.ckpt`` (:func:`refuse_train_last`).

    Called by each run (each rank of a sharded one) and, before ranks are spawned, by the launching process:
    a refusal in a spawned rank came as some 70 lines of spawn traceback with status 1.

    Raises:
        MarsUnitsError, FileNotFoundError: the first problem, in one sentence.
    """
    refuse_train_last(opts.ckpt_path, log_dir)
    input_dir, output_dir = check_folders(opts.input_dir, opts.output_dir)
    labels_dir = None
    if opts.labels_dir is not None:
        labels_dir = resolve_option_path(opts.labels_dir, "labels_dir")
        if not labels_dir.is_dir():
            meant = None if labels_dir.exists() else meant_path(labels_dir, folder=True)
            hint = f" (did you mean labels_dir={meant}?)" if meant else ""
            raise DataError(
                f"labels_dir {labels_dir} is not an existing folder; fix labels_dir{hint} or drop it"
            )
        masks_matched = sorted(set(normalise_patterns(opts.patterns)) & {".png", ".tif", ".tiff"})
        if labels_dir == input_dir and masks_matched:
            # Each photograph and its mask would be one same-stem pair, both error rows asking for a rename.
            raise ConfigError(_labels_dir_is_input_dir(input_dir, masks_matched))
        if opts.labels_class_map is None:
            # Labels read as project ids beside a classes.json naming other classes: AI4Mars' sand (2) was
            # scored as other without a word where no label held a 3. An unreadable one: the run warns.
            refused = classes_file_refusal(
                labels_classes_folder(labels_dir),
                labels_option(labels_dir),
                "labels_class_map",
                by_name=True,
                python=None if opts.config_words else "{}",  # predict_folder(PredictOptions(...))
            )
            if refused is not None:
                raise ConfigError(refused)
    opts.check_values()
    check_logger(opts.logger)
    contact_config = read_contact_config(opts.contact)
    # Imported here: torch, seconds of start-up that the checks above, and predict.py --help, do not need.
    from marsunits.inference.predictor import select_device
    from marsunits.inference.runtime import check_threads, resolve_precision

    device = select_device(opts.device)
    precision = resolve_precision(opts.precision, device)
    check_threads(opts.threads, python=not opts.config_words)
    ckpt_path = resolve_option_path(opts.ckpt_path, "ckpt_path")
    # Checked before the (possibly long) folder walk; a package's model.json or model.safetensors missing
    # from its folder (renamed on its way) is left to load_model, which says which file to rename back. In a
    # folder that is no package (ckpt_path=<empty folder>/model.json) it is missing: left to the run, it was
    # refused after Hydra made the run's log folder, in other words.
    package_file = (
        ckpt_path.suffix in (".json", ".safetensors")
        and ckpt_path.parent.is_dir()
        and is_package(ckpt_path.parent)
    )
    if not ckpt_path.exists() and not package_file:
        last = ckpt_path.with_name("last.ckpt")
        if ckpt_path.name == "best.ckpt" and last.is_file():
            # A run that never validated (README's one-minute check: trainer.max_epochs=1 under the real-data
            # experiments' check_val_every_n_epoch=2) writes no best.ckpt, which README's predict line names.
            raise FileNotFoundError(
                f"checkpoint {ckpt_path} does not exist: its run wrote no best model (validation never ran, "
                f"e.g. trainer.max_epochs below trainer.check_val_every_n_epoch), only its latest weights; "
                f"predict with those: ckpt_path={last}"
            )
        meant = meant_path(Path(ckpt_path))
        raise FileNotFoundError(
            f"checkpoint {ckpt_path} does not exist; "
            + (f"did you mean ckpt_path={meant}? Else " if meant else "")
            + "pass a .ckpt written by train.py or a model package folder (python -m marsunits.export) as "
            "ckpt_path="
        )
    if ckpt_path.is_dir() and not is_package(ckpt_path):
        # A folder holding the .ckpt (a run's checkpoints/, a folder of models): refused inside the run, after
        # Hydra had made its log folder. Imported here only: model_package imports the network's modules.
        from marsunits.model_package import folder_refusal

        refused = folder_refusal(ckpt_path)
        if refused is not None:
            raise FileNotFoundError(refused)
    return CheckedOptions(input_dir, output_dir, labels_dir, contact_config, device, precision, ckpt_path)


def labels_map_refusal(opts: PredictOptions, ckpt_path: Path) -> str | None:
    """The refusal of ``labels_class_map`` that the model at ``ckpt_path`` (as
    :func:`check_before_predicting` checked it) gives by its metadata alone, in the run's words
    (:func:`read_labels_class_map`): ``checkpoint`` for a model trained on masks in project ids, or on several
    data sets each with its map; a data set's name the model's maps do not fit; a mapping of ids out of
    range. None where there is none, no ``labels_dir``, or the metadata cannot be read here
    (:func:`_model_training_data`: the run reads the model and says why).

    ``predict.py`` asks this before Hydra starts (:func:`~marsunits.cli_values.predict_refusal`); the run read
    the map once the model was loaded, after Hydra had made ``logs/predict/<time>/`` and the images were
    listed. Not in :func:`check_before_predicting`, which each run calls before it loads the model: it would
    read the checkpoint twice.
    """
    if opts.labels_dir is None or opts.labels_class_map is None:
        return None
    metadata = _model_training_data(ckpt_path)
    if metadata is None:
        return None
    try:
        read_labels_class_map(opts.labels_class_map, metadata)
    except ConfigError as refused:
        return str(refused)
    except Exception:  # noqa: BLE001 - metadata of a form the run refuses in its own words: left to it
        return None
    return None


def _model_training_data(ckpt_path: Path) -> dict[str, Any] | None:
    """``class_map`` and ``dataset`` of the model at ``ckpt_path`` as the run's model reports them, read
    without building the network (:func:`~marsunits.checkpoint_files.model_hyper_parameters`); None where
    they cannot be read so."""
    hparams = model_hyper_parameters(ckpt_path)
    return None if hparams is None else {key: hparams.get(key) for key in ("class_map", "dataset")}

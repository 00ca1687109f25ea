"""The values of a command line refused before Hydra makes a run folder: ``predict.py``'s
(:func:`predict_refusal`) and ``train.py``'s (:func:`value_refusal`), each composed here as the entry point
will compose it (:func:`primary_config`: the config folder and primary config Hydra's flags choose).

A mistyped value was refused only inside the run, after Hydra had made the run folder with its ``.hydra/``
record: a log folder of a run that never started.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

from marsunits.cli_argv import (
    CONFIG_FLAGS,
    INFORMATIONAL_FLAGS,
    OTHER_RUN_FLAGS,
    hydra_quoted,
    is_multirun,
    override_arguments,
)

__all__ = ["predict_refusal", "primary_config", "run_folder_guess", "value_refusal"]


def _unset_run_folder_values(logger: Any) -> None:
    """Set to None each value of the ``logger`` node's loggers that resolves only once Hydra runs: W&B's
    ``save_dir``, the run folder (``${paths.output_dir}``). With it, ``logger=wandb`` left every check of
    :func:`predict_refusal` to the run, after Hydra had made the run folder; the run checks it itself."""
    if not isinstance(logger, DictConfig):
        return
    for name in list(logger):
        node = logger._get_node(name)
        if not isinstance(node, DictConfig):
            continue
        for key in list(node):
            try:
                _ = node[key]  # resolved on access
            except Exception:  # noqa: BLE001 - ${hydra:...}: not set before Hydra starts
                with open_dict(node):
                    node[key] = None


def predict_refusal(argv: Sequence[str], config_dir: Path) -> str | None:
    """``predict.py``'s refusal of its options, by the checks that need neither the model nor the images
    (:func:`~marsunits.inference.checks.check_before_predicting`: required options, values, folders, device,
    that the checkpoint is there), or None.

    Run before Hydra starts: a mistyped value (``batch_size=eight``, ``device=gpu``) was refused only inside
    the run, after Hydra had made ``logs/predict/<time>/`` with its ``.hydra/`` record, a log folder of a
    run that never started. ``--help``-like flags, sweeps, another primary config and anything that does
    not compose or resolve here (Hydra's runtime values) are left to the run, which checks the same.
    """
    keys = [a.split("=", 1)[0].lstrip("+") for a in argv]
    left_to_the_run = (*INFORMATIONAL_FLAGS, *OTHER_RUN_FLAGS)
    if any(k in left_to_the_run or k.startswith(CONFIG_FLAGS) for k in keys) or is_multirun(argv):
        return None
    # Imported once a check is run (not for --help): the checks import torch only at the device check.
    from marsunits.errors import MarsUnitsError
    from marsunits.inference.checks import check_before_predicting, configured_log_dir, labels_map_refusal
    from marsunits.inference.options import PredictOptions

    with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
        try:
            cfg = compose("predict", overrides=override_arguments(argv))
        except Exception:  # noqa: BLE001 - Hydra reports what does not compose
            return None
    _unset_run_folder_values(cfg.get("logger"))
    try:
        opts = PredictOptions.from_config(cfg)
        checked = check_before_predicting(opts, configured_log_dir(cfg))
        # Then the labels' map the model's metadata refuses (the run read it once the model was loaded).
        refused_map = labels_map_refusal(opts, checked.ckpt_path)
        if refused_map is not None:
            return refused_map
    except (MarsUnitsError, FileNotFoundError) as refused:
        return str(refused)
    except Exception:  # noqa: BLE001 - not resolvable before Hydra starts (${hydra:...}): the run checks it
        return None
    return None


def primary_config(argv: Sequence[str], config_dir: Path) -> tuple[Path, str, list[str]] | None:
    """The config folder, primary config and added overrides with which ``train.py`` composes ``argv``:
    ``config_dir`` and ``train``, or those Hydra's ``--config-name``/``-cn`` and ``--config-path``/``-cp``
    choose (a relative path is read from the folder of train.py, ``config_dir``'s parent, as Hydra does);
    a ``--config-dir``/``-cd`` folder, which Hydra adds to its search path after the primary folder, is
    added as ``hydra.searchpath`` (the same place). None where that would replace a search path the
    command or the primary config sets itself: not composed here."""
    from marsunits.user_paths import expand_home

    folder, name, added = config_dir, "train", None
    args = list(argv)
    for i, arg in enumerate(args):
        for flags in (("-cn", "--config-name"), ("-cp", "--config-path"), ("-cd", "--config-dir")):
            value = next((arg.split("=", 1)[1] for f in flags if arg.startswith(f"{f}=")), None)
            if arg in flags and i + 1 < len(args):
                value = args[i + 1]
            if value is None:
                continue
            if flags[0] == "-cn":
                name = value.removesuffix(".yaml")
            elif flags[0] == "-cp":
                given = expand_home(value)
                folder = given if given.is_absolute() else config_dir.parent / given
            else:
                added = expand_home(value).resolve()
    if added is None:
        return folder, name, []
    if any(a.lstrip("+").startswith("hydra.searchpath") for a in args):
        return None
    try:
        own = OmegaConf.select(OmegaConf.load(folder / f"{name}.yaml"), "hydra.searchpath", default=None)
    except Exception:  # noqa: BLE001 - a primary config that is not in that folder: Hydra finds it
        return None
    if own is not None:
        return None
    return folder, name, [f"hydra.searchpath=[{hydra_quoted(added.as_uri())}]"]


def _composed(argv: Sequence[str], config_dir: Path, overrides: Sequence[str]) -> DictConfig | None:
    """The config ``train.py`` composes for ``argv`` (:func:`primary_config`) with ``overrides``, Hydra's
    node included; None where it does not compose here (Hydra reports that when it runs)."""
    primary = primary_config(argv, config_dir)
    if primary is None:
        return None
    folder, name, added = primary
    try:
        with initialize_config_dir(config_dir=str(folder.resolve()), version_base="1.3"):
            return compose(name, overrides=[*added, *overrides], return_hydra_config=True)
    except Exception:  # noqa: BLE001 - anything that does not compose here is Hydra's to report
        return None


def run_folder_guess(cfg: DictConfig) -> Path:
    """The run folder of ``cfg`` as composed now (``hydra.run.dir``: the clock may have moved when Hydra makes
    it), or the log folder where it does not resolve here; absolute, a relative one taken from the current
    folder. Only checks that read no folder are given it."""
    try:
        folder = Path(str(cfg.hydra.run.dir))
    except Exception:  # noqa: BLE001 - made of Hydra's runtime values
        folder = Path("logs")
    return folder if folder.is_absolute() else Path.cwd() / folder


def value_refusal(argv: Sequence[str], config_dir: Path) -> str | None:
    """The refusal of a value of ``train.py``'s command line that needs no run folder
    (:func:`~marsunits.run_checks.config_value_refusal`), or None: for a command whose run folder is not
    claimed here (a ``run_name`` made of the clock, ``--config-name``, ``paths.output_dir``), whose mistyped
    value was refused only inside the run, after Hydra had made the folder."""
    from marsunits.run_checks import config_value_refusal

    cfg = _composed(argv, config_dir, override_arguments(argv))
    return None if cfg is None else config_value_refusal(cfg, run_folder_guess(cfg))

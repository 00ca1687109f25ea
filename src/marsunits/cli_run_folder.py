"""The run folder a command line makes, checked before Hydra makes it: the log folder it goes in can be made
and written, with room on its disk (:func:`unwritable_log_dir`, ``train.py`` and ``predict.py``), and
``train.py``'s claim on its run folder, or a sweep's on its sweep folder (:func:`claim_run_folder`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from marsunits.cli_argv import (
    CONFIG_FLAGS,
    INFORMATIONAL_FLAGS,
    OTHER_RUN_FLAGS,
    hydra_quoted,
    is_multirun,
    override_arguments,
    with_override,
)
from marsunits.cli_sweeps import claim_sweep_folder, sweep_refusal
from marsunits.cli_values import value_refusal

__all__ = ["MIN_FREE_BYTES", "claim_run_folder", "unwritable_log_dir"]


def claim_run_folder(argv: Sequence[str], config_dir: Path) -> tuple[str | None, list[str]]:
    """Take ``train.py``'s claim on its run folder before Hydra starts; returns the refusal when another live
    run holds it (else None) and ``argv`` with the run's name pinned.

    ``training.run`` claims the folder too, but only once Hydra has written its ``.hydra/`` record and
    opened ``train.log`` there: a command given the folder of a run already training (its ``run_name``, or
    the same command in the same second: a job array with ``seed=1``, ``seed=2``, ...) wrote its config over
    that run's ``.hydra/config.yaml`` before it was refused. The folder is found by composing the config as
    Hydra will (``hydra.run.dir``); the claim is held for the rest of the process
    (:func:`~marsunits.run_folder_claim.hold_run_folder_for_process`). A ``run_name`` made from the time
    (``${now:...}``, the default) is added to the command line as composed here, so Hydra's folder is the
    one claimed even when the clock passes a second meanwhile. A sweep's trials are checked together
    (:func:`~marsunits.cli_sweeps.sweep_refusal`) and it claims its sweep folder instead
    (:func:`~marsunits.cli_sweeps.claim_sweep_folder`); where the run folder is left to the run (a
    clock-made ``run_name``, another primary config, ``paths.output_dir``) only the values are checked
    (:func:`~marsunits.cli_values.value_refusal`). ``--help``-like flags and the other DDP ranks
    (their rank 0 holds the folder) are left alone; a config that does not compose is Hydra's to report.
    """
    from marsunits.run_folder_claim import (
        hold_run_folder_for_process,
        is_global_rank_zero,
        run_folder_holder,
    )

    argv = list(argv)
    if any(a.split("=", 1)[0] in (*INFORMATIONAL_FLAGS, *OTHER_RUN_FLAGS) for a in argv):
        return None, argv
    if not is_global_rank_zero():  # a DDP rank that Lightning started again: its rank 0 holds the folder
        return None, argv
    if is_multirun(argv):
        refused = sweep_refusal(argv, config_dir)
        if refused is not None:
            return refused, argv
        return claim_sweep_folder(argv, config_dir)
    keys = [a.split("=", 1)[0].lstrip("+") for a in argv]
    if any(k in CONFIG_FLAGS or k.startswith(CONFIG_FLAGS) for k in keys) or "paths.output_dir" in keys:
        # Another primary config, or a run folder that is not Hydra's: the folder is the run's to check, the
        # values are checked here all the same (a mistyped one left a folder of a run that never started).
        return value_refusal(argv, config_dir), argv
    # A folder named by the clock or by Hydra's job through a value given here: Hydra's may differ (a second
    # later; ${hydra.job.name} composes to another name here): the folder is left to the run, the values
    # are checked here.
    if any(
        "now:" in a.split("=", 1)[1] or "${hydra" in a.split("=", 1)[1]
        for a in argv
        if "=" in a and a.split("=", 1)[0].lstrip("+") in _FOLDER_KEYS
    ):
        return value_refusal(argv, config_dir), argv
    named = any(k in ("run_name", "hydra.run.dir") for k in keys)
    # Deletions (~key) too: without them the job composed here was not the run's, and a resume was refused.
    overrides = override_arguments(argv)
    pin = None
    with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
        try:
            cfg = compose("train", overrides=overrides, return_hydra_config=True)
            raw = OmegaConf.to_container(cfg, resolve=False)
            if not named and "now:" in str(raw.get("run_name")):  # type: ignore[union-attr]
                pin = str(cfg.run_name)  # the default, made from the clock: pinned as composed now
                # As composed with run_name=<pin> (the override the run gets): the folder interpolates it.
                # Set here, not composed again: a composition is 0.1-0.3 s of every train.py start.
                OmegaConf.update(cfg, "run_name", pin)
            run = OmegaConf.to_container(cfg.hydra.run, resolve=False)
            raw_dir = str(run.get("dir")) if isinstance(run, dict) else "now:"
            folder = Path(str(cfg.hydra.run.dir))
        except Exception:  # noqa: BLE001 - anything unresolvable here is Hydra's to report when it runs
            return None, argv
    if "now:" in raw_dir or "${hydra" in raw_dir:  # see above
        return value_refusal(argv, config_dir), argv
    folder = folder if folder.is_absolute() else Path.cwd() / folder
    held = run_folder_holder(folder)
    if held is not None:
        return held, argv
    # A refusal of the run in that folder (it holds a finished run; a resume with other settings) also
    # comes before Hydra rewrites the folder's .hydra/ record with this command's settings.
    from marsunits.run_checks import refusal_before_hydra
    from marsunits.run_resume import PINNED_RUN_NAME_ENV

    if pin is not None:
        os.environ[PINNED_RUN_NAME_ENV] = pin  # still the default run name (run_resume._named_run)
    refused = refusal_before_hydra(cfg, folder)
    if refused is not None:
        return refused, argv
    if pin is not None:
        argv = with_override(argv, f"run_name={hydra_quoted(pin)}")
    try:
        return hold_run_folder_for_process(folder), argv
    except OSError:  # the folder cannot be made: Hydra says so
        return None, argv


#: Options whose value names the run folder (``hydra.run.dir`` is made of them).
_FOLDER_KEYS = ("run_name", "hydra.run.dir", "paths.log_dir", "paths.root_dir", "task_name")


#: Free bytes below which the disk of the log folder counts as full (Hydra's record and the log of a run
#: need a few kB; a checkpoint much more, and says so itself when it does not fit).
MIN_FREE_BYTES = 1 << 20


def unwritable_log_dir(argv: Sequence[str], cwd: Path | None = None) -> str | None:
    """Why the folder Hydra makes the run folder in (``paths.log_dir``: by default ``logs/`` under the folder
    the command is run from) cannot be made or written, or None. Hydra makes it before any of the
    command's own code runs, so a command started from a read-only folder (a data disk) ended in Hydra's
    traceback. Only ``paths.log_dir=`` and ``paths.root_dir=`` overrides and ``MARSUNITS_ROOT`` are read
    here; a log folder set another way is left to Hydra."""
    if any(a.split("=", 1)[0] in INFORMATIONAL_FLAGS for a in argv):
        return None  # --help, --cfg job, --info: nothing is made
    values = {a.split("=", 1)[0].lstrip("+"): a.split("=", 1)[1] for a in argv if "=" in a}
    if "hydra.run.dir" in values or "hydra.sweep.dir" in values:
        return None  # the run folder is given another way: Hydra makes it
    if "paths.log_dir" in values:
        log_dir = Path(values["paths.log_dir"].strip("'\""))
    else:
        root = values.get("paths.root_dir") or os.environ.get("MARSUNITS_ROOT") or str(cwd or Path.cwd())
        log_dir = Path(root.strip("'\"")) / "logs"
    if "${" in str(log_dir):
        return None  # an interpolation: Hydra resolves it
    log_dir = log_dir if log_dir.is_absolute() else (cwd or Path.cwd()) / log_dir
    existing = log_dir
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
        try:
            st = os.statvfs(existing)
        except OSError:
            return None
        free = st.f_bavail * st.f_frsize
        if free >= MIN_FREE_BYTES:
            return None
        # Hydra writes its .hydra/ record there first, and a full disk ended in its traceback, naming no file.
        return (
            f"cannot make the run folder under {log_dir}: the disk holding {existing} is full "
            f"({free // 1024} kB free). Free space, or add paths.log_dir=<a folder on another disk>"
        )
    why = "is not a folder" if existing.exists() and not existing.is_dir() else "is not writable"
    return (
        f"cannot make the run folder under {log_dir}: {existing} {why}. Run the command from a folder you "
        "can write to, or add paths.log_dir=<a writable folder>"
    )

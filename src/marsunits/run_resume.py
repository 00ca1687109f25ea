"""What a training run starts from, checked against its run folder before anything is written there
(:func:`checked_start`): the checkpoint ``ckpt_path`` resumes (:func:`resolve_ckpt_path`; ``last``: the newest
run of the same job, :func:`job_identity`, and seed), the one ``train=false`` scores, and a folder that holds
another run's checkpoints or a resumed run that trained another job (:func:`check_run_folder`).

``train.py`` runs these before Hydra makes the run folder
(:func:`~marsunits.run_checks.refusal_before_hydra`) and :func:`~marsunits.training.run` runs them again.
Imports neither torch nor Lightning: the run folder's ``config.yaml`` and the checkpoint's first bytes are
read as files. Only the refusal of a resume with other settings imports :mod:`marsunits.fine_tuning` (and
torch with it), for the settings a network's weights depend on.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from marsunits.checkpoint_files import check_checkpoint_start
from marsunits.errors import ConfigError, counted
from marsunits.user_paths import expand_home, is_package

log = logging.getLogger(__name__)

#: The run name the command line added for a default, time-made ``run_name`` (``cli_run_folder.
#: claim_run_folder``), so that Hydra's folder is the one it claimed: still a default, not a name the user
#: gave (``ckpt_path=last`` then resumes the newest run of the job, not that new folder's).
PINNED_RUN_NAME_ENV = "MARSUNITS_PINNED_RUN_NAME"


def resolve_ckpt_path(
    ckpt_path: str | None,
    output_dir: Path,
    log_dir: Path,
    task_name: str,
    job: Mapping[str, Any] | None = None,
    data_moved: bool = False,
    run_name: str | None = None,
    seed: int | None = None,
) -> str | None:
    """Turn the ``ckpt_path`` config value into a checkpoint file, or None for a fresh run.

    ``last`` means ``<output_dir>/checkpoints/last.ckpt`` if it exists, else the most recently written
    ``last.ckpt`` of a run under ``<log_dir>/<task_name>/`` that trained the same job: with ``job`` given
    (:func:`job_identity` of this run's config), only runs whose ``config.yaml`` has the same identity count,
    so ``experiment=ai4mars ckpt_path=last`` never resumes the newest synthetic run; with ``data_moved``
    the data's location (``_DATA_LOCATION_KEYS``) is left out of that comparison. With ``run_name`` (a run
    folder the user named) only that folder's ``last.ckpt`` counts: continuing another run under the name
    given, as the fallback did for a run killed before its first recovery checkpoint, resumed the wrong run
    and its W&B run without a word. With ``seed``, only runs trained with that seed count: seeds run side by
    side and stopped together (a job array) each resumed the newest of them, two into one W&B run.

    Raises:
        ConfigError: If the file does not exist or no matching ``last.ckpt`` can be found;
            :class:`~marsunits.checkpoint_files.NotACheckpointError` if the file does not start as a
            checkpoint does.
    """
    if ckpt_path in (None, "", "null"):
        return None
    if ckpt_path == "last":
        own = output_dir / "checkpoints" / "last.ckpt"
        if own.is_file():
            return str(own)
        if run_name is not None:
            kept = sorted((output_dir / "checkpoints").glob("*.ckpt"))
            if kept:
                chosen = next((p for p in kept if p.name == "best.ckpt"), kept[0])
                # A disk that filled at the first last.ckpt (best.ckpt was written just before it at the
                # epoch's end): "without ckpt_path" is refused in a folder holding a checkpoint
                # (check_run_folder), so the way on is the checkpoint that is there.
                again = shlex.join([f"run_name={run_name}", f"ckpt_path={chosen}"])
                raise ConfigError(
                    f"ckpt_path=last with run_name={run_name}: {own} does not exist (the run stopped before "
                    f"writing it), but {chosen} does: run the same command with {again} instead to continue "
                    "the run from it (the steps after it are trained again; free space first if a full disk "
                    "stopped the run), or start anew under another run_name=..."
                )
            started = (output_dir / "config.yaml").is_file()
            raise ConfigError(
                f"ckpt_path=last with run_name={run_name}: {own} does not exist ("
                + (
                    "the run stopped before its first checkpoint, written every 50 optimiser steps and at "
                    "each epoch's end"
                    if started
                    else "no run of that name has started"
                )
                + "), so there is nothing of it to resume. Run the same command without ckpt_path to start "
                "it from the beginning, or give the checkpoint to continue: ckpt_path=<its .ckpt file>"
            )
        candidates = sorted(
            (log_dir / task_name).glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime
        )
        if not candidates:
            raise ConfigError(
                f"ckpt_path=last: no last.ckpt under {log_dir / task_name}/*/checkpoints/. "
                "Train once without ckpt_path, or pass ckpt_path=<path to a .ckpt file>."
            )
        if job is not None:
            same = [c for c in candidates if _same_job(_saved_job(c.parent.parent, job), job, data_moved)]
            if not same:
                newest, under = candidates[-1].parent.parent.name, f"{log_dir / task_name}/"
                which = (
                    f"the only run under {under}, {newest}, did not train this model on this data"
                    if len(candidates) == 1
                    else f"none of the {len(candidates)} runs under {under} trained this model on this data "
                    f"(newest: {newest})"
                )
                raise ConfigError(
                    f"ckpt_path=last: {which}"
                    + _how_to_resume_other_settings(candidates[-1].parent.parent, job, data_moved)
                    + (
                        ""
                        if len(candidates) == 1
                        else "; or resume another with its own settings and ckpt_path=<path to its last.ckpt>"
                    )
                    + "; or drop ckpt_path to start a new one"
                )
            candidates = same
        if seed is not None:
            seeds = {c: _saved_seed(c.parent.parent) for c in candidates}
            same_seed = [c for c in candidates if seeds[c] == seed]
            if not same_seed:
                others = ", ".join(str(v) for v in sorted({v for v in seeds.values() if v is not None}))
                runs = "run" if len(candidates) == 1 else f"{len(candidates)} runs"
                raise ConfigError(
                    f"ckpt_path=last: the {runs} of this model and data under {log_dir / task_name}/ "
                    f"{'was' if len(candidates) == 1 else 'were'} trained with seed {others or 'unknown'} "
                    f"(newest: {candidates[-1].parent.parent.name}), not seed={seed}; give the seed of the "
                    "run to resume, or ckpt_path=<path to its last.ckpt>"
                )
            candidates = same_seed
        log.info("ckpt_path=last -> %s", candidates[-1])
        return str(candidates[-1])
    path = _resumed_file(ckpt_path)
    check_checkpoint_start(path, "ckpt_path", package_ok=False)  # a text file: refused before the run folder
    return str(path)


#: Words Hydra's override grammar reads unquoted as another type than text.
_NOT_TEXT_WORDS = frozenset({"null", "true", "false", "nan", "inf"})


def _how_to_resume_other_settings(run_dir: Path, job: Mapping[str, Any], data_moved: bool) -> str:
    """For ``ckpt_path=last`` that found runs of other settings only: the settings in which the newest,
    ``run_dir``, differs from this command's and the overrides that give its values (``; its config.yaml
    has other values (its, then this command's: data.train_length: 64 -> 1792): to resume it, add
    data.train_length=64 to the command``), so that a run resumed without the overrides it was started
    with can go on; ``ckpt_path=<its last.ckpt>`` alone, as the refusal used to advise, is refused in turn
    for the same settings (:func:`check_run_folder`). Where its ``config.yaml`` cannot be read, or a
    differing value is no plain value (a key one side lacks), a word to resume it with its own settings.
    """
    saved = _saved_job(run_dir, job)
    if saved is None:
        return (
            f"; to resume it, give the command the settings it was started with ({run_dir / 'config.yaml'})"
        )
    changed = _differing(saved, dict(job))
    shown = [f"{key}: {old!r} -> {new!r}" for key, old, new in changed]
    said = "; ".join(shown[:6]) + (f"; and {len(shown) - 6} more" if len(shown) > 6 else "")
    where = f"; its {run_dir / 'config.yaml'} has other values (its, then this command's: {said})"
    values = [_override(key, old) for key, old, _ in changed]
    if len(changed) > 12 or any(v is None for v in values) or any(_ABSENT in (o, n) for _, o, n in changed):
        return f"{where}: to resume it, give the command the settings it was started with"
    moved = (
        " (if the same data has only moved, add data_moved=true instead of the old data.root)"
        if not data_moved
        and all(
            key.split(".")[0] == "data" and key.split(".")[1] in _DATA_LOCATION_KEYS for key, *_ in changed
        )
        else ""
    )
    return f"{where}: to resume it, add {' '.join(shlex.quote(str(v)) for v in values)} to the command{moved}"


def _override(key: str, value: Any) -> str | None:
    """``key=value`` as Hydra's command line reads ``value`` back (a text quoted where it would read as
    another type or not parse), or None for a value with no such form here (a mapping, a nested list)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return f"{key}={_plain(value)}"
    if isinstance(value, list) and all(v is None or isinstance(v, (bool, int, float, str)) for v in value):
        return f"{key}=[{','.join(_plain(v) for v in value)}]"
    return None


def _plain(value: Any) -> str:
    """One value as Hydra's override grammar reads it back: ``null``, ``true``, ``0.001``, ``unet``,
    ``'1e-3'`` (a text that would read as a number)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if re.fullmatch(r"[A-Za-z_/][\w./~-]*", text) and text.lower() not in _NOT_TEXT_WORDS:
        return text
    # Hydra's quoted values escape a backslash only before a quote or at the end.
    return "'" + re.sub(r"(\\+)(?='|$)", r"\1\1", text).replace("'", "\\'") + "'"


def _resumed_file(ckpt_path: str) -> Path:
    """The file ``ckpt_path`` (not ``last``) names to resume, ``~`` expanded, told from the path alone
    (imports nothing: ``train.py`` refuses a missing one before the config's classes import torch).

    Raises:
        ConfigError: no such file, or a model package (which holds no run to resume).
    """
    path = expand_home(ckpt_path)
    if not path.is_file():
        if path.exists() and is_package(path):  # "no such file" for a folder that is there
            raise ConfigError(
                f"ckpt_path={ckpt_path} is a model package (python -m marsunits.export): it holds the "
                "weights, not the run's optimiser and epochs, so it cannot be resumed. Start a new run "
                f"from it with init_ckpt_path={ckpt_path}, or score it with train=false ckpt_path={ckpt_path}"
            )
        raise ConfigError(f"ckpt_path={ckpt_path}: no such file. Pass an existing .ckpt file, or `last`.")
    return path


#: Data settings that change only speed, not what is trained on: a resumed run may change them.
_DATA_PERFORMANCE_KEYS = frozenset(
    {
        "num_workers",
        "pin_memory",
        "persistent_workers",
        "render_processes",
        "val_batch_size",
        # Decoded images (rendered scenes) held in memory or read again: the same pixels either way, so a
        # run out of memory resumes with data.cache=false (it was refused: a new run lost the optimiser).
        "cache",
        "cache_scenes",
    }
)


#: Data settings that say where the data is, not what it is: ``data_moved=true`` lets a resume change them.
_DATA_LOCATION_KEYS = frozenset({"root", "source_dirs"})

#: Data settings that switch a check on or off, not what is trained on: a resumed run may change them.
_DATA_CHECK_KEYS = frozenset({"allow_seen_val_sols"})

#: Data settings added since runs were first recorded, with the value that gives the behaviour before
#: them: a run folder whose config.yaml lacks one is compared as if it had that value, so a run from
#: before still resumes, and one that would now train on other data says which setting restores it.
_DATA_KEYS_ADDED = {
    "sol_margin": 0,
    # ClassMix (2026-12-02; in configs/data/ai4mars.yaml since 2026-12-05) and validation context (MarsScapes
    # from 2026-12-02; ai4mars.yaml and folder.yaml since 2026-12-05): runs recorded before had neither.
    "class_mix_prob": 0.0,
    "val_context_px": 0,
}


def _same_job(saved: Mapping[str, Any] | None, job: Mapping[str, Any], data_moved: bool) -> bool:
    """Whether a saved :func:`job_identity` is ``job``; with ``data_moved``, wherever the data now is."""
    if saved is None:
        return False
    if not data_moved:
        return dict(saved) == dict(job)

    def located(identity: Mapping[str, Any]) -> dict[str, Any]:
        data = identity.get("data")
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if k not in _DATA_LOCATION_KEYS}
        return {**identity, "data": data}

    return located(saved) == located(job)


def job_identity(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """What a resumed run must share with the run it continues: the ``model`` and ``data`` configs (the
    data's performance settings, ``_DATA_PERFORMANCE_KEYS``, aside), so ``data.root=/A`` never resumes a
    run trained on ``/B``.

    Plain (resolved) containers, comparable with ``==`` to what :func:`_saved_job` reads back.
    """

    def plain(node: Any) -> Any:
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node

    data = plain(cfg.get("data"))
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in _DATA_PERFORMANCE_KEYS | _DATA_CHECK_KEYS}
    return {"model": plain(cfg.get("model")), "data": data}


class _Absent:
    """A key one config has and the other lacks (shown as ``absent``; a lacking key is not a None)."""

    def __repr__(self) -> str:
        return "absent"


_ABSENT = _Absent()


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain nested dicts (``model.lr: 0.001 -> 0.002``); a key
    on one side only shows as ``absent`` on the other."""
    return [f"{key}: {before!r} -> {after!r}" for key, before, after in _differing(old, new, prefix)]


def _differing(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """:func:`_differences` as ``(dotted key, old value, new value)``, :data:`_ABSENT` for a missing key."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[tuple[str, Any, Any]] = []
        for key in sorted(set(old) | set(new), key=str):
            out += _differing(old.get(key, _ABSENT), new.get(key, _ABSENT), f"{prefix}{key}.")
        return out
    return [] if old == new else [(prefix.rstrip("."), old, new)]


def check_run_folder(
    output_dir: Path, ckpt_path: str | None, job: Mapping[str, Any], data_moved: bool = False
) -> None:
    """Refuse to start where a run would overwrite another run's record or resume another job.

    * A new run (no ``ckpt_path``) in a folder that already holds checkpoints (``run_name=`` of an earlier
      run) would overwrite them and its ``config.yaml``.
    * A resumed checkpoint whose run folder's ``config.yaml`` trained another model or data
      (:func:`job_identity`) would die on mismatched tensors or silently go on with other data; this holds
      for ``ckpt_path=last`` in the run's own folder and for an explicit path alike. With ``data_moved``
      (``data_moved=true``: the same data under another path) only the data's location may differ.

    Raises:
        ConfigError: Naming the folder, the differing settings and what to do.
    """
    held = sorted((output_dir / "checkpoints").glob("*.ckpt"))
    if ckpt_path is None:
        if held:
            raise ConfigError(
                f"{output_dir} already holds a run ({counted(len(held), 'checkpoint')} in checkpoints/); "
                "resume it with ckpt_path=last, or give this run another run_name=... (or move that folder "
                "away)"
            )
        return
    source = Path(ckpt_path).resolve().parent.parent
    if held and source != output_dir.resolve():
        raise ConfigError(
            f"{output_dir} already holds another run's checkpoints; resume {ckpt_path} under another "
            "run_name=..., or resume this folder's run with ckpt_path=last"
        )
    saved = _saved_job(source, job)
    if saved is not None and not _same_job(saved, job, data_moved):
        diff = _differences(saved, dict(job))
        shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
        changed = [d.split(":")[0] for d in diff]  # dotted keys
        # Its weights can start a new run only on the same network (fine_tuning.NETWORK_HPARAMS).
        from marsunits.fine_tuning import NETWORK_HPARAMS

        network = [k for k in changed if k in {f"model.{name}" for name in NETWORK_HPARAMS}]
        way_out = (
            f"start a new run from its weights with init_ckpt_path={ckpt_path} and no ckpt_path"
            if not network
            else f"start a new run without ckpt_path (its weights do not fit another {', '.join(network)})"
        )
        only_moved = all(k in {f"data.{name}" for name in _DATA_LOCATION_KEYS} for k in changed)
        moved = (
            "; if the same data has only moved to the new path, add data_moved=true"
            if only_moved and not data_moved
            else ""
        )
        raise ConfigError(
            f"{ckpt_path} was trained with other model or data settings ({source / 'config.yaml'}: {shown}). "
            f"Resume it with its own settings, or {way_out}{moved}"
        )


def _saved_seed(run_dir: Path) -> int | None:
    """The ``seed`` of the run in ``run_dir`` from its ``config.yaml`` (None when unreadable or absent)."""
    try:
        saved = OmegaConf.load(run_dir / "config.yaml")
    except Exception:  # noqa: BLE001 - a missing or broken config.yaml: no seed known
        return None
    seed = saved.get("seed") if isinstance(saved, DictConfig) else None
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def _saved_job(run_dir: Path, job: Mapping[str, Any]) -> dict[str, Any] | None:
    """:func:`job_identity` of the run in ``run_dir`` from its ``config.yaml`` (None when unreadable), with
    the settings added since it was written (``_DATA_KEYS_ADDED``) that ``job`` has at their earlier value,
    and a ``data.fold`` recorded without ``data.n_folds`` as 0: it was ignored (the single held-out split),
    and is refused since 2026-12-05, so such a run could be resumed neither with it nor without it."""
    try:
        saved = OmegaConf.load(run_dir / "config.yaml")
    except Exception:  # noqa: BLE001 - a missing or broken config.yaml just means "not this job"
        return None
    if not isinstance(saved, DictConfig) or saved.get("model") is None or saved.get("data") is None:
        return None  # empty or not a run's config: no record to compare with
    identity = job_identity(saved)
    data, now = identity.get("data"), job.get("data")
    if isinstance(data, dict) and isinstance(now, dict):
        for key, before in _DATA_KEYS_ADDED.items():
            if key in now and key not in data:
                data[key] = before
        if data.get("n_folds") is None and "fold" in data:
            data["fold"] = 0  # what it trained with: fold was ignored without n_folds
    return identity


def checked_start(cfg: DictConfig) -> tuple[str | None, tuple[str, str] | None]:
    """What the run starts from, checked against its run folder before anything is written there.

    Returns:
        ``(ckpt_path, evaluated)``: the checkpoint to resume (:func:`resolve_ckpt_path`; None for a new run
        or ``train=false``) and, for ``train=false``, the checkpoint whose network is validated and tested
        with the option that gave it (:func:`_evaluated_checkpoint`).

    Raises:
        ConfigError: No such checkpoint, or the folder holds another run, or the resumed run trained another
            job (:func:`check_run_folder`).
    """
    output_dir = Path(cfg.paths.output_dir)
    job = job_identity(cfg)
    data_moved = bool(cfg.get("data_moved", False))
    evaluated = None  # train=false: (the checkpoint whose network is validated and tested, its option)
    if bool(cfg.get("train", True)):
        ckpt_path = resolve_ckpt_path(
            cfg.get("ckpt_path"),
            output_dir,
            Path(cfg.paths.log_dir),
            cfg.task_name,
            job,
            data_moved,
            run_name=_named_run(cfg),
            seed=cfg.get("seed"),
        )
    else:
        evaluated, ckpt_path = _evaluated_checkpoint(cfg), None
    # Before config.yaml, the record it compares with, is replaced.
    check_run_folder(output_dir, ckpt_path, job, data_moved)
    return ckpt_path, evaluated


def _named_run(cfg: DictConfig) -> str | None:
    """The run's name when the user gave one (``run_name=...``); None for the default, a time stamp, and in
    a sweep, whose trials run in ``multirun-<time>/<n>`` whatever the name."""
    from marsunits.sweep_trials import in_multirun

    if in_multirun():
        return None
    raw = OmegaConf.to_container(cfg, resolve=False).get("run_name")  # type: ignore[union-attr]
    if not isinstance(raw, str) or "${now:" in raw:  # a default: a time stamp, maybe after the data name
        return None
    if os.environ.get(PINNED_RUN_NAME_ENV) == str(cfg.run_name):  # the default, pinned by the command line
        return None
    return str(cfg.run_name)


def _evaluated_checkpoint(cfg: DictConfig) -> tuple[str, str]:
    """The model ``train=false`` validates and tests, and the option that gave it: ``ckpt_path`` (a file or
    model package, not ``last``), else ``init_ckpt_path``.

    Validate and test used to run with Lightning's ``ckpt_path="best"``, which is no checkpoint when nothing
    was trained: a freshly initialised network was scored and ``ckpt_path`` silently ignored.

    Raises:
        ConfigError: neither is given, or ``ckpt_path=last``.
    """
    ckpt, init = cfg.get("ckpt_path"), cfg.get("init_ckpt_path")
    if ckpt in (None, "", "null"):
        if init:
            return str(init), "init_ckpt_path"
        raise ConfigError(
            "train=false validates and tests a trained model without training: give it with "
            "ckpt_path=<run dir>/checkpoints/best.ckpt (or a model package folder)"
        )
    if ckpt == "last":
        raise ConfigError(
            "train=false with ckpt_path=last: name the checkpoint to evaluate, "
            "ckpt_path=<run dir>/checkpoints/best.ckpt"
        )
    return str(expand_home(ckpt)), "ckpt_path"

"""A training run's ``metrics.json``: written, read back, and marked outdated when a later part of the run
replaced the checkpoint it scored.

``train.py`` writes it at the end of a run (:func:`marsunits.training.run`); :func:`read_metrics` is what
users read it with (also importable from :mod:`marsunits.training`).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from lightning.pytorch.utilities.exceptions import SIGTERMException

from marsunits.atomic import atomic_write_text
from marsunits.errors import TerminatedError, stop_said
from marsunits.user_paths import expand_home

log = logging.getLogger(__name__)


def _scalar_metrics(metrics: Mapping[str, Any], prefixes: tuple[str, ...]) -> dict[str, float]:
    """Float copies of the metrics whose names start with one of ``prefixes`` (NaN kept as null later)."""
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if name.startswith(prefixes):
            try:
                out[name] = float(value)
            except (TypeError, ValueError):
                continue
    return out


def _json_safe(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else value


#: What identifies a checkpoint file's version: a replaced file (written and renamed over it, or rewritten in
#: place) has another inode or modification time.
_FileVersion = tuple[int, int, int, int] | None


def _file_version(path: Path) -> _FileVersion:
    """``path``'s device, inode, size and modification time (ns), or None when it is not a file."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) if path.is_file() else None


class _ScoredCheckpoint(NamedTuple):
    """The checkpoint an earlier part's ``metrics.json`` scored, as it was before this part trained."""

    path: Path
    version: _FileVersion
    #: Its optimiser step when it is the checkpoint this part resumed from, else None.
    step: int | None


def _scored_checkpoint(output_dir: Path, resumed: str | None, resumed_step: int) -> _ScoredCheckpoint | None:
    """The checkpoint whose scores the ``metrics.json`` in ``output_dir`` holds (its ``best_ckpt``; without
    one, its ``last_ckpt``: the weights in memory at the end were scored; in ``output_dir``'s ``checkpoints/``
    when the run folder was moved since and the path it names is gone) and that file's version now, and,
    when it is the checkpoint ``resumed`` (at step ``resumed_step``), that step; None without a readable
    ``metrics.json`` naming one."""
    try:
        earlier = read_metrics(output_dir)
    except (OSError, ValueError):
        return None
    recorded = earlier.get("best_ckpt") or earlier.get("last_ckpt")
    if not isinstance(recorded, str) or not recorded:
        return None
    path = Path(recorded)
    here = output_dir / "checkpoints" / path.name
    if not path.is_file() and here.is_file():
        # The run folder was moved (another disk or node): metrics.json names the checkpoint where it was.
        path = here
    try:
        step = resumed_step if resumed and os.path.samefile(path, resumed) else None
    except OSError:
        step = None
    return _ScoredCheckpoint(path, _file_version(path), step)


def _mark_earlier_metrics_outdated(
    output_dir: Path, stop: BaseException | None, scored: _ScoredCheckpoint | None, step: int
) -> None:
    """Add ``outdated`` to the ``metrics.json`` an earlier part of this run wrote in ``output_dir``, when a
    later part that trained (a resume, ``ckpt_path=last``) stops before its end (``stop``: Ctrl-C, SIGTERM, an
    error) after it replaced the checkpoint the file scored (``scored``: its path and version before this
    part trained, :func:`_scored_checkpoint`; ``best.ckpt``, or ``last.ckpt`` without one), so that the file
    no longer reads as the scores of the run's checkpoints. A part stopped before it saved a new best (before
    its first step, or before a validation) leaves the file as it is, its scores still those of
    ``best.ckpt`` (such a stop marked it too); so does one that resumed from the scored checkpoint and took
    no step (at optimiser ``step`` still): the interrupt's ``last.ckpt`` it wrote holds the same weights.
    The part that finishes the run rewrites the file without it. Nothing else of the record changes; a file
    that cannot be read or written is left as it is."""
    if scored is None:
        return  # no metrics.json (the run's first part was stopped too), or not this tool's
    path = scored.path
    if _file_version(path) == scored.version:
        return  # the scored checkpoint is the file it was: the scores still hold
    if scored.step is not None and step == scored.step:
        return  # resumed from it and no step taken: rewritten (the interrupt's last.ckpt) with its weights
    try:
        earlier = read_metrics(output_dir)
    except (OSError, ValueError):
        return
    if isinstance(stop, (TerminatedError, SIGTERMException, KeyboardInterrupt)):
        how = stop_said(stop)[0]
    else:
        how = "stopped by an error"
    earlier["outdated"] = (
        f"a later part of this run (resumed with ckpt_path=last) was {how} before its end and replaced "
        f"{path.name}, the checkpoint these scores are of: they are of the part that finished before it. Run "
        "the same command with ckpt_path=last to finish the run and rewrite this file"
    )
    try:
        write_metrics(output_dir, earlier)
    except OSError:  # a full disk that stopped the run: the stop's own message says what to do
        log.debug("metrics.json not marked outdated", exc_info=True)


#: The keys of ``metrics.json`` that hold paths (escaped where a name is not UTF-8: :func:`write_metrics`).
METRICS_PATH_KEYS = ("best_ckpt", "last_ckpt", "init_ckpt", "evaluated_ckpt")


def write_metrics(run_dir: Path, metrics: Mapping[str, Any]) -> Path:
    """Write ``run_dir/metrics.json`` atomically, as valid UTF-8, and return its path.

    A path of :data:`METRICS_PATH_KEYS` with a name that is not UTF-8 (a run folder under a Latin-1 name:
    Python holds its bytes as lone surrogates) is written as ``manifest.csv`` writes names, each such byte
    ``\\xNN`` and a backslash doubled, and its key listed in ``escaped_paths``
    (:func:`~marsunits.inference.writers.escaped_path_values`); :func:`read_metrics` undoes it. They were
    written ``"\\udce9"``, which strict JSON readers refuse or turn into U+FFFD, so no tool but Python found
    the checkpoints from the file.
    """
    from marsunits.inference.writers import escaped_path_values

    record = escaped_path_values(metrics, METRICS_PATH_KEYS)
    return atomic_write_text(run_dir / "metrics.json", json.dumps(record, indent=2) + "\n")


def read_metrics(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``metrics.json`` that ``train.py`` wrote (the file, or its run folder), with its paths as the
    filesystem names them (:func:`write_metrics`'s escapes undone: a Latin-1 run folder's ``best_ckpt``
    opens as it is).

    ``~`` is the home folder, as in every path option.

    Raises:
        FileNotFoundError: no such file, or a run folder without ``metrics.json`` (a run not finished).
        OSError: the file cannot be read. ValueError: it is not JSON, or not a JSON object (the message
            names the file).
        TypeError: ``path`` is not a path (a list of runs: one at a time).
    """
    from marsunits.inference.writers import unescaped_path_values

    if not isinstance(path, (str, os.PathLike)):  # pathlib's "expected str, bytes or os.PathLike object"
        raise TypeError(
            f"read_metrics takes the path of a run folder or its metrics.json, got {type(path).__name__} "
            f"{path!r:.60}; for several runs: [read_metrics(p) for p in paths]"
        )
    file = expand_home(path)  # "~/runs/x" was "No such file or directory: '~/runs/x'"
    if file.is_dir():
        file = file / "metrics.json"
        if not file.exists():
            raise FileNotFoundError(
                f"no metrics.json in the run folder {file.parent}: train.py writes it at the end of a run; "
                "give the folder of a finished run"
            )
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:  # it named no file
        raise ValueError(f"{file}: not the JSON train.py writes ({exc})") from exc
    if not isinstance(record, dict):
        raise ValueError(f"{file}: a JSON {type(record).__name__}, not the object train.py writes")
    return unescaped_path_values(record)


def _earlier_metrics(output_dir: Path, ckpt_path: str) -> Iterator[dict[str, Any]]:
    """The ``metrics.json`` of this run folder, then of the resumed checkpoint's run folder, where readable
    (a run stopped before its end has none)."""
    for folder in (output_dir, Path(ckpt_path).resolve().parent.parent):
        try:
            yield read_metrics(folder / "metrics.json")
        except (OSError, ValueError):
            continue


def _earlier_record(output_dir: Path, ckpt_path: str, key: str) -> Any:
    """``key`` of the first earlier ``metrics.json`` (:func:`_earlier_metrics`) that has it, or None."""
    return next((m[key] for m in _earlier_metrics(output_dir, ckpt_path) if m.get(key) is not None), None)
